#pragma once

// The I/O side of persistence, private to mqtt_net: opens the store at start (recovery),
// writes the records the engine's recorder produced, syncs them according to the policy,
// compacts the file, and holds connections' output until the records it depends on are on
// disk (always / batch).
//
// Group commit (batch): the first record of a loop turn posts one flush to the end of the
// io_context's queue, so everything the connections that are ready now append goes out with
// one write and one fdatasync. A connection whose output may depend on records not yet
// synced asks to be held: at the flush its output is staged (it covers everything appended
// so far), then the records are synced, then it is woken to write what was staged.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <vector>

#include "mqtt/broker/config.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/store_file.hpp"

namespace mqtt::net::detail {

namespace asio = boost::asio;

// Implemented by a connection whose output waits for a sync.
class held_output {
  public:
    virtual void stage() = 0;    // take the session's output now: it is covered by this flush
    virtual void release() = 0;  // the flush is on disk: write what was staged
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
    // recording. An error when the store cannot be written (a damaged one is not an error).
    std::error_code open();
    // Starts the periodic sync (periodic policy).
    void start();
    // Stops the periodic sync timer (the server is stopping).
    void cancel_timer() { autosave_.cancel(); }
    // Last flush and a compacted file (graceful stop).
    void close();

    // Whether output must wait for records (always, batch).
    bool holds_output() const noexcept { return cfg_.sync != broker::sync_policy::periodic; }
    bool all_synced() const noexcept { return synced_ == recorder_->appended(); }
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

    const std::string& path() const noexcept { return path_; }
    // The store file's size after the last completed write (read on the loop only).
    std::uint64_t file_bytes() const noexcept { return file_bytes_; }

  private:
    // One write (and sync): on the sync thread with batch, on the loop otherwise.
    struct job {
        std::vector<std::uint8_t> bytes;  // records to append
        store::replacement snapshot;      // open: compaction, written on the loop, replaces the file
        bool sync = true;
        // Not written: the store is failing, so the file misses earlier records until it
        // is written anew (retry()); the mirror has these and the rewrite puts them in.
        bool refused = false;
        bool compacted = false;  // `snapshot` is a compaction written while running
        std::error_code replace_ec;  // replacing the file by `snapshot` failed
        std::uint64_t target = 0;  // recorder bytes covered
        std::error_code ec;
        std::string_view what = "write";
    };
    // Writes the recorder's snapshot a piece at a time into what `write` is given.
    store::content_writer snapshot() const;
    void schedule();
    void begin_compaction();
    void post_compaction_step();  // the next slice of the snapshot, after the next poll
    void end_compaction();        // done or given up: NAME.new removed unless handed over
    void periodic_sync();
    void report(std::error_code ec, std::string_view what);
    void retry();
    void run_job();   // file I/O only: the one thing the sync thread does
    void complete();  // on the loop: the job is done, release what it covered
    // On the loop: the job's records are not on disk; close its held connections unanswered.
    void refuse_held(std::vector<held_output*> held);
    void sync_thread();

    asio::io_context& io_;
    broker::engine& engine_;
    broker::persistence_config cfg_;
    note_function note_;
    std::string path_;
    std::optional<store::recorder> recorder_;
    store::store_file file_;
    std::vector<held_output*> held_;          // wait for the next job
    std::vector<held_output*> syncing_held_;  // staged, wait for the job in progress
    std::unordered_set<held_output*> connections_;  // enlisted, not yet forgotten
    std::uint64_t synced_ = 0;                // recorder bytes on disk (or written, for periodic)
    std::uint64_t file_bytes_ = 0;            // file_.size() as of the last complete()
    bool posted_ = false;
    bool busy_ = false;   // a job is on the sync thread
    bool again_ = false;  // a flush came while busy: flush when it completes
    job job_;
    // batch: fdatasync runs here, so the loop goes on reading (and the next group forms)
    // while the disk syncs. The loop hands over job_ and touches neither it nor file_ until
    // the completion is posted back.
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool ready_ = false;
    bool stop_ = false;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    bool unsynced_ = false;  // periodic: written, not yet synced
    bool failing_ = false;   // a write or sync failed since the store was last written whole
    asio::steady_timer autosave_;
    asio::steady_timer flush_timer_;  // group commit: fires after the next reactor poll
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
