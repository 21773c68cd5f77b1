#include "mqtt/client/session.hpp"

#include <algorithm>
#include <utility>

#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/errors.hpp"
#include "mqtt/protocol/publish_codec.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::client {

namespace {

// Whether every UTF-8 String property (§1.5.4) of `p` is well-formed (Binary Data ones,
// Correlation Data and Authentication Data, may hold any bytes).
bool strings_are_utf8(const protocol::properties& p) {
    const auto ok = [](const std::optional<std::string>& s) {
        return !s || !protocol::validate_utf8(*s);
    };
    if (!ok(p.content_type) || !ok(p.response_topic) || !ok(p.assigned_client_identifier) ||
        !ok(p.authentication_method) || !ok(p.response_information) || !ok(p.server_reference) ||
        !ok(p.reason_string)) {
        return false;
    }
    return std::all_of(p.user_properties.begin(), p.user_properties.end(), [](const auto& kv) {
        return !protocol::validate_utf8(kv.first) && !protocol::validate_utf8(kv.second);
    });
}

}  // namespace

using protocol::protocol_version;
using protocol::qos;
using protocol::reason_code;

session::session(session_config cfg) : cfg_(std::move(cfg)), version_(cfg_.connect.version) {
    keep_alive_ = std::chrono::seconds{cfg_.connect.keep_alive};
    if (!protocol::is_v5(version_) && cfg_.max_inflight_v3 > 0)
        receive_maximum_ = cfg_.max_inflight_v3;
}

void session::start(clock::time_point now) {
    if (state_ != session_state::idle) return;
    state_ = session_state::connecting;
    connect_deadline_ = now + cfg_.connect_timeout;
    last_sent_ = now;
    send(cfg_.connect);
}

// ---- output -----------------------------------------------------------------------------

void session::send(const protocol::packet& p) {
    // Packets we build are valid by construction (publish() checked its input), so an
    // encoding error here is a bug in this file, not the peer's doing.
    if (auto ec = protocol::encode_append(p, version_, output_))
        fail(ec, reason_code::implementation_specific_error);
}

void session::take_output(std::vector<std::uint8_t>& into) {
    into.clear();
    into.swap(output_);
}

std::vector<event> session::take_events() {
    std::vector<event> out;
    out.swap(events_);
    return out;
}

void session::close(std::error_code ec, reason_code rc, std::string reason_string) {
    if (state_ == session_state::closed) return;
    state_ = session_state::closed;
    if (!cfg_.keep_unacknowledged) waiting_.clear();
    close_info_ = closed_event{ec, rc, std::move(reason_string)};
    events_.push_back(close_info_);
}

// A protocol error on our side of the judgement: tell a 5.0 broker why, then close.
void session::fail(std::error_code ec, reason_code rc) {
    if (state_ == session_state::closed) return;
    if (protocol::is_v5(version_) && state_ == session_state::connected) {
        protocol::disconnect_packet d;
        d.code = rc;
        (void)protocol::encode_append(d, version_, output_);  // cannot fail for this packet
    }
    close(ec, rc);
}

void session::disconnect(reason_code rc) {
    disconnect(rc, {});
}

void session::disconnect(reason_code rc, protocol::properties props) {
    if (state_ == session_state::closed) return;
    if (state_ == session_state::connected) {
        protocol::disconnect_packet d;
        d.code = protocol::is_v5(version_) ? rc : reason_code::success;
        if (protocol::is_v5(version_)) d.props = std::move(props);
        send(d);
    }
    close({}, rc);
}

void session::set_credentials(std::optional<std::string> username,
                              std::optional<std::string> password) {
    cfg_.connect.username = std::move(username);
    cfg_.connect.password = std::move(password);
}

