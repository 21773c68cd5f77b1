#pragma once

// The I/O side of persistence, private to mqtt_net: opens the store at start (recovery),
// writes the records the engine's recorder produced, syncs them according to the policy,
// compacts the file, and holds connections' output until the records it depends on are on
// disk (always / batch).
//
// Group commit (batch), pipelined: every loop turn that appended records hands them, with
// the connections whose output waits for them, to the sync thread as one group. While the
// thread syncs one group, the next loop turns' groups gather in its queue, and as soon as the
// sync returns the thread writes everything gathered and covers it with one fdatasync,
// without waiting for the event loop. A connection whose output may depend on records not
// yet synced asks to be held: at the next flush its output is staged with the group's end
// (the recorder's byte count), and written once a sync has covered that point.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mqtt/broker/config.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/result.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/store_file.hpp"
#include "shard/loop_wakeup.hpp"

namespace mqtt::net::detail {

namespace asio = boost::asio;

// Implemented by a connection whose output waits for a sync.
class held_output {
  public:
    // Take the session's output now: it depends on records up to `target` (recorder bytes)
    // at most, and is written once store_driver::synced() reaches it.
    virtual void stage(std::uint64_t target) = 0;
    virtual void release() = 0;  // a flush is on disk: write what it covers
    // The flush is not on disk (its write failed, or the store is failing): what was staged
    // must never be written; the connection closes (5.0: DISCONNECT 0x97 Quota Exceeded).
    virtual void refuse() = 0;
    // Output not yet written (staged or still in the session).
    virtual bool unwritten() const = 0;

  protected:
    ~held_output() = default;
};

class store_driver {
  public:
    using note_function = std::function<void(int verbosity, bool error, std::string_view msg)>;

    store_driver(asio::io_context& io, broker::engine& e, broker::persistence_config cfg,
                 note_function note);
    ~store_driver();
    store_driver(const store_driver&) = delete;
    store_driver& operator=(const store_driver&) = delete;

    // Reads the store, rebuilds the engine's state, writes it back compacted and starts
    // recording. An error when the store cannot be written (a damaged one is not an error;
    // nor is a file that must be written anew and finds no room: the store then starts
    // failing, see report()).
    std::error_code open();
    // Reads the store file at `path`: damage is logged and a copy of the damaged file kept
    // as PATH.damaged (open() with threads 1; with more, the server reads every shard's first).
    static result<store::loaded> load(const std::string& path, const store::clock_pair& now,
                                      const note_function& note);
    // A write that failed for want of room: ENOSPC, EDQUOT, EFBIG (a file size limit).
    static bool out_of_room(std::error_code ec) noexcept;
    // open() with what load() read (or what store::redistribute made of every shard's:
    // `rewrite`, the file is then written anew whatever it holds). `shard`: the shard whose
    // store this is (k > 0: store::recorder::set_secondary_shard). `set_failed`: the files
    // for another number of threads could not be written as a set (no room): the store
    // starts failing and writes nothing of its own, not even a retry, until
    // set_committed() (its file alone would mix two sets).
    std::error_code open_loaded(store::loaded l, const store::clock_pair& now, bool rewrite,
                                std::size_t shard, std::error_code set_failed = {});
    // On this store's loop: the set it waited for is in place (server::impl, the set's
    // retry). `write_now`: write this store's own state anew at once (the retry as after
    // any failure), else at close().
    void set_committed(bool write_now);
    // Before open(): the listeners with a security policy of their own, which session
    // records name and restored sessions get the slot of (store::restore).
    void set_listeners(store::listener_keys keys) { listeners_ = std::move(keys); }
    // Starts the periodic sync (periodic policy).
    void start();
    // Stops the periodic sync timer (the server is stopping).
    void cancel_timer() { autosave_.cancel(); }
    // Last flush and a compacted file (graceful stop).
    void close();

    // Whether output must wait for records (always, batch).
    bool holds_output() const noexcept { return cfg_.sync != broker::sync_policy::periodic; }
    // Whether all of h's output may be written now: every record is synced, and every
    // other shard h's packets sent items to has confirmed them.
    bool all_synced(const held_output& h) const noexcept {
        return synced_ == recorder_->appended() && !need_.contains(&h);
    }
    // Whether h's output staged for `target` (recorder bytes) may be written: a sync covered
    // it, and every item h's packets sent to another shard is on that shard's disk.
    bool covers(const held_output& h, std::uint64_t target) const noexcept {
        return target <= synced_ && !need_.contains(&h);
    }

