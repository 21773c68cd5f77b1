#pragma once

// The shards of the sharded broker (docs/broker.md, "Threading"; tern-broker with
// `threads` > 1): N io_contexts, each run by its own thread (shard 0 may be the caller's), and a
// shard_channel for every ordered pair of shards. A shard sends items to another shard
// during its loop turn; the items are published in one batch at the end of the turn (one
// post per turn to the sending shard itself) and the receiving shard is woken by at most
// one wake-up per batch, none while it is already scheduled to drain. A wake-up is a flag for
// the channel and one write to the receiving shard's eventfd, which its loop waits for
// (edge-triggered, never read): no lock, and the woken thread does not wait for the sender.
//
// Threads: send(), flush() and check_congested() run on the sending shard's thread; the
// handlers set with on_batch() / on_resume() run on their shard's thread; post(),
// for_each_shard() and stop() from any thread; start(), join() and the destructor from a
// thread that is not a shard's. Asio stays out of this header (io() hands out the
// io_context to code that includes Asio itself).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "mqtt/broker/message.hpp"
#include "mqtt/broker/share_ref.hpp"
#include "mqtt/net/shard_channel.hpp"

namespace boost::asio {
class io_context;
}

namespace mqtt::net {

// What goes from one shard to another: a published message to match in the receiving
// shard's trie, or a change of the retained messages every shard keeps a replica of (a
// clear carries the message whose empty payload cleared the topic).
// A share group's note or delivery (kind::share) carries its broker::share_op and the
// member it names (docs/broker.md, "Threading": shared subscriptions).
struct shard_item {
    enum class kind : std::uint8_t { publish, retain_set, retain_clear, share };
    kind what = kind::publish;
    broker::message_ptr msg;
    broker::share_op op = broker::share_op::deliver;
    broker::share_ref_ptr ref{};
    // A publish: the client id of the session that published it (null: none), for No Local
    // on the receiving shard (shared per session: one reference count, not a copy).
    broker::client_id_ptr publisher{};
    // A retained change (retain_set, retain_clear): the shard where it was made (shard 0
    // passes on the others' changes: see server::impl::retained_order).
    std::uint32_t origin = 0;
    // A publish sent through the sender's outbox (docs/persistence.md): its sequence there.
    std::uint64_t outbox_seq = 0;
    // A share group's delivery (deliver, queue, retry) sent with persistence: its number
    // in the sender's sequence of those to this shard, which the receiver confirms once
    // its store has what it did with it (docs/persistence.md, "Threads").
    std::uint64_t share_seq = 0;
    // A share delivery sent back to the group's home (share_op::again) with persistence:
    // its number in the sender's sequence of those to this shard, which the home confirms
    // once its store has the re-pick and the re-pick's member shard has synced it.
    std::uint64_t again_seq = 0;
    // A message's bytes on the transit meter (broker::engine::charge_transit) from the
    // send until the receiving shard routes it, or the item is destroyed.
    broker::output_charge transit{};
};

// What an item weighs against shard_channel_limits::high_water_bytes: its message's held
// bytes (none for a share note without one).
struct shard_item_weight {
    std::size_t operator()(const shard_item& i) const noexcept {
        return i.msg ? broker::held_cost(*i.msg) : 0;
    }
};

using shard_item_channel = shard_channel<shard_item, shard_item_weight>;

struct shard_runtime_options {
    std::size_t shards = 1;
    shard_channel_limits channel{};  // for each of the shards * (shards - 1) channels
    // An io_context of the caller's for shard 0 (tern-broker's own loop), run by the caller
    // as it always was (no work guard: it returns when its own work is done); nullptr: the
    // runtime makes one, run by start() or run_caller_shard(). It must outlive the runtime.
    boost::asio::io_context* shard0 = nullptr;
};

class shard_runtime {
  public:
    // A batch from shard `from`, on the receiving shard's thread; the items may be moved
    // from. It returns how many items it took from the front: fewer than it was given stalls
    // the channel from -> this shard (the rest stay in flight, so the sender's high_water
    // pauses its publishers) until resume_drain(from, this shard).
    using batch_handler = std::function<std::size_t(std::size_t from, std::span<shard_item> items)>;
    // Shard `to` freed room after this shard was refused or congested towards it, on this
    // shard's thread (after the open batch towards `to` was published again); or shard
    // `to`, which peer_congested() found congested forwarding, no longer is.
    using resume_handler = std::function<void(std::size_t to)>;

    explicit shard_runtime(shard_runtime_options options);
    // stop(), join(); items still in flight are destroyed (message_ptr counts released)
    // without being delivered.
    ~shard_runtime();
    shard_runtime(const shard_runtime&) = delete;
    shard_runtime& operator=(const shard_runtime&) = delete;