void session::reconnect(clock::time_point now) {
    if (state_ != session_state::closed) return;
    // What belonged to the old connection: limits, keep-alive, unsent bytes, the CONNACK.
    output_.clear();
    connack_ = {};
    close_info_ = {};
    receive_maximum_ = protocol::is_v5(version_) || cfg_.max_inflight_v3 == 0
                           ? std::uint16_t{65535}
                           : cfg_.max_inflight_v3;
    maximum_packet_size_ = protocol::max_packet_size;
    maximum_qos_ = qos::exactly_once;
    retain_available_ = true;
    topic_alias_maximum_ = 0;
    keep_alive_ = std::chrono::seconds{cfg_.connect.keep_alive};
    ping_outstanding_ = false;
    inbound_aliases_.clear();
    // Without copies, unacknowledged messages cannot go again: forget them, or they would
    // count as unacknowledged for ever.
    for (auto it = outbound_.begin(); it != outbound_.end();) {
        const bool subscription = it->second == pending::suback || it->second == pending::unsuback;
        it = subscription || !cfg_.keep_unacknowledged ? outbound_.erase(it) : std::next(it);
    }
    if (!cfg_.keep_unacknowledged) in_flight_publishes_ = 0;
    // Before 5.0 an empty client id needs clean session (§3.1.3.1): nothing to resume then.
    if (protocol::is_v5(version_) || !cfg_.connect.client_id.empty())
        cfg_.connect.clean_start = false;
    reconnecting_ = true;
    state_ = session_state::idle;
    start(now);
}

// ---- time -------------------------------------------------------------------------------

clock::time_point session::deadline() const noexcept {
    switch (state_) {
        case session_state::connecting:
            return connect_deadline_;
        case session_state::connected:
            if (keep_alive_.count() == 0) return clock::time_point::max();
            return ping_outstanding_ ? ping_sent_ + keep_alive_ : last_sent_ + keep_alive_;
        default:
            return clock::time_point::max();
    }
}

void session::on_timer(clock::time_point now) {
    if (now < deadline()) return;
    if (state_ == session_state::connecting) {
        close(errc::connect_timeout, reason_code::success);
    } else if (state_ == session_state::connected) {
        if (ping_outstanding_) {
            fail(errc::keep_alive_timeout, reason_code::keep_alive_timeout);
            return;
        }
        ping_outstanding_ = true;
        ping_sent_ = now;
        last_sent_ = now;
        send(protocol::pingreq_packet{});
    }
}

void session::on_transport_closed(std::error_code ec) {
    close(ec ? ec : make_error_code(errc::connection_closed), reason_code::success);
}

void session::on_framing_error(std::error_code ec) {
    fail(ec, protocol::to_reason_code(ec));
}

// ---- requests ---------------------------------------------------------------------------

result<std::uint16_t> session::allocate_id() {
    const auto first = std::max<std::uint16_t>(cfg_.first_auto_id, 1);
    std::size_t tries = 65536u - first;
    if (next_id_ < first) next_id_ = first;
    while (outbound_.contains(next_id_)) {
        if (tries-- == 0) return errc::no_packet_id_available;
        next_id_ = next_id_ == 65535 ? first : static_cast<std::uint16_t>(next_id_ + 1);
    }
    const auto id = next_id_;
    next_id_ = next_id_ == 65535 ? first : static_cast<std::uint16_t>(next_id_ + 1);
    return id;
}

std::uint16_t session::send_quota() const noexcept {
    return in_flight_publishes_ < receive_maximum_
               ? static_cast<std::uint16_t>(receive_maximum_ - in_flight_publishes_)
               : 0;
}

result<std::uint16_t> session::publish(protocol::publish_packet p, clock::time_point now) {
    p.dup = false;
    return publish_as(std::move(p), 0, now);
}

result<std::uint16_t> session::publish_borrowed(protocol::publish_packet& p,
                                                clock::time_point now) {
    p.dup = false;
    return publish_as(p, 0, now);
}

result<std::uint16_t> session::publish_with_id(protocol::publish_packet p, std::uint16_t id,
                                               clock::time_point now) {
    if (id == 0 || id >= std::max<std::uint16_t>(cfg_.first_auto_id, 1) ||
        p.qos_level == qos::at_most_once)
        return errc::no_packet_id_available;
    if (outbound_.contains(id)) return errc::no_packet_id_available;
    return publish_as(std::move(p), id, now);
}

