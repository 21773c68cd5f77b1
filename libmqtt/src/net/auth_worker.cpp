#include "auth_worker.hpp"

#include <utility>

namespace mqtt::net::detail {

auth_worker::~auth_worker() {
    {
        std::lock_guard lock{mutex_};
        stopping_ = true;
        jobs_.clear();
    }
    ready_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void auth_worker::submit(broker::auth_request r, std::function<void(bool)> done) {
    {
        std::lock_guard lock{mutex_};
        if (stopping_) return;
        jobs_.push_back(job{std::move(r), std::move(done)});
        if (!thread_.joinable()) thread_ = std::thread{[this] { run(); }};
    }
    ready_.notify_one();
}

void auth_worker::run() {
    for (;;) {
        job j;
        {
            std::unique_lock lock{mutex_};
            ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            j = std::move(jobs_.front());
            jobs_.pop_front();
        }
        const bool ok = j.request.passwords != nullptr &&
                        j.request.passwords->check(j.request.username, j.request.password);
        j.done(ok);
    }
}

}  // namespace mqtt::net::detail
