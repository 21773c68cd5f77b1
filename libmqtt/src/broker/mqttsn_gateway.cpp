// The MQTT-SN gateway's per-client translation (see mqttsn_gateway.hpp): MQTT-SN messages
// become MQTT 3.1.1 packets fed to a broker::session; the session's output becomes
// MQTT-SN datagrams.

#include "mqtt/broker/mqttsn_gateway.hpp"

#include <algorithm>

#include "mqtt/broker/engine.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {
namespace sn = protocol::mqttsn;
using protocol::protocol_version;

namespace {

protocol::qos to_mqtt(sn::qos q) noexcept {
    switch (q) {
        case sn::qos::at_least_once: return protocol::qos::at_least_once;
        case sn::qos::exactly_once: return protocol::qos::exactly_once;
        default: return protocol::qos::at_most_once;  // 0 and -1
    }
}

sn::qos to_sn(protocol::qos q) noexcept { return static_cast<sn::qos>(q); }

bool is_short(const std::string& topic) noexcept { return topic.size() == 2; }

std::vector<std::uint8_t> encoded(const sn::message& m) {
    auto bytes = sn::encode(m);
    return bytes ? std::move(*bytes) : std::vector<std::uint8_t>{};
}

}  // namespace

mqttsn_unattached mqttsn_handle_unattached(engine& e, const mqttsn_settings& s,
                                           std::span<const std::uint8_t> datagram,
                                           clock::time_point now,
                                           std::vector<std::uint8_t>& reply) {
    reply.clear();
    auto m = sn::decode(datagram);
    if (!m) {
        ++e.stats().mqttsn_datagrams_malformed;
        return mqttsn_unattached::dropped;
    }
    if (std::holds_alternative<sn::connect>(*m)) return mqttsn_unattached::new_client;
    const auto dropped = [&] {
        ++e.stats().mqttsn_datagrams_unexpected;
        return mqttsn_unattached::dropped;
    };
    if (std::holds_alternative<sn::searchgw>(*m)) {
        reply = encoded(sn::gwinfo{s.gateway_id, {}});
        return mqttsn_unattached::answered;
    }
    auto* p = std::get_if<sn::publish>(&*m);
    if (p == nullptr || p->qos != sn::qos::minus_one) return dropped();
    // QoS -1: no session, so no user name and no ACL entry; refused whenever the broker
    // asks clients to identify themselves or restricts topics.
    const auto& sec = e.security(s.security_slot);
    if (!sec.allow_anonymous || sec.acl != nullptr) return dropped();
    std::string topic;
    if (p->topic_type == sn::topic_id_type::short_name) {
        topic = sn::short_topic_name(p->topic_id);
    } else if (p->topic_type == sn::topic_id_type::predefined) {
        auto it = s.predefined.find(p->topic_id);
        if (it == s.predefined.end()) return dropped();
        topic = it->second;
    } else {
        return dropped();  // normal ids exist only within a connection
    }
    if (!protocol::is_valid_topic_name(topic) || protocol::is_dollar_topic(topic))
        return dropped();
    protocol::publish_packet pp;
    pp.topic = std::move(topic);
    pp.payload = std::move(p->data);
    pp.retain = p->retain;
    e.publish(nullptr, make_message(std::move(pp), now));
    return mqttsn_unattached::answered;
}

std::string mqttsn_claimed_client_id(std::span<const std::uint8_t> datagram) {
    auto m = sn::decode(datagram);
    if (!m) return {};
    if (auto* p = std::get_if<sn::pingreq>(&*m)) return std::move(p->client_id);
    if (auto* c = std::get_if<sn::connect>(&*m)) return std::move(c->client_id);
    return {};
}

mqttsn_client::mqttsn_client(engine& e, const mqttsn_settings& s, clock::time_point now,
                             std::string peer)
    : settings_(s), stats_(e.stats()), session_(e, now, std::move(peer)) {
    session_.set_security_slot(s.security_slot);
    session_.set_listener(s.listener);
    session_.set_inflight_limit(s.max_inflight);
    ++stats_.mqttsn_clients;
}

mqttsn_client::~mqttsn_client() {
    --stats_.mqttsn_clients;
}

// ---- input ------------------------------------------------------------------------------

