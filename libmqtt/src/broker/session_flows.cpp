// The message flows of a session: inbound PUBLISH with its QoS 1/2 acknowledgements,
// outbound deliveries with packet ids, inflight window and bounded queue, and
// SUBSCRIBE / UNSUBSCRIBE.

#include <algorithm>
#include <utility>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {
namespace {

using protocol::qos;
using protocol::reason_code;

reason_code granted_code(qos q) noexcept {
    return static_cast<reason_code>(static_cast<std::uint8_t>(q));  // 0x00, 0x01, 0x02
}

}  // namespace

// ---- inbound PUBLISH --------------------------------------------------------------------

void session::on_publish(protocol::publish_packet&& p, clock::time_point now) {
    const bool v5 = protocol::is_v5(version_);
    // We announce no Topic Alias Maximum, so any alias is out of range (§3.3.2.3.4).
    if (v5 && p.props.topic_alias) {
        protocol_violation(reason_code::topic_alias_invalid, "topic alias not allowed");
        return;
    }
    const qos q = p.qos_level;
    const std::uint16_t id = p.packet_id;
    if (q == qos::exactly_once) {
        const auto it = std::lower_bound(qos2_in_.begin(), qos2_in_.end(), id);
        if (it != qos2_in_.end() && *it == id) {
            // A resend before our PUBREC arrived: acknowledge again, do not route twice.
            send(protocol::pubrec_packet{id, reason_code::success, {}});
            return;
        }
        if (qos2_in_.size() >= engine_.config().receive_maximum) {  // §3.3.4
            protocol_violation(reason_code::receive_maximum_exceeded, "receive maximum");
            return;
        }
    }
    reason_code rc = reason_code::success;
    if (protocol::is_system_topic(p.topic)) {
        // $SYS belongs to the broker; clients do not publish there.
        ++engine_.stats().dropped_sys_publish;
        rc = reason_code::not_authorized;
    } else {
        ++engine_.stats().messages_received;
        const auto reached = engine_.publish(this, make_message(std::move(p), now));
        if (reached == 0) rc = reason_code::no_matching_subscribers;
    }
    if (!v5) rc = reason_code::success;
    if (q == qos::at_least_once) {
        send(protocol::puback_packet{id, rc, {}});
    } else if (q == qos::exactly_once) {
        // A failure code ends the exchange: no PUBREL will follow (MQTT-4.3.3).
        if (!protocol::is_error(rc)) {
            qos2_in_.insert(std::lower_bound(qos2_in_.begin(), qos2_in_.end(), id), id);
        }
        send(protocol::pubrec_packet{id, rc, {}});
    }
}

void session::on_pubrel(std::uint16_t id) {
    const auto it = std::lower_bound(qos2_in_.begin(), qos2_in_.end(), id);
    if (it != qos2_in_.end() && *it == id) {
        qos2_in_.erase(it);
        send(protocol::pubcomp_packet{id, reason_code::success, {}});
        return;
    }
    send(protocol::pubcomp_packet{id, reason_code::packet_identifier_not_found, {}});
}

// ---- outbound acknowledgements ----------------------------------------------------------

void session::on_puback(std::uint16_t id) {
    const auto it = std::find_if(inflight_.begin(), inflight_.end(), [&](const outbound& o) {
        return o.id == id && o.waiting == stage::puback;
    });
    if (it == inflight_.end()) return;  // unknown id: nothing to release
    inflight_.erase(it);
    pump();
}

void session::on_pubrec(const protocol::pubrec_packet& p) {
    const auto it = std::find_if(inflight_.begin(), inflight_.end(), [&](const outbound& o) {
        return o.id == p.packet_id && o.waiting != stage::puback;
    });
    if (it == inflight_.end()) {
        send(protocol::pubrel_packet{p.packet_id, reason_code::packet_identifier_not_found, {}});
        return;
    }
    if (protocol::is_error(p.code)) {  // the receiver refused it: the exchange ends here
        inflight_.erase(it);
        pump();
        return;
    }
    it->waiting = stage::pubcomp;
    send(protocol::pubrel_packet{p.packet_id, reason_code::success, {}});
}

void session::on_pubcomp(std::uint16_t id) {
    const auto it = std::find_if(inflight_.begin(), inflight_.end(), [&](const outbound& o) {
        return o.id == id && o.waiting == stage::pubcomp;
    });
    if (it == inflight_.end()) return;
    inflight_.erase(it);
    pump();
}

// ---- outbound deliveries ----------------------------------------------------------------

void session::deliver(const message_ptr& m, qos q, bool retain) {
    if (state_ != session_state::connected) return;
    const std::size_t size = publish_size(*m, version_, q);
    // Never send more than the client accepts (5.0 §3.1.2.11.4): drop it instead.
    if ((client_max_packet_ != 0 && size > client_max_packet_) ||
        size > protocol::max_packet_size) {
        ++engine_.stats().dropped_too_large;
        return;
    }
    if (q == qos::at_most_once) {
        if (out_.size() > engine_.config().max_outbound_bytes) {
            ++engine_.stats().dropped_qos0_slow;
            return;
        }
        append_publish(out_, *m, version_, q, 0, retain);
        ++engine_.stats().messages_sent;
    } else if (queue_.empty() && can_send_qos12()) {
        send_qos12(m, q, retain);
    } else {
        enqueue(m, q, retain);
    }
    wake();
}

