#include "mqtt/bridge/disk_queue.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "disk_queue_format.hpp"
#include "mqtt/store/record.hpp"

namespace mqtt::bridge {

using namespace queue_format;

disk_queue::disk_queue(std::string dir, const queue_options& opts)
    : dir_(std::move(dir)), opts_(opts) {}

disk_queue::~disk_queue() {
    if (wfd_ >= 0) ::close(wfd_);
    if (rfd_ >= 0) ::close(rfd_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
    for (int fd : state_fd_)
        if (fd >= 0) ::close(fd);
}

std::string disk_queue::state_name(int slot) {
    return slot == 0 ? "state.0" : "state.1";
}

std::string disk_queue::path(const std::string& name) const {
    return dir_ + "/" + name;
}

std::string disk_queue::segment_name(std::uint64_t first) const {
    char buf[32] = {};
    std::snprintf(buf, sizeof buf, "seg-%016llx.q", static_cast<unsigned long long>(first));
    return buf;
}

void disk_queue::report(std::string what) {
    problems_.push_back(std::move(what));
}

std::vector<std::string> disk_queue::take_problems() {
    std::vector<std::string> out;
    out.swap(problems_);
    return out;
}

bool disk_queue::open_writer(std::string& error) {
    if (segments_.empty() || segments_.back().size >= opts_.segment_bytes) {
        const auto base = segments_.empty() ? 0 : segments_.back().base + segments_.back().size;
        segments_.push_back({next_seq_, base, 0});
        dir_dirty_ = true;
    }
    const auto& seg = segments_.back();
    wfd_ = ::open(path(segment_name(seg.first)).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  0600);
    if (wfd_ < 0) {
        error = "queue file " + path(segment_name(seg.first)) + ": " + errno_text();
        return false;
    }
    end_pos_ = seg.base + seg.size;
    if (dir_dirty_ && !sync_dir(dir_)) {
        error = "queue directory " + dir_ + ": " + errno_text();
        return false;
    }
    dir_dirty_ = false;
    return true;
}

bool disk_queue::roll_segment() {
    if (!commit()) return false;
    ::close(wfd_);
    wfd_ = -1;
    const auto base = segments_.back().base + segments_.back().size;
    segments_.push_back({next_seq_, base, 0});
    wfd_ = ::open(path(segment_name(next_seq_)).c_str(),
                  O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (wfd_ < 0) {
        error_ = "queue file " + path(segment_name(next_seq_)) + ": " + errno_text();
        segments_.pop_back();
        return false;
    }
    dir_dirty_ = true;
    return true;
}

disk_queue::append_status disk_queue::append(std::span<const std::uint8_t> body,
                                             std::uint16_t source_id) {
    if (body.size() > max_body) {
        error_ = "record too large";
        return append_status::failed;
    }
    if (next_seq_ >= max_first_seq) {  // only from a directory made by hand: 2^62 records
        error_ = "queue sequence numbers exhausted";
        return append_status::failed;
    }
    const auto size = header_size + body.size();
    if (live_bytes_ + size > opts_.max_bytes) {
        if (opts_.policy != full_policy::drop_oldest) return append_status::full;
        drop_oldest(size);
        if (live_bytes_ + size > opts_.max_bytes) return append_status::full;
    }
    if (wfd_ < 0) return append_status::failed;
    if (segments_.back().size + wbuf_.size() >= opts_.segment_bytes &&
        next_seq_ > segments_.back().first && !roll_segment())
        return append_status::failed;
    const auto at = wbuf_.size();
    put32(wbuf_, static_cast<std::uint32_t>(body.size()));
    put32(wbuf_, 0);
    put64(wbuf_, next_seq_);
    wbuf_.push_back(static_cast<std::uint8_t>(source_id));
    wbuf_.push_back(static_cast<std::uint8_t>(source_id >> 8));
    wbuf_.insert(wbuf_.end(), body.begin(), body.end());
    const auto crc = store::crc32c({wbuf_.data() + at + crc_from, size - crc_from});
    for (int i = 0; i < 4; ++i) wbuf_[at + 4 + i] = static_cast<std::uint8_t>(crc >> (8 * i));
    ++next_seq_;
    live_bytes_ += size;
    ++live_records_;
    return append_status::appended;
}

bool disk_queue::commit() {
    if (wbuf_.empty() && !dir_dirty_) return true;
    auto& seg = segments_.back();
    if (!wbuf_.empty()) {
        if (!write_all(wfd_, wbuf_.data(), wbuf_.size())) {
            error_ = "queue write: " + errno_text();
            // Undo a partial write so that the next commit appends after good records.
            (void)::ftruncate(wfd_, static_cast<off_t>(seg.size));
            return false;
        }
        if (::fdatasync(wfd_) != 0) {
            error_ = "queue fdatasync: " + errno_text();
            (void)::ftruncate(wfd_, static_cast<off_t>(seg.size));
            return false;
        }
        ++fsyncs_;
        seg.size += wbuf_.size();
        end_pos_ += wbuf_.size();
        wbuf_.clear();
        committed_seq_ = next_seq_;
    }
    if (dir_dirty_) {
        if (!sync_dir(dir_)) {
            error_ = "queue directory sync: " + errno_text();
            return false;
        }
        dir_dirty_ = false;
    }
    return true;
}

std::size_t disk_queue::segment_at(std::uint64_t pos) const {
    for (std::size_t i = segments_.size(); i-- > 0;)
        if (segments_[i].base <= pos) return i;
    return 0;
}

int disk_queue::read_fd(const segment& seg) {
    if (rfd_ >= 0 && rfd_first_ == seg.first) return rfd_;
    if (rfd_ >= 0) ::close(rfd_);
    rfd_ = ::open(path(segment_name(seg.first)).c_str(), O_RDONLY | O_CLOEXEC);
    rfd_first_ = rfd_ >= 0 ? seg.first : UINT64_MAX;
    return rfd_;
}

bool disk_queue::read_header(std::uint64_t pos, header& h, std::string* why) {
    const auto& seg = segments_[segment_at(pos)];
    const auto off = pos - seg.base;
    std::uint8_t b[header_size];
    const int fd = read_fd(seg);
    if (fd < 0 || off + header_size > seg.size || !read_exact(fd, b, header_size, off)) {
        if (why) *why = fd < 0 ? errno_text() : "a torn record header";
        return false;
    }
    h.body_len = get32(b);
    h.crc = get32(b + 4);
    h.seq = get64(b + 8);
    h.source_id = static_cast<std::uint16_t>(b[16] | (b[17] << 8));
    if (h.body_len > max_body || off + header_size + h.body_len > seg.size) {
        if (why) *why = "a damaged record length";
        return false;
    }
    return true;
}

bool disk_queue::read_body(std::uint64_t pos, const header& h, std::vector<std::uint8_t>& body,
                           std::string* why) {
    const auto& seg = segments_[segment_at(pos)];
    body.resize(h.body_len);
    const int fd = read_fd(seg);
    if (fd < 0 || (h.body_len > 0 &&
                   !read_exact(fd, body.data(), h.body_len, pos - seg.base + header_size))) {
        if (why) *why = "a short read";
        return false;
    }
    std::uint8_t b[header_size - crc_from];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(h.seq >> (8 * i));
    b[8] = static_cast<std::uint8_t>(h.source_id);
    b[9] = static_cast<std::uint8_t>(h.source_id >> 8);
    if (store::crc32c({body.data(), body.size()}, store::crc32c({b, sizeof b})) != h.crc) {
        if (why) *why = "a bad CRC";
        return false;
    }
    return true;
}

// Sequences from read_seq_ up to `to` have no record on disk (a damaged or emptied segment
// before the one at `to`): they are not waiting. With nothing before them waiting either, the
// oldest unacknowledged record is past them: otherwise a gap wider than the id window (a
// damaged header early in a large segment skips the rest of it) would keep next() from ever
// handing out another record.
void disk_queue::skip_missing(std::uint64_t to) {
    report("records " + std::to_string(read_seq_) + " to " + std::to_string(to - 1) +
           " are missing");
    live_records_ -= std::min(live_records_, to - read_seq_);
    read_seq_ = to;
    if (window_.empty() && acked_through_ < read_seq_) {
        acked_through_ = read_seq_;
        send_seq_ = std::max(send_seq_, acked_through_);
        state_dirty_ = true;
    }
}

bool disk_queue::walk_one() {
    for (;;) {
        if (read_seq_ >= committed_seq_) {
            // Bytes left before the end hold no new sequence (records of an older segment
            // past the start of the last one, which is empty or shorter): none of them waits.
            if (read_pos_ < end_pos_) {
                live_bytes_ -= std::min(live_bytes_, end_pos_ - read_pos_);
                read_pos_ = end_pos_;
            }
            return false;
        }
        if (read_pos_ >= end_pos_) {  // every record walked: the rest are in no segment
            skip_missing(committed_seq_);
            return false;
        }
        const auto i = segment_at(read_pos_);
        const auto& seg = segments_[i];
        const bool last = i + 1 == segments_.size();
        std::string why;
        if (read_pos_ == seg.base && seg.first > read_seq_) {  // a damaged segment before
            skip_missing(seg.first);
        } else if (!last && read_seq_ >= segments_[i + 1].first) {
            // Records past where the next segment begins (segments pieced together by hand):
            // the next one has those sequences, and the last one is where this queue appends.
            why = "records past the start of the next segment";
        }
        header h;
        if (why.empty() && (!read_header(read_pos_, h, &why) || h.seq != read_seq_) && why.empty())
            why = "a record out of sequence";
        if (!why.empty()) {
            report(segment_name(seg.first) + ": " + why + " at offset " +
                   std::to_string(read_pos_ - seg.base) + ": the rest of the segment is skipped");
            if (last) {  // checked at open: only if the disk changed under us
                read_pos_ = end_pos_;
                read_seq_ = committed_seq_;
                return false;
            }
            live_bytes_ -= std::min(live_bytes_, seg.base + seg.size - read_pos_);
            read_pos_ = seg.base + seg.size;
            continue;
        }
        window_[read_seq_] = slot{read_pos_, static_cast<std::uint32_t>(header_size + h.body_len),
                                  slot_state::unsent};
        read_pos_ += header_size + h.body_len;
        ++read_seq_;
        return true;
    }
}

std::optional<queue_record> disk_queue::next() {
    for (;;) {
        auto it = window_.lower_bound(send_seq_);
        while (it != window_.end() && it->second.state != slot_state::unsent) ++it;
        if (it == window_.end()) {
            if (!walk_one()) return std::nullopt;
            continue;
        }
        const auto seq = it->first;
        if (seq >= acked_through_ + max_window) return std::nullopt;
        header h;
        queue_record r;
        std::string why;
        if (!read_header(it->second.pos, h, &why) || !read_body(it->second.pos, h, r.body, &why)) {
            report("record " + std::to_string(seq) + ": " + why + ": skipped");
            send_seq_ = seq + 1;
            done(seq);
            ++skipped_;
            continue;
        }
        it->second.state = slot_state::in_flight;
        ++in_flight_;
        send_seq_ = seq + 1;
        state_dirty_ = true;
        r.seq = seq;
        r.source_id = h.source_id;
        r.resend = seq < sent_end_;
        return r;
    }
}

std::optional<std::uint64_t> disk_queue::seq_for_id(std::uint16_t id) const {
    if (id == 0 || id > queue_id_space) return std::nullopt;
    // The one sequence in [acked_through_, acked_through_ + id space) with this id.
    const std::uint64_t offset =
        (id - 1 + queue_id_space - acked_through_ % queue_id_space) % queue_id_space;
    const auto seq = acked_through_ + offset;
    const auto it = window_.find(seq);
    if (it == window_.end() || it->second.state == slot_state::unsent ||
        it->second.state == slot_state::done)
        return std::nullopt;
    return seq;
}

void disk_queue::done(std::uint64_t seq) {
    const auto it = window_.find(seq);
    if (it == window_.end() || it->second.state == slot_state::done) return;
    if (it->second.state == slot_state::in_flight || it->second.state == slot_state::received)
        --in_flight_;
    it->second.state = slot_state::done;
    live_bytes_ -= std::min<std::uint64_t>(live_bytes_, it->second.size);
    if (live_records_ > 0) --live_records_;
    state_dirty_ = true;
    advance();
}

void disk_queue::received(std::uint64_t seq) {
    const auto it = window_.find(seq);
    if (it == window_.end() || it->second.state != slot_state::in_flight) return;
    it->second.state = slot_state::received;
    state_dirty_ = true;
}

void disk_queue::advance() {
    while (!window_.empty() && window_.begin()->second.state == slot_state::done)
        window_.erase(window_.begin());
    acked_through_ = window_.empty() ? read_seq_ : window_.begin()->first;
    send_seq_ = std::max(send_seq_, acked_through_);
}

void disk_queue::delete_old_segments() {
    while (segments_.size() > 1 && segments_[1].first <= acked_through_ &&
           segments_[1].base <= read_pos_) {
        const auto name = segment_name(segments_.front().first);
        if (rfd_ >= 0 && rfd_first_ == segments_.front().first) {
            ::close(rfd_);
            rfd_ = -1;
            rfd_first_ = UINT64_MAX;
        }
        if (::unlink(path(name).c_str()) != 0 && errno != ENOENT)
            report(name + ": cannot delete: " + errno_text());
        segments_.erase(segments_.begin());
    }
}

void disk_queue::drop_oldest(std::uint64_t need) {
    while (live_bytes_ + need > opts_.max_bytes) {
        auto it = window_.lower_bound(send_seq_);
        while (it != window_.end() && it->second.state != slot_state::unsent) ++it;
        if (it == window_.end()) {
            if (walk_one()) continue;
            // The oldest unsent records may still be in the write buffer (appended in this
            // turn of the event loop, not committed): commit them early so that they can be
            // read and dropped, rather than refusing the new record in their place.
            if (wbuf_.empty() || !commit() || !walk_one()) break;
            continue;
        }
        ++dropped_;
        const auto seq = it->first;
        if (seq == send_seq_) send_seq_ = seq + 1;
        done(seq);
    }
}

bool disk_queue::save_state() {
    std::vector<std::uint8_t> b(state_magic, state_magic + 4);
    put32(b, 0);
    put64(b, generation_ + 1);
    put64(b, acked_through_);
    put64(b, std::max(sent_end_, send_seq_));
    std::uint32_t count = 0;
    put32(b, 0);
    for (const auto& [seq, s] : window_) {
        if (s.state != slot_state::done && s.state != slot_state::received) continue;
        if (count == max_state_entries) break;
        put64(b, seq);
        b.push_back(s.state == slot_state::done ? phase_done : phase_received);
        ++count;
    }
    for (int i = 0; i < 4; ++i) b[32 + i] = static_cast<std::uint8_t>(count >> (8 * i));
    const auto crc = store::crc32c({b.data() + 8, b.size() - 8});
    for (int i = 0; i < 4; ++i) b[4 + i] = static_cast<std::uint8_t>(crc >> (8 * i));

    // In place into the older slot: one fdatasync, no rename, no directory sync.
    const int slot = static_cast<int>((generation_ + 1) % 2);
    if (state_fd_[slot] < 0) {
        const auto name = path(state_name(slot));
        const bool existed = ::access(name.c_str(), F_OK) == 0;
        state_fd_[slot] = ::open(name.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (state_fd_[slot] < 0 || (!existed && !sync_dir(dir_))) {
            error_ = "queue state: " + errno_text();
            return false;
        }
    }
    const auto size = b.size();
    const bool ok = ::pwrite(state_fd_[slot], b.data(), size, 0) == static_cast<ssize_t>(size) &&
                    ::fdatasync(state_fd_[slot]) == 0;
    ++fsyncs_;
    if (!ok) {
        error_ = "queue state: " + errno_text();
        return false;
    }
    ++generation_;
    state_dirty_ = false;
    // Only now: a restart from this state no longer needs what lies below acked_through_.
    delete_old_segments();
    return true;
}

bool disk_queue::recovered_duplicate(std::uint16_t source_id, std::span<const std::uint8_t> body) {
    const auto it = recovered_sources_.find(source_id);
    if (it == recovered_sources_.end() || it->second != store::crc32c(body)) return false;
    recovered_sources_.erase(it);
    return true;
}

}  // namespace mqtt::bridge
