#include "mqtt/bench/rate.hpp"

#include <algorithm>
#include <cmath>

namespace mqtt::bench {

rate_limiter::rate_limiter(double per_second, clock::time_point start,
                           clock::duration phase) noexcept
    : interval_ns_(per_second > 0 ? 1e9 / per_second : 0), start_(start + phase) {}

clock::time_point rate_limiter::intended(std::uint64_t k) const noexcept {
    if (!open_loop()) return clock::time_point::min();
    // Computed from k each time, so rounding never accumulates over a long run.
    const auto offset = std::llround(static_cast<double>(k) * interval_ns_);
    return start_ + std::chrono::nanoseconds(offset);
}

std::uint64_t rate_limiter::due_count(clock::time_point now) const noexcept {
    if (!open_loop()) return UINT64_MAX;
    if (now < start_) return 0;
    const auto elapsed = std::chrono::duration<double, std::nano>(now - start_).count();
    auto n = static_cast<std::uint64_t>(std::floor(elapsed / interval_ns_)) + 1;
    // Floating point may put the boundary one message off; intended() is the reference.
    while (n > 0 && intended(n - 1) > now) --n;
    while (intended(n) <= now) ++n;
    return n;
}

clock::time_point rate_limiter::stamp(std::uint64_t k, clock::time_point now) const noexcept {
    return open_loop() ? std::min(intended(k), now) : now;
}

rate_limiter share_of(double total_per_second, unsigned index, unsigned count,
                      clock::time_point start) noexcept {
    if (total_per_second <= 0 || count == 0) return rate_limiter(0, start);
    const auto phase =
        std::chrono::nanoseconds(std::llround(static_cast<double>(index) * 1e9 / total_per_second));
    return rate_limiter(total_per_second / count, start, phase);
}

}  // namespace mqtt::bench