bool session::can_take(qos q) const noexcept {
    if (state_ != session_state::connected) return false;
    const auto& cfg = engine_.config();
    if (q == qos::at_most_once) return out_.size() <= cfg.max_outbound_bytes;
    return queue_.size() < cfg.max_queued_messages && queued_bytes_ < cfg.max_queued_bytes;
}

bool session::can_send_qos12() const noexcept {
    return inflight_.size() < inflight_cap_ && out_.size() <= engine_.config().max_outbound_bytes;
}

void session::send_qos12(const message_ptr& m, qos q, bool retain) {
    const std::uint16_t id = next_packet_id();
    inflight_.push_back(outbound{id, q == qos::at_least_once ? stage::puback : stage::pubrec});
    append_publish(out_, *m, version_, q, id, retain);
    ++engine_.stats().messages_sent;
}

void session::enqueue(const message_ptr& m, qos q, bool retain) {
    const auto& cfg = engine_.config();
    const std::size_t cost = m->topic.size() + m->payload.size();
    if (queue_.size() >= cfg.max_queued_messages || queued_bytes_ + cost > cfg.max_queued_bytes) {
        ++engine_.stats().dropped_queue_full;
        return;
    }
    queue_.push_back(queued_delivery{m, q, retain});
    queued_bytes_ += cost;
}

void session::pump() {
    if (state_ != session_state::connected) return;
    while (!queue_.empty() && can_send_qos12()) {
        queued_delivery d = std::move(queue_.front());
        queue_.pop_front();
        queued_bytes_ -= d.msg->topic.size() + d.msg->payload.size();
        send_qos12(d.msg, d.q, d.retain);
    }
}

std::uint16_t session::next_packet_id() noexcept {
    // The inflight window is far below 65,535, so a free id is always near.
    for (;;) {
        const std::uint16_t id = next_id_;
        next_id_ = next_id_ == 0xFFFF ? 1 : static_cast<std::uint16_t>(next_id_ + 1);
        const bool used = std::any_of(inflight_.begin(), inflight_.end(),
                                      [&](const outbound& o) { return o.id == id; });
        if (!used) return id;
    }
}

// ---- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------

void session::on_subscribe(protocol::subscribe_packet&& p, clock::time_point now) {
    const bool v5 = protocol::is_v5(version_);
    // We announce Subscription Identifier Available = 0 (§3.2.2.3.12).
    if (v5 && !p.props.subscription_identifiers.empty()) {
        protocol_violation(reason_code::subscription_identifiers_not_supported,
                           "subscription identifiers not supported");
        return;
    }
    protocol::suback_packet ack;
    ack.packet_id = p.packet_id;
    ack.codes.reserve(p.subscriptions.size());
    std::vector<std::size_t> retained_for;  // indexes of filters whose retained go out
    for (std::size_t i = 0; i < p.subscriptions.size(); ++i) {
        bool send_retained = false;
        ack.codes.push_back(subscribe_one(p.subscriptions[i], send_retained));
        if (send_retained) retained_for.push_back(i);
    }
    send(ack);  // SUBACK first, then the retained messages (MQTT-3.3.1-6)
    for (const std::size_t i : retained_for) {
        const auto& s = p.subscriptions[i];
        engine_.send_retained(*this, s.filter, s.options.max_qos, now);
    }
}

reason_code session::subscribe_one(const protocol::subscription& s, bool& send_retained) {
    const bool v5 = protocol::is_v5(version_);
    if (!protocol::is_valid_topic_filter(s.filter)) {
        return v5 ? reason_code::topic_filter_invalid : reason_code::unspecified_error;
    }
    if (v5) {
        const auto shared = protocol::parse_shared(s.filter);
        if (shared.is_malformed()) return reason_code::topic_filter_invalid;
        if (shared.is_shared()) return reason_code::shared_subscriptions_not_supported;
    }
    const bool known = filters_.contains(s.filter);
    if (!known && filters_.size() >= engine_.config().max_subscriptions) {
        return v5 ? reason_code::quota_exceeded : reason_code::unspecified_error;
    }
    const bool added = engine_.subscribe(*this, s.filter, s.options);
    if (added) filters_.insert(s.filter);
    using protocol::retain_handling;
    send_retained = s.options.retain == retain_handling::send_on_subscribe ||
                    (s.options.retain == retain_handling::send_if_new_subscription && added);
    return granted_code(s.options.max_qos);
}

void session::on_unsubscribe(const protocol::unsubscribe_packet& p) {
    const bool v5 = protocol::is_v5(version_);
    protocol::unsuback_packet ack;
    ack.packet_id = p.packet_id;
    for (const auto& filter : p.filters) {
        reason_code rc = reason_code::no_subscription_existed;
        if (!protocol::is_valid_topic_filter(filter)) {
            rc = reason_code::topic_filter_invalid;
        } else if (engine_.unsubscribe(*this, filter)) {
            rc = reason_code::success;
            filters_.erase(filter);
        }
        if (v5) ack.codes.push_back(rc);  // 3.1.1 UNSUBACK has no payload
    }
    send(ack);
}

}  // namespace mqtt::broker
