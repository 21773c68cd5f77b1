#include "store_driver.hpp"

#include <boost/asio/post.hpp>
#include <algorithm>
#include <cstdio>
#include <utility>

namespace mqtt::net::detail {
namespace {

long long ms(std::chrono::steady_clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// Compaction once the file is this much larger than its last snapshot: the appended
// records are then mostly about messages long delivered.
constexpr std::uint64_t compaction_slack = 64u << 20;
// What compaction while running writes per loop turn: small enough that the loop's stop
// stays a few milliseconds.
constexpr std::size_t compaction_slice = 256u << 10;

std::string join(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace

store_driver::store_driver(asio::io_context& io, broker::engine& e, broker::persistence_config cfg,
                           note_function note)
    : io_(io),
      engine_(e),
      cfg_(std::move(cfg)),
      note_(std::move(note)),
      path_(join(cfg_.location, cfg_.file)),
      autosave_(io),
      flush_timer_(io),
      retry_(io),
      compaction_timer_(io) {}

store_driver::~store_driver() {
    if (thread_.joinable()) {
        {
            std::lock_guard lock{mutex_};
            stop_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }
    engine_.set_store(nullptr);
}

void store_driver::sync_thread() {
    std::unique_lock lock{mutex_};
    for (;;) {
        cv_.wait(lock, [this] { return ready_ || stop_; });
        if (!ready_) return;  // stop_, and no job left
        ready_ = false;
        lock.unlock();
        run_job();
        asio::post(io_, [this] { complete(); });
        lock.lock();
    }
}

std::error_code store_driver::open() {
    const auto now = store::clock_pair::now();
    auto loaded = store::load_file(path_, &now);
    if (!loaded) return loaded.error();
    auto& l = *loaded;
    const auto& r = l.report;
    for (const auto& d : r.damaged) {
        const bool tail = d.kind == store::damage_kind::torn_tail;
        note_(0, true,
              "store " + path_ + ": " + (tail ? "cut off " : "skipped ") +
                  std::to_string(d.length) + " bytes at offset " + std::to_string(d.offset) +
                  (tail ? " (incomplete or corrupt record at the end)"
                        : " (corrupt records; reading went on at the next valid one)"));
    }
    if (r.rejected != 0) {
        note_(0, true,
              "store " + path_ + ": ignored " + std::to_string(r.rejected) +
                  " records that referred to data the store does not have");
    }
    if (!r.clean()) {
        // Keep the damaged file for inspection; the compacted one replaces it.
        const std::string kept = path_ + ".damaged";
        if (std::rename(path_.c_str(), kept.c_str()) == 0) {
            note_(0, true, "store " + path_ + ": the damaged file is kept as " + kept);
        }
    }
    store::restore(engine_, l.st, now);
    if (r.existed) {
        note_(1, false,
              "store " + path_ + ": " + std::to_string(r.records) + " records, " +
                  std::to_string(l.st.sessions().size()) + " sessions, " +
                  std::to_string(l.st.retained().size()) + " retained, " +
                  std::to_string(l.st.queued_count()) + " queued messages restored");
    }
    recorder_.emplace(std::move(l.st));
    // An intact file is appended to as it is; a damaged or missing one is written anew from
    // what was recovered (which also cuts the damage off).
    auto file = r.existed && r.clean() && r.records != 0
                    ? store::store_file::open_append(cfg_.location, cfg_.file)
                    : store::store_file::create(cfg_.location, cfg_.file, snapshot());
    if (!file) {
        recorder_.reset();
        return file.error();
    }
    file_ = std::move(*file);
    file_bytes_ = file_.size();
    recorder_->set_pending_hook([this] { schedule(); });
    engine_.set_store(&*recorder_);
    thread_ = std::thread{[this] { sync_thread(); }};
    return {};
}

void store_driver::start() {
    // autosave_interval 0 (Mosquitto's "only when stopping"): synced at a graceful stop and by
    // each compaction, never on a timer.
    if (cfg_.sync == broker::sync_policy::periodic && cfg_.autosave_interval.count() > 0) {
        periodic_sync();
    }
}

void store_driver::periodic_sync() {
    autosave_.expires_after(cfg_.autosave_interval);
    autosave_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        if (unsynced_ && !busy_) {  // busy: the sync thread has file_ (a compaction)
            const auto err = file_.sync();
            report(err, "sync");
            if (!err) unsynced_ = false;
        }
        periodic_sync();
    });
}

void store_driver::close() {
    autosave_.cancel();
    flush_timer_.cancel();
    retry_.cancel();
    if (!recorder_) return;
    if (thread_.joinable()) {
        {
            std::lock_guard lock{mutex_};
            stop_ = true;
        }
        cv_.notify_one();
        thread_.join();  // finishes the job in progress
    }
    if (busy_) complete();  // its posted completion will not run: the loop has stopped
    if (compaction_) end_compaction();  // the whole state is written below
    flush();
    // A compacted file makes the next start quick.
    report(file_.rewrite(snapshot()), "compaction");
    engine_.set_store(nullptr);
}

store::content_writer store_driver::snapshot() const {
    return [this](const store::byte_sink& write) { return recorder_->write_snapshot(write); };
}

void store_driver::hold(held_output& h) {
    for (auto* x : held_) {
        if (x == &h) return;
    }
    held_.push_back(&h);
    schedule();
}

void store_driver::forget(held_output& h) {
    connections_.erase(&h);
    std::erase(held_, &h);
    std::erase(syncing_held_, &h);
}

void store_driver::schedule() {
    if (posted_) return;
    posted_ = true;
    // A timer due now fires after the reactor's next poll, so every connection whose bytes
    // have arrived by then is read first: one sync for all of them (a plain post would run
    // before the reactor looks at the sockets again).
    flush_timer_.expires_at(asio::steady_timer::time_point::min());
    flush_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) flush();
    });
}