bool session::restore_released(std::uint16_t id) {
    if (state_ != session_state::idle || !cfg_.keep_unacknowledged || id == 0 ||
        outbound_.contains(id))
        return false;
    outbound_.emplace(id, pending::pubcomp);
    protocol::publish_packet placeholder;  // only its id matters once PUBREC has arrived
    placeholder.packet_id = id;
    placeholder.qos_level = qos::exactly_once;
    sent_.push_back(std::move(placeholder));
    reconnecting_ = true;  // the CONNACK resends what is kept
    return true;
}

// `id` 0: allocate one (QoS 1/2). `p` is a publish_packet (moved into what keeps it) or a
// reference to the caller's (copied into what keeps it, else only encoded).
template <class P>
result<std::uint16_t> session::publish_as(P&& p, std::uint16_t id, clock::time_point now) {
    if (state_ != session_state::connected) return errc::not_connected;
    // Whatever the application hands over goes out as valid MQTT: a string that is not
    // well-formed UTF-8 would make the broker close the connection (MQTT-1.5.4-1).
    if (!protocol::is_valid_topic_name(p.topic) || protocol::validate_utf8(p.topic))
        return errc::invalid_topic_name;
    if (!strings_are_utf8(p.props)) return errc::invalid_property;
    if (p.qos_level > maximum_qos_) return errc::qos_not_supported;
    if (p.retain && !retain_available_) return errc::retain_not_supported;
    if (p.props.topic_alias && *p.props.topic_alias > topic_alias_maximum_)
        return errc::topic_alias_invalid;
    p.packet_id = 0;
    if (p.qos_level != qos::at_most_once) {
        if (id == 0) {
            auto next = allocate_id();
            if (!next) return next.error();
            id = *next;
        }
        p.packet_id = id;
    }
    const bool send_now =
        p.qos_level == qos::at_most_once || (send_quota() > 0 && waiting_.empty());
    if (send_now) {
        // Encoded at once, checked and taken back when too large: one size pass, not two.
        // publish_codec.hpp: encoded from the struct, without a copy into a packet variant.
        const auto at = output_.size();
        if (auto ec = protocol::encode_append(p, version_, output_)) return ec;
        if (output_.size() - at > maximum_packet_size_) {
            output_.resize(at);
            return errc::packet_too_large;
        }
        last_sent_ = now;
        if (p.qos_level == qos::at_most_once) return std::uint16_t{0};
    } else {
        auto size = protocol::encoded_size(p, version_);
        if (!size) return size.error();
        if (*size > maximum_packet_size_) return errc::packet_too_large;
    }
    outbound_.emplace(id, p.qos_level == qos::at_least_once ? pending::puback : pending::pubrec);
    if (send_now) {
        ++in_flight_publishes_;
        if (cfg_.keep_unacknowledged) sent_.push_back(std::forward<P>(p));
    } else {
        waiting_.push_back(std::forward<P>(p));
    }
    return id;
}

// An acknowledged publish frees a Receive Maximum slot: the oldest waiting message takes it.
void session::release_slot() {
    if (in_flight_publishes_ > 0) --in_flight_publishes_;
    while (!waiting_.empty() && send_quota() > 0 && state_ == session_state::connected) {
        ++in_flight_publishes_;
        // publish_codec.hpp: encoded from the struct, without a copy into a packet variant.
        if (auto ec = protocol::encode_append(waiting_.front(), version_, output_))
            fail(ec, reason_code::implementation_specific_error);
        if (cfg_.keep_unacknowledged) sent_.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
    }
}

// Acknowledgements come nearly in order, so the message is almost always at the front.
void session::forget_sent(std::uint16_t id) {
    if (sent_.empty()) return;
    if (sent_.front().packet_id == id) {
        sent_.pop_front();
        return;
    }
    for (auto it = sent_.begin(); it != sent_.end(); ++it) {
        if (it->packet_id == id) {
            sent_.erase(it);
            return;
        }
    }
}

