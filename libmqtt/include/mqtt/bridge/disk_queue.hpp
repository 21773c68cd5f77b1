#pragma once

// The on-disk queue of one bridge destination: CRC-protected records appended to segment
// files, a `state` file saying what the destination has acknowledged, and the recovery that
// opens whatever a crash (or a hostile hand) left in the directory without ever refusing it.
// Plain POSIX file I/O, no Asio, no clock: the bridge runner decides when to commit and
// when to save the state; tests/unit/bridge_disk_queue_test.cpp drives it in a temp dir.
// The format and the reasoning are in docs/bridge.md ("The on-disk queue").
//
// Records are opaque bytes here (the bridge stores an encoded PUBLISH). Each has a sequence
// number, one more than the one before for the life of the queue. The packet identifier a
// record goes out with is derived from its sequence (packet_id_for), so a record sent again
// after a crash carries the same identifier whether or not the state was saved after it
// went out the first time; the queue hands out at most `max_window` records past the oldest
// unacknowledged one, so no two records in flight share an identifier.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace mqtt::bridge {

enum class full_policy : std::uint8_t { block, drop_new, drop_oldest };

struct queue_options {
    std::uint64_t max_bytes = std::uint64_t{1} << 30;  // records not yet acknowledged
    full_policy policy = full_policy::block;
    std::uint64_t segment_bytes = std::uint64_t{64} << 20;  // a new segment past this size
};

// Packet identifiers 1..32768 belong to queued records; a session that shares the
// connection allocates its own from 32769 on.
inline constexpr std::uint32_t queue_id_space = 32768;
inline constexpr std::uint64_t max_window = queue_id_space - 1;
constexpr std::uint16_t packet_id_for(std::uint64_t seq) noexcept {
    return static_cast<std::uint16_t>(1 + seq % queue_id_space);
}

// What opening found. Nothing in it stops the queue from opening.
struct queue_recovery {
    std::uint64_t records = 0;    // waiting (not acknowledged) after recovery
    std::uint64_t bytes = 0;      // their size on disk
    std::uint64_t cut_bytes = 0;  // torn or corrupt tail cut off the last segment
    std::uint64_t resend = 0;     // records that had gone out and go again
    bool state_found = false;
    bool state_fallback = false;        // a state slot was damaged: the other one was used
    std::vector<std::string> problems;  // one sentence each, for stderr or an event
};

struct queue_record {
    std::uint64_t seq = 0;
    std::uint16_t source_id = 0;  // packet id at the source for QoS 2 (0: none)
    bool resend = false;          // it may have reached the destination before (DUP)
    std::vector<std::uint8_t> body;
};

class disk_queue {
  public:
    // Opens DIR (created when missing), cuts a torn tail, reads the state. Only a directory
    // or file that cannot be created, read or written, or a queue another process has open
    // (DIR/lock), is an error (`error` says which);
    // damaged content is cut or skipped and reported in `report`.
    static std::unique_ptr<disk_queue> open(const std::string& dir, const queue_options& opts,
                                            queue_recovery& report, std::string& error);
    ~disk_queue();
    disk_queue(const disk_queue&) = delete;
    disk_queue& operator=(const disk_queue&) = delete;

    enum class append_status : std::uint8_t { appended, full, failed };
    // Buffers a record until commit(). `full`: the bound is reached under block or drop-new
    // (nothing was added); under drop-oldest the oldest records not handed out yet are
    // dropped first (dropped()), and `full` only when that is not enough. `failed`: a
    // write error (last_error()).
    append_status append(std::span<const std::uint8_t> body, std::uint16_t source_id);
    // Writes what append() buffered and fdatasyncs it: false on an I/O error.
    bool commit();
    bool uncommitted() const noexcept { return !wbuf_.empty(); }

    // The next record to send, in order, among those committed; nullopt when there is none
    // or the window (max_window past the oldest unacknowledged) is full. A damaged record in
    // an older segment is reported (take_problems) and the rest of that segment skipped.
    std::optional<queue_record> next();
    // Records whose QoS 2 PUBREC had been saved in the state: after a restart they are in
    // flight awaiting PUBCOMP (send PUBREL for them); only right after open().
    const std::vector<std::uint64_t>& released_at_open() const noexcept { return released_; }
    // The record in flight with this packet id, if any.
    std::optional<std::uint64_t> seq_for_id(std::uint16_t id) const;
    // The destination acknowledged (PUBACK, PUBCOMP, or refused) / sent PUBREC.
    void done(std::uint64_t seq);
    void received(std::uint64_t seq);

    // Writes the state into the older of the slots state.0 and state.1 (in place, one
    // fdatasync); the other keeps the previous state, the fallback when this one is torn.
    bool save_state();
    bool state_dirty() const noexcept { return state_dirty_; }
    // A QoS 2 message the source sends again (DUP) after the bridge restarted, which is in
    // the queue already: true once per such record recovered at open.
    bool recovered_duplicate(std::uint16_t source_id, std::span<const std::uint8_t> body);

