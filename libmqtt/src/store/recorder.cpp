#include "mqtt/store/recorder.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "mqtt/protocol/topic.hpp"

namespace mqtt::store {
namespace {

using broker::clock;

stage to_stage(broker::outbound_stage s) noexcept {
    switch (s) {
        case broker::outbound_stage::puback:
            return stage::puback;
        case broker::outbound_stage::pubrec:
            return stage::pubrec;
        case broker::outbound_stage::pubcomp:
            break;
    }
    return stage::pubcomp;
}

broker::outbound_stage from_stage(stage s) noexcept {
    switch (s) {
        case stage::puback:
            return broker::outbound_stage::puback;
        case stage::pubrec:
            return broker::outbound_stage::pubrec;
        case stage::pubcomp:
            break;
    }
    return broker::outbound_stage::pubcomp;
}

}  // namespace

// ---- clocks -----------------------------------------------------------------------------

clock_pair clock_pair::now() {
    const auto wall = std::chrono::system_clock::now().time_since_epoch();
    return {clock::now(), std::chrono::duration_cast<std::chrono::milliseconds>(wall).count()};
}

std::int64_t clock_pair::to_wall(clock::time_point t) const noexcept {
    if (t == clock::time_point::max()) return -1;
    return wall_ms + std::chrono::duration_cast<std::chrono::milliseconds>(t - steady).count();
}

clock::time_point clock_pair::to_steady(std::int64_t ms) const noexcept {
    if (ms < 0) return clock::time_point::max();
    return steady + std::chrono::milliseconds{ms - wall_ms};
}

// ---- recorder ---------------------------------------------------------------------------

recorder::recorder(state mirror)
    : mirror_(std::move(mirror)), next_id_(mirror_.max_message_id() + 1) {}

void recorder::take_pending(std::vector<std::uint8_t>& into) {
    into.clear();
    // What is taken is written as one group: its commit record closes it. Not counted in
    // appended(), which counts the records the engine made.
    if (!pending_.empty()) append_record(pending_, commit_record{});
    std::swap(into, pending_);
    group_clock_.reset();
}

std::error_code write_state_snapshot(const state& st, std::int64_t now_ms, const byte_sink& out,
                                     std::size_t chunk) {
    std::vector<std::uint8_t> piece;
    piece.reserve(chunk);
    std::error_code ec;
    st.snapshot(now_ms, [&](const record& r) {
        append_record(piece, r);
        if (piece.size() < chunk) return true;
        ec = out(piece);
        piece.clear();
        // A piece that grew past the reservation (a large message) is not kept that large.
        if (piece.capacity() > 2 * chunk) {
            piece = std::vector<std::uint8_t>{};
            piece.reserve(chunk);
        }
        return !ec;
    });
    if (!ec && !piece.empty()) ec = out(piece);
    return ec;
}

std::error_code recorder::write_snapshot(const byte_sink& out, std::size_t chunk) const {
    return write_state_snapshot(mirror_, clock_().wall_ms, out, chunk);
}

std::vector<std::uint8_t> recorder::snapshot_bytes() const {
    std::vector<std::uint8_t> all;
    (void)write_snapshot([&](std::span<const std::uint8_t> b) {
        all.insert(all.end(), b.begin(), b.end());
        return std::error_code{};
    });
    return all;
}

void recorder::emit(record r) {
    std::uint64_t again = 0;
    const bool keep = cursor_ && cursor_->follows(mirror_, r, again);  // before the change
    if (again != 0) {  // a message the new file may have dropped, referred to again
        const auto m = mirror_.messages().find(again);
        if (m != mirror_.messages().end()) {
            append_record(kept_, message_record{again, m->second.received_ms, m->second.msg});
        }
    }
    mirror_.apply(r);
    const bool was_empty = pending_.empty();
    const std::size_t before = pending_.size();
    append_record(pending_, r);
    appended_ += pending_.size() - before;
    ++records_;
    if (keep) kept_.insert(kept_.end(), pending_.begin() + before, pending_.end());
    if (was_empty && on_pending_) on_pending_();
}

void recorder::begin_compaction() {
    cursor_.emplace(clock_().wall_ms);
    kept_.clear();
}

bool recorder::compaction_step(std::vector<std::uint8_t>& piece, std::size_t chunk) {
    piece.clear();
    if (!kept_.empty()) {
        std::swap(piece, kept_);
        append_record(piece, commit_record{});
    }
    if (!cursor_ || cursor_->done()) return true;
    return cursor_->step(mirror_, [&](const record& r) {
        append_record(piece, r);
        return piece.size() < chunk;
    });
}

void recorder::end_compaction() {
    cursor_.reset();
    std::vector<std::uint8_t>{}.swap(kept_);
}

bool recorder::stored(const broker::durable_session& s) const {
    return mirror_.sessions().contains(s.client_id);
}

void recorder::set_secondary_shard(std::size_t k) {
    secondary_ = true;
    slot_ = k - 1;
    ids_.clear();
    for (const auto& [id, m] : mirror_.messages()) {
        if (slot_ < m.msg->shard_store_ids.size()) {
            m.msg->shard_store_ids[slot_] = id;
        } else {
            ids_[m.msg.get()] = id;
        }
    }
}

// Where m's record id is kept on the message itself: message::store_id for shard 0's
// recorder, message::shard_store_ids[k - 1] for shard k <= 3; nullptr past shard 3 (ids_).
std::uint64_t* recorder::id_slot(const broker::message& m) const {
    if (!secondary_) return &m.store_id;
    return slot_ < m.shard_store_ids.size() ? &m.shard_store_ids[slot_] : nullptr;
}

// The id of m's message record, writing the record first when the store does not hold it.
// An id counts only while the mirror holds that very object under it (ids are never
// reused): on the message, no lookup of a large map, which missed the cache for nearly
// every message (11% of a shard's time with an offline subscriber to all).
std::uint64_t recorder::message_id(const broker::message_ptr& m) {
    const auto held_as = [&](std::uint64_t id) {
        const auto* held = mirror_.message(id);
        return held != nullptr && held->msg.get() == m.get();
    };
    std::uint64_t id = 0;
    if (auto* slot = id_slot(*m)) {
        if (*slot != 0 && held_as(*slot)) return *slot;
        id = *slot = next_id_++;
    } else {
        if (const auto it = ids_.find(m.get()); it != ids_.end() && held_as(it->second)) {
            return it->second;
        }
        // Entries of messages the mirror dropped: swept once they are most of the map.
        if (ids_.size() > 2 * mirror_.messages().size() + 1024) {
            boost::unordered::erase_if(ids_, [&](const auto& e) {
                const auto* held = mirror_.message(e.second);
                return held == nullptr || held->msg.get() != e.first;
            });
        }
        id = next_id_++;
        ids_[m.get()] = id;
    }
    emit(message_record{id, group_clock().to_wall(m->received), m});
    return id;
}

// Read once per group: the pair only maps steady times to wall times, which is the same
// mapping for the whole group unless the wall clock is set meanwhile (and then either
// reading is as good). Two clock reads per message record were 5% of a shard's time with
// an offline subscriber to everything.
const clock_pair& recorder::group_clock() {
    if (!group_clock_) group_clock_ = clock_();
    return *group_clock_;
}

void recorder::session_online(const broker::durable_session& s) {
    if (s.expiry_interval != 0) {
        std::optional<std::string> listener;
        if (s.listener < listeners_.size() && !listeners_[s.listener].key.empty())
            listener = listeners_[s.listener].key;
        emit(session_record{s.client_id, s.expiry_interval, true,
                            s.username() ? std::optional{*s.username()} : std::nullopt,
                            std::move(listener)});
    } else if (stored(s)) {
        // Resumed without a Session Expiry Interval: it ends with this connection, so the
        // store forgets it now.
        emit(session_end_record{s.client_id});
    }
}

void recorder::session_offline(const broker::durable_session& s) {
    if (!stored(s)) return;
    const auto now = clock_();
    std::uint64_t will = 0;
    if (s.will() && s.will_at() != clock::time_point::max()) will = message_id(s.will());
    emit(session_offline_record{s.client_id, s.expiry_interval, now.to_wall(s.expires_at()), will,
                                will != 0 ? now.to_wall(s.will_at()) : -1});
}

void recorder::session_ended(const broker::durable_session& s) {
    if (stored(s)) emit(session_end_record{s.client_id});
}

void recorder::subscribed(const broker::durable_session& s, std::string_view filter,
                          const broker::subscription_entry& e) {
    if (stored(s)) emit(subscribe_record{s.client_id, std::string{filter}, e.options, e.id});
}

void recorder::unsubscribed(const broker::durable_session& s, std::string_view filter) {
    if (stored(s)) emit(unsubscribe_record{s.client_id, std::string{filter}});
}

void recorder::queued(const broker::durable_session& s, const broker::queued_delivery& d) {
    if (!stored(s)) return;
    const auto id = message_id(d.msg);
    emit(queue_push_record{s.client_id, id, d.q, d.retain, d.ids});
}

void recorder::dequeued(const broker::durable_session& s) {
    if (!stored(s)) return;
    const auto& st = mirror_.sessions().at(s.client_id);
    if (!st.queue.empty()) emit(queue_pop_record{s.client_id});
}

void recorder::inflight_added(const broker::durable_session& s,
                              const broker::outbound_delivery& o) {
    if (!stored(s)) return;
    const auto id = o.msg ? message_id(o.msg) : 0;
    emit(inflight_add_record{s.client_id, o.id, id, o.q, o.retain, to_stage(o.waiting), o.ids});
}

void recorder::inflight_released(const broker::durable_session& s, std::uint16_t id) {
    if (stored(s)) emit(inflight_stage_record{s.client_id, id, stage::pubcomp});
}

void recorder::inflight_removed(const broker::durable_session& s, std::uint16_t id) {
    if (stored(s)) emit(inflight_remove_record{s.client_id, id});
}

void recorder::qos2_received(const broker::durable_session& s, std::uint16_t id) {
    if (stored(s)) emit(qos2_in_add_record{s.client_id, id});
}

void recorder::qos2_released(const broker::durable_session& s, std::uint16_t id) {
    if (stored(s)) emit(qos2_in_remove_record{s.client_id, id});
}

void recorder::retained_set(const broker::message_ptr& m) {
    if (secondary_) return;  // a replica: shard 0 records the change
    // $SYS topics are the broker's own, published again after a start: not kept.
    if (protocol::is_system_topic(m->topic)) return;
    emit(retained_set_record{message_id(m)});
}

void recorder::retained_cleared(std::string_view topic) {
    if (secondary_) return;
    if (mirror_.retained().contains(std::string{topic})) {
        emit(retained_clear_record{std::string{topic}});
    }
}

void recorder::outbox_sent(const broker::message_ptr& m, std::uint64_t seq,
                           std::vector<std::uint16_t> dests, std::string publisher) {
    const auto id = message_id(m);
    emit(outbox_add_record{seq, id, std::move(dests), {}, {}, std::move(publisher)});
}

void recorder::outbox_share_sent(const broker::message_ptr& m, std::uint64_t seq, std::size_t dest,
                                 std::string group, std::string client_id) {
    const auto id = message_id(m);
    emit(outbox_add_record{
        seq, id, {static_cast<std::uint16_t>(dest)}, std::move(group), std::move(client_id)});
}

void recorder::inbox_taken(std::size_t source, std::uint64_t seq) {
    if (seq > mirror_.applied_from(source)) {
        emit(inbox_applied_record{static_cast<std::uint16_t>(source), seq});
    }
}

void recorder::outbox_confirmed(std::size_t dest, std::uint64_t seq) {
    const auto& o = mirror_.outbox();
    // Only when it drops something: a confirmation per batch of the other shard otherwise.
    const auto d = static_cast<std::uint16_t>(dest);
    for (auto it = o.begin(); it != o.end() && it->first <= seq; ++it) {
        const auto& ds = it->second.dests;
        if (std::find(ds.begin(), ds.end(), d) != ds.end()) {
            emit(outbox_ack_record{d, seq});
            return;
        }
    }
}

// ---- restore ----------------------------------------------------------------------------

void restore(broker::engine& e, state& st, const clock_pair& now, bool message_ids,
             const listener_keys& listeners) {
    // The messages with their receive time on this run's steady clock.
    std::vector<std::pair<std::uint64_t, broker::message_ptr>> fixed;
    for (const auto& [id, m] : st.messages()) {
        if (m.msg->store_id == id) {  // load_bytes() with times did it
            if (!message_ids) m.msg->store_id = 0;
            continue;
        }
        auto copy = broker::copy_message(*m.msg);
        copy->shard_store_ids = m.msg->shard_store_ids;
        copy->received = now.to_steady(m.received_ms);
        copy->store_id = message_ids ? id : 0;
        fixed.emplace_back(id, std::move(copy));
    }
    for (auto& [id, m] : fixed) st.replace_message(id, std::move(m));
    const auto& messages = st.messages();
    const auto msg = [&](std::uint64_t id) -> broker::message_ptr {
        const auto it = messages.find(id);
        return it == messages.end() ? nullptr : it->second.msg;
    };
    for (const auto& [topic, id] : st.retained()) {
        if (auto m = msg(id)) e.restore_retained(m);
    }
    for (const auto& [client_id, s] : st.sessions()) {
        auto ds = std::make_unique<broker::durable_session>();
        ds->client_id = client_id;
        ds->expiry_interval = s.expiry_interval;
        if (s.identified) ds->set_username(s.username);
        if (s.listener) {
            if (const auto n = listener_of(listeners, *s.listener)) {
                ds->listener = static_cast<std::uint16_t>(*n);
                ds->security_slot = static_cast<std::uint16_t>(listeners[*n].slot);
            } else {
                // Until its client comes back: every policy's ACL applies.
                ds->listener = s.identified ? broker::durable_session::listener_gone
                                            : broker::durable_session::listener_gone_unnamed;
            }
        }
        for (const auto& [filter, sub] : s.subscriptions) {
            ds->subscriptions.emplace(filter, broker::subscription_entry{sub.options, sub.id});
        }
        for (const auto& o : s.inflight) {
            broker::outbound_delivery d;
            d.msg = msg(o.msg_id);
            if (!d.msg && o.waiting != stage::pubcomp) continue;
            d.id = o.packet_id;
            d.q = o.q;
            d.retain = o.retain;
            d.waiting = from_stage(o.waiting);
            d.ids = o.subscription_ids;
            ds->inflight.push_back(std::move(d));
        }
        for (const auto& q : s.queue) {
            auto m = msg(q.msg_id);
            if (!m) continue;
            ds->queued_bytes += broker::queue_cost(*m);
            ds->queue.push_back({std::move(m), q.q, q.retain, q.subscription_ids});
        }
        ds->qos2_in = s.qos2_in;
        if (s.offline) {
            ds->set_expires_at(now.to_steady(s.expires_ms));
            if (s.will_msg_id != 0) {
                if (auto w = msg(s.will_msg_id)) {
                    ds->set_will(std::move(w));
                    ds->set_will_at(now.to_steady(s.will_ms));
                }
            }
        } else if (s.expiry_interval != broker::session_never_expires) {
            ds->set_expires_at(now.steady + std::chrono::seconds{s.expiry_interval});
        }
        e.restore_session(std::move(ds), s.identified);
    }
}

}  // namespace mqtt::store