void session::resend_after_reconnect(clock::time_point now) {
    const bool kept = connack_.session_present;
    if (!kept) {
        inbound_qos2_.clear();
        held_.clear();  // the broker forgot them: nothing to acknowledge any more
        held_ids_.clear();
    }
    std::deque<protocol::publish_packet> again;
    again.swap(sent_);
    in_flight_publishes_ = 0;
    for (auto& p : again) {
        auto it = outbound_.find(p.packet_id);
        if (it == outbound_.end()) continue;
        if (it->second == pending::pubcomp) {
            if (kept) {
                ++in_flight_publishes_;
                send(protocol::pubrel_packet{p.packet_id, reason_code::success, {}});
                sent_.push_back(std::move(p));
            } else {  // PUBREC had arrived: the broker took the message before it restarted
                outbound_.erase(it);
                events_.push_back(publish_done_event{p.packet_id, reason_code::success});
            }
            continue;
        }
        p.dup = kept;
        ++in_flight_publishes_;
        send(p);
        sent_.push_back(std::move(p));
    }
    last_sent_ = now;
    // Messages that waited past the old Receive Maximum take the slots that are left.
    while (!waiting_.empty() && send_quota() > 0) {
        ++in_flight_publishes_;
        send(waiting_.front());
        if (cfg_.keep_unacknowledged) sent_.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
    }
}

result<std::uint16_t> session::subscribe(std::vector<protocol::subscription> subs,
                                         protocol::properties props, clock::time_point now) {
    if (state_ != session_state::connected) return errc::not_connected;
    for (const auto& s : subs)
        if (!protocol::is_valid_topic_filter(s.filter) || protocol::validate_utf8(s.filter))
            return errc::invalid_topic_filter;
    if (!strings_are_utf8(props)) return errc::invalid_property;
    auto id = allocate_id();
    if (!id) return id.error();
    protocol::subscribe_packet p{*id, std::move(subs), std::move(props)};
    auto size = protocol::encoded_size(p, version_);
    if (!size) return size.error();
    outbound_.emplace(*id, pending::suback);
    last_sent_ = now;
    send(p);
    return *id;
}

result<std::uint16_t> session::unsubscribe(std::vector<std::string> filters,
                                           clock::time_point now) {
    return unsubscribe(std::move(filters), {}, now);
}

result<std::uint16_t> session::unsubscribe(std::vector<std::string> filters,
                                           protocol::properties props, clock::time_point now) {
    if (state_ != session_state::connected) return errc::not_connected;
    for (const auto& f : filters)
        if (!protocol::is_valid_topic_filter(f) || protocol::validate_utf8(f))
            return errc::invalid_topic_filter;
    if (!strings_are_utf8(props)) return errc::invalid_property;
    auto id = allocate_id();
    if (!id) return id.error();
    protocol::unsubscribe_packet p{*id, std::move(filters), std::move(props)};
    auto size = protocol::encoded_size(p, version_);
    if (!size) return size.error();
    outbound_.emplace(*id, pending::unsuback);
    last_sent_ = now;
    send(p);
    return *id;
}

// ---- input ------------------------------------------------------------------------------

void session::on_frame(const protocol::frame& f, clock::time_point now) {
    if (state_ == session_state::closed || state_ == session_state::idle) return;
    if (auto ec = protocol::decode_into(f.first_byte, f.body, version_, in_)) {
        fail(ec, protocol::to_reason_code(ec));
        return;
    }
    const bool connecting = state_ == session_state::connecting;
    if (connecting != std::holds_alternative<protocol::connack_packet>(in_)) {
        fail(errc::protocol_violation, reason_code::protocol_error);
        return;
    }
    using namespace protocol;
    std::visit(
        [&](auto& p) {
            using T = std::decay_t<decltype(p)>;
            if constexpr (std::is_same_v<T, connack_packet>)
                on_connack(p, now);
            else if constexpr (std::is_same_v<T, publish_packet>)
                on_publish(p);
            else if constexpr (std::is_same_v<T, puback_packet>)
                on_puback(p);
            else if constexpr (std::is_same_v<T, pubrec_packet>)
                on_pubrec(p);
            else if constexpr (std::is_same_v<T, pubrel_packet>)
                on_pubrel(p);
            else if constexpr (std::is_same_v<T, pubcomp_packet>)
                on_pubcomp(p);
            else if constexpr (std::is_same_v<T, suback_packet>)
                on_suback(p);
            else if constexpr (std::is_same_v<T, unsuback_packet>)
                on_unsuback(p);
            else if constexpr (std::is_same_v<T, pingresp_packet>)
                ping_outstanding_ = false;
            else if constexpr (std::is_same_v<T, disconnect_packet>)
                on_disconnect(p);
            else
                fail(errc::protocol_violation, reason_code::protocol_error);
        },
        in_);
}

