#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "disk_queue_format.hpp"
#include "mqtt/bridge/disk_queue.hpp"
#include "mqtt/store/record.hpp"

// Opening a queue directory and rebuilding the queue from its segments and state slots.
namespace mqtt::bridge {

using namespace queue_format;

std::unique_ptr<disk_queue> disk_queue::open(const std::string& dir, const queue_options& opts,
                                             queue_recovery& report, std::string& error) {
    error.clear();
    report = {};
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        error = "queue directory " + dir + ": " + ec.message();
        return nullptr;
    }
    std::unique_ptr<disk_queue> q(new disk_queue(dir, opts));
    // One process per queue: a second one would interleave its records with ours.
    q->lock_fd_ = ::open(q->path("lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (q->lock_fd_ < 0) {
        error = "queue directory " + dir + ": " + errno_text();
        return nullptr;
    }
    if (::flock(q->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        error = "queue directory " + dir + ": in use by another process";
        return nullptr;
    }
    if (!q->recover(report, error)) return nullptr;
    return q;
}

bool disk_queue::load_state(const std::string& name, parsed_state& out, std::string& why) {
    const int fd = ::open(path(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        why = errno == ENOENT ? "" : name + ": " + errno_text();
        return false;
    }
    struct stat st {};
    std::vector<std::uint8_t> b;
    const bool sized = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                       static_cast<std::uint64_t>(st.st_size) >= state_fixed &&
                       static_cast<std::uint64_t>(st.st_size) <=
                           state_fixed + std::uint64_t{state_entry} * max_state_entries;
    if (sized) {
        b.resize(static_cast<std::size_t>(st.st_size));
        if (!read_exact(fd, b.data(), b.size(), 0)) b.clear();
    }
    ::close(fd);
    if (b.empty()) {
        why = name + ": not a state file (size)";
        return false;
    }
    const auto count = get32(&b[32]);
    const auto used = state_fixed + std::size_t{count} * state_entry;
    if (std::memcmp(b.data(), state_magic, 4) != 0 || count > max_state_entries ||
        b.size() < used) {
        why = name + ": not a state file";
        return false;
    }
    if (store::crc32c({b.data() + 8, used - 8}) != get32(&b[4])) {
        why = name + ": CRC mismatch";
        return false;
    }
    out.generation = get64(&b[8]);
    out.acked_through = get64(&b[16]);
    out.sent_end = get64(&b[24]);
    out.phases.clear();
    for (std::uint32_t i = 0; i < count; ++i) {
        const auto* e = &b[state_fixed + std::size_t{i} * state_entry];
        const auto phase = e[8];
        if (phase == phase_done || phase == phase_received) out.phases[get64(e)] = phase;
    }
    return true;
}

bool disk_queue::recover(queue_recovery& rep, std::string& error) {
    if (!list_segments(error)) return false;
    load_newest_state(rep);
    if (!reconcile(rep, error)) return false;
    committed_seq_ = next_seq_;
    if (!open_writer(error)) return false;
    position_reader();
    advance();
    // A state that did not fit the records (above) or that recovery moved: on disk now.
    if (state_dirty_ && !save_state()) report("state not saved at opening: " + error_);
    rep.records = live_records_;
    rep.bytes = live_bytes_;
    rep.resend = sent_end_ > acked_through_ ? std::min(sent_end_, next_seq_) - acked_through_ : 0;
    for (auto& p : problems_) rep.problems.push_back(p);
    problems_.clear();
    return true;
}

// The segment files in the directory, in sequence order, with their sizes.
bool disk_queue::list_segments(std::string& error) {
    std::vector<std::uint64_t> firsts;
    if (DIR* d = ::opendir(dir_.c_str())) {
        while (const dirent* e = ::readdir(d)) {
            const auto first = parse_segment_name(e->d_name);
            if (!first) continue;
            if (*first >= max_first_seq) {
                report(std::string("ignored ") + e->d_name + ": sequence out of range");
                continue;
            }
            firsts.push_back(*first);
        }
        ::closedir(d);
    } else {
        error = "queue directory " + dir_ + ": " + errno_text();
        return false;
    }
    std::sort(firsts.begin(), firsts.end());
    std::uint64_t base = 0;
    for (auto first : firsts) {
        struct stat st {};
        if (::stat(path(segment_name(first)).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
            report("ignored " + segment_name(first) + ": not a regular file");
            continue;
        }
        segments_.push_back({first, base, static_cast<std::uint64_t>(st.st_size)});
        base += static_cast<std::uint64_t>(st.st_size);
    }
    return true;
}

// The newer of the two state slots that is intact, if any.
void disk_queue::load_newest_state(queue_recovery& rep) {
    // A save torn by a crash leaves its slot damaged and the other one holding the last
    // state that was completely written.
    parsed_state st[2];
    bool ok[2] = {false, false};
    bool damaged = false;
    for (int i = 0; i < 2; ++i) {
        std::string why;
        ok[i] = load_state(state_name(i), st[i], why);
        if (!why.empty()) {
            report(why);
            damaged = true;
        }
    }
    const int best = ok[0] && ok[1] ? (st[0].generation > st[1].generation ? 0 : 1)
                     : ok[0]        ? 0
                     : ok[1]        ? 1
                                    : -1;
    rep.state_found = best >= 0;
    if (best >= 0) {
        generation_ = st[best].generation;
        acked_through_ = st[best].acked_through;
        sent_end_ = st[best].sent_end;
        state_phase_ = std::move(st[best].phases);
        if (damaged) {
            rep.state_fallback = true;
            report("used " + state_name(best) + " (generation " + std::to_string(generation_) +
                   ")");
        }
    }
}

// Where the records end (the last segment checked and cut at damage), and the state made
// to agree with the segments there are.
bool disk_queue::reconcile(queue_recovery& rep, std::string& error) {
    if (segments_.empty()) {
        next_seq_ = rep.state_found ? std::min(acked_through_, max_first_seq) : 0;
        acked_through_ = next_seq_;
    } else {
        next_seq_ = scan_last_segment(rep, error);
        if (!error.empty()) return false;
        const auto lowest = segments_.front().first;
        if (acked_through_ > next_seq_) {
            if (rep.state_found)
                report("the state is ahead of the segments (acknowledged through " +
                       std::to_string(acked_through_) + ", records end at " +
                       std::to_string(next_seq_) + "): ignored, everything on disk goes again");
            acked_through_ = lowest;
            sent_end_ = next_seq_;
            state_phase_.clear();
            // Saved at the end of the opening: left on disk, the ignored state would fit
            // again once records are appended past its acked_through, and a restart before
            // the next save would take them as acknowledged.
            state_dirty_ = rep.state_found;
        } else if (acked_through_ < lowest) {
            if (rep.state_found)
                report("records " + std::to_string(acked_through_) + " to " +
                       std::to_string(lowest - 1) + " are missing");
            acked_through_ = lowest;
            state_dirty_ = rep.state_found;
        }
    }
    return true;
}

// The reader at the oldest record not acknowledged, the window rebuilt from the state's
// phases, and the counts of what waits.
void disk_queue::position_reader() {
    // From the start of acked_through_'s segment, headers only.
    read_seq_ = acked_through_;
    read_pos_ = end_pos_;
    for (std::size_t i = segments_.size(); i-- > 0;) {
        if (segments_[i].first <= acked_through_) {
            read_seq_ = segments_[i].first;
            read_pos_ = segments_[i].base;
            break;
        }
    }
    while (read_seq_ < acked_through_) {
        const auto before = read_seq_;
        if (!walk_one()) break;
        window_.erase(before);  // acknowledged before the restart: not in the window
    }
    if (read_seq_ > acked_through_) acked_through_ = read_seq_;  // lost ones skipped
    window_.clear();
    live_bytes_ = 0;
    live_records_ = 0;
    send_seq_ = acked_through_;
    // Walk what the state knows about, so received records are in flight again.
    std::uint64_t last_known = 0;
    for (const auto& [seq, phase] : state_phase_) last_known = std::max(last_known, seq);
    while (read_seq_ <= last_known && read_seq_ < acked_through_ + max_window && walk_one()) {
    }
    // Entries for records past the end (none on disk yet) would cover this queue's next
    // appends once a restart read them again: the state is saved anew at opening.
    for (const auto& [seq, phase] : state_phase_) {
        if (seq >= next_seq_) state_dirty_ = true;
    }
    for (auto& [seq, s] : window_) {
        const auto it = state_phase_.find(seq);
        if (it == state_phase_.end()) continue;
        if (it->second == phase_done) {
            s.state = slot_state::done;
        } else {
            s.state = slot_state::received;
            ++in_flight_;
            released_.push_back(seq);
        }
    }
    state_phase_.clear();
    // What waits: the records not walked yet and those walked that are not done; not the
    // sequences of missing records nor the bytes of damaged ones walked over (walk_one
    // takes those off as it meets them from here on).
    live_bytes_ = end_pos_ - std::min(end_pos_, read_pos_);
    live_records_ = next_seq_ - std::min(next_seq_, read_seq_);
    for (const auto& [seq, s] : window_) {
        if (s.state != slot_state::done) {
            live_bytes_ += s.size;
            ++live_records_;
        }
    }
}

// Checks every record of the last segment and cuts it at the first that is torn or damaged.
// Returns the sequence after its last good record.
std::uint64_t disk_queue::scan_last_segment(queue_recovery& rep, std::string& error) {
    auto& seg = segments_.back();
    const auto name = segment_name(seg.first);
    const int fd = ::open(path(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error = "queue file " + path(name) + ": " + errno_text();
        return 0;
    }
    std::uint64_t off = 0;
    std::uint64_t seq = seg.first;
    std::vector<std::uint8_t> buf;
    std::string why;
    while (off < seg.size) {
        std::uint8_t h[header_size];
        if (off + header_size > seg.size || !read_exact(fd, h, header_size, off)) {
            why = "a torn record header";
            break;
        }
        const auto len = get32(h);
        if (len > max_body || off + header_size + len > seg.size) {
            why = "a torn or damaged record";
            break;
        }
        buf.resize(len);
        if (len > 0 && !read_exact(fd, buf.data(), len, off + header_size)) {
            why = "a short read";
            break;
        }
        const auto crc = store::crc32c({buf.data(), buf.size()},
                                       store::crc32c({h + crc_from, header_size - crc_from}));
        if (crc != get32(h + 4) || get64(h + 8) != seq) {
            why = crc != get32(h + 4) ? "a record with a bad CRC" : "a record out of sequence";
            break;
        }
        if (seq >= max_first_seq) {  // as segment names past it: appends would go there
            why = "a sequence out of range";
            break;
        }
        const auto source = static_cast<std::uint16_t>(h[16] | (h[17] << 8));
        if (source != 0) recovered_sources_[source] = store::crc32c({buf.data(), buf.size()});
        off += header_size + len;
        ++seq;
    }
    ::close(fd);
    if (off < seg.size) {
        rep.cut_bytes = seg.size - off;
        report(name + ": cut " + std::to_string(seg.size - off) + " bytes at offset " +
               std::to_string(off) + " (" + why + ")");
        if (::truncate(path(name).c_str(), static_cast<off_t>(off)) != 0) {
            error = "queue file " + path(name) + ": cannot cut: " + errno_text();
            return 0;
        }
        seg.size = off;
    }
    return seq;
}

}  // namespace mqtt::bridge