void mqttsn_client::on_datagram(std::span<const std::uint8_t> datagram, clock::time_point now) {
    if (closed_) return;
    now_ = now;
    auto m = sn::decode(datagram);
    if (!m) {
        // Malformed: dropped and counted, the client stays.
        ++dropped_;
        ++stats_.mqttsn_datagrams_malformed;
        return;
    }
    // Deliveries the session produced since the last call are taken in the state they
    // arrived in (held if the client was asleep), before this datagram changes it.
    pump();
    handle(std::move(*m), now);
    pump();
    sleep_again_if_done();
}

void mqttsn_client::on_timer(clock::time_point now) {
    if (closed_) return;
    now_ = now;
    if (state_ == sleep_state::asleep && now >= sleep_deadline_) return lose(now);
    keep_session_alive(now);
    session_.on_timer(now);
    pump();
    if (closed_) return;
    if (state_ != sleep_state::asleep) retransmit_due(now);
    if (!closed_) sleep_again_if_done();
}

void mqttsn_client::on_transport_closed(clock::time_point now) {
    if (closed_) return;
    now_ = now;
    session_.on_transport_closed(now);
    pump();
    closed_ = true;
}

clock::time_point mqttsn_client::deadline() const noexcept {
    auto d = session_.deadline();
    if (state_ == sleep_state::asleep) return std::min(d, sleep_deadline_);
    for (const auto& u : unacked_) d = std::min(d, u.due);
    return d;
}

// ---- retransmission and sleep ------------------------------------------------------------

void mqttsn_client::emit(sn::message&& m, answer a, std::uint16_t msg_id) {
    if (state_ == sleep_state::asleep) {
        const auto* p = std::get_if<sn::publish>(&m);
        if (p != nullptr && a == answer::none) {
            if (held_qos0_ >= settings_.max_buffered) {
                ++buffer_dropped_;
                ++stats_.mqttsn_dropped_sleep_buffer;
                return;
            }
            ++held_qos0_;
        }
        outbox_.push_back({std::move(m), a, msg_id});
        return;
    }
    send(m);
    if (a != answer::none) track(std::move(m), a, msg_id);
}

void mqttsn_client::track(sn::message&& m, answer a, std::uint16_t msg_id) {
    // A PUBLISH the session resends (DUP, at a resumed session) replaces its entry.
    settle(a, msg_id);
    unacked_.push_back({a, msg_id, std::move(m), 0, now_ + settings_.retry_interval});
}

bool mqttsn_client::settle(answer a, std::uint16_t msg_id) {
    auto it = std::find_if(unacked_.begin(), unacked_.end(),
                           [&](const unacked& u) { return u.expects == a && u.msg_id == msg_id; });
    if (it == unacked_.end()) return false;
    unacked_.erase(it);
    return true;
}

void mqttsn_client::retransmit_due(clock::time_point now) {
    for (const auto& u : unacked_)
        if (u.due <= now && u.resent >= settings_.retry_count) return lose(now);
    for (auto& u : unacked_) {
        if (u.due > now) continue;
        if (auto* p = std::get_if<sn::publish>(&u.m)) p->dup = true;
        send(u.m);
        ++u.resent;
        ++retransmitted_;
        ++stats_.mqttsn_retransmissions;
        u.due = now + settings_.retry_interval;
    }
}

void mqttsn_client::resend_all() {
    for (auto& u : unacked_) {
        if (auto* p = std::get_if<sn::publish>(&u.m)) p->dup = true;
        send(u.m);
        ++retransmitted_;
        ++stats_.mqttsn_retransmissions;
        u.resent = 0;  // a fresh count: the client was asleep, not deaf
        u.due = now_ + settings_.retry_interval;
    }
}

void mqttsn_client::wake(sleep_state to, clock::time_point now) {
    const bool was_asleep = state_ == sleep_state::asleep;
    state_ = to;
    sleep_deadline_ = clock::time_point::max();
    if (!was_asleep) return;
    keep_session_alive(now);
    resend_all();
    auto waiting = std::exchange(outbox_, {});
    held_qos0_ = 0;
    for (auto& [msg, a, id] : waiting) emit(std::move(msg), a, id);
    // QoS 0 deliveries still waiting for a REGACK count against the buffer again.
    for (const auto& [id, publishes] : awaiting_regack_)
        for (const auto& p : publishes) held_qos0_ += p.qos == sn::qos::at_most_once ? 1 : 0;
}

void mqttsn_client::go_asleep(clock::time_point now) {
    state_ = sleep_state::asleep;
    // The same tolerance as for the keep-alive: 1.5 x the Duration.
    sleep_deadline_ = now + sleep_duration_ + sleep_duration_ / 2;
}

