// The connection lifecycle of a session: CONNECT, keep-alive, DISCONNECT, closing, and the
// packet dispatch. The PUBLISH and SUBSCRIBE flows are in session_flows.cpp.

#include "mqtt/broker/session.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "mqtt/broker/engine.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/errors.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {
namespace {

using protocol::protocol_version;
using protocol::reason_code;

// The Protocol Level byte of a CONNECT body, if the name is there to skip (0 otherwise).
std::uint8_t connect_level(std::span<const std::uint8_t> body) noexcept {
    if (body.size() < 2) return 0;
    const std::size_t name_len = (std::size_t{body[0]} << 8) | body[1];
    return body.size() > 2 + name_len ? body[2 + name_len] : 0;
}

reason_code allowed_or_unspecified(reason_code rc, protocol::packet_type t) noexcept {
    return protocol::is_allowed_in(rc, t) ? rc : reason_code::unspecified_error;
}

}  // namespace

session::session(engine& e, clock::time_point now, std::string peer)
    : engine_(e), peer_(std::move(peer)), created_(now), last_rx_(now) {
    engine_.add(*this);
}

session::~session() {
    if (attached_) engine_.detach(*this);
    engine_.remove(*this);
}

// ---- input ------------------------------------------------------------------------------

void session::on_frame(const protocol::frame& f, clock::time_point now) {
    if (state_ == session_state::closing) return;
    last_rx_ = now;
    if (state_ == session_state::awaiting_connect) {
        handle_connect(f, now);
        return;
    }
    auto decoded = protocol::decode(f.first_byte, f.body, version_);
    if (!decoded) {
        protocol_violation(decoded.error());
        return;
    }
    handle_packet(std::move(*decoded), now);
}

void session::on_framing_error(std::error_code ec) {
    if (state_ == session_state::closing) return;
    if (state_ == session_state::awaiting_connect) {
        ++engine_.stats().protocol_errors;
        close(reason_code::malformed_packet, to_string(static_cast<errc>(ec.value())), false,
              false);
        return;
    }
    protocol_violation(ec);
}

void session::on_transport_closed() {
    if (state_ == session_state::closing) return;
    // Closed without DISCONNECT: the Will is published (MQTT-3.1.2-8).
    close(reason_code::unspecified_error, "connection lost", false, true);
}

void session::on_timer(clock::time_point now) {
    if (state_ == session_state::closing || now < deadline()) return;
    if (state_ == session_state::awaiting_connect) {
        ++engine_.stats().protocol_errors;
        close(reason_code::maximum_connect_time, "no CONNECT in time", false, false);
        return;
    }
    ++engine_.stats().keep_alive_timeouts;
    close(reason_code::keep_alive_timeout, "keep_alive_timeout", true, true);  // MQTT-3.1.2-24
}

void session::on_written() {
    pump();
}

// ---- output -----------------------------------------------------------------------------

void session::take_output(std::vector<std::uint8_t>& into) {
    into.clear();
    std::swap(into, out_);
    // Keep the capacity of ordinary batches, not of one huge message.
    if (out_.capacity() > (std::size_t{256} << 10)) std::vector<std::uint8_t>{}.swap(out_);
}

bool session::input_paused() const noexcept {
    return out_.size() > engine_.config().max_outbound_bytes;
}

clock::time_point session::deadline() const noexcept {
    switch (state_) {
        case session_state::awaiting_connect:
            return created_ + engine_.config().connect_timeout;
        case session_state::connected:
            if (keep_alive_ == 0) return clock::time_point::max();
            // One and a half times the Keep Alive (MQTT-3.1.2-24).
            return last_rx_ + std::chrono::milliseconds{std::uint64_t{keep_alive_} * 1500};
        case session_state::closing:
            break;
    }
    return clock::time_point::max();
}

void session::send(const protocol::packet& p) {
    send_in(p, version_);
}

void session::send_in(const protocol::packet& p, protocol_version v) {
    // Our own packets are built valid; an encoding failure is a bug, not peer input.
    [[maybe_unused]] const auto ec = protocol::encode_append(p, v, out_);
}

// ---- CONNECT ----------------------------------------------------------------------------

