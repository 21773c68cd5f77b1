#include "mqtt/net/shard_runtime.hpp"

#include "loop_wakeup.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cassert>
#include <optional>
#include <thread>
#include <utility>

namespace mqtt::net {

namespace asio = boost::asio;

struct shard_runtime::shard {
    explicit shard(asio::io_context* external) {
        if (external != nullptr) {
            io_ptr = external;
            return;
        }
        own.emplace(1);  // one thread runs it (posts from other threads still lock)
        io_ptr = &*own;
        work.emplace(own->get_executor());
    }
    shard(const shard&) = delete;
    shard& operator=(const shard&) = delete;
    std::optional<asio::io_context> own;
    asio::io_context* io_ptr = nullptr;
    asio::io_context& io() { return *io_ptr; }
    // Keeps run() going while the loop is idle (until finish()); destroyed before `own`.
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::thread thread;
    batch_handler on_batch;
    resume_handler on_resume;
    bool end_of_turn_posted = false;  // this shard's thread only
    std::uint64_t drain_reposts = 0;  // this shard's thread only
    std::vector<bool> stalled;        // [from]: the channel from -> here; this thread only
    // check_forwarding() found these channels (here -> [to]) congested; this thread only.
    std::vector<bool> forwarding_to;
    std::size_t forwarding_count = 0;
    // Shared, each on its own cache line. `forwarding` is written by this shard's thread
    // and read by the others (peer_congested); `waiting[k]` is set by shard k when it saw
    // `forwarding` true and taken back by whichever side clears it first. The same pattern
    // as the channel's blocked_ flag: the waiter stores waiting[k] then loads `forwarding`
    // again; this thread stores `forwarding` = false then exchanges waiting[k]. Both
    // seq_cst, so either the waiter sees the flag cleared or this thread sees the waiter.
    alignas(64) std::atomic<bool> forwarding{false};
    alignas(64) std::unique_ptr<std::atomic<bool>[]> waiting;