void mqttsn_client::sleep_again_if_done() {
    if (state_ != sleep_state::awake || closed_) return;
    if (!unacked_.empty() || !awaiting_regack_.empty() || !outbox_.empty()) return;
    send(sn::pingresp{});
    go_asleep(now_);
}

void mqttsn_client::keep_session_alive(clock::time_point now) {
    // Asleep or awake, the client's silence is timed by the sleep timer, not by the
    // session's keep-alive: a PINGREQ of the gateway's own keeps the session open.
    if (state_ == sleep_state::active || session_.deadline() > now) return;
    ++swallow_pingresp_;
    feed(protocol::pingreq_packet{}, now);
}

void mqttsn_client::lose(clock::time_point now) {
    // The client is unreachable: the session ends as for a broken connection (Will).
    lost_ = true;
    ++stats_.mqttsn_clients_lost;
    session_.on_transport_closed(now);
    pump();
    closed_ = true;
}

void mqttsn_client::handle(sn::message&& m, clock::time_point now) {
    if (auto* c = std::get_if<sn::connect>(&m)) return on_connect(std::move(*c), now);
    if (pending_connect_) {
        // Between CONNECT and CONNACK only the Will exchange is expected.
        if (auto* t = std::get_if<sn::willtopic>(&m)) {
            if (t->topic.empty()) return finish_connect(std::nullopt, now);
            pending_will_topic_ = std::move(*t);
            return send(sn::willmsgreq{});
        }
        if (auto* w = std::get_if<sn::willmsg>(&m); w != nullptr && pending_will_topic_) {
            protocol::will_message will;
            will.topic = std::move(pending_will_topic_->topic);
            will.payload = std::move(w->message);
            will.qos_level = to_mqtt(pending_will_topic_->qos);
            will.retain = pending_will_topic_->retain;
            return finish_connect(std::move(will), now);
        }
        return drop();
    }
    if (!connected_) return drop();
    std::visit(
        [&](auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, sn::publish>) {
                on_publish(std::move(v), now);
            } else if constexpr (std::is_same_v<T, sn::register_>) {
                on_register(v);
            } else if constexpr (std::is_same_v<T, sn::regack>) {
                settle(answer::regack, v.msg_id);
                auto it = awaiting_regack_.find(v.msg_id);
                if (it == awaiting_regack_.end()) return drop();
                // Accepted or not, the held deliveries go (a refused topic id makes the
                // client answer them with PUBACK invalid_topic_id, which settles them).
                auto publishes = std::move(it->second);
                awaiting_regack_.erase(it);
                std::erase_if(unacked_topics_, [&](const auto& kv) { return kv.second == v.msg_id; });
                for (auto& p : publishes) {
                    const bool qos0 = p.qos == sn::qos::at_most_once;
                    if (qos0 && held_qos0_ > 0) --held_qos0_;
                    const auto id = p.msg_id;
                    emit(std::move(p), qos0 ? answer::none : answer::puback_pubrec, id);
                }
            } else if constexpr (std::is_same_v<T, sn::puback>) {
                settle(answer::puback_pubrec, v.msg_id);
                feed(protocol::puback_packet{v.msg_id, {}, {}}, now);
            } else if constexpr (std::is_same_v<T, sn::pubrec>) {
                settle(answer::puback_pubrec, v.msg_id);
                feed(protocol::pubrec_packet{v.msg_id, {}, {}}, now);
            } else if constexpr (std::is_same_v<T, sn::pubrel>) {
                feed(protocol::pubrel_packet{v.msg_id, {}, {}}, now);
            } else if constexpr (std::is_same_v<T, sn::pubcomp>) {
                settle(answer::pubcomp, v.msg_id);
                feed(protocol::pubcomp_packet{v.msg_id, {}, {}}, now);
            } else if constexpr (std::is_same_v<T, sn::subscribe>) {
                on_subscribe(std::move(v), now);
            } else if constexpr (std::is_same_v<T, sn::unsubscribe>) {
                on_unsubscribe(std::move(v), now);
            } else if constexpr (std::is_same_v<T, sn::pingreq>) {
                on_pingreq(now);
            } else if constexpr (std::is_same_v<T, sn::disconnect>) {
                on_disconnect(v, now);
            } else if constexpr (std::is_same_v<T, sn::willtopicupd>) {
                on_willtopicupd(std::move(v));
            } else if constexpr (std::is_same_v<T, sn::willmsgupd>) {
                on_willmsgupd(std::move(v));
            } else {
                drop();
            }
        },
        m);
}