    std::size_t size() const noexcept;
    boost::asio::io_context& io(std::size_t shard);

    // Before start().
    void on_batch(std::size_t shard, batch_handler handler);
    void on_resume(std::size_t shard, resume_handler handler);

    // Starts a thread for every shard; with caller_runs_shard0 not for shard 0, whose loop
    // the caller runs with run_caller_shard(). Once only.
    void start(bool caller_runs_shard0 = false);
    // Runs shard 0's io_context on this thread until stop().
    void run_caller_shard();
    // Every loop returns as soon as its running handler does; what is still queued (posted
    // functions, batches) is not run. Any thread, idempotent.
    void stop();
    // Lets every loop return once it has nothing left to do (its pending operations and
    // posted functions done) instead of idling until stop(): the end of a graceful shutdown.
    // Each shard stops waiting for wake-ups (stop_waiting()). Any thread, idempotent.
    void finish();
    // From now on drains due on the shard are posted to its loop, not signalled by a
    // wake-up: a post is work that the loop runs before its run() can return, a wake-up
    // is not. For shard 0 on the caller's io_context, whose run() returns when its own work
    // is done: call this when that work starts to end (the server does when it stops), so
    // that what the other shards send it then is still drained. Any thread, idempotent.
    void stop_waiting(std::size_t shard);
    // Waits for the shards' threads.
    void join();

    // Runs f on the shard's thread.
    void post(std::size_t shard, std::function<void()> f);
    // Runs f(k) on every shard k's thread, then `done` on shard `done_shard`'s thread once
    // all have returned (f(k) may write slot k of a vector `done` reads: the SIGHUP
    // broadcast, the $SYS and /metrics sums). Nothing runs on a stopped shard, and then
    // `done` does not run either.
    void for_each_shard(std::function<void(std::size_t shard)> f, std::function<void()> done = {},
                        std::size_t done_shard = 0);

    // On shard `from`'s thread: adds the item to the open batch towards `to` (a shard other
    // than `from`), published at the end of this loop turn. False when the channel refused
    // it (shard_channel_limits::max_items in flight; the item is left untouched); the
    // on_resume handler of `from` runs once room appears.
    bool send(std::size_t from, std::size_t to, shard_item&& item);
    // On shard `from`'s thread: publishes every open batch of `from` now.
    void flush(std::size_t from);
    // On shard `from`'s thread: high_water items in flight towards `to`; on_resume follows.
    bool check_congested(std::size_t from, std::size_t to);
    // On shard `from`'s thread, after sending `to` an item that another shard's message
    // made (a share group's delivery): check_congested(), and while it is true `from`
    // counts as congested forwarding, which the senders of messages into `from` see at
    // once with peer_congested(). Cleared when `to` frees room (before on_resume(to)).
    //
    // Why: a paused publisher stops the messages it would send, but those already in
    // flight towards `from` are still forwarded. Told by a post, the publisher's shard
    // learned of the congestion a loop turn (or several reads) later, and what it sent
    // meanwhile could pass the channel's max_items; the flag is seen by the very next
    // publish. (The server sets high_water to max_items / (shards + 1) so that what each
    // other shard still has in flight fits below max_items.)
    bool check_forwarding(std::size_t from, std::size_t to);
    // On shard `from`'s thread: is shard `to` congested forwarding? When true, `from` is
    // registered with `to` and its on_resume(to) runs once `to` is no longer congested.
    bool peer_congested(std::size_t from, std::size_t to);
    // On shard `to`'s thread: the channel from -> to, stalled by its batch handler, is
    // drained again from where it stopped (posted behind what the loop has ready). Nothing
    // when it is not stalled.
    void resume_drain(std::size_t from, std::size_t to);
    // Channels towards `to` stalled now (its thread, or after join()).
    std::size_t stalled(std::size_t to) const;

    // The channel from -> to, for its counters (read on the threads that own each side, or
    // after join()).
    const shard_item_channel& channel(std::size_t from, std::size_t to) const;
    // Drains posted back to a consumer's own loop because more arrived during a drain.
    std::uint64_t drain_reposts(std::size_t shard) const;

  private:
    struct shard;
    void woken(std::size_t shard);
    void wake(std::size_t from, std::size_t to);
    shard_item_channel& channel_ref(std::size_t from, std::size_t to) const;
    void end_of_turn(std::size_t from);
    void publish(std::size_t from, std::size_t to);
    void drain(std::size_t from, std::size_t to);
    void resume(std::size_t from, std::size_t to);
    void forwarding_cleared(std::size_t shard, std::size_t to);

    std::vector<std::unique_ptr<shard>> shards_;
    std::vector<std::unique_ptr<shard_item_channel>> channels_;  // [from * size + to]
};

}  // namespace mqtt::net
