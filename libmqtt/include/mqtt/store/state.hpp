#pragma once

// The live state a store describes: what replaying its records gives. The broker rebuilds
// its engine from it on start; the recorder keeps one up to date as it writes records, so
// that compaction is "write snapshot() to a new file". Plain data, no I/O.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/store/record.hpp"

namespace mqtt::store {

// Steady-clock points as Unix milliseconds and back, for one moment of both clocks.
struct clock_pair {
    broker::clock::time_point steady;
    std::int64_t wall_ms = 0;
    static clock_pair now();  // reads both clocks (recorder.cpp)
    std::int64_t to_wall(broker::clock::time_point t) const noexcept;  // max() -> -1
    broker::clock::time_point to_steady(std::int64_t ms) const noexcept;
};

// A listener of the configuration as the store knows it: what the store keeps of it
// (session_record::listener), a string that stays the same across restarts with the same
// configuration, and the engine's security slot of its clients (0: the broker's policy;
// the listener's own with per_listener_settings).
struct listener_key {
    std::string key;  // empty: no listener
    std::uint32_t slot = 0;
};
// Every listener, by its number (broker::durable_session::listener: its index in the
// configuration + 1); [0], the in-process bridges', is empty: their session records name
// none.
using listener_keys = std::vector<listener_key>;

// The number of the listener `key` names; nullopt when no listener has it (the
// configuration changed) or several have (two listeners the key cannot tell apart).
std::optional<std::size_t> listener_of(const listener_keys& keys, std::string_view key);

// live_bytes(): what one reference to a message takes in a snapshot (a queue_push_record
// of a short client id).
inline constexpr std::uint64_t live_ref_bytes = 32;

// Records per group in a snapshot (see state::snapshot).
inline constexpr std::size_t snapshot_group_records = 1024;

struct stored_message {
    broker::message_ptr msg;
    std::int64_t received_ms = 0;
    std::size_t refs = 0;  // retained, queue, in-flight and Will references
};

struct queued_ref {
    std::uint64_t msg_id = 0;
    protocol::qos q = protocol::qos::at_most_once;
    bool retain = false;
    std::vector<std::uint32_t> subscription_ids;
};

struct inflight_ref {
    std::uint16_t packet_id = 0;
    std::uint64_t msg_id = 0;  // 0 at stage pubcomp
    protocol::qos q = protocol::qos::at_least_once;
    bool retain = false;
    stage waiting = stage::puback;
    std::vector<std::uint32_t> subscription_ids;
};

struct stored_subscription {
    protocol::subscription_options options;
    std::uint32_t id = 0;  // Subscription Identifier, 0: none
};

struct stored_session {
    std::uint32_t expiry_interval = 0;
    // The user name of its client's last CONNECT (session_record); `identified` false when
    // the store was written before user names were stored: the user name is not known.
    bool identified = false;
    std::optional<std::string> username;
    // The listener its client last came through (session_record::listener); nullopt: not
    // known, the broker-wide policy applies.
    std::optional<std::string> listener;
    std::map<std::string, stored_subscription> subscriptions;
    std::deque<queued_ref> queue;
    // The queued messages' broker::queue_cost, as max_queued_bytes counts it.
    std::size_t queued_bytes = 0;
    std::vector<inflight_ref> inflight;  // in the order first sent
    std::vector<std::uint16_t> qos2_in;  // sorted
    // Set by session_offline, cleared by session (the client came back).
    bool offline = false;
    std::int64_t expires_ms = -1;
    std::uint64_t will_msg_id = 0;
    std::int64_t will_ms = -1;
};

// threads > 1: a message this shard sent to other shards, until each has confirmed it
// (outbox_add_record).
struct outbox_entry {
    std::uint64_t msg_id = 0;
    std::vector<std::uint16_t> dests;  // not yet confirmed, sorted
    std::string group;                 // a share group's delivery: the member's subscription
    std::string client_id;             // and the member (empty: a message to route)
    std::string publisher{};           // a message to route: its publisher (empty: not known)
    bool operator==(const outbox_entry&) const = default;
};

class state {
  public:
    // Applies one record. False when it does not fit the state (a reference to an unknown
    // message or session, an id in use): such a record is ignored and counted, the state
    // stays consistent.
    bool apply(const record& r);
    // Records that rebuild this state from nothing: the header and a commit record, then the
    // state with a commit record after every snapshot_group_records records and at the end;
    // messages nobody refers to are left out. Handed to `out` one at a time, so that a large
    // state is written without a second copy of it in memory; `out` returning false stops.
    void snapshot(std::int64_t now_ms, const std::function<bool(const record&)>& out) const;
    // The same records in a vector (tests, small states).
    std::vector<record> snapshot(std::int64_t now_ms) const;
    // Drops messages nobody refers to (after replaying a file).
    void prune();