void session::on_connack(protocol::connack_packet& p, clock::time_point now) {
    if (protocol::is_error(p.code)) {
        auto why = p.props.reason_string.value_or(std::string{});
        connack_ = std::move(p);
        close(errc::connection_refused, connack_.code, std::move(why));
        return;
    }
    connack_ = std::move(p);
    const auto& props = connack_.props;
    if (props.receive_maximum) receive_maximum_ = *props.receive_maximum;
    if (props.maximum_packet_size) maximum_packet_size_ = *props.maximum_packet_size;
    if (props.maximum_qos) maximum_qos_ = static_cast<qos>(*props.maximum_qos);
    if (props.retain_available) retain_available_ = *props.retain_available != 0;
    if (props.server_keep_alive) keep_alive_ = std::chrono::seconds{*props.server_keep_alive};
    if (props.topic_alias_maximum) topic_alias_maximum_ = *props.topic_alias_maximum;
    // A reconnect must name the session it resumes: the id the broker gave us, if it did.
    if (props.assigned_client_identifier && cfg_.connect.client_id.empty())
        cfg_.connect.client_id = *props.assigned_client_identifier;
    state_ = session_state::connected;
    last_sent_ = now;
    if (connack_.session_present) resumed_ = true;
    events_.push_back(connected_event{connack_});
    if (reconnecting_) {
        reconnecting_ = false;
        resend_after_reconnect(now);
    }
}

void session::on_publish(protocol::publish_packet& p) {
    // Aliases only up to the Topic Alias Maximum we announced (none by default, §3.3.2.3.4).
    if (p.props.topic_alias || p.topic.empty()) {
        const auto allowed = cfg_.connect.props.topic_alias_maximum.value_or(0);
        const auto alias = p.props.topic_alias.value_or(0);
        if (alias == 0 || alias > allowed || !protocol::is_v5(version_)) {
            fail(errc::protocol_violation, reason_code::topic_alias_invalid);
            return;
        }
        if (inbound_aliases_.size() <= alias) inbound_aliases_.resize(alias + 1u);
        if (p.topic.empty()) {
            if (inbound_aliases_[alias].empty()) {
                fail(errc::protocol_violation, reason_code::protocol_error);
                return;
            }
            p.topic = inbound_aliases_[alias];
        } else {
            inbound_aliases_[alias] = p.topic;
        }
    }
    const auto id = p.packet_id;
    if (cfg_.manual_ack && p.qos_level != qos::at_most_once) {
        if (held_ids_.contains(id)) return;  // a resend of a message not yet acknowledged
        if (p.qos_level == qos::exactly_once && !inbound_qos2_.insert(id).second) {
            send(protocol::pubrec_packet{id, reason_code::success, {}});  // acknowledged before
            return;
        }
        const auto token = hold(id, p.qos_level);
        events_.push_back(message_event{std::move(p), token});
        return;
    }
    switch (p.qos_level) {
        case qos::at_most_once:
            events_.push_back(message_event{std::move(p)});
            break;
        case qos::at_least_once:
            events_.push_back(message_event{std::move(p)});
            send(protocol::puback_packet{id, reason_code::success, {}});
            break;
        case qos::exactly_once:
            // Exactly once: a PUBLISH whose id is still awaiting PUBREL is a resend.
            if (inbound_qos2_.insert(id).second) events_.push_back(message_event{std::move(p)});
            send(protocol::pubrec_packet{id, reason_code::success, {}});
            break;
    }
}

