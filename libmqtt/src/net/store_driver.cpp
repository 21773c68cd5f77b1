#include "store_driver.hpp"

#include <boost/asio/post.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

namespace mqtt::net::detail {
namespace {

long long ms(std::chrono::steady_clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

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

// The sync thread: takes the oldest job handed over, writes and syncs it, hands it back in
// done_. What the loop hands over meanwhile gathers in the next job, so the disk goes from
// one sync to the next without waiting for the event loop.
void store_driver::sync_thread() {
    std::unique_lock lock{mutex_};
    for (;;) {
        cv_.wait(lock, [this] { return !queue_.empty() || stop_; });
        if (queue_.empty()) return;  // stop_, and nothing left
        job j = std::move(queue_.front());
        queue_.pop_front();
        // After a failed write the file misses its records: nothing more is appended until
        // retry() has written the whole state anew (and cleared failed_).
        if (failed_) j.refused = true;
        lock.unlock();
        run_job(j);
        j.finished = std::chrono::steady_clock::now();
        lock.lock();
        if (j.ec) failed_ = true;
        for (auto& p : j.parts) {  // the buffers go back to the loop for the next groups
            if (spare_.size() >= max_spare) break;
            p.clear();
            spare_.push_back(std::move(p));
        }
        j.parts.clear();
        done_.push_back(std::move(j));
        if (done_.size() == 1) done_wake_->notify();
    }
}

void store_driver::remote_sent(std::size_t peer, std::uint64_t seq) {
    if (current_ == nullptr || peer >= confirmed_.size() || confirmed_[peer] >= seq) return;
    auto& n = need_[current_];
    if (n.empty()) n.assign(confirmed_.size(), 0);
    n[peer] = seq;
    // Not inside the connection's packet: at the next flush (before its output could go).
    if (peer_failing_[peer] != 0 && std::find(doomed_.begin(), doomed_.end(), current_) ==
                                        doomed_.end()) {
        doomed_.push_back(current_);
        schedule();
    }
}

void store_driver::remote_failing(std::size_t peer, bool failing) {
    if (peer >= peer_failing_.size()) return;
    peer_failing_[peer] = failing ? 1 : 0;
    if (!failing) return;
    for (const auto& [h, n] : need_) {
        if (n[peer] > confirmed_[peer] &&
            std::find(doomed_.begin(), doomed_.end(), h) == doomed_.end()) {
            doomed_.push_back(const_cast<held_output*>(h));
        }
    }
    refuse_doomed();  // posted from the other shard, never inside a session
}

void store_driver::refuse_doomed() {
    if (doomed_.empty()) return;
    auto doomed = std::move(doomed_);
    doomed_.clear();
    note_(1, false,
          "store " + path_ + ": " + std::to_string(doomed.size()) +
              " connection(s) closed without the acknowledgements of records another "
              "shard's store could not write");
    for (auto* h : doomed) {
        need_.erase(h);  // never written: nothing to wait for
        std::erase(held_, h);
        for (auto& g : groups_) std::erase(g.held, h);
        if (connections_.contains(h)) h->refuse();
    }
}

void store_driver::remote_synced(std::size_t peer, std::uint64_t seq) {
    if (peer >= confirmed_.size() || seq <= confirmed_[peer]) return;
    confirmed_[peer] = seq;
    std::vector<held_output*> ready;
    for (auto it = need_.begin(); it != need_.end();) {
        bool met = true;
        for (std::size_t k = 0; k < confirmed_.size() && met; ++k) {
            met = it->second[k] <= confirmed_[k];
        }
        if (!met) {
            ++it;
            continue;
        }
        ready.push_back(const_cast<held_output*>(it->first));
        it = need_.erase(it);
    }
    // Posted from the other shard, never inside a session: the release may write at once.
    for (auto* h : ready) h->release();
}

void store_driver::when_synced(std::function<void()> f) {
    const auto at = recorder_->appended();
    if (at <= synced_ && waiters_.empty()) return f();
    waiters_.emplace_back(at, std::move(f));
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
        if (unsynced_ && outstanding_ == 0) {  // else the sync thread has file_ (a compaction)
            const auto err = file_.sync();
            report(err, "sync");
            if (!err) unsynced_ = false;
        }
        periodic_sync();
    });
}

void store_driver::close() {
    autosave_.cancel();
    retry_.cancel();
    if (!recorder_) return;
    if (thread_.joinable()) {
        {
            std::lock_guard lock{mutex_};
            stop_ = true;
        }
        cv_.notify_one();
        thread_.join();  // writes what was handed over first
    }
    drain();  // a wake-up still due will not run: the loop has stopped
    log_group_stats();
    if (compaction_) end_compaction();  // the whole state is written below
    flush();
    if (awaits_set_) {
        // Written alone, this file would join the other number of threads' set.
        note_(0, true,
              "store " + path_ +
                  ": not written at the stop: the stores for this number of "
                  "threads could not be written as a set; the next start "
                  "reads the previous ones");
        engine_.set_store(nullptr);
        return;
    }
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
    need_.erase(&h);
    std::erase(doomed_, &h);
    if (current_ == &h) current_ = nullptr;
    std::erase(held_, &h);
    for (auto& g : groups_) std::erase(g.held, &h);
}

void store_driver::schedule() {
    if (posted_) return;
    posted_ = true;
    // After the reactor's next poll and the handlers it queued, so that every connection
    // whose bytes have arrived by then is read first: one group for all of them. A handler
    // posted from a handler runs after the reactor's next poll but before what that poll
    // queued; posting once more from there puts the flush behind those handlers. (A timer
    // due now fires at the same point, but arming and disarming its timerfd cost four
    // system calls per group.) A flush() called meanwhile (always, a completion, the stop)
    // makes the pair stale: `gen` no longer matches and it does nothing.
    const auto gen = flush_gen_;
    asio::post(io_, [this, gen] {
        if (gen != flush_gen_) return;
        asio::post(io_, [this, gen] {
            if (gen == flush_gen_) flush();
        });
    });
}

void store_driver::after_packet() {
    if (cfg_.sync == broker::sync_policy::always && recorder_ && recorder_->has_pending()) flush();
}

// Once per loop turn with records (or held output): the held connections' output is staged
// for the records appended so far, and those records go to the disk as one group. With
// batch (the sync thread running) the group joins the thread's queue at once, also while a
// sync runs; its output is written once a sync has covered it.
void store_driver::flush() {
    posted_ = false;
    ++flush_gen_;  // a schedule()d flush still on its way does nothing
    if (!recorder_) return;
    const bool threaded = cfg_.sync == broker::sync_policy::batch && thread_.joinable();
    if (!threaded && outstanding_ != 0) {
        // always, periodic: the loop writes itself, not while the sync thread has the file
        // (a compaction's rename). Flushed when it is done.
        again_ = true;
        return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    refuse_doomed();
    if (failing_) return flush_failing();
    auto& j = job_;
    j.target = recorder_->appended();
    stage_held(j.target);
    j.bytes.clear();
    j.snapshot = {};
    j.compacted = false;
    j.sync = cfg_.sync != broker::sync_policy::periodic;
    j.refused = false;
    j.records = recorder_->records() - records_taken_;
    j.groups = 1;
    records_taken_ = recorder_->records();
    if (recorder_->has_pending()) {
        recorder_->take_pending(j.bytes);
        if (!compaction_ && !replacing_ &&
            store::compaction_due(file_bytes_, snapshot_bytes_, recorder_->mirror().live_bytes())) {
            begin_compaction();
        }
    }
    if (compaction_ && recorder_->compaction_done()) {
        // The new file has the whole state but what was kept since the last slice: that
        // goes at its end, then it replaces the old file (fsync and rename on the sync
        // thread), instead of this group's append (and of the groups waiting with it). If
        // writing fails, they are appended to the old file.
        recorder_->compaction_step(piece_);  // complete: only the records kept since
        const bool ok = piece_.empty() || !compaction_->write(piece_);
        if (ok) {
            j.snapshot = std::move(*compaction_);
            j.compacted = true;
        }
        end_compaction();
    }
    j.handed = std::chrono::steady_clock::now();
    gstats_.stalls += j.handed - t0;
    ++gstats_.flushes;
    // batch: every write goes to the sync thread; with every policy the compaction's fsync
    // and rename do (a whole store's worth of page cache to flush).
    if (thread_.joinable() && ((threaded && !j.bytes.empty()) || j.snapshot.is_open())) {
        hand_over(j);
        return;
    }
    if (threaded) {
        // No records: the output staged waits for those handed over already; with none
        // outstanding, every record is on disk (or was written by retry()'s rewrite).
        if (outstanding_ == 0) synced_ = std::max(synced_, j.target);
        release_covered();
        return;
    }
    run_job(j);
    j.finished = std::chrono::steady_clock::now();
    complete(j);
}

// Into the sync thread's queue. A group that comes while a sync runs joins the job waiting
// behind it (a part of its own: no copy), so that one write per part and one fdatasync cover
// every loop turn's group since the last sync. A compaction's rename ends its job: what
// comes after it is appended to the new file.
void store_driver::hand_over(job& j) {
    const bool replace = j.snapshot.is_open();
    if (replace) replacing_ = true;
    {
        std::lock_guard lock{mutex_};
        if (queue_.empty() || queue_.back().snapshot.is_open()) {
            auto& n = queue_.emplace_back();
            n.sync = j.sync;
            n.handed = j.handed;
            if (outstanding_++ == 0) work_.emplace(io_.get_executor());  // run() waits for it
        }
        auto& n = queue_.back();
        n.parts.push_back(std::move(j.bytes));
        if (replace) {
            n.snapshot = std::move(j.snapshot);
            n.compacted = j.compacted;
            n.replace = true;
        }
        n.records += j.records;
        ++n.groups;
        n.target = j.target;
        j.bytes = {};
        if (!spare_.empty()) {  // a buffer written before, for the recorder's next records
            j.bytes = std::move(spare_.back());
            spare_.pop_back();
        }
    }
    cv_.notify_one();
}

// The store is failing: the file misses the records of a failed write until retry() writes
// it anew, so records appended to it now may refer to those and are not durable either:
// nothing is written, and the held output (with what is handed over: the thread refuses it)
// is refused.
void store_driver::flush_failing() {
    const auto target = recorder_->appended();
    stage_held(target);
    recorder_->take_pending(job_.bytes);  // kept in the mirror, for the rewrite
    job_.bytes.clear();
    records_taken_ = recorder_->records();
    synced_ = std::max(synced_, target);
    std::vector<held_output*> held;
    for (auto& g : groups_) held.insert(held.end(), g.held.begin(), g.held.end());
    groups_.clear();
    refuse_held(std::move(held), true);
}

void store_driver::stage_held(std::uint64_t target) {
    // Whatever the held connections have to write now depends on records appended so far
    // at most: take it now, write it once those are synced.
    if (held_.empty()) return;
    for (auto* h : held_) h->stage(target);
    if (!groups_.empty() && groups_.back().target == target) {
        auto& g = groups_.back().held;
        g.insert(g.end(), held_.begin(), held_.end());
    } else {
        groups_.push_back({target, std::move(held_)});
    }
    held_.clear();
}

// The groups a sync has covered: their output may be written.
void store_driver::release_covered() {
    while (!waiters_.empty() && waiters_.front().first <= synced_) {
        const auto f = std::move(waiters_.front().second);
        waiters_.pop_front();
        f();
    }
    while (!groups_.empty() && groups_.front().target <= synced_) {
        const auto held = std::move(groups_.front().held);
        groups_.pop_front();
        for (auto* h : held) h->release();
    }
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

void store_driver::run_job(job& j) {
    j.ec.clear();
    j.what = "write";
    j.write_time = j.sync_time = {};
    j.written = 0;
    if (!j.refused) {
        j.replace_ec.clear();
        bool replaced = false;
        if (j.snapshot.is_open()) {
            j.replace_ec = file_.replace(std::move(j.snapshot));  // synced
            replaced = !j.replace_ec;
        }
        if (!replaced) {  // else the records are in the new file
            const auto t0 = std::chrono::steady_clock::now();
            bool wrote = false;
            const auto write = [&](const std::vector<std::uint8_t>& b) {
                if (b.empty() || j.ec) return;
                j.ec = file_.append(b);
                wrote = true;
                if (!j.ec) j.written += b.size();
            };
            write(j.bytes);
            for (const auto& p : j.parts) write(p);
            const auto t1 = std::chrono::steady_clock::now();
            j.write_time = t1 - t0;
            if (wrote && !j.ec && j.sync) {
                j.ec = file_.sync();
                j.sync_time = std::chrono::steady_clock::now() - t1;
            }
        }
    }
    j.file_size = file_.size();
    j.snapshot_size = file_.snapshot_size();
}

// On the loop: the jobs the sync thread finished, in order.
void store_driver::drain() {
    std::vector<job> done;
    {
        std::lock_guard lock{mutex_};
        std::swap(done, done_);
    }
    for (auto& j : done) {
        if (--outstanding_ == 0) work_.reset();
        complete(j);
    }
}

void store_driver::complete(job& j) {
    report(j.ec, j.what);
    if (j.replace) replacing_ = false;
    if (j.replace_ec) {
        note_(0, true,
              "store " + path_ + ": compaction failed: " + j.replace_ec.message() +
                  "; the records were appended to the old file");
    } else if (j.compacted && !j.refused) {
        note_(1, false,
              "store " + path_ + ": compacted to " + std::to_string(j.file_size) + " bytes in " +
                  std::to_string(stats_.slices) + " slices over " +
                  std::to_string(ms(std::chrono::steady_clock::now() - stats_.started)) +
                  " ms; the longest slice kept the event loop " +
                  std::to_string(ms(stats_.longest)) + " ms");
    }
    file_bytes_ = j.file_size;
    snapshot_bytes_ = j.snapshot_size;
    const bool wrote = j.written != 0;
    const bool durable = !j.ec && !j.refused;
    if (durable && wrote) {
        auto& g = gstats_;
        const auto now = std::chrono::steady_clock::now();
        ++g.syncs;
        g.groups += j.groups;
        g.records += j.records;
        g.max_records = std::max(g.max_records, j.records);
        g.bytes += j.written;
        g.write += j.write_time;
        g.sync += j.sync_time;
        g.max_sync = std::max(g.max_sync, j.sync_time);
        g.latency += now - j.handed;
        g.handback += now - j.finished;
    }
    if (durable && !j.sync && wrote) unsynced_ = true;
    // Output produced from now on depends on records that are on disk, or on records that
    // are not, whose held connections are refused here: nothing waits for these any more.
    synced_ = std::max(synced_, j.target);
    if (durable) {
        release_covered();
    } else {
        std::vector<held_output*> held;
        while (!groups_.empty() && groups_.front().target <= j.target) {
            auto& g = groups_.front().held;
            held.insert(held.end(), g.begin(), g.end());
            groups_.pop_front();
        }
        refuse_held(std::move(held), j.refused);
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
void store_driver::refuse_held(std::vector<held_output*> held, bool refused) {
    for (auto* h : connections_) {
        if (h->unwritten() && std::find(held.begin(), held.end(), h) == held.end()) {
            held.push_back(h);
        }
    }
    held_.clear();  // all of them are in `held` now: no later flush releases them
    if (held.empty()) return;
    note_(refused ? 1 : 0, !refused,
          "store " + path_ + ": " + std::to_string(held.size()) +
              " connection(s) closed without the acknowledgements of records not on disk");
    for (auto* h : held) {
        if (connections_.contains(h)) h->refuse();  // not ended by an earlier one's close
    }
}

void store_driver::log_group_stats() {
    const auto& g = gstats_;
    if (g.syncs == 0) return;
    const auto per = [&](std::chrono::steady_clock::duration d, std::uint64_t n) {
        return std::to_string(
            std::chrono::duration_cast<std::chrono::microseconds>(d).count() /
            static_cast<long long>(n));
    };
    note_(1, false,
          "store " + path_ + ": " + std::to_string(g.syncs) + " writes, each covering " +
              std::to_string(g.groups / g.syncs) + " flushes' groups, " +
              std::to_string(g.records / g.syncs) + " records and " +
              std::to_string(g.bytes / g.syncs) + " bytes on average (at most " +
              std::to_string(g.max_records) + " records); per write: write() " +
              per(g.write, g.syncs) + " us, fdatasync " + per(g.sync, g.syncs) +
              " us (longest " + per(g.max_sync, 1) +
              " us), from the first group handed over to the completion on the loop " +
              per(g.latency, g.syncs) + " us, of which waiting for the loop " +
              per(g.handback, g.syncs) + " us; flush() kept the loop " +
              per(g.stalls, std::max<std::uint64_t>(g.flushes, 1)) + " us per flush (" +
              std::to_string(g.flushes) + " flushes)");
}

void store_driver::report(std::error_code ec, std::string_view what) {
    // A later write that works does not mend the file: the records of the failed one are
    // missing from it. Only writing the whole state anew does (retry()).
    if (!ec || failing_) return;
    failing_ = true;
    if (compaction_) end_compaction();  // retry() writes the whole state
    engine_.set_store_failing(true);
    if (on_failing_) on_failing_(true);
    note_(0, true,
          "store " + path_ + ": " + std::string{what} + " failed: " + ec.message() +
              "; QoS 1/2 publishes are refused (0x97) until the store can be written again");
    retry();
}

// While failing, every second: write the whole state anew, which also puts back what the
// failed writes left out. Publishes are refused meanwhile.
void store_driver::retry() {
    // A store that waits for its set is written by the set's retry (set_committed()).
    if (awaits_set_) return;
    retry_.expires_after(std::chrono::seconds{1});
    retry_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || !failing_ || !recorder_) return;
        if (!rewrite_now()) retry();
    });
}

bool store_driver::rewrite_now() {
    if (outstanding_ != 0) return false;  // the sync thread has the file
    std::vector<std::uint8_t> covered;    // in the snapshot: not to be appended after it
    recorder_->take_pending(covered);
    if (file_.rewrite(snapshot())) return false;
    {
        std::lock_guard lock{mutex_};
        failed_ = false;
    }
    file_bytes_ = file_.size();
    snapshot_bytes_ = file_.snapshot_size();
    failing_ = false;
    engine_.set_store_failing(false);
    synced_ = std::max(synced_, recorder_->appended());
    release_covered();  // the others are told what was synced before they hear ...
    if (on_failing_) on_failing_(false);  // ... that this store writes again
    note_(0, true, "store " + path_ + ": writing works again (the store was written anew)");
    return true;
}

void store_driver::set_committed(bool write_now) {
    if (!awaits_set_) return;
    awaits_set_ = false;
    if (!write_now || !failing_ || !recorder_) return;
    if (!rewrite_now()) retry();
}

}  // namespace mqtt::net::detail