    // threads > 1 (docs/persistence.md, "Threads"): the packet being processed (of
    // set_current's connection) made this shard send item number `seq` to shard `peer` (a
    // message to route, a retained change), which records what it does with it in its own
    // store; that connection's output waits for remote_synced(peer, >= seq) too, so that
    // what it acknowledges is on every disk. Items sent outside a connection's packet (a
    // Will) hold nobody's output.
    void set_peers(std::size_t n) {
        confirmed_.assign(n, 0);
        peer_failing_.assign(n, 0);
    }
    void set_current(held_output* h) noexcept { current_ = h; }
    void remote_sent(std::size_t peer, std::uint64_t seq);
    // Shard `peer` has synced what it did with this shard's items up to number `seq`.
    void remote_synced(std::size_t peer, std::uint64_t seq);
    // threads > 1: shard `peer`'s store cannot write (`failing`), or writes again. While it
    // cannot, a connection whose output needs records of it is refused (closed without
    // those acknowledgements, 5.0: DISCONNECT 0x97), as this shard's own failing store
    // would refuse it; the others go on.
    void remote_failing(std::size_t peer, bool failing);
    // Called with true when this store starts failing, false once it writes again (the
    // server tells the other shards: remote_failing).
    void on_failing(std::function<void(bool)> f) { on_failing_ = std::move(f); }
    // Whether the store is failing now (its writes are refused until retry() writes it).
    bool failing() const noexcept { return failing_; }
    // threads > 1: `f` runs once the records made so far are on disk (then the shard
    // whose items made them is told: remote_synced).
    void when_synced(std::function<void()> f);
    // Every connection whose output waits is known from start to end, so that a write
    // that fails can refuse the output of all of them (see refuse_held()).
    void enlist(held_output& h) { connections_.insert(&h); }
    // `h` is staged and released at the next flush.
    void hold(held_output& h);
    void forget(held_output& h);
    // After each packet of a connection (always: sync now).
    void after_packet();
    // Writes (and syncs, per policy) what was recorded; stages and releases held output.
    void flush();

    // threads > 1: the outbox records (store::recorder::outbox_sent and the others).
    store::recorder& recorder() noexcept { return *recorder_; }

    const std::string& path() const noexcept { return path_; }
    // What the store holds (after open).
    const store::state& mirror() const noexcept { return recorder_->mirror(); }
    // The store file's size after the last completed write (read on the loop only).
    std::uint64_t file_bytes() const noexcept { return file_bytes_; }

  private:
    // One write (and sync): on the sync thread with batch, on the loop otherwise.
    struct job {
        std::vector<std::uint8_t> bytes;  // records to append (a job run on the loop)
        // Records to append, one part per loop turn's group (a job of the sync thread).
        std::vector<std::vector<std::uint8_t>> parts;
        store::replacement snapshot;      // open: compaction, written on the loop, replaces the file
        bool replace = false;             // `snapshot` was open when handed over
        bool sync = true;
        // Not written: the store is failing, so the file misses earlier records until it
        // is written anew (retry()); the mirror has these and the rewrite puts them in.
        bool refused = false;
        bool compacted = false;  // `snapshot` is a compaction written while running
        std::error_code replace_ec;  // replacing the file by `snapshot` failed
        std::uint64_t target = 0;  // recorder bytes covered
        std::uint64_t records = 0;  // records in `bytes` (statistics)
        std::uint64_t groups = 0;   // loop turns gathered in `bytes` (statistics)
        std::uint64_t written = 0;  // bytes appended
        std::uint64_t file_size = 0;  // the file's size after the job (read where it ran)
        std::uint64_t snapshot_size = 0;
        std::error_code ec;
        std::string_view what = "write";
        // Statistics: handed over (loop, the first group gathered), write and sync (where
        // the job ran), finished (before the completion is posted).
        std::chrono::steady_clock::time_point handed, finished;
        std::chrono::steady_clock::duration write_time{}, sync_time{};
    };
    // The connections staged for one flush: released once a sync covers `target`.
    struct group {
        std::uint64_t target = 0;
        std::vector<held_output*> held;
    };
    // Group commit statistics, logged at the stop (-v): what bounds `batch` (docs/persistence.md).
    struct group_stats {
        std::uint64_t syncs = 0;   // jobs with records, written
        std::uint64_t groups = 0;  // flushes with records they carried
        std::uint64_t records = 0;
        std::uint64_t max_records = 0;
        std::uint64_t bytes = 0;
        std::chrono::steady_clock::duration write{}, sync{}, max_sync{};
        std::chrono::steady_clock::duration latency{};   // handed over -> completion on the loop
        std::chrono::steady_clock::duration handback{};  // finished -> completion on the loop
        std::chrono::steady_clock::duration stalls{};    // flush() on the loop
        std::uint64_t flushes = 0;
    };
    void log_group_stats();
    // Writes the recorder's snapshot a piece at a time into what `write` is given.
    store::content_writer snapshot() const;
    void schedule();
    void stage_held(std::uint64_t target);  // held_ -> a new group for `target`
    void release_covered();  // the groups up to synced_ may write
    void flush_failing();  // the store is failing: the records are not written
    void begin_compaction();
    void post_compaction_step();  // the next slice of the snapshot, after the next poll
    void end_compaction();        // done or given up: NAME.new removed unless handed over
    void periodic_sync();
    void report(std::error_code ec, std::string_view what);
    void retry();
    bool rewrite_now();         // retry()'s write of the whole state; false while it fails
    void run_job(job& j);       // file I/O only: the one thing the sync thread does
    void hand_over(job& j);     // to the sync thread's queue (batch, or a compaction's rename)
    void drain();               // on the loop: the sync thread's finished jobs
    void complete(job& j);      // on the loop: the job is done, release what it covered
    // On the loop: the job's records are not on disk; close its held connections unanswered.
    void refuse_held(std::vector<held_output*> held, bool refused);
    void sync_thread();