void session::handle_connect(const protocol::frame& f, clock::time_point now) {
    if (f.type() != protocol::packet_type::connect) {  // MQTT-3.1.0-1
        ++engine_.stats().protocol_errors;
        close(reason_code::protocol_error, "first packet is not CONNECT", false, false);
        return;
    }
    const auto version = protocol::peek_connect_version(f.body);
    if (!version) {
        if (version.error() != make_error_code(errc::unsupported_protocol_version)) {
            ++engine_.stats().protocol_errors;
            close(reason_code::protocol_error, "bad protocol name", false, false);
            return;
        }
        // Answer in the dialect the client is likely to read: 5.0 CONNACK 0x84 above
        // level 5 (MQTT 5.0 §3.1.2.2), 3.1.1 CONNACK 0x01 otherwise (MQTT-3.1.2-2).
        version_ = connect_level(f.body) > 5 ? protocol_version::v5 : protocol_version::v3_1_1;
        refuse_connect(reason_code::unsupported_protocol_version, "unsupported protocol level");
        return;
    }
    version_ = *version;
    auto decoded = protocol::decode(f.first_byte, f.body, version_);
    if (!decoded) {
        ++engine_.stats().protocol_errors;
        const auto why = to_string(static_cast<errc>(decoded.error().value()));
        if (protocol::is_v5(version_)) {
            refuse_connect(allowed_or_unspecified(protocol::to_reason_code(decoded.error()),
                                                  protocol::packet_type::connack),
                           why);
        } else {
            close(reason_code::malformed_packet, why, false, false);  // no 3.1.1 code for it
        }
        return;
    }
    accept_connect(std::get<protocol::connect_packet>(std::move(*decoded)), now);
}

void session::refuse_connect(reason_code rc, std::string_view why) {
    protocol::connack_packet ack;
    ack.code = rc;  // mapped to the 3.1.1 return code by the encoder
    send(ack);
    ++engine_.stats().connects_rejected;
    close(rc, why, false, false);
}

void session::accept_connect(protocol::connect_packet&& c, clock::time_point now) {
    const bool v5 = protocol::is_v5(version_);
    if (v5 && c.props.authentication_method) {
        refuse_connect(reason_code::bad_authentication_method, "enhanced auth not supported");
        return;
    }
    bool assigned = false;
    if (c.client_id.empty()) {
        // 5.0 assigns one (MQTT-3.1.3-6); 3.1.1 only with Clean Session (MQTT-3.1.3-8);
        // 3.1 requires an id of 1 to 23 characters.
        if (!v5 && (!c.clean_start || version_ == protocol_version::v3_1)) {
            refuse_connect(reason_code::client_identifier_not_valid, "empty client id");
            return;
        }
        c.client_id = engine_.assign_client_id();
        assigned = v5;
    }
    client_id_ = std::move(c.client_id);
    keep_alive_ = c.keep_alive;
    if (c.will) will_ = make_message(std::move(*c.will), now);
    const auto& cfg = engine_.config();
    inflight_cap_ = cfg.max_inflight;
    if (v5) {
        inflight_cap_ = std::min(inflight_cap_, c.props.receive_maximum.value_or(65535));
        client_max_packet_ = c.props.maximum_packet_size.value_or(0);
        session_expiry_ = c.props.session_expiry_interval.value_or(0);
    }
    state_ = session_state::connected;
    last_rx_ = now;
    engine_.attach(*this);  // closes an older connection with this id
    attached_ = true;

    protocol::connack_packet ack;  // session_present stays 0: sessions are clean
    if (v5) {
        auto& p = ack.props;
        if (assigned) p.assigned_client_identifier = client_id_;
        // We keep nothing after the connection closes; say so (§3.2.2.3.2).
        if (session_expiry_ != 0) p.session_expiry_interval = 0;
        p.receive_maximum = cfg.receive_maximum;
        p.maximum_packet_size = cfg.max_packet_size;
        p.subscription_identifier_available = 0;
        p.shared_subscription_available = 0;
        // Topic Alias Maximum absent: 0, the client may not use topic aliases.
    }
    send(ack);
    ++engine_.stats().connects_accepted;
    if (engine_.logging(1)) {
        engine_.log(1, "client " + client_id_ + " connected from " + peer_ + " (" +
                           std::string{to_string(version_)} + ", keep alive " +
                           std::to_string(keep_alive_) + "s)");
    }
}

// ---- dispatch ---------------------------------------------------------------------------

