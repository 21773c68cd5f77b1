#pragma once

// Open-loop pacing. A publisher at rate R sends message k at start + k/R whatever happened to
// message k-1: when the broker stalls, the messages that fell due meanwhile go out in a burst
// afterwards, stamped with the time they were *meant* to be sent. Latency measured from that
// intended time includes the stall, which a closed loop (send, wait, send) would hide:
// the coordinated-omission correction. No clock in here; the caller passes the time.

#include <chrono>
#include <cstdint>
#include <optional>

namespace mqtt::bench {

using clock = std::chrono::steady_clock;

class rate_limiter {
  public:
    // `per_second` <= 0: closed loop, every message is due at once and stamped when sent.
    // `phase` shifts the schedule, so that N publishers sharing a total rate interleave.
    rate_limiter(double per_second, clock::time_point start,
                 clock::duration phase = clock::duration::zero()) noexcept;

    bool open_loop() const noexcept { return interval_ns_ > 0; }
    // When message `k` (0-based) is meant to go out.
    clock::time_point intended(std::uint64_t k) const noexcept;
    // Whether message `k` is due at `now`.
    bool due(std::uint64_t k, clock::time_point now) const noexcept { return intended(k) <= now; }
    // How many messages (0..k) are due at `now`: the backlog of a late sender is
    // due_count(now) - sent.
    std::uint64_t due_count(clock::time_point now) const noexcept;
    // The timestamp to put in message `k` sent at `now`: the intended time in an open loop
    // (never later than now), `now` in a closed loop.
    clock::time_point stamp(std::uint64_t k, clock::time_point now) const noexcept;

  private:
    double interval_ns_ = 0;  // 0: closed loop
    clock::time_point start_;
};

// A publisher's share of a total rate: publisher `index` of `count` gets rate/count, phase
// index/rate.
rate_limiter share_of(double total_per_second, unsigned index, unsigned count,
                      clock::time_point start) noexcept;

}  // namespace mqtt::bench