std::uint64_t session::hold(std::uint16_t id, qos q) {
    const auto token = next_token_++;
    held_.emplace(token, held_message{id, q});
    held_ids_.emplace(id, token);
    return token;
}

bool session::acknowledge(std::uint64_t token, reason_code rc) {
    auto it = held_.find(token);
    if (it == held_.end()) return false;
    const auto [id, q] = it->second;
    held_.erase(it);
    held_ids_.erase(id);
    if (!protocol::is_v5(version_)) rc = reason_code::success;
    if (q == qos::exactly_once && protocol::is_error(rc)) inbound_qos2_.erase(id);
    if (state_ != session_state::connected) return true;  // see the header
    if (q == qos::at_least_once)
        send(protocol::puback_packet{id, rc, {}});
    else
        send(protocol::pubrec_packet{id, rc, {}});
    return true;
}

void session::on_puback(const protocol::puback_packet& p) {
    auto it = outbound_.find(p.packet_id);
    if (it == outbound_.end() || it->second != pending::puback) return;  // stale: ignore
    outbound_.erase(it);
    forget_sent(p.packet_id);
    events_.push_back(publish_done_event{p.packet_id, p.code});
    release_slot();
}

void session::on_pubrec(const protocol::pubrec_packet& p) {
    auto it = outbound_.find(p.packet_id);
    if (it == outbound_.end() || it->second == pending::puback || it->second == pending::suback ||
        it->second == pending::unsuback) {
        // Not ours to release: answer so the broker can drop its state (§4.3.3).
        protocol::pubrel_packet rel{p.packet_id, reason_code::packet_identifier_not_found, {}};
        send(rel);
        return;
    }
    if (protocol::is_error(p.code)) {  // refused (5.0): the exchange ends here
        outbound_.erase(it);
        forget_sent(p.packet_id);
        events_.push_back(publish_done_event{p.packet_id, p.code});
        release_slot();
        return;
    }
    if (it->second == pending::pubrec && cfg_.report_pubrec)
        events_.push_back(publish_done_event{p.packet_id, p.code, true});
    it->second = pending::pubcomp;
    send(protocol::pubrel_packet{p.packet_id, reason_code::success, {}});
}

void session::on_pubrel(const protocol::pubrel_packet& p) {
    const bool known = inbound_qos2_.erase(p.packet_id) > 0;
    send(protocol::pubcomp_packet{
        p.packet_id, known ? reason_code::success : reason_code::packet_identifier_not_found, {}});
}

void session::on_pubcomp(const protocol::pubcomp_packet& p) {
    auto it = outbound_.find(p.packet_id);
    if (it == outbound_.end() || it->second != pending::pubcomp) return;
    outbound_.erase(it);
    forget_sent(p.packet_id);
    events_.push_back(publish_done_event{p.packet_id, p.code});
    release_slot();
}

void session::on_suback(protocol::suback_packet& p) {
    auto it = outbound_.find(p.packet_id);
    if (it == outbound_.end() || it->second != pending::suback) {
        fail(errc::protocol_violation, reason_code::protocol_error);
        return;
    }
    outbound_.erase(it);
    events_.push_back(suback_event{p.packet_id, std::move(p.codes)});
}

void session::on_unsuback(protocol::unsuback_packet& p) {
    auto it = outbound_.find(p.packet_id);
    if (it == outbound_.end() || it->second != pending::unsuback) {
        fail(errc::protocol_violation, reason_code::protocol_error);
        return;
    }
    outbound_.erase(it);
    events_.push_back(unsuback_event{p.packet_id, std::move(p.codes)});
}

void session::on_disconnect(const protocol::disconnect_packet& p) {
    close(errc::disconnected_by_server, p.code, p.props.reason_string.value_or(std::string{}));
}

}  // namespace mqtt::client