void store_driver::after_packet() {
    if (cfg_.sync == broker::sync_policy::always && recorder_ && recorder_->has_pending()) flush();
}

void store_driver::flush() {
    posted_ = false;
    if (!recorder_) return;
    if (busy_) {
        again_ = true;  // what comes now forms the next group
        return;
    }
    // Whatever the held connections have to write now depends on records appended so far
    // at most: take it before syncing, release it after.
    syncing_held_ = std::move(held_);
    held_.clear();
    for (auto* h : syncing_held_) h->stage();
    job_.target = recorder_->appended();
    job_.bytes.clear();
    job_.snapshot = {};
    job_.compacted = false;
    job_.sync = cfg_.sync != broker::sync_policy::periodic;
    job_.refused = false;
    if (recorder_->has_pending()) {
        recorder_->take_pending(job_.bytes);
        if (failing_) {
            // The file misses the records of a failed write until retry() writes it anew:
            // records appended to it now may refer to those and are not durable either, so
            // nothing is written and nothing they cover is acknowledged.
            job_.refused = true;
        } else if (!compaction_ && file_.size() > 2 * file_.snapshot_size() + compaction_slack) {
            begin_compaction();
        }
    }
    if (compaction_ && recorder_->compaction_done() && !failing_) {
        // The new file has the whole state but what was kept since the last slice: that
        // goes at its end, then it replaces the old file (fsync and rename on the sync
        // thread), instead of this group's append. If writing fails, the group is appended to
        // the old file.
        recorder_->compaction_step(piece_);  // complete: only the records kept since
        const bool ok = piece_.empty() || !compaction_->write(piece_);
        if (ok) {
            job_.snapshot = std::move(*compaction_);
            job_.compacted = true;
        }
        end_compaction();
    }
    // batch: every write goes to the sync thread; with every policy the compaction's fsync
    // and rename do (a whole store's worth of page cache to flush).
    const bool batch = cfg_.sync == broker::sync_policy::batch;
    if (thread_.joinable() && !job_.refused &&
        ((batch && !job_.bytes.empty()) || job_.snapshot.is_open())) {
        busy_ = true;
        work_.emplace(io_.get_executor());  // run() does not return before the completion
        {
            std::lock_guard lock{mutex_};
            ready_ = true;
        }
        cv_.notify_one();
        return;
    }
    run_job();
    busy_ = true;
    complete();
}

// Compaction while running: the snapshot goes to NAME.new a slice (about 1 MiB) per turn
// of the event loop, so that the loop never stops for the whole store; the state goes on
// changing between the slices, and the records that change what is written already follow
// in the new file (recorder::compaction_step). Meanwhile the groups go on being appended to
// the old file, which stays the store until the new one has replaced it.
void store_driver::begin_compaction() {
    auto r = file_.begin_rewrite();
    if (!r) {
        note_(1, true, "store " + path_ + ": compaction not started: " + r.error().message());
        return;
    }
    compaction_.emplace(std::move(*r));
    recorder_->begin_compaction();
    stats_ = {std::chrono::steady_clock::now(), {}, 0};
    post_compaction_step();
}

void store_driver::post_compaction_step() {
    // A timer due now, as for the group commit: the socket events that are ready and the
    // handlers queued run before the next slice.
    compaction_timer_.expires_at(asio::steady_timer::time_point::min());
    compaction_timer_.async_wait([this](const boost::system::error_code& e) {
        if (e || !compaction_ || recorder_->compaction_done()) return;
        const auto t0 = std::chrono::steady_clock::now();
        const bool done = recorder_->compaction_step(piece_, compaction_slice);
        const auto ec = piece_.empty() ? std::error_code{} : compaction_->write(piece_);
        stats_.longest = std::max(stats_.longest, std::chrono::steady_clock::now() - t0);
        ++stats_.slices;
        if (ec) {
            note_(1, true, "store " + path_ + ": compaction given up: " + ec.message());
            end_compaction();  // removes NAME.new; appends go on to the old file
            return;
        }
        if (done) {
            schedule();  // the rename, with the next group
        } else {
            post_compaction_step();
        }
    });
}

