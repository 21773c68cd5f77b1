// The message flows of a session: inbound PUBLISH with its QoS 1/2 acknowledgements and
// SUBSCRIBE / UNSUBSCRIBE. Outbound deliveries are in session_outbound.cpp.

#include <algorithm>
#include <utility>

#include "mqtt/broker/acks.hpp"
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

// ---- limits -----------------------------------------------------------------------------

bool session::topic_within_limits(std::string_view topic) const noexcept {
    const auto& cfg = engine_.config();
    if (topic.size() > cfg.max_topic_length) return false;
    // A topic has at most size + 1 levels: a short one needs no count (the usual case).
    if (topic.size() < cfg.max_topic_levels) return true;
    // Levels are separators + 1; stop counting once over.
    std::size_t levels = 1;
    for (const char ch : topic) {
        if (ch == '/' && ++levels > cfg.max_topic_levels) return false;
    }
    return true;
}

// max_publish_rate as a virtual scheduler (GCRA): each PUBLISH moves rate_next one
// interval on; a burst of `rate` packets at once is allowed, then input pauses until the
// next one is on time. The packets in hand are still handled: the driver stops reading.
void session::count_publish(clock::time_point now) {
    const std::uint32_t rate = engine_.config().max_publish_rate;
    if (rate == 0) return;
    const clock::duration interval = clock::duration{std::chrono::seconds{1}} / rate;
    auto& x = more();
    x.rate_next = std::max(x.rate_next, now) + interval;
    const auto resume = x.rate_next - interval * (rate - 1);
    if (resume > now) {
        if (x.rate_resume == clock::time_point{}) ++engine_.stats().rate_limited;
        x.rate_resume = resume;
    } else {
        x.rate_resume = {};
    }
}

bool session::admit_publish(const protocol::publish_view& p, reason_code& rc) {
    const bool v5 = protocol::is_v5(version_);
    std::string_view why;
    if (!topic_within_limits(p.topic)) {
        ++engine_.stats().dropped_topic_limit;
        rc = reason_code::topic_name_invalid;
        why = "topic over max_topic_length or max_topic_levels";
    } else if (engine_.memory_full() && !(p.retain && p.payload.empty())) {
        // A retained PUBLISH with an empty payload frees memory: let it through.
        ++engine_.stats().dropped_memory_limit;
        rc = reason_code::quota_exceeded;
        why = "memory_limit reached";
        if (engine_.logging(1)) {
            engine_.log(1, "client " + client_id() + " publish to " + std::string{p.topic} +
                               " refused: memory_limit reached");
        }
    } else if (engine_.store_failing() && p.qos_level != qos::at_most_once) {
        ++engine_.stats().dropped_store_failing;
        rc = reason_code::quota_exceeded;
        why = "the store cannot write";
        if (engine_.logging(1)) {
            engine_.log(1, "client " + client_id() + " publish to " + std::string{p.topic} +
                               " refused: the store cannot write");
        }
    } else {
        return true;
    }
    // 3.1/3.1.1 cannot say why: a QoS 0 message is dropped; a QoS 1/2 one is not
    // acknowledged and the connection closes, so the client keeps it and sends it again
    // when it reconnects (MQTT-4.4.0-1) instead of believing it delivered.
    if (!v5 && p.qos_level != qos::at_most_once) {
        close(rc, why, false, true);
        return false;
    }
    return true;
}

// ---- inbound PUBLISH --------------------------------------------------------------------