    std::uint64_t bytes() const noexcept { return live_bytes_; }
    std::uint64_t records() const noexcept { return live_records_; }
    std::uint64_t in_flight() const noexcept { return in_flight_; }
    std::uint64_t dropped() const noexcept { return dropped_; }  // by drop-oldest
    std::uint64_t skipped() const noexcept { return skipped_; }  // damaged, found when read
    std::uint64_t fsyncs() const noexcept { return fsyncs_; }
    std::uint64_t acked_through() const noexcept { return acked_through_; }
    std::uint64_t next_seq() const noexcept { return next_seq_; }
    const std::string& last_error() const noexcept { return error_; }
    std::vector<std::string> take_problems();

  private:
    disk_queue(std::string dir, const queue_options& opts);

    struct segment {
        std::uint64_t first = 0;  // sequence of its first record
        std::uint64_t base = 0;   // global position of its first byte
        std::uint64_t size = 0;   // bytes on disk (committed)
    };
    enum class slot_state : std::uint8_t { unsent, in_flight, received, done };
    struct slot {
        std::uint64_t pos = 0;  // global position of the record
        std::uint32_t size = 0;
        slot_state state = slot_state::unsent;
    };
    struct header {
        std::uint32_t body_len = 0;
        std::uint32_t crc = 0;
        std::uint64_t seq = 0;
        std::uint16_t source_id = 0;
    };

    bool recover(queue_recovery& report, std::string& error);
    bool list_segments(std::string& error);
    void load_newest_state(queue_recovery& report);
    bool reconcile(queue_recovery& report, std::string& error);
    void position_reader();
    struct parsed_state {
        std::uint64_t generation = 0;
        std::uint64_t acked_through = 0;
        std::uint64_t sent_end = 0;
        std::unordered_map<std::uint64_t, std::uint8_t> phases;
    };
    bool load_state(const std::string& name, parsed_state& out, std::string& why);
    static std::string state_name(int slot);
    std::uint64_t scan_last_segment(queue_recovery& report, std::string& error);
    bool open_writer(std::string& error);
    bool roll_segment();
    // Reads the record header at global position `pos`: false at the end or on damage.
    bool read_header(std::uint64_t pos, header& h, std::string* why);
    bool read_body(std::uint64_t pos, const header& h, std::vector<std::uint8_t>& body,
                   std::string* why);
    std::size_t segment_at(std::uint64_t pos) const;
    int read_fd(const segment& seg);
    // Walks the next committed record (its header) into window_: false when there is none.
    bool walk_one();
    void skip_missing(std::uint64_t to);
    void advance();
    void delete_old_segments();
    void drop_oldest(std::uint64_t need);
    void report(std::string what);
    std::string path(const std::string& name) const;
    std::string segment_name(std::uint64_t first) const;

    std::string dir_;
    queue_options opts_;
    std::vector<segment> segments_;
    int wfd_ = -1;  // the last segment, for appending
    int rfd_ = -1;  // the segment being read, by its first sequence
    std::uint64_t rfd_first_ = UINT64_MAX;
    std::vector<std::uint8_t> wbuf_;
    std::uint64_t wbuf_records_ = 0;
    bool dir_dirty_ = false;  // a segment was created: sync the directory at commit

    std::uint64_t next_seq_ = 0;            // of the next append
    std::uint64_t committed_seq_ = 0;       // records below it are durable
    std::uint64_t acked_through_ = 0;       // the oldest record not acknowledged
    std::uint64_t read_seq_ = 0;            // the next record to walk into window_
    std::uint64_t read_pos_ = 0;            // its global position
    std::uint64_t end_pos_ = 0;             // global position after the last committed byte
    std::uint64_t sent_end_ = 0;            // from the state: records below it went out before
    std::map<std::uint64_t, slot> window_;  // walked, not acknowledged: acked_through_ ..
    std::uint64_t send_seq_ = 0;            // records below it were handed out (or skipped)
    std::unordered_map<std::uint64_t, std::uint8_t> state_phase_;  // seq -> phase, from state
    std::vector<std::uint64_t> released_;
    std::unordered_map<std::uint16_t, std::uint32_t> recovered_sources_;  // id -> crc of body

    std::uint64_t live_bytes_ = 0;
    std::uint64_t live_records_ = 0;
    std::uint64_t in_flight_ = 0;
    std::uint64_t dropped_ = 0;
    std::uint64_t skipped_ = 0;
    int lock_fd_ = -1;
    int state_fd_[2] = {-1, -1};
    std::uint64_t generation_ = 0;  // of the last state written or read
    std::uint64_t fsyncs_ = 0;
    bool state_dirty_ = false;
    std::string error_;
    std::vector<std::string> problems_;
};

}  // namespace mqtt::bridge