void mqttsn_client::on_connect(sn::connect&& c, clock::time_point now) {
    if (connected_ || session_.state() != session_state::awaiting_connect) {
        // A repeated CONNECT (its CONNACK was lost), or a sleeping client becoming active
        // (its flags are not those of a new connection and are ignored): CONNACK, then
        // what was held for it.
        if (!connected_) return drop();
        send(sn::connack{sn::return_code::accepted});
        wake(sleep_state::active, now);
        return;
    }
    const bool will = c.will;
    pending_connect_ = std::move(c);
    if (will) return send(sn::willtopicreq{});
    finish_connect(std::nullopt, now);
}

void mqttsn_client::finish_connect(std::optional<protocol::will_message> will,
                                   clock::time_point now) {
    protocol::connect_packet p;
    p.version = protocol_version::v3_1_1;
    p.clean_start = pending_connect_->clean_session;
    p.keep_alive = pending_connect_->duration;
    p.client_id = std::move(pending_connect_->client_id);
    p.will = std::move(will);
    pending_connect_.reset();
    pending_will_topic_.reset();
    feed(p, now);
}

std::optional<std::string> mqttsn_client::topic_of(sn::topic_id_type t, std::uint16_t id) const {
    switch (t) {
        case sn::topic_id_type::short_name: return sn::short_topic_name(id);
        case sn::topic_id_type::predefined: {
            auto it = settings_.predefined.find(id);
            if (it == settings_.predefined.end()) return std::nullopt;
            return it->second;
        }
        case sn::topic_id_type::normal: {
            auto it = topics_.find(id);
            if (it == topics_.end()) return std::nullopt;
            return it->second;
        }
    }
    return std::nullopt;
}

std::uint16_t mqttsn_client::register_topic(const std::string& name) {
    if (auto it = topic_ids_.find(name); it != topic_ids_.end()) return it->second;
    // Bounded so that a client cannot grow the table without end.
    if (topics_.size() >= settings_.max_topic_ids) return 0;
    while (topics_.count(next_topic_id_) != 0 || next_topic_id_ == 0) ++next_topic_id_;
    const std::uint16_t id = next_topic_id_++;
    topics_.emplace(id, name);
    topic_ids_.emplace(name, id);
    return id;
}

void mqttsn_client::on_register(const sn::register_& r) {
    const std::uint16_t id = register_topic(r.topic_name);
    send(sn::regack{id, r.msg_id, id != 0 ? sn::return_code::accepted : sn::return_code::congestion});
}

void mqttsn_client::on_publish(sn::publish&& p, clock::time_point now) {
    if (p.topic_type == sn::topic_id_type::normal && p.qos == sn::qos::minus_one) return drop();
    auto topic = topic_of(p.topic_type, p.topic_id);
    // A predefined id may stand for a filter (to subscribe to); not a topic to publish on.
    if (!topic || !protocol::is_valid_topic_name(*topic)) {
        // Unknown topic id: refused whatever the QoS (MQTT-SN 1.2 §6.7).
        return send(sn::puback{p.topic_id, p.msg_id, sn::return_code::invalid_topic_id});
    }
    const auto q = to_mqtt(p.qos);
    if (q != protocol::qos::at_most_once && p.msg_id == 0) return drop();
    // The session reads no more for now (max_publish_rate, or a subscriber this publisher
    // waits for). Over TCP the broker stops reading; a datagram cannot wait, so the client
    // is told to try again later (MQTT-SN 1.2, 5.4.13: rejected: congestion). A DUP may be
    // one the session has already (a QoS 2 PUBREC lost): it goes through.
    if (session_.input_paused() && !p.dup)
        return send(sn::puback{p.topic_id, p.msg_id, sn::return_code::congestion});
    protocol::publish_packet pp;
    pp.topic = std::move(*topic);
    pp.payload = std::move(p.data);
    pp.qos_level = q;
    pp.retain = p.retain;
    pp.dup = p.dup && q != protocol::qos::at_most_once;
    pp.packet_id = q == protocol::qos::at_most_once ? 0 : p.msg_id;
    if (q != protocol::qos::at_most_once) publish_topic_[p.msg_id] = p.topic_id;
    feed(pp, now);
}