void session::handle_packet(protocol::packet&& p, clock::time_point now) {
    using protocol::packet_type;
    switch (protocol::type_of(p)) {
        case packet_type::publish:
            on_publish(std::get<protocol::publish_packet>(std::move(p)), now);
            return;
        case packet_type::puback:
            on_puback(std::get<protocol::puback_packet>(p).packet_id);
            return;
        case packet_type::pubrec:
            on_pubrec(std::get<protocol::pubrec_packet>(p));
            return;
        case packet_type::pubrel:
            on_pubrel(std::get<protocol::pubrel_packet>(p).packet_id);
            return;
        case packet_type::pubcomp:
            on_pubcomp(std::get<protocol::pubcomp_packet>(p).packet_id);
            return;
        case packet_type::subscribe:
            on_subscribe(std::get<protocol::subscribe_packet>(std::move(p)), now);
            return;
        case packet_type::unsubscribe:
            on_unsubscribe(std::get<protocol::unsubscribe_packet>(p));
            return;
        case packet_type::pingreq:
            send(protocol::pingresp_packet{});
            return;
        case packet_type::disconnect:
            on_disconnect(std::get<protocol::disconnect_packet>(p));
            return;
        case packet_type::connect:
            protocol_violation(reason_code::protocol_error, "second CONNECT");  // MQTT-3.1.0-2
            return;
        default:  // CONNACK, SUBACK, UNSUBACK, PINGRESP: server-to-client only; AUTH: no method
            protocol_violation(reason_code::protocol_error,
                               "unexpected " + std::string{to_string(protocol::type_of(p))});
            return;
    }
}

void session::on_disconnect(const protocol::disconnect_packet& p) {
    // Session Expiry may not go from 0 to non-zero at DISCONNECT (MQTT-3.14.2-2).
    if (protocol::is_v5(version_) && session_expiry_ == 0 &&
        p.props.session_expiry_interval.value_or(0) != 0) {
        protocol_violation(reason_code::protocol_error, "session expiry set at DISCONNECT");
        return;
    }
    // A normal DISCONNECT discards the Will (MQTT-3.1.2-10) unless 5.0 asks for it (0x04).
    const bool with_will = p.code == reason_code::disconnect_with_will_message;
    close(reason_code::success, "client disconnected", false, with_will);
}

// ---- closing ----------------------------------------------------------------------------

void session::protocol_violation(std::error_code ec) {
    const auto why = ec.category() == mqtt_category() ? to_string(static_cast<errc>(ec.value()))
                                                      : std::string_view{"error"};
    protocol_violation(protocol::to_reason_code(ec), why);
}

void session::protocol_violation(reason_code rc, std::string_view why) {
    ++engine_.stats().protocol_errors;
    close(allowed_or_unspecified(rc, protocol::packet_type::disconnect), why, true, true);
}

void session::close_by_server(reason_code rc) {
    if (state_ == session_state::closing) return;
    // On takeover a 5.0 session ends (nothing is kept), which releases its Will (§3.1.3.2.2).
    const bool will = rc == reason_code::session_taken_over && protocol::is_v5(version_);
    close(rc, to_string(rc), true, will);
    wake();
}

void session::close(reason_code rc, std::string_view why, bool send_disconnect, bool publish_will) {
    if (state_ == session_state::closing) return;
    const bool was_connected = state_ == session_state::connected;
    state_ = session_state::closing;
    close_reason_.assign(why);
    if (send_disconnect && was_connected && protocol::is_v5(version_)) {
        protocol::disconnect_packet d;
        d.code = rc;
        send(d);
    }
    if (attached_) {
        engine_.detach(*this);
        attached_ = false;
    }
    filters_.clear();
    queue_.clear();
    queued_bytes_ = 0;
    message_ptr will = std::move(will_);
    if (will && protocol::is_system_topic(will->topic)) {  // $SYS is the broker's
        ++engine_.stats().dropped_sys_publish;
        will.reset();
    }
    if (was_connected && publish_will && will) {
        ++engine_.stats().wills_published;
        engine_.publish(nullptr, will);  // after detach: we are no longer a subscriber
    }
    if (engine_.logging(1) && was_connected) {
        engine_.log(1, "client " + client_id_ + " closed: " + close_reason_);
    }
}

}  // namespace mqtt::broker