void session::on_publish(protocol::publish_view& p, clock::time_point now) {
    const bool v5 = protocol::is_v5(version_);
    count_publish(now);
    if (static_cast<unsigned>(p.qos_level) > max_qos_) {
        // Above the Maximum QoS announced (max_qos): 5.0 DISCONNECT 0x9B (MQTT-3.3.1-14
        // area); 3.1.1 closed, as Mosquitto 2 does.
        protocol_violation(reason_code::qos_not_supported, "publish qos over max_qos");
        return;
    }
    if (v5 && p.props.topic_alias && !resolve_topic_alias(p)) return;
    if (p.retain && !engine_.config().retain_available) {
        // Retain Available 0 was announced: a retained PUBLISH is an error in 5.0
        // (MQTT-3.3.1-16 area, §3.2.2.3.5); 3.1.1 has no way to say so, the flag is ignored.
        if (v5) {
            protocol_violation(reason_code::retain_not_supported, "retain not supported");
            return;
        }
        p.retain = false;
    }
    const qos q = p.qos_level;
    const std::uint16_t id = p.packet_id;
    auto& qos2_in = ds_->qos2_in;
    if (q == qos::exactly_once) {
        const auto it = std::lower_bound(qos2_in.begin(), qos2_in.end(), id);
        if (it != qos2_in.end() && *it == id) {
            // A resend before our PUBREC arrived (also across a reconnect, as the ids live
            // in the session): acknowledge again, do not route twice.
            append_success_ack(out_.bytes, protocol::packet_type::pubrec, id);
            return;
        }
        if (qos2_in.size() >= engine_.config().receive_maximum) {  // §3.3.4
            protocol_violation(reason_code::receive_maximum_exceeded, "receive maximum");
            return;
        }
    }
    reason_code rc = reason_code::success;
    if (!admit_publish(p, rc)) return;
    if (rc != reason_code::success) {
        // Refused for a limit: acknowledged with rc (5.0), or dropped (QoS 0).
    } else if (protocol::is_system_topic(p.topic) &&
               !engine_.security(ds_->security_slot).publish_sys) {
        // $SYS belongs to the broker; clients do not publish there (its bridges may).
        ++engine_.stats().dropped_sys_publish;
        rc = reason_code::not_authorized;
    } else if (!engine_.may_publish(*ds_, p.topic)) {
        // acl_file: acknowledged (0x87 in 5.0, success before) and dropped, as Mosquitto does.
        ++engine_.stats().dropped_acl;
        rc = reason_code::not_authorized;
        if (engine_.logging(1)) {
            engine_.log(1, "client " + client_id() + " denied publish to " + std::string{p.topic} +
                               " by acl");
        }
    } else {
        engine_.stats().count_received(static_cast<unsigned>(q), p.payload.size());
        const auto reached = engine_.publish(ds_, make_message(std::move(p), now));
        // 0x10 only when the broker knows nobody matched (a MAY, §3.4.2.1): with threads > 1
        // this shard sees its own subscribers only, the others may have some.
        if (reached == 0 && engine_.shard_count() == 1) rc = reason_code::no_matching_subscribers;
    }
    if (!v5) rc = reason_code::success;
    if (q == qos::at_least_once) {
        if (rc == reason_code::success) {
            append_success_ack(out_.bytes, protocol::packet_type::puback, id);
        } else {
            send(protocol::puback_packet{id, rc, {}});
        }
    } else if (q == qos::exactly_once) {
        // A failure code ends the exchange: no PUBREL will follow (MQTT-4.3.3).
        if (!protocol::is_error(rc)) {
            qos2_in.insert(std::lower_bound(qos2_in.begin(), qos2_in.end(), id), id);
            if (auto* store = engine_.store()) store->qos2_received(*ds_, id);
        }
        if (rc == reason_code::success) {
            append_success_ack(out_.bytes, protocol::packet_type::pubrec, id);
        } else {
            send(protocol::pubrec_packet{id, rc, {}});
        }
    }
}

// Topic aliases from the client (5.0 §3.3.2.3.4): per connection, up to the Topic Alias
// Maximum we announced. A PUBLISH with a topic and an alias sets the mapping; one with an
// empty topic uses it. The alias is this connection's business: the message routed has none.
bool session::resolve_topic_alias(protocol::publish_view& p) {
    const std::uint16_t alias = *p.props.topic_alias;  // 0 is refused by the decoder
    if (alias > alias_in_max_) {  // MQTT-3.3.2-9
        protocol_violation(reason_code::topic_alias_invalid, "topic alias out of range");
        return false;
    }
    auto& aliases = more().aliases_in;
    if (aliases.size() < alias) aliases.resize(alias);
    auto& topic = aliases[alias - 1];
    if (!p.topic.empty()) {
        topic = p.topic;
    } else if (topic.empty()) {  // no mapping yet: a Protocol Error (§3.3.4)
        protocol_violation(reason_code::protocol_error, "unknown topic alias");
        return false;
    } else {
        p.topic = topic;
    }
    return true;  // the alias stays in p.props: make_message takes it out
}

void session::on_pubrel(std::uint16_t id) {
    auto& qos2_in = ds_->qos2_in;
    const auto it = std::lower_bound(qos2_in.begin(), qos2_in.end(), id);
    if (it != qos2_in.end() && *it == id) {
        qos2_in.erase(it);
        if (auto* store = engine_.store()) store->qos2_released(*ds_, id);
        append_success_ack(out_.bytes, protocol::packet_type::pubcomp, id);
        return;
    }
    send(protocol::pubcomp_packet{id, reason_code::packet_identifier_not_found, {}});
}

// ---- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------

