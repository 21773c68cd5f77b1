#pragma once

// The thread that checks passwords for the event loop: PBKDF2 with many iterations takes
// milliseconds, which must not stall every other connection. One thread, one queue; the
// answer is handed to a callback on the worker thread, which posts it back to the loop.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "mqtt/broker/security.hpp"

namespace mqtt::net::detail {

class auth_worker {
  public:
    auth_worker() = default;
    ~auth_worker();  // finishes the job at hand, drops the queued ones, joins
    auth_worker(const auth_worker&) = delete;
    auth_worker& operator=(const auth_worker&) = delete;

    // Checks r on the worker thread (started on first use) and calls done(ok) there.
    void submit(broker::auth_request r, std::function<void(bool)> done);

  private:
    struct job {
        broker::auth_request request;
        std::function<void(bool)> done;
    };
    void run();

    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<job> jobs_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace mqtt::net::detail
