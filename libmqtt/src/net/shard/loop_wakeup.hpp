#pragma once

// A wake-up of an event loop from another thread: an eventfd in the loop's reactor whose
// function runs on the loop's thread after each notify(). One write(2) from the notifying
// thread, no lock; Asio's own cross-thread post locks the loop's scheduler and interrupts
// its reactor with an epoll_ctl under that lock, and the woken loop then often waits for
// the lock (a futex). Used by shard_runtime (a batch for another shard's loop) and by the
// store's sync thread (its finished jobs, back to the loop).
//
// The descriptor is not work to the io_context: a loop with nothing else to do returns from
// run() even with a wake-up due. A user keeps the loop running while it may be notified (a
// work guard) or makes sure what a wake-up would run is done another way when it stops.

// io_context first: its implementation, included with it, refers to the reactor.
#include <boost/asio/io_context.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <functional>

namespace mqtt::net::detail {

class loop_wakeup {
  public:
    // Registers the eventfd in io's reactor; `on_wake` runs on the thread running io (inside
    // the reactor's step for that descriptor: it must not destroy this object). Throws
    // std::system_error, its text starting with `what`, when the eventfd cannot be made or
    // added.
    loop_wakeup(boost::asio::io_context& io, std::function<void()> on_wake, const char* what);
    // Before io is destroyed.
    ~loop_wakeup();
    loop_wakeup(const loop_wakeup&) = delete;
    loop_wakeup& operator=(const loop_wakeup&) = delete;

    // From any thread: on_wake runs on the loop after this call (once for several notify()s
    // that come before it runs).
    void notify() noexcept;

  private:
    class op;
    boost::asio::io_context& io_;
    std::function<void()> on_wake_;
    int fd_ = -1;
    boost::asio::detail::reactor::per_descriptor_data data_ = nullptr;
};

}  // namespace mqtt::net::detail