    // Wake-ups for drains (more than one shard; see shard_runtime::wake()), written to by
    // the other shards' threads. After `own` (destroyed before it: the reactor is its
    // service).
    std::optional<detail::loop_wakeup> wake;
    // [from]: the channel from -> here has a drain due (its publish answered `wake`). Set by
    // shard `from`, taken back by whichever side exchanges it first.
    alignas(64) std::unique_ptr<std::atomic<bool>[]> drain_due;
    // Wake-ups no longer relied on (finish(), stop_waiting()): the senders post their drains
    // instead (a post is work to the loop; the descriptor's operation is not).
    alignas(64) std::atomic<bool> wake_closed{false};
};

shard_runtime::shard_runtime(shard_runtime_options options) {
    const std::size_t n = options.shards == 0 ? 1 : options.shards;
    shards_.reserve(n);
    for (std::size_t k = 0; k < n; ++k)
        shards_.push_back(std::make_unique<shard>(k == 0 ? options.shard0 : nullptr));
    for (auto& s : shards_) {
        s->stalled.assign(n, false);
        s->forwarding_to.assign(n, false);
        s->waiting = std::make_unique<std::atomic<bool>[]>(n);
        s->drain_due = std::make_unique<std::atomic<bool>[]>(n);
        for (std::size_t k = 0; k < n; ++k) {
            s->waiting[k].store(false);
            s->drain_due[k].store(false);
        }
    }
    if (n > 1) {
        for (std::size_t k = 0; k < n; ++k) {
            shard& s = *shards_[k];
            s.wake.emplace(s.io(), [this, k] { woken(k); }, "shard wake-up");
        }
    }
    channels_.resize(n * n);
    for (std::size_t from = 0; from < n; ++from) {
        for (std::size_t to = 0; to < n; ++to) {
            if (from != to)
                channels_[from * n + to] = std::make_unique<shard_item_channel>(options.channel);
        }
    }
}

shard_runtime::~shard_runtime() {
    stop();
    join();
    // channels_ go first (declared last): the items in flight are destroyed there. Then the
    // io_contexts destroy what was still queued, which refers to the runtime only by `this`.
}

std::size_t shard_runtime::size() const noexcept {
    return shards_.size();
}

asio::io_context& shard_runtime::io(std::size_t shard) {
    return shards_.at(shard)->io();
}

void shard_runtime::on_batch(std::size_t shard, batch_handler handler) {
    shards_.at(shard)->on_batch = std::move(handler);
}

void shard_runtime::on_resume(std::size_t shard, resume_handler handler) {
    shards_.at(shard)->on_resume = std::move(handler);
}

void shard_runtime::start(bool caller_runs_shard0) {
    for (std::size_t k = caller_runs_shard0 ? 1 : 0; k < shards_.size(); ++k) {
        shard& s = *shards_[k];
        assert(!s.thread.joinable());
        s.thread = std::thread([&s] { s.io().run(); });
    }
}

void shard_runtime::run_caller_shard() {
    shards_[0]->io().run();
}

void shard_runtime::stop() {
    for (auto& s : shards_) s->io().stop();
}

void shard_runtime::finish() {
    for (std::size_t k = 0; k < shards_.size(); ++k) {
        stop_waiting(k);
        if (shards_[k]->work) shards_[k]->work->reset();
    }
}

void shard_runtime::stop_waiting(std::size_t shard) {
    shard_runtime::shard& s = *shards_.at(shard);
    if (!s.wake || s.wake_closed.exchange(true, std::memory_order_seq_cst)) return;
    // The flags set before wake_closed whose edges the loop has not handled yet: taken by a
    // posted sweep, which is work (the loop runs it before it can return).
    asio::post(s.io(), [this, shard] { woken(shard); });
}

void shard_runtime::woken(std::size_t k) {
    shard& s = *shards_[k];
    for (std::size_t from = 0; from < shards_.size(); ++from) {
        if (from == k || !s.drain_due[from].load(std::memory_order_acquire)) continue;
        if (s.drain_due[from].exchange(false, std::memory_order_seq_cst)) drain(from, k);
    }
}

void shard_runtime::wake(std::size_t from, std::size_t to) {
    // One write(2) to the receiver's eventfd, no lock. (A post from another thread locks
    // the receiver's scheduler and interrupts its reactor under that lock; the woken thread
    // then often waits for the lock: a second wake-up per hand-over.)
    shard& s = *shards_[to];
    s.drain_due[from].store(true, std::memory_order_seq_cst);
    if (!s.wake_closed.load(std::memory_order_seq_cst)) {
        s.wake->notify();
        return;
    }
    // Wake-ups are no longer relied on: the sweep stop_waiting() posted takes every flag
    // set before wake_closed was (a sender that read it false stored its flag before; the
    // same seq_cst pattern as shard_channel's scheduled_), and a flag set after, the sender
    // takes back itself and posts (or the sweep or an edge took it: then it drains).
    if (s.drain_due[from].exchange(false, std::memory_order_seq_cst)) {
        asio::post(s.io(), [this, from, to] { drain(from, to); });
    }
}

void shard_runtime::join() {
    for (auto& s : shards_) {
        if (s->thread.joinable()) s->thread.join();
    }
}

void shard_runtime::post(std::size_t shard, std::function<void()> f) {
    asio::post(shards_.at(shard)->io(), std::move(f));
}

void shard_runtime::for_each_shard(std::function<void(std::size_t)> f, std::function<void()> done,
                                   std::size_t done_shard) {
    // f is called on several threads at once (for different k): shared, not copied.
    auto each = std::make_shared<const std::function<void(std::size_t)>>(std::move(f));
    auto last = std::make_shared<std::function<void()>>(std::move(done));
    auto remaining = std::make_shared<std::atomic<std::size_t>>(shards_.size());
    for (std::size_t k = 0; k < shards_.size(); ++k) {
        asio::post(shards_[k]->io(), [this, k, each, last, remaining, done_shard] {
            (*each)(k);
            // acq_rel: the last decrement reads-from every earlier one (a release sequence),
            // so what each f(k) wrote happens before `done`, which the post hands over.
            if (remaining->fetch_sub(1, std::memory_order_acq_rel) == 1 && *last) {
                asio::post(shards_[done_shard]->io(), [last] { (*last)(); });
            }
        });
    }
}

shard_item_channel& shard_runtime::channel_ref(std::size_t from, std::size_t to) const {
    assert(from < shards_.size() && to < shards_.size() && from != to);
    return *channels_[from * shards_.size() + to];
}

const shard_item_channel& shard_runtime::channel(std::size_t from, std::size_t to) const {
    return channel_ref(from, to);
}

std::uint64_t shard_runtime::drain_reposts(std::size_t shard) const {
    return shards_.at(shard)->drain_reposts;
}

bool shard_runtime::send(std::size_t from, std::size_t to, shard_item&& item) {
    if (!channel_ref(from, to).try_push(std::move(item))) return false;
    shard& s = *shards_[from];
    if (!s.end_of_turn_posted) {
        // Queued behind the handlers already ready on this loop, so everything they send
        // goes out in the same batches: one post per turn, not per item.
        s.end_of_turn_posted = true;
        asio::post(s.io(), [this, from] { end_of_turn(from); });
    }
    return true;
}

bool shard_runtime::check_congested(std::size_t from, std::size_t to) {
    return channel_ref(from, to).check_congested();
}

bool shard_runtime::check_forwarding(std::size_t from, std::size_t to) {
    if (!channel_ref(from, to).check_congested()) return false;
    shard& s = *shards_[from];
    if (!s.forwarding_to[to]) {
        s.forwarding_to[to] = true;
        if (s.forwarding_count++ == 0) s.forwarding.store(true, std::memory_order_seq_cst);
    }
    return true;
}

bool shard_runtime::peer_congested(std::size_t from, std::size_t to) {
    shard& peer = *shards_[to];
    if (!peer.forwarding.load(std::memory_order_relaxed)) return false;
    peer.waiting[from].store(true, std::memory_order_seq_cst);
    if (peer.forwarding.load(std::memory_order_seq_cst)) return true;
    // Cleared meanwhile. Taken back: nobody posts a resume, and none is needed. Already
    // taken by `to`: a resume is on its way, which is harmless.
    peer.waiting[from].exchange(false, std::memory_order_seq_cst);
    return false;
}

void shard_runtime::forwarding_cleared(std::size_t shard, std::size_t to) {
    auto& s = *shards_[shard];
    if (!s.forwarding_to[to]) return;
    s.forwarding_to[to] = false;
    if (--s.forwarding_count != 0) return;
    s.forwarding.store(false, std::memory_order_seq_cst);
    for (std::size_t k = 0; k < shards_.size(); ++k) {
        if (k == shard || !s.waiting[k].exchange(false, std::memory_order_seq_cst)) continue;
        asio::post(shards_[k]->io(), [this, k, shard] {
            if (shards_[k]->on_resume) shards_[k]->on_resume(shard);
        });
    }
}

void shard_runtime::end_of_turn(std::size_t from) {
    shards_[from]->end_of_turn_posted = false;
    flush(from);
}

void shard_runtime::flush(std::size_t from) {
    for (std::size_t to = 0; to < shards_.size(); ++to) {
        if (to != from) publish(from, to);
    }
}

void shard_runtime::publish(std::size_t from, std::size_t to) {
    // `full` needs nothing here: the channel reports resume_producer to the drain that frees
    // a slot, and resume() publishes again.
    if (channel_ref(from, to).publish() == shard_item_channel::publish_result::wake) {
        wake(from, to);
    }
}

void shard_runtime::drain(std::size_t from, std::size_t to) {
    shard& s = *shards_[to];
    const auto r = channel_ref(from, to).drain([&](std::span<shard_item> items) {
        return s.on_batch ? s.on_batch(from, items) : items.size();
    });
    s.stalled[from] = r.stalled;
    if (r.again) {
        ++s.drain_reposts;
        asio::post(s.io(), [this, from, to] { drain(from, to); });
    }
    if (r.resume_producer) asio::post(shards_[from]->io(), [this, from, to] { resume(from, to); });
}

void shard_runtime::resume_drain(std::size_t from, std::size_t to) {
    shard& s = *shards_.at(to);
    if (from >= s.stalled.size() || !s.stalled[from]) return;
    s.stalled[from] = false;  // one drain posted, however many times this is called
    asio::post(s.io(), [this, from, to] { drain(from, to); });
}

std::size_t shard_runtime::stalled(std::size_t to) const {
    const auto& v = shards_.at(to)->stalled;
    return static_cast<std::size_t>(std::count(v.begin(), v.end(), true));
}

void shard_runtime::resume(std::size_t from, std::size_t to) {
    publish(from, to);
    forwarding_cleared(from, to);
    if (shards_[from]->on_resume) shards_[from]->on_resume(to);
}

}  // namespace mqtt::net