void mqttsn_client::on_subscribe(sn::subscribe&& s, clock::time_point now) {
    std::string filter;
    std::uint16_t topic_id = 0;
    if (s.topic_type == sn::topic_id_type::normal) {
        filter = std::move(s.topic_name);
        // A filter without wildcards is also a topic name the client will receive on:
        // its id goes back in SUBACK.
        if (!protocol::is_wildcard_filter(filter)) topic_id = register_topic(filter);
    } else {
        auto t = topic_of(s.topic_type, s.topic_id);
        if (!t || !protocol::is_valid_topic_filter(*t)) {
            return send(sn::suback{sn::qos::at_most_once, s.topic_id, s.msg_id,
                                   sn::return_code::invalid_topic_id});
        }
        filter = std::move(*t);
        topic_id = s.topic_type == sn::topic_id_type::predefined ? s.topic_id : 0;
    }
    if (s.msg_id == 0) return drop();
    protocol::subscribe_packet sp;
    sp.packet_id = s.msg_id;
    protocol::subscription sub;
    sub.filter = std::move(filter);
    sub.options.max_qos = to_mqtt(s.qos);
    sp.subscriptions.push_back(std::move(sub));
    subscribe_topic_[s.msg_id] = topic_id;
    feed(sp, now);
}

void mqttsn_client::on_unsubscribe(sn::unsubscribe&& u, clock::time_point now) {
    std::string filter;
    if (u.topic_type == sn::topic_id_type::normal) {
        filter = std::move(u.topic_name);
    } else {
        auto t = topic_of(u.topic_type, u.topic_id);
        if (!t || !protocol::is_valid_topic_filter(*t)) return send(sn::unsuback{u.msg_id});
        filter = std::move(*t);
    }
    if (u.msg_id == 0) return drop();
    protocol::unsubscribe_packet up;
    up.packet_id = u.msg_id;
    up.filters.push_back(std::move(filter));
    feed(up, now);
}

void mqttsn_client::on_pingreq(clock::time_point now) {
    if (state_ == sleep_state::active) return feed(protocol::pingreq_packet{}, now);
    // A sleeping client wakes (with its client id, or without: it is known by its
    // address): what was held goes out, PINGRESP once it is all acknowledged
    // (sleep_again_if_done). A PINGREQ while awake sends the unacknowledged ones again.
    if (state_ == sleep_state::awake) return resend_all();
    wake(sleep_state::awake, now);
}

void mqttsn_client::on_disconnect(const sn::disconnect& d, clock::time_point now) {
    if (d.duration && *d.duration > 0) {
        // Sleep: the session stays connected, deliveries are held until the client wakes.
        sleep_duration_ = std::chrono::seconds{*d.duration};
        send(sn::disconnect{});
        go_asleep(now);
        return;
    }
    client_disconnected_ = true;
    feed(protocol::disconnect_packet{}, now);
    send(sn::disconnect{});
}

// ---- the MQTT side ------------------------------------------------------------------------

void mqttsn_client::feed(const protocol::packet& p, clock::time_point now) {
    auto bytes = protocol::encode(p, protocol_version::v3_1_1);
    if (!bytes) return drop();
    protocol::framer f;
    f.feed(*bytes);
    auto frame = f.next();
    if (!frame || !*frame) return drop();
    session_.on_frame(**frame, now);
    if (session_.state() == session_state::connected) connected_ = true;
}

std::vector<std::vector<std::uint8_t>> mqttsn_client::take_output(clock::time_point now) {
    if (now > now_) now_ = now;
    pump();
    if (!closed_) sleep_again_if_done();
    return std::exchange(out_, {});
}

void mqttsn_client::pump() {
    for (int rounds = 0; rounds < 64 && session_.has_output(); ++rounds) {
        session_.take_output(scratch_);
        from_session_.feed(scratch_);
        for (;;) {
            auto f = from_session_.next();
            if (!f || !*f) break;
            auto p = protocol::decode((*f)->first_byte, (*f)->body, protocol_version::v3_1_1);
            if (p) translate(std::move(*p));
        }
        session_.on_written();  // may queue what waited for the buffer to drain
    }
    if (session_.closing() && !closed_) {
        // Closed by the broker (keep-alive, takeover, refused CONNECT): say so, unless the
        // client asked for it and has its answer already.
        if (!client_disconnected_ && connected_) send(sn::disconnect{});
        closed_ = true;
    }
}

