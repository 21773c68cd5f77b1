#pragma once

// Jittered exponential back-off between reconnect attempts: attempt n waits a random time in
// [base * 2^n / 2, base * 2^n], capped at `max` ("equal jitter"), so that many clients cut off
// by one broker restart do not all come back in the same instant. Sans-I/O: the caller passes
// the random number, so tests are exact.

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace mqtt::client {

class backoff {
  public:
    using duration = std::chrono::milliseconds;

    explicit backoff(duration base = duration{250}, duration max = duration{30'000}) noexcept
        : base_(base), max_(max) {}

    // The wait before the next attempt; `random` is uniform in [0, 1).
    duration next(double random) noexcept {
        auto ceiling = base_.count();
        for (unsigned i = 0; i < attempt_ && ceiling < max_.count(); ++i) ceiling *= 2;
        ceiling = std::min<std::int64_t>(ceiling, max_.count());
        ++attempt_;
        const auto half = ceiling / 2;
        random = std::clamp(random, 0.0, 1.0);
        return duration{half +
                        static_cast<std::int64_t>(random * static_cast<double>(ceiling - half))};
    }
    // After a successful connection: start again from `base`.
    void reset() noexcept { attempt_ = 0; }
    unsigned attempts() const noexcept { return attempt_; }

  private:
    duration base_;
    duration max_;
    unsigned attempt_ = 0;
};

}  // namespace mqtt::client
