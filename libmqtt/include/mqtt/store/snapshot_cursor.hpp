#pragma once

// A snapshot taken a slice at a time while the state goes on changing (compaction while the
// broker runs, without stopping its event loop for the whole store).
//
// The cursor walks the state in the order of state::snapshot (messages by id, retained
// messages by topic, sessions by client id, each session's queue from its front). A change
// made between two slices either touches what the cursor has handed out already, and then
// its record must follow in the new file (follows() says so), or what it has not reached yet,
// and then the slice that reaches it hands out the changed state and the record is left out.
// So the new file (the slices, with the records follows() kept between them, in order) reads
// back to the state as it is when the cursor is done, and from then on every record follows.
//
// Within the session being written, its head (session, offline state, subscriptions, QoS 2
// ids, in-flight) goes out at once; its queue goes a slice at a time from the front: a pop
// of an entry written follows (and shifts the position), a push waits for the slice that
// reaches the back.
//
// Reading a file drops a message as soon as nothing refers to it. In the new file a record
// that follows may drop the last reference written so far to a message that the state still
// refers to from a part not written yet (session A pops message 7, session B further on
// still queues it): such a message is written again before the next reference to it.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>

#include "mqtt/store/record.hpp"
#include "mqtt/store/state.hpp"

namespace mqtt::store {

class snapshot_cursor {
  public:
    explicit snapshot_cursor(std::int64_t now_ms) : now_ms_(now_ms) {}

    // Hands the next records of `st` to `out` until `out` returns false (it keeps the record
    // it returns false for) or the snapshot is complete; a commit record closes every
    // snapshot_group_records records and the slice. True once complete.
    bool step(const state& st, const std::function<bool(const record&)>& out);
    bool done() const noexcept { return phase_ == phase::done; }
    // Whether `r`, about to be applied to `st`, changes what was handed out already (so it
    // must follow in the new file). Call it for every change, before applying it. When it
    // follows and refers to a message the new file may have dropped, `again` is set to that
    // message's id: its message record (as `st` has it) must go in first.
    bool follows(const state& st, const record& r, std::uint64_t& again);

  private:
    // outbox: the outbox and the inbox sequences (threads > 1), small, at once.
    enum class phase { header, messages, outbox, retained, sessions, done };
    bool follows(const state& st, const record& r);  // without the messages
    bool session_follows(const std::string& client_id, const record& r);
    bool add(const record& r, const std::function<bool(const record&)>& out);
    // A reference to message `id` is written: the message first if the file may have lost it.
    bool refer(const state& st, std::uint64_t id, const std::function<bool(const record&)>& out);
    // Records that follow and drop references: the messages they may drop from the file.
    void note_drops(const state& st, const record& r);
    void dropped(std::uint64_t id) {
        if (id != 0) dropped_.insert(id);
    }

    std::int64_t now_ms_;
    phase phase_ = phase::header;
    std::uint64_t next_message_ = 0;  // messages with a smaller id are written
    std::string last_topic_;          // retained: topics up to this one are written
    bool any_topic_ = false;
    std::string session_;         // the session being written, or the last one written
    bool any_session_ = false;    // session_ names one
    bool session_whole_ = false;  // its queue is written to the end
    std::size_t queue_at_ = 0;    // entries of its queue written
    std::size_t in_group_ = 0;
    std::unordered_set<std::uint64_t> dropped_;  // messages the new file may have dropped
};

}  // namespace mqtt::store