void store_driver::end_compaction() {
    compaction_timer_.cancel();
    compaction_.reset();
    recorder_->end_compaction();
}

void store_driver::run_job() {
    auto& j = job_;
    j.ec.clear();
    j.what = "write";
    if (j.refused) return;
    j.replace_ec.clear();
    if (j.snapshot.is_open()) {
        j.replace_ec = file_.replace(std::move(j.snapshot));  // synced
        if (!j.replace_ec) return;
    }
    if (j.bytes.empty()) return;
    j.ec = file_.append(j.bytes);
    if (!j.ec && j.sync) j.ec = file_.sync();
}

void store_driver::complete() {
    if (!busy_) return;
    busy_ = false;
    work_.reset();
    report(job_.ec, job_.what);
    if (job_.replace_ec) {
        note_(0, true,
              "store " + path_ + ": compaction failed: " + job_.replace_ec.message() +
                  "; the records were appended to the old file");
    } else if (job_.compacted) {
        note_(1, false,
              "store " + path_ + ": compacted to " + std::to_string(file_.size()) +
                  " bytes in " + std::to_string(stats_.slices) + " slices over " +
                  std::to_string(ms(std::chrono::steady_clock::now() - stats_.started)) +
                  " ms; the longest slice kept the event loop " +
                  std::to_string(ms(stats_.longest)) + " ms");
    }
    const bool durable = !job_.ec && !job_.refused;
    if (durable && !job_.sync && !job_.bytes.empty()) unsynced_ = true;
    // Output produced from now on depends on records that are on disk, or on records that
    // are not, whose held connections are refused here: nothing waits for these any more.
    synced_ = job_.target;
    file_bytes_ = file_.size();  // the sync thread is done with file_
    auto held = std::move(syncing_held_);
    syncing_held_.clear();
    if (durable) {
        for (auto* h : held) h->release();
    } else {
        refuse_held(std::move(held));
    }
    if (std::exchange(again_, false)) flush();
}

// The acknowledgements (and everything else) staged for a group whose records are not on
// disk are never written: releasing them would acknowledge messages a crash loses. Holding
// them until the store is written again could stall the clients for as long as the disk
// stays full, so their connections close instead (5.0: DISCONNECT 0x97 Quota Exceeded) and
// the clients send again what was not acknowledged, which is refused (0x97) or accepted
// once the store is written anew. The records stay in the mirror, so that rewrite keeps them.
//
// Not only the staged connections: output produced after the staging (still in a session,
// or held for the next flush) may depend on these records too (with `always` the packet's
// own acknowledgement is never staged), so every connection with output not yet written is
// refused. Output produced from here on depends on durable records only, since every later
// group is refused until the store is written anew.
void store_driver::refuse_held(std::vector<held_output*> held) {
    for (auto* h : connections_) {
        if (h->unwritten() && std::find(held.begin(), held.end(), h) == held.end()) {
            held.push_back(h);
        }
    }
    held_.clear();  // all of them are in `held` now: no later flush releases them
    if (held.empty()) return;
    note_(job_.refused ? 1 : 0, !job_.refused,
          "store " + path_ + ": " + std::to_string(held.size()) +
              " connection(s) closed without the acknowledgements of records not on disk");
    for (auto* h : held) {
        if (connections_.contains(h)) h->refuse();  // not ended by an earlier one's close
    }
}

void store_driver::report(std::error_code ec, std::string_view what) {
    // A later write that works does not mend the file: the records of the failed one are
    // missing from it. Only writing the whole state anew does (retry()).
    if (!ec || failing_) return;
    failing_ = true;
    if (compaction_) end_compaction();  // retry() writes the whole state
    engine_.set_store_failing(true);
    note_(0, true,
          "store " + path_ + ": " + std::string{what} + " failed: " + ec.message() +
              "; QoS 1/2 publishes are refused (0x97) until the store can be written again");
    retry();
}

// While failing, every second: write the whole state anew, which also puts back what the
// failed writes left out. Publishes are refused meanwhile.
void store_driver::retry() {
    retry_.expires_after(std::chrono::seconds{1});
    retry_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || !failing_ || !recorder_) return;
        if (busy_) {
            retry();
            return;
        }
        std::vector<std::uint8_t> covered;  // in the snapshot: not to be appended after it
        recorder_->take_pending(covered);
        if (file_.rewrite(snapshot())) {
            retry();
            return;
        }
        failing_ = false;
        engine_.set_store_failing(false);
        note_(0, true, "store " + path_ + ": writing works again (the store was written anew)");
    });
}

}  // namespace mqtt::net::detail