void session::on_subscribe(protocol::subscribe_packet&& p, clock::time_point now) {
    const bool v5 = protocol::is_v5(version_);
    std::uint32_t sub_id = 0;
    if (v5) {
        const auto& ids = p.props.subscription_identifiers;
        // One Subscription Identifier at most in a SUBSCRIBE (§3.8.2.1.2); 0 is refused by
        // the decoder.
        if (ids.size() > 1) {
            protocol_violation(reason_code::protocol_error, "two subscription identifiers");
            return;
        }
        if (!ids.empty()) sub_id = ids.front();
        // No Local on a Shared Subscription is a Protocol Error (MQTT-3.8.3-4).
        for (const auto& s : p.subscriptions) {
            if (s.options.no_local && protocol::parse_shared(s.filter).is_shared()) {
                protocol_violation(reason_code::protocol_error,
                                   "no local on a shared subscription");
                return;
            }
        }
    }
    // A 3.1/3.1.1 bridge (protocol level 0x83/0x84) gets No Local and Retain As Published on
    // its subscriptions, as it would ask for with 5.0: what it forwarded to us does not go
    // back to it, and retained messages reach the other broker still marked retained.
    if (bridge_)
        for (auto& s : p.subscriptions)
            if (!protocol::parse_shared(s.filter).is_shared()) {
                s.options.no_local = true;
                s.options.retain_as_published = true;
            }
    protocol::suback_packet ack;
    ack.packet_id = p.packet_id;
    ack.codes.reserve(p.subscriptions.size());
    std::vector<std::size_t> retained_for;  // indexes of filters whose retained go out
    for (std::size_t i = 0; i < p.subscriptions.size(); ++i) {
        bool send_retained = false;
        ack.codes.push_back(subscribe_one(p.subscriptions[i], sub_id, send_retained));
        if (send_retained) retained_for.push_back(i);
    }
    send(ack);  // SUBACK first, then the retained messages (MQTT-3.3.1-6)
    if (engine_.logging(1))
        for (std::size_t i = 0; i < p.subscriptions.size(); ++i) {
            const auto code = ack.codes[i];
            engine_.log(1, "client " + client_id() + " subscribed to " + p.subscriptions[i].filter +
                               (protocol::is_error(code)
                                    ? ": refused, " + std::string(protocol::to_string(code))
                                    : " (granted QoS " +
                                          std::to_string(static_cast<int>(code)) + ")"));
        }
    for (const std::size_t i : retained_for) {
        const auto& s = p.subscriptions[i];
        const auto granted = std::min(s.options.max_qos, static_cast<qos>(max_qos_));
        engine_.send_retained(*this, s.filter, granted, now, sub_id);
    }
}

reason_code session::subscribe_one(const protocol::subscription& s, std::uint32_t id,
                                   bool& send_retained) {
    const bool v5 = protocol::is_v5(version_);
    const auto invalid = v5 ? reason_code::topic_filter_invalid : reason_code::unspecified_error;
    // `$share/<name>/<filter>` is a shared subscription for 3.1.1 clients too, as brokers
    // commonly offer; any other filter whose first level is `$share` is refused.
    const auto shared = protocol::parse_shared(s.filter);
    if (shared.is_malformed() || !protocol::is_valid_topic_filter(s.filter)) return invalid;
    if (!topic_within_limits(s.filter)) return invalid;  // max_topic_length / _levels
    // acl_file: refused when the client may read nothing the filter (of a shared
    // subscription: its inner filter) matches; 3.1.1 has only 0x80. A subscription to that
    // filter made earlier, under other rules, ends with the refusal. No retained messages.
    if (!engine_.may_subscribe(*ds_, shared.filter)) {
        engine_.unsubscribe(*ds_, s.filter);
        return v5 ? reason_code::not_authorized : reason_code::unspecified_error;
    }
    const bool known = ds_->subscriptions.contains(s.filter);
    if (!known && ds_->subscriptions.size() >= engine_.config().max_subscriptions) {
        return v5 ? reason_code::quota_exceeded : reason_code::unspecified_error;
    }
    // Granted at most the listener's max_qos (as Mosquitto 2).
    auto options = s.options;
    if (static_cast<unsigned>(options.max_qos) > max_qos_) options.max_qos = static_cast<qos>(max_qos_);
    const bool added = engine_.subscribe(*ds_, s.filter, options, id);
    using protocol::retain_handling;
    // No retained messages for a shared subscription (MQTT 5.0 §4.8.2).
    send_retained = !shared.is_shared() &&
                    (s.options.retain == retain_handling::send_on_subscribe ||
                     (s.options.retain == retain_handling::send_if_new_subscription && added));
    return granted_code(options.max_qos);
}

void session::on_unsubscribe(const protocol::unsubscribe_packet& p) {
    const bool v5 = protocol::is_v5(version_);
    protocol::unsuback_packet ack;
    ack.packet_id = p.packet_id;
    for (const auto& filter : p.filters) {
        reason_code rc = reason_code::no_subscription_existed;
        if (!protocol::is_valid_topic_filter(filter)) {
            rc = reason_code::topic_filter_invalid;
        } else if (engine_.unsubscribe(*ds_, filter)) {
            rc = reason_code::success;
        }
        if (engine_.logging(1))
            engine_.log(1, "client " + client_id() + " unsubscribed from " + filter +
                               (rc == reason_code::success
                                    ? std::string()
                                    : " (" + std::string(protocol::to_string(rc)) + ")"));
        if (v5) ack.codes.push_back(rc);  // 3.1.1 UNSUBACK has no payload
    }
    send(ack);
}

}  // namespace mqtt::broker