    // threads > 1: the items each other shard has confirmed, by shard; per connection whose
    // output waits for confirmations, the item number it needs from each shard.
    std::vector<std::uint64_t> confirmed_;
    std::unordered_map<const held_output*, std::vector<std::uint64_t>> need_;
    std::vector<char> peer_failing_;       // [shard]: its store cannot write (remote_failing)
    std::vector<held_output*> doomed_;     // need a failing peer's records: refused at flush()
    std::function<void(bool)> on_failing_;
    void refuse_doomed();
    held_output* current_ = nullptr;  // whose packet is being processed
    // What runs once a sync reaches `at` (another shard's remote_synced, posted there).
    std::deque<std::pair<std::uint64_t, std::function<void()>>> waiters_;

    asio::io_context& io_;
    broker::engine& engine_;
    broker::persistence_config cfg_;
    note_function note_;
    std::string path_;
    std::optional<store::recorder> recorder_;
    store::listener_keys listeners_;
    store::store_file file_;
    std::vector<held_output*> held_;  // wait for the next flush
    std::deque<group> groups_;        // staged, waiting for a sync to cover their target
    std::unordered_set<held_output*> connections_;  // enlisted, not yet forgotten
    group_stats gstats_;
    std::uint64_t records_taken_ = 0;  // recorder_->records() at the last flush
    std::uint64_t synced_ = 0;         // recorder bytes on disk (or written, for periodic)
    std::uint64_t file_bytes_ = 0;     // the file's size as of the last completion
    std::uint64_t snapshot_bytes_ = 0;  // its size after its last rewrite, likewise
    bool posted_ = false;        // a flush is schedule()d
    std::uint64_t flush_gen_ = 0;  // flush() calls: a scheduled flush runs if none came since
    bool again_ = false;  // a flush had to wait (see flush()): flush at the next completion
    std::size_t outstanding_ = 0;  // jobs handed to the sync thread, not yet completed
    bool replacing_ = false;       // a compaction's rename is among them
    job job_;  // the loop's own (periodic, always, failing, and at the stop)
    std::vector<std::vector<std::uint8_t>> spare_;  // written parts' buffers, for reuse
    // The sync thread. The loop hands groups over in queue_ (the loop turns' groups that
    // come while a sync runs gather in one job there); the thread takes the oldest job,
    // writes and syncs it, and puts it into done_, which the loop drains. Those, spare_ and
    // failed_ are all the two threads share, under mutex_; file_ belongs to the thread
    // while outstanding_ > 0.
    static constexpr std::size_t max_spare = 4;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<job> queue_;   // handed over, not yet taken by the thread
    std::vector<job> done_;   // written (or refused), completion not yet run on the loop
    // The sync thread wakes the loop for done_ (drain()) with a write(2), not a post: no lock
    // of the loop's scheduler, no epoll_ctl. Not work to the loop: work_ keeps it running
    // while jobs are outstanding, and close() drains itself.
    std::optional<loop_wakeup> done_wake_;
    bool failed_ = false;     // a write failed: later jobs are refused until retry() works
    bool stop_ = false;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    bool unsynced_ = false;  // periodic: written, not yet synced
    bool failing_ = false;   // a write or sync failed since the store was last written whole
    bool awaits_set_ = false;  // open_loaded's set_failed, until set_committed()
    asio::steady_timer autosave_;
    asio::steady_timer retry_;        // while failing_: try to write the store again
    asio::steady_timer compaction_timer_;             // the next slice
    std::optional<store::replacement> compaction_;  // NAME.new while it is written
    std::vector<std::uint8_t> piece_;               // a slice on its way to NAME.new
    struct compaction_stats {
        std::chrono::steady_clock::time_point started;
        std::chrono::steady_clock::duration longest{};  // the longest slice
        std::size_t slices = 0;
    } stats_;
};

}  // namespace mqtt::net::detail
