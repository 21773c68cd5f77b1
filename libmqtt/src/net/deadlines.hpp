#pragma once

// The next deadline of every broker connection (keep-alive, CONNECT timeout, the refusal
// delay after bad credentials, the close grace period) in one binary heap under one timer.
// A timer and its pending wait per connection cost about 300 bytes each, held for as long as
// the client stays connected; here a connection costs its place in the heap and the few
// fields of deadline_owner. Single-threaded: everything runs on the server's io_context.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "mqtt/broker/limits.hpp"

namespace mqtt::net::detail {

namespace asio = boost::asio;

class deadlines;

// What a deadline calls when it passes; it is scheduled once (schedule() moves it).
class deadline_owner {
  public:
    virtual void on_deadline() = 0;
    // The time of the last schedule() (kept after it fired or was cancelled; max before the
    // first): an owner compares a new deadline with it to know whether to schedule again.
    broker::clock::time_point scheduled_at() const noexcept { return at_; }

  protected:
    deadline_owner() = default;
    ~deadline_owner() = default;
    deadline_owner(const deadline_owner&) = delete;
    deadline_owner& operator=(const deadline_owner&) = delete;

  private:
    friend class deadlines;
    // 32 bits: a connection's next member may take the rest of this base's last word.
    static constexpr std::uint32_t unscheduled = std::numeric_limits<std::uint32_t>::max();
    broker::clock::time_point at_ = broker::clock::time_point::max();
    std::uint32_t slot_ = unscheduled;
};

class deadlines {
  public:
    // The timer lives on `ex`; before start() schedule() only records.
    void start(asio::any_io_executor ex);
    // Destroys the timer (before its io_context goes); owners may still cancel afterwards.
    void stop() noexcept;

    // Places (or moves) o's deadline at `at`; o->on_deadline() runs on the loop once it passed.
    void schedule(deadline_owner& o, broker::clock::time_point at);
    void cancel(deadline_owner& o) noexcept;
    std::size_t size() const noexcept { return heap_.size(); }

  private:
    void arm();
    void on_timer(const boost::system::error_code& ec);
    void place(std::size_t i, deadline_owner* o) noexcept;
    void sift_up(std::size_t i) noexcept;
    void sift_down(std::size_t i) noexcept;
    void remove(std::size_t i) noexcept;

    std::vector<deadline_owner*> heap_;  // a min-heap by at_; slot_ is each owner's index
    std::optional<asio::steady_timer> timer_;
    broker::clock::time_point armed_ = broker::clock::time_point::max();
    std::optional<broker::clock::time_point> firing_;  // the moment being fired, while it is
};

}  // namespace mqtt::net::detail
