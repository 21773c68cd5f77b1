// Outbound deliveries of a session: packet ids, the in-flight window, the bounded queue,
// the QoS 1/2 acknowledgements from the client, and the resend when a session resumes.

#include <algorithm>
#include <string>
#include <utility>

#include "mqtt/broker/acks.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"

namespace mqtt::broker {
namespace {

using protocol::qos;
using protocol::reason_code;

}  // namespace

// ---- acknowledgements from the client -----------------------------------------------------

void session::on_puback(std::uint16_t id) {
    auto& inflight = ds_->inflight;
    const auto it = std::find_if(inflight.begin(), inflight.end(), [&](const outbound_delivery& o) {
        return o.id == id && o.waiting == outbound_stage::puback;
    });
    if (it == inflight.end()) return;  // unknown id: nothing to release
    settle(*it);
    ds_->inflight_bytes -= inflight_cost(*it);
    inflight.erase(it);
    if (auto* store = engine_.store()) store->inflight_removed(*ds_, id);
    pump();
}

void session::on_pubrec(const protocol::pubrec_packet& p) {
    auto& inflight = ds_->inflight;
    const auto it = std::find_if(inflight.begin(), inflight.end(), [&](const outbound_delivery& o) {
        return o.id == p.packet_id && o.waiting != outbound_stage::puback;
    });
    if (it == inflight.end()) {
        send(protocol::pubrel_packet{p.packet_id, reason_code::packet_identifier_not_found, {}});
        return;
    }
    settle(*it);
    ds_->inflight_bytes -= inflight_cost(*it);
    if (protocol::is_error(p.code)) {  // the receiver refused it: the exchange ends here
        inflight.erase(it);
        if (auto* store = engine_.store()) store->inflight_removed(*ds_, p.packet_id);
        pump();
        return;
    }
    it->waiting = outbound_stage::pubcomp;
    it->msg.reset();  // from here on only the id matters (a resend is a PUBREL)
    if (auto* store = engine_.store()) store->inflight_released(*ds_, p.packet_id);
    append_success_ack(out_.bytes, protocol::packet_type::pubrel, p.packet_id);
    // Its payload no longer counts against max_inflight_bytes: what waited for that goes.
    if (engine_.config().max_inflight_bytes != 0) pump();
}

void session::on_pubcomp(std::uint16_t id) {
    auto& inflight = ds_->inflight;
    const auto it = std::find_if(inflight.begin(), inflight.end(), [&](const outbound_delivery& o) {
        return o.id == id && o.waiting == outbound_stage::pubcomp;
    });
    if (it == inflight.end()) return;
    settle(*it);
    ds_->inflight_bytes -= inflight_cost(*it);  // 0: let go at PUBREC
    inflight.erase(it);
    if (auto* store = engine_.store()) store->inflight_removed(*ds_, id);
    pump();
}

// An acknowledgement for a message still waiting to be resent (the client got it on its
// previous connection): it no longer needs sending again.
void session::settle(outbound_delivery& o) noexcept {
    if (holding_any()) more_->held_since = now_;  // progress: backpressure_timeout restarts
    if (!o.resend_pending) return;
    o.resend_pending = false;
    --resend_pending_;
}

// ---- deliveries ---------------------------------------------------------------------------

bool session::too_large(const message& m, qos q,
                        std::span<const std::uint32_t> ids) const noexcept {
    // Never send more than the client accepts (5.0 §3.1.2.11.4): dropped instead.
    const std::size_t size = publish_size(m, version_, q, ids);
    return (client_max_packet_ != 0 && size > client_max_packet_) ||
           size > protocol::max_packet_size;
}

topic_alias_use session::alias_for(const message& m, qos q, std::span<const std::uint32_t> ids) {
    // Three bytes of property against the topic name: a short topic gains nothing.
    if (alias_out_max_ == 0 || m.topic.size() <= 3) return {};
    // An alias never makes the packet larger than the client accepts (§3.1.2.11.4).
    const auto fits = [&](topic_alias_use a) {
        return client_max_packet_ == 0 || publish_size(m, version_, q, ids, a) <= client_max_packet_;
    };
    auto& given = more().aliases_out;
    if (const auto it = given.find(m.topic); it != given.end()) return {it->second, false};
    // The first alias_out_max_ topics keep theirs for the connection's life; later topics
    // go out by name (no replacement: a busy set of topics is usually small and stable).
    if (given.size() >= alias_out_max_) return {};
    const topic_alias_use a{static_cast<std::uint16_t>(given.size() + 1), true};
    if (!fits(a)) return {};
    given.emplace(m.topic, a.alias);
    return a;
}

void session::deliver(const message_ptr& m, qos q, bool retain, session* from,
                      subscription_ids ids) {
    if (state_ != session_state::connected) return;
    if (!protocol::is_v5(version_)) ids.clear();
    if (too_large(*m, q, ids)) {
        ++engine_.stats().dropped_too_large;
        return;
    }
    if (q == qos::at_most_once) {
        if (out_.size() > engine_.config().max_outbound_bytes) {
            ++engine_.stats().dropped_qos0_slow;
            return;
        }
        out_.append_publish(m, version_, q, 0, retain, false, ids, alias_for(*m, q, ids));
        engine_.stats().count_sent(static_cast<unsigned>(q), m->payload.size());
    } else {
        if (ds_->queue.empty() && can_send_qos12(m->payload.size())) {
            send_qos12(m, q, retain, std::move(ids));
        } else if (!enqueue(*ds_, engine_.config(),
                            queued_delivery{m, q, retain, std::move(ids)})) {
            ++engine_.stats().dropped_queue_full;  // the hard bound, a safety net
        } else if (auto* store = engine_.store()) {
            store->queued(*ds_, ds_->queue.back());
        }
        // Back-pressure instead of loss: the publisher stops being read until we drain;
        // one on another shard through its shard's channel, which stops here. Not after
        // backpressure_timeout passed without an acknowledgement (until we drain).
        if (congested() && !hold_expired()) {
            if (from != nullptr) {
                throttle(*from, m->received);
            } else if (const auto shard = engine_.routing_from_shard(); shard != engine::no_shard) {
                hold_shard(shard, engine_.routing_now());
            }
        }
    }
    note_share_ready();
    wake();
}

bool session::can_take(qos q) const noexcept {
    if (state_ != session_state::connected) return false;
    const auto& cfg = engine_.config();
    if (q == qos::at_most_once) return out_.size() <= cfg.max_outbound_bytes;
    return ds_->queue.size() < cfg.max_queued_messages && ds_->queued_bytes < cfg.max_queued_bytes;
}

bool session::can_send_now(qos q) const noexcept {
    if (state_ != session_state::connected) return false;
    if (q == qos::at_most_once) return out_.size() <= engine_.config().max_outbound_bytes;
    return ds_->queue.empty() && can_send_qos12(0);
}

void session::note_share_ready() {
    if (ds_ == nullptr || ds_->remote_shares == 0 || state_ != session_state::connected) return;
    const bool ready = share_ready_now();
    if (ready == share_ready_) return;
    share_ready_ = ready;
    engine_.note_share_ready(*ds_, ready);
}

bool session::can_send_qos12(std::size_t payload) const noexcept {
    const auto& cfg = engine_.config();
    return ds_->inflight.size() < inflight_cap_ && out_.size() <= cfg.max_outbound_bytes &&
           inflight_bytes_allow(payload, cfg.max_inflight_bytes);
}

// max_inflight_bytes: a payload goes if the bytes held in flight stay within `cap` with
// it, or if none are held (one message larger than the cap goes alone, or it never would).
bool session::inflight_bytes_allow(std::size_t payload, std::size_t cap) const noexcept {
    const std::size_t held = ds_->inflight_bytes;
    return cap == 0 || held == 0 || (held < cap && payload <= cap - held);
}

void session::send_qos12(const message_ptr& m, qos q, bool retain, subscription_ids ids) {
    const std::uint16_t id = next_packet_id();
    const auto stage = q == qos::at_least_once ? outbound_stage::puback : outbound_stage::pubrec;
    out_.append_publish(m, version_, q, id, retain, false, ids, alias_for(*m, q, ids));
    ds_->inflight.push_back(outbound_delivery{m, id, q, retain, stage, std::move(ids)});
    ds_->inflight_bytes += m->payload.size();
    if (auto* store = engine_.store()) store->inflight_added(*ds_, ds_->inflight.back());
    engine_.stats().count_sent(static_cast<unsigned>(q), m->payload.size());
}

void session::pump() {
    if (state_ != session_state::connected) return;
    if (resend_pending_ != 0) resend();
    if (resend_pending_ == 0) send_queued();  // the resend goes first (MQTT-4.4.0-1)
    if ((holding_any() || hold_expired()) && drained()) {
        release_throttled();
        release_shards();
        more_->hold_expired = false;
    }
    note_share_ready();
}

void session::send_queued() {
    auto& queue = ds_->queue;
    auto* const store = engine_.store();
    // A QoS 0 entry (queued while offline) needs no slot, but waits its turn for order.
    while (!queue.empty() && can_send_qos12(queue.front().msg->payload.size())) {
        queued_delivery d = std::move(queue.front());
        queue.pop_front();
        ds_->queued_bytes -= queue_cost(*d.msg);
        if (!protocol::is_v5(version_)) d.ids.clear();  // queued for a 5.0 connection
        message_ptr m = aged(d.msg, now_);
        if (m && m != d.msg) engine_.charge(*m);  // a copy may stay in flight: memory_limit
        if (!m) {  // its Message Expiry Interval passed while it waited (§3.3.2.3.3)
            ++engine_.stats().dropped_expired;
        } else if (too_large(*m, d.q, d.ids)) {
            ++engine_.stats().dropped_too_large;
        } else if (d.q == qos::at_most_once) {
            out_.append_publish(m, version_, d.q, 0, d.retain, false, d.ids,
                                alias_for(*m, d.q, d.ids));
            engine_.stats().count_sent(static_cast<unsigned>(d.q), m->payload.size());
        } else {
            send_qos12(m, d.q, d.retain, std::move(d.ids));
        }
        // After the in-flight record, so that the store keeps the message it shares.
        if (store) store->dequeued(*ds_);
    }
}

// The session was resumed: what the client has not acknowledged goes again first, in the
// order first sent (MQTT-4.4.0-1, 5.0 §4.4): PUBLISH with DUP=1 and the original packet
// id (MQTT-3.3.1-1), or PUBREL for a QoS 2 message the client already acknowledged with
// PUBREC. Then the messages queued while it was away.
void session::resume() {
    auto& inflight = ds_->inflight;
    // One the (new) client cannot take at all is given up rather than kept forever.
    const auto dropped = inflight.erase_if([&](const outbound_delivery& o) {
        const bool drop = o.waiting != outbound_stage::pubcomp && too_large(*o.msg, o.q, o.ids);
        if (!drop) return false;
        ds_->inflight_bytes -= inflight_cost(o);
        if (engine_.store()) engine_.store()->inflight_removed(*ds_, o.id);
        return true;
    });
    if (!protocol::is_v5(version_)) {
        for (auto& o : inflight) o.ids.clear();  // resumed by a 3.1.1 connection
    }
    engine_.stats().dropped_too_large += dropped;
    for (auto& o : inflight) o.resend_pending = true;
    resend_pending_ = static_cast<std::uint32_t>(inflight.size());
    pump();
}

// Sends the pending resends in order while this connection's window has room: a client
// that lowered its Receive Maximum gets the rest as it acknowledges.
void session::resend() {
    std::size_t open = ds_->inflight.size() - resend_pending_;  // sent on this connection
    for (auto& o : ds_->inflight) {
        if (resend_pending_ == 0 || open >= inflight_cap_) break;
        if (!o.resend_pending) continue;
        o.resend_pending = false;
        --resend_pending_;
        ++open;
        if (o.waiting == outbound_stage::pubcomp) {
            send(protocol::pubrel_packet{o.id, reason_code::success, {}});
        } else {
            out_.append_publish(o.msg, version_, o.q, o.id, o.retain, true, o.ids,
                                alias_for(*o.msg, o.q, o.ids));
            engine_.stats().count_sent(static_cast<unsigned>(o.q), o.msg->payload.size());
        }
    }
}

// ---- back-pressure between clients --------------------------------------------------------
// A subscriber is congested above half of its queue bounds and drained at a quarter of
// them: the gap keeps a publisher from being paused and woken for every message.

bool session::congested() const noexcept {
    const auto& cfg = engine_.config();
    return ds_ != nullptr && (ds_->queue.size() > cfg.max_queued_messages / 2 ||
                              ds_->queued_bytes > cfg.max_queued_bytes / 2);
}

bool session::drained() const noexcept {
    const auto& cfg = engine_.config();
    return ds_ == nullptr || (ds_->queue.size() <= cfg.max_queued_messages / 4 &&
                              ds_->queued_bytes <= cfg.max_queued_bytes / 4);
}

void session::throttle(session& publisher, clock::time_point since) {
    if (&publisher == this || publisher.state_ != session_state::connected) return;
    // A session that holds others paused (or other shards' messages) is never paused
    // itself: it must go on reading the acknowledgements that drain it, so waits cannot
    // form a cycle (no deadlock).
    if (publisher.throttling_any() || publisher.holding_shards()) return;
    auto& throttled = more().throttled;
    if (std::find(throttled.begin(), throttled.end(), &publisher) != throttled.end()) return;
    const bool first = !holding_any();
    // Amortised: the vectors keep their capacity, nothing is allocated per message.
    throttled.push_back(&publisher);
    publisher.more().waiting_on.push_back(this);
    if (first) start_holding(since);
    if (engine_.logging(2)) {
        engine_.log(2, "client " + publisher.client_id() + " paused: " + client_id() + " congested");
    }
}

// Wakes every publisher that waits for nothing else any more.
void session::release_throttled() {
    if (!throttling_any()) return;
    for (session* p : more_->throttled) {
        std::erase(p->more_->waiting_on, this);
        if (p->more_->waiting_on.empty()) p->wake();
    }
    more_->throttled.clear();
}

void session::hold_shard(std::size_t from, clock::time_point since) {
    auto& held = more().held_shards;
    if (std::find(held.begin(), held.end(), from) != held.end()) return;
    const bool first = !holding_any();
    held.push_back(static_cast<std::uint16_t>(from));
    engine_.hold_shard(from);
    if (first) start_holding(since);
    if (engine_.logging(2)) {
        engine_.log(2, "shard " + std::to_string(from) + " paused: " + client_id() + " congested");
    }
}

void session::release_shards(bool resume) {
    if (!holding_shards()) return;
    for (const std::uint16_t from : more_->held_shards) engine_.release_shard(from, resume);
    more_->held_shards.clear();
}

// Called once the first publisher or shard is on the lists (deadline() counts it).
void session::start_holding(clock::time_point since) {
    more_->held_since = since;
    if (engine_.config().backpressure_timeout.count() != 0 && observer_ != nullptr) {
        observer_->deadline_moved();  // the hold's end may come before the keep-alive's
    }
}

// A subscriber that acknowledged nothing for backpressure_timeout while congested holds up
// nobody any more: its publishers and shards go on, and what passes its queue bounds is
// dropped (counted) until it drains, rather than one stuck client stalling others.
void session::expire_hold() {
    ++engine_.stats().backpressure_timeouts;
    if (engine_.logging(1)) {
        engine_.log(1, "client " + client_id() + ": no acknowledgement for " +
                           std::to_string(engine_.config().backpressure_timeout.count()) +
                           " ms while congested; " + std::to_string(throttling()) +
                           " publisher(s) and " + std::to_string(shards_held()) +
                           " shard(s) released, messages over its queue bounds are dropped "
                           "until it drains (backpressure_timeout)");
    }
    release_throttled();
    release_shards();
    more_->hold_expired = true;
}

// This publisher goes away: the subscribers it waited for forget it.
void session::stop_waiting() {
    if (!waiting()) return;
    for (session* s : more_->waiting_on) std::erase(s->more_->throttled, this);
    more_->waiting_on.clear();
}

// Ids go round 1..65535. One scan of the window finds how many steps the counter can take
// before it reaches an id in flight; until then every id it gives is free: the entries of
// the scan are that far ahead, and ids given since are behind the counter, a whole round
// away. Entries come into the window only with ids from here while this connection is
// attached (free_ids_ starts at 0 with each connection), so the count stays exact; with a
// window far below 65,535 a scan happens about once per round of the counter.
std::uint16_t session::next_packet_id() noexcept {
    auto& next = ds_->next_packet_id;
    const auto step = [](std::uint16_t id) {
        return id == 0xFFFF ? std::uint16_t{1} : static_cast<std::uint16_t>(id + 1);
    };
    while (free_ids_ == 0) {
        // Steps from `next` to each id in flight; 0 means `next` itself is taken.
        std::uint32_t nearest = 0xFFFF;  // none in flight: a whole round is free
        for (const auto& o : ds_->inflight) {
            const std::uint32_t ahead = (static_cast<std::uint32_t>(o.id) + 0xFFFF - next) % 0xFFFF;
            nearest = std::min(nearest, ahead);
        }
        if (nearest != 0) {
            free_ids_ = static_cast<std::uint16_t>(nearest);
            break;
        }
        next = step(next);
    }
    --free_ids_;
    const std::uint16_t id = next;
    next = step(next);
    return id;
}

}  // namespace mqtt::broker