void mqttsn_client::translate(protocol::packet&& p) {
    std::visit(
        [&](auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, protocol::connack_packet>) {
                const bool ok = v.code == protocol::reason_code::success;
                if (ok) connected_ = true;
                send(sn::connack{ok ? sn::return_code::accepted : sn::return_code::not_supported});
            } else if constexpr (std::is_same_v<T, protocol::publish_packet>) {
                deliver(std::move(v));
            } else if constexpr (std::is_same_v<T, protocol::puback_packet>) {
                auto it = publish_topic_.find(v.packet_id);
                const std::uint16_t topic = it != publish_topic_.end() ? it->second : 0;
                if (it != publish_topic_.end()) publish_topic_.erase(it);
                send(sn::puback{topic, v.packet_id, sn::return_code::accepted});
            } else if constexpr (std::is_same_v<T, protocol::pubrec_packet>) {
                publish_topic_.erase(v.packet_id);
                send(sn::pubrec{v.packet_id});
            } else if constexpr (std::is_same_v<T, protocol::pubrel_packet>) {
                emit(sn::pubrel{v.packet_id}, answer::pubcomp, v.packet_id);
            } else if constexpr (std::is_same_v<T, protocol::pubcomp_packet>) {
                send(sn::pubcomp{v.packet_id});
            } else if constexpr (std::is_same_v<T, protocol::suback_packet>) {
                auto it = subscribe_topic_.find(v.packet_id);
                const std::uint16_t topic = it != subscribe_topic_.end() ? it->second : 0;
                if (it != subscribe_topic_.end()) subscribe_topic_.erase(it);
                const auto rc = v.codes.empty() ? protocol::reason_code::unspecified_error : v.codes[0];
                if (protocol::is_error(rc)) {
                    send(sn::suback{sn::qos::at_most_once, 0, v.packet_id, sn::return_code::not_supported});
                } else {
                    send(sn::suback{static_cast<sn::qos>(static_cast<std::uint8_t>(rc)), topic,
                                    v.packet_id, sn::return_code::accepted});
                }
            } else if constexpr (std::is_same_v<T, protocol::unsuback_packet>) {
                send(sn::unsuback{v.packet_id});
            } else if constexpr (std::is_same_v<T, protocol::pingresp_packet>) {
                if (swallow_pingresp_ > 0) --swallow_pingresp_;
                else send(sn::pingresp{});
            }
        },
        p);
}

void mqttsn_client::deliver(protocol::publish_packet&& p) {
    sn::publish out;
    out.dup = p.dup;
    out.qos = to_sn(p.qos_level);
    out.retain = p.retain;
    out.msg_id = p.packet_id;
    out.data = std::move(p.payload);
    std::optional<std::uint16_t> register_msg_id;
    if (auto it = topic_ids_.find(p.topic); it != topic_ids_.end()) {
        out.topic_id = it->second;
    } else if (auto pre = std::find_if(settings_.predefined.begin(), settings_.predefined.end(),
                                       [&](const auto& kv) { return kv.second == p.topic; });
               pre != settings_.predefined.end()) {
        out.topic_type = sn::topic_id_type::predefined;
        out.topic_id = pre->first;
    } else if (is_short(p.topic)) {
        out.topic_type = sn::topic_id_type::short_name;
        out.topic_id = sn::short_topic_id(p.topic[0], p.topic[1]);
    } else {
        out.topic_id = register_topic(p.topic);
        if (out.topic_id == 0) return drop_delivery();  // no id left: the delivery is lost
        register_msg_id = next_register_msg_id_++;
        if (next_register_msg_id_ == 0) next_register_msg_id_ = 1;
        unacked_topics_[out.topic_id] = *register_msg_id;
        emit(sn::register_{out.topic_id, *register_msg_id, p.topic}, answer::regack,
             *register_msg_id);
    }
    // Too long for one datagram (the 3-octet Length, MsgType, Flags, TopicId, MsgId): lost.
    if (out.data.size() > sn::max_message_size - 9) return drop_delivery();
    const bool qos0 = out.qos == sn::qos::at_most_once;
    // Held while the REGISTER of its topic is not acknowledged.
    auto held = out.topic_type == sn::topic_id_type::normal ? unacked_topics_.find(out.topic_id)
                                                            : unacked_topics_.end();
    if (held != unacked_topics_.end()) {
        if (qos0) {
            if (held_qos0_ >= settings_.max_buffered) {
                ++buffer_dropped_;
                ++stats_.mqttsn_dropped_sleep_buffer;
                return;
            }
            ++held_qos0_;
        }
        awaiting_regack_[held->second].push_back(std::move(out));
        return;
    }
    const auto id = out.msg_id;
    emit(std::move(out), qos0 ? answer::none : answer::puback_pubrec, id);
}

void mqttsn_client::send(const sn::message& m) {
    auto bytes = encoded(m);
    if (!bytes.empty()) out_.push_back(std::move(bytes));
}

}  // namespace mqtt::broker
