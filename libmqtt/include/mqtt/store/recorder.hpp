#pragma once

// The engine's store_hooks turned into records: each change is applied to a mirror state
// (what the store file describes once everything is written) and appended, encoded, to a
// pending buffer. No I/O: the transport driver takes the pending bytes, writes and syncs
// them, then releases the acknowledgements they cover.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <system_error>
#include <vector>

#include <boost/unordered/unordered_flat_map.hpp>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/store_hooks.hpp"
#include "mqtt/store/snapshot_cursor.hpp"
#include "mqtt/store/state.hpp"

namespace mqtt::store {

// The pieces a snapshot is written in (recorder::write_snapshot).
inline constexpr std::size_t snapshot_chunk = std::size_t{1} << 20;

// The records that rebuild `st` (state::snapshot at `now_ms`), encoded and handed to `out`
// in pieces as recorder::write_snapshot does (which writes its mirror with this).
std::error_code write_state_snapshot(const state& st, std::int64_t now_ms, const byte_sink& out,
                                     std::size_t chunk = snapshot_chunk);

class recorder final : public broker::store_hooks {
  public:
    // `mirror` is the state the store file holds now (what was recovered, already written).
    explicit recorder(state mirror);

    // The store of shard k > 0 with threads > 1 (docs/persistence.md, "Threads"): retained
    // changes are not recorded (shard 0's store has every one, in its order), and message
    // ids are kept in message::shard_store_ids[k - 1] (k <= 3) or here (k > 3) rather than
    // in message::store_id, which shard 0's recorder owns (a message routed between shards
    // is one object read by several threads).
    void set_secondary_shard(std::size_t k);
    // The listeners' keys: a session record names the listener its client came through
    // (broker::durable_session::listener; none before this is called).
    void set_listeners(listener_keys keys) { listeners_ = std::move(keys); }

    // Where the times of records come from (tests give a hand-driven one).
    void set_clock(std::function<clock_pair()> f) {
        clock_ = std::move(f);
        group_clock_.reset();
    }
    // Called when the pending buffer goes from empty to not empty.
    void set_pending_hook(std::function<void()> f) { on_pending_ = std::move(f); }

    bool has_pending() const noexcept { return !pending_.empty(); }
    // Moves the pending bytes into `into` (cleared first).
    void take_pending(std::vector<std::uint8_t>& into);
    // Bytes of records produced since the start; grows monotonically.
    std::uint64_t appended() const noexcept { return appended_; }
    // Records produced since the start (statistics: records per group commit).
    std::uint64_t records() const noexcept { return records_; }
    const state& mirror() const noexcept { return mirror_; }
    // The records that rebuild the mirror state (compaction), encoded and handed to `out` in
    // pieces of at least `chunk` bytes, each less than `chunk` plus one record (the last may
    // be smaller): a large state is written without a copy of it in memory. Stops at the
    // first error of `out` and returns it.
    std::error_code write_snapshot(const byte_sink& out, std::size_t chunk = snapshot_chunk) const;
    // The same bytes in one vector (small states, tests).
    std::vector<std::uint8_t> snapshot_bytes() const;

    // Compaction while the broker runs, a slice per call, so that the event loop never
    // stops for the whole store (see snapshot_cursor): between the calls the state goes on
    // changing, and the records of changes to what is written already are kept for the new
    // file besides being pending for the current one.
    void begin_compaction();
    // Clears `piece`, then moves into it the records kept since the last call (a group of
    // their own) and the next slice of the snapshot, about `chunk` bytes. True once the
    // snapshot is complete: `piece` then holds only the kept records, and the new file (all
    // the pieces, in order) describes the mirror as it is now.
    bool compaction_step(std::vector<std::uint8_t>& piece, std::size_t chunk = snapshot_chunk);
    void end_compaction();
    bool compacting() const noexcept { return cursor_.has_value(); }
    bool compaction_done() const noexcept { return cursor_ && cursor_->done(); }