    const std::map<std::uint64_t, stored_message>& messages() const noexcept { return messages_; }
    const std::map<std::string, std::uint64_t, std::less<>>& retained() const noexcept {
        return retained_;
    }
    const std::map<std::string, stored_session>& sessions() const noexcept { return sessions_; }
    std::uint64_t max_message_id() const noexcept { return max_id_; }
    std::size_t queued_count() const noexcept;
    std::size_t inflight_count() const noexcept;
    std::size_t rejected() const noexcept { return rejected_; }
    // About the bytes a snapshot of this state takes, kept up to date as records apply: the
    // message records of the held messages plus live_ref_bytes per reference to one
    // (queued, in flight, retained, Will). Sessions and subscriptions are left out; beside
    // queued messages they are small, and they are in the last snapshot's size, which
    // compaction_due() also weighs.
    std::uint64_t live_bytes() const noexcept { return message_bytes_ + refs_ * live_ref_bytes; }
    // Replaces the value of a held message (restore: the same message with its receive time
    // on the steady clock and its store id set).
    void replace_message(std::uint64_t id, broker::message_ptr m);
    // Whether a message record with this id is held, and the record.
    bool has_message(std::uint64_t id) const noexcept { return message(id) != nullptr; }
    const stored_message* message(std::uint64_t id) const noexcept {
        const auto it = find_message(messages_, id);
        return it == messages_.end() ? nullptr : &it->second;
    }
    // threads > 1 (docs/persistence.md, "Threads: the outbox"): what this shard sent to
    // others, by sequence; the highest sequence it used; the highest sequence of each other
    // shard's outbox it has taken (by that shard).
    const std::map<std::uint64_t, outbox_entry>& outbox() const noexcept { return outbox_; }
    std::uint64_t outbox_last() const noexcept { return outbox_last_; }
    const std::map<std::uint16_t, std::uint64_t>& applied() const noexcept { return applied_; }
    std::uint64_t applied_from(std::size_t source) const noexcept {
        const auto it = applied_.find(static_cast<std::uint16_t>(source));
        return it == applied_.end() ? 0 : it->second;
    }

  private:
    // A message by id. Ids grow, so the message just recorded is the last and the one a
    // queue lets go next is usually the first: those two without a search from the root
    // (with 320,000 messages queued, add_ref's search was 2.7% of the broker's samples).
    template <class Map>
    static auto find_message(Map& m, std::uint64_t id) noexcept -> decltype(m.find(id)) {
        if (!m.empty()) {
            if (const auto last = std::prev(m.end()); last->first == id) return last;
            if (m.begin()->first == id) return m.begin();
        }
        return m.find(id);
    }
    // `cost`, if given, is set to the message's broker::queue_cost.
    bool add_ref(std::uint64_t id, std::size_t* cost = nullptr);
    void drop_ref(std::uint64_t id, std::size_t* cost = nullptr);
    void erase_message(std::map<std::uint64_t, stored_message>::iterator it);
    void end_session(std::map<std::string, stored_session>::iterator it);
    stored_session* find(const std::string& client_id);

    struct applier;
    std::map<std::uint64_t, stored_message> messages_;
    std::map<std::string, std::uint64_t, std::less<>> retained_;  // topic -> message id
    std::map<std::string, stored_session> sessions_;
    std::map<std::uint64_t, outbox_entry> outbox_;  // seq -> entry
    std::uint64_t outbox_last_ = 0;
    std::map<std::uint16_t, std::uint64_t> applied_;  // source shard -> seq
    std::uint64_t max_id_ = 0;
    std::size_t rejected_ = 0;
    std::uint64_t message_bytes_ = 0;  // live_bytes(): the held messages' records
    std::uint64_t refs_ = 0;           // and the references to them
};

// The message record of `m` on disk, in bytes (frame included).
std::uint64_t message_record_bytes(const broker::message& m) noexcept;

// Whether a log of `file_bytes` is worth rewriting as a snapshot: when at least half of it
// is records the state no longer needs, judged by the larger of the last snapshot's size and
// the state's live_bytes() (a queue that only grows, every record still live, is not
// rewritten over and over), and when it is past `slack` bytes beyond that.
inline constexpr std::uint64_t compaction_slack = 64u << 20;
constexpr bool compaction_due(std::uint64_t file_bytes, std::uint64_t snapshot_bytes,
                              std::uint64_t live_bytes,
                              std::uint64_t slack = compaction_slack) noexcept {
    const auto live = snapshot_bytes > live_bytes ? snapshot_bytes : live_bytes;
    return file_bytes > 2 * live + slack;
}

}  // namespace mqtt::store