    // threads > 1 (docs/persistence.md, "Threads: the outbox"): m goes to shards `dests` as
    // this shard's outbox item `seq`; this shard has taken shard `source`'s items up to
    // `seq`; shard `dest` has on its disk what it did with this shard's items up to `seq`.
    // `publisher`: the client id of the session that published m (empty: none).
    void outbox_sent(const broker::message_ptr& m, std::uint64_t seq,
                     std::vector<std::uint16_t> dests, std::string publisher = {});
    // A share group's delivery to member `client_id` (its subscription `group`) on shard
    // `dest`, as this shard's outbox item `seq`.
    void outbox_share_sent(const broker::message_ptr& m, std::uint64_t seq, std::size_t dest,
                           std::string group, std::string client_id);
    void inbox_taken(std::size_t source, std::uint64_t seq);
    void outbox_confirmed(std::size_t dest, std::uint64_t seq);

    // broker::store_hooks
    void session_online(const broker::durable_session& s) override;
    void session_offline(const broker::durable_session& s) override;
    void session_ended(const broker::durable_session& s) override;
    void subscribed(const broker::durable_session& s, std::string_view filter,
                    const broker::subscription_entry& e) override;
    void unsubscribed(const broker::durable_session& s, std::string_view filter) override;
    void queued(const broker::durable_session& s, const broker::queued_delivery& d) override;
    void dequeued(const broker::durable_session& s) override;
    void inflight_added(const broker::durable_session& s,
                        const broker::outbound_delivery& o) override;
    void inflight_released(const broker::durable_session& s, std::uint16_t id) override;
    void inflight_removed(const broker::durable_session& s, std::uint16_t id) override;
    void qos2_received(const broker::durable_session& s, std::uint16_t id) override;
    void qos2_released(const broker::durable_session& s, std::uint16_t id) override;
    void retained_set(const broker::message_ptr& m) override;
    void retained_cleared(std::string_view topic) override;

  private:
    bool stored(const broker::durable_session& s) const;
    std::uint64_t message_id(const broker::message_ptr& m);
    std::uint64_t* id_slot(const broker::message& m) const;
    const clock_pair& group_clock();  // clock_(), read once until take_pending()
    void emit(record r);

    state mirror_;
    std::vector<std::uint8_t> pending_;
    std::optional<snapshot_cursor> cursor_;  // compacting
    std::vector<std::uint8_t> kept_;         // records for the new file since the last step
    std::uint64_t appended_ = 0;
    std::uint64_t records_ = 0;
    std::uint64_t next_id_ = 1;
    std::function<void()> on_pending_;
    std::function<clock_pair()> clock_ = clock_pair::now;
    std::optional<clock_pair> group_clock_;
    // set_secondary_shard(k), k > 3: the ids of the messages written, by object. An entry counts
    // only while the mirror holds that very object under that id (ids are never reused), so
    // an address reused after a message was freed is never mistaken for it. Open
    // addressing: a message seen for the first time (the usual case) costs one probe of a
    // group of slots, not a bucket and a node in separate cache lines.
    bool secondary_ = false;
    std::size_t slot_ = 0;  // secondary: k - 1, an index of message::shard_store_ids if < 3
    boost::unordered_flat_map<const broker::message*, std::uint64_t> ids_;
    listener_keys listeners_;
};

// Puts a recovered state into an empty engine: retained messages, and every session offline
// (a session that was connected when the broker stopped is treated as disconnected at
// `now`, without its Will). The messages of `st` are replaced by copies whose receive time
// is on the steady clock, shared by the engine and the state.
// `message_ids` false (a recorder with set_secondary_shard()): message::store_id is left 0.
// A session whose record names a listener of `listeners` gets that listener's number and
// security slot (its read checks while offline, its Will's write check); one whose record
// names a listener `listeners` does not have (or has twice) gets
// durable_session::listener_gone (listener_gone_unnamed when the record kept no user
// name: every policy's acl_file applies, as at a replay) and slot 0; one whose record names
// none, listener 0 and slot 0 (the broker's policy).
void restore(broker::engine& e, state& st, const clock_pair& now, bool message_ids = true,
             const listener_keys& listeners = {});

}  // namespace mqtt::store
