// CONNECT and authentication: the first packet checked and answered, the user name and
// password (or client certificate) checked against the listener's security settings, and
// the session attached with its Will. The rest of the lifecycle is in session.cpp.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/errors.hpp"

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

}  // namespace

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
        if (engine_.logging(1))
            engine_.log(1, "connection from " + peer_.str() +
                               " refused: unsupported protocol level " +
                               std::to_string(connect_level(f.body)));
        refuse_connect(reason_code::unsupported_protocol_version, "unsupported protocol level");
        return;
    }
    version_ = *version;
    auto decoded = protocol::decode(f.first_byte, f.body, version_);
    if (!decoded) {
        ++engine_.stats().protocol_errors;
        const auto why = to_string(static_cast<errc>(decoded.error().value()));
        if (engine_.logging(1))
            engine_.log(1, "connection from " + peer_.str() + " refused: invalid CONNECT (" +
                               std::string{why} + ")");
        if (protocol::is_v5(version_)) {
            refuse_connect(
                protocol::allowed_or_unspecified(protocol::to_reason_code(decoded.error()),
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

// Refusals that depend on what the CONNECT asks for; false when it was refused.
bool session::check_connect(const protocol::connect_packet& c) {
    const bool v5 = protocol::is_v5(version_);
    const auto& cfg = engine_.config();
    if (v5 && c.props.authentication_method) {
        refuse_connect(reason_code::bad_authentication_method, "enhanced auth not supported");
        return false;
    }
    if (c.client_id.size() > cfg.max_client_id_length) {  // 5.0 0x85, 3.1.1 0x02
        refuse_connect(reason_code::client_identifier_not_valid,
                       "client id over max_client_id_length");
        return false;
    }
    if (c.will && !topic_within_limits(c.will->topic)) {
        // 5.0: CONNACK 0x90 Topic Name invalid. 3.1.1 has no return code for it: closed.
        if (v5) {
            refuse_connect(reason_code::topic_name_invalid, "will topic over the topic limits");
        } else {
            ++engine_.stats().connects_rejected;
            close(reason_code::topic_name_invalid, "will topic over the topic limits", false,
                  false);
        }
        return false;
    }
    // An empty id: 5.0 assigns one (MQTT-3.1.3-6); 3.1.1 only with Clean Session
    // (MQTT-3.1.3-8); 3.1 requires an id of 1 to 23 characters.
    if (c.client_id.empty() && !v5 && (!c.clean_start || version_ == protocol_version::v3_1)) {
        refuse_connect(reason_code::client_identifier_not_valid, "empty client id");
        return false;
    }
    // allow_zero_length_clientid false (of this client's listener with
    // per_listener_settings): no id is assigned. 3.1.1 CONNACK 2; 5.0 0x85 Client Identifier
    // not valid (MQTT-3.1.3-8; Mosquitto 2 sends 0x80 Unspecified error here).
    if (c.client_id.empty() && !engine_.security(security_slot_).allow_zero_length_clientid) {
        refuse_connect(reason_code::client_identifier_not_valid,
                       "empty client id, allow_zero_length_clientid false");
        return false;
    }
    // 3.1/3.1.1 have no Server Keep Alive: a Keep Alive over max_keepalive (or 0, no limit
    // at all) is refused with "identifier rejected", as Mosquitto 2 does.
    if (!v5 && cfg.max_keepalive != 0 && (c.keep_alive == 0 || c.keep_alive > cfg.max_keepalive)) {
        refuse_connect(reason_code::client_identifier_not_valid, "keep alive over max_keepalive");
        return false;
    }
    // A Will above the listener's max_qos: 5.0 CONNACK 0x9B (MQTT-3.2.2-12 area); 3.1.1 has
    // no code for it and is closed without a CONNACK, as Mosquitto 2 does.
    if (c.will &&
        static_cast<unsigned>(c.will->qos_level) > engine_.security(security_slot_).max_qos) {
        if (v5) {
            refuse_connect(reason_code::qos_not_supported, "will qos over max_qos");
        } else {
            ++engine_.stats().connects_rejected;
            close(reason_code::qos_not_supported, "will qos over max_qos", false, false);
        }
        return false;
    }
    // A 5.0 Will with RETAIN while retained messages are off: 0x9A (MQTT-3.2.2-12/13 area).
    if (v5 && !cfg.retain_available && c.will && c.will->retain) {
        refuse_connect(reason_code::retain_not_supported, "will retain not supported");
        return false;
    }
    return true;
}

bool session::replace_will(std::optional<protocol::will_message> w) {
    if (state_ != session_state::connected || ds_ == nullptr) return false;
    if (w && !topic_within_limits(w->topic)) return false;
    message_ptr will;
    if (w) {
        if (!engine_.config().retain_available) w->retain = false;
        will = make_message(std::move(*w), now_);
    }
    ds_->set_will(std::move(will), ds_->will_delay());
    return true;
}

// Seconds the session is kept after the connection closes.
std::uint32_t session::expiry_for(const protocol::connect_packet& c) const noexcept {
    if (protocol::is_v5(version_)) return c.props.session_expiry_interval.value_or(0);
    if (c.clean_start) return 0;  // 3.1.1 Clean Session 1: ends with the connection
    const auto kept = engine_.config().persistent_client_expiration.count();
    if (kept <= 0) return session_never_expires;
    return static_cast<std::uint32_t>(
        std::min<long long>(kept, static_cast<long long>(session_never_expires) - 1));
}

void session::accept_connect(protocol::connect_packet&& c, clock::time_point now) {
    if (!check_connect(c)) return;
    authenticate(std::move(c), now);
}

// allow_anonymous and password_file as in Mosquitto 2: a client without a user name, or
// with one while there is no password_file, is let in only with allow_anonymous; a user
// name with a password_file needs its password. Every refusal is CONNACK 5 in 3.1/3.1.1
// (as Mosquitto); 5.0 gets 0x86 Bad User Name or Password when the password_file was asked
// and said no (wrong or missing password, unknown user), 0x87 Not authorized otherwise.
void session::authenticate(protocol::connect_packet&& c, clock::time_point now) {
    const auto& sec = engine_.security(security_slot_);
    if (certificate_username_) {
        // As Mosquitto: the certificate's name replaces whatever CONNECT said, and the
        // verified certificate stands in for the password (the handshake already checked it).
        if (!more_ || !more_->certificate_name) {
            client_id_ = c.client_id;
            refuse_auth("the client certificate has no name to use as user name");
            return;
        }
        c.username = *more_->certificate_name;
        c.password.reset();
        complete_connect(std::move(c), now);
        return;
    }
    if (!c.username || !sec.passwords) {
        if (sec.allow_anonymous) {
            complete_connect(std::move(c), now);
            return;
        }
        client_id_ = c.client_id;
        refuse_auth(c.username ? "user name given but no password_file, allow_anonymous false"
                               : "anonymous, allow_anonymous false");
        return;
    }
    state_ = session_state::authenticating;
    if (c.password) {
        more().auth =
            std::make_unique<auth_request>(auth_request{sec.passwords, *c.username, *c.password});
        more().pending_connect = std::make_unique<protocol::connect_packet>(std::move(c));
        return;
    }
    more().pending_connect = std::make_unique<protocol::connect_packet>(std::move(c));
    on_auth_result(false, now);  // a user name without a password: wrong, after the delay
}

std::optional<auth_request> session::take_auth_request() {
    if (!more_ || !more_->auth) return std::nullopt;
    std::optional<auth_request> r{std::move(*more_->auth)};
    more_->auth.reset();
    return r;
}

void session::on_auth_result(bool ok, clock::time_point now) {
    if (state_ != session_state::authenticating || !more_ || !more_->pending_connect ||
        more_->refuse_at != clock::time_point::max()) {
        return;
    }
    now_ = std::max(now_, now);
    more_->auth.reset();
    if (ok) {
        auto c = std::move(*more_->pending_connect);
        more_->pending_connect.reset();
        complete_connect(std::move(c), now);
        wake();
        return;
    }
    client_id_ = more_->pending_connect->client_id;
    more_->refuse_at = now + engine_.config().auth_failure_delay;
    if (more_->refuse_at <= now) on_timer(now);
}

void session::use_certificate_username(std::optional<std::string> name) {
    certificate_username_ = true;
    more().certificate_name = std::move(name);
}

void session::refuse_auth(std::string_view why, bool bad_credentials) {
    ++engine_.stats().auth_failures;
    std::string user = "(none)";
    if (more_ && more_->pending_connect && more_->pending_connect->username) {
        user = "'" + *more_->pending_connect->username + "'";
    }
    if (more_) more_->pending_connect.reset();
    if (engine_.logging(0)) {
        engine_.log(0, "client " + client_id() + " refused from " + peer_.str() +
                           ": not authorised (" + std::string{why} +
                           (user == "(none)" ? "" : ", user " + user) + ")");
    }
    // 3.1.1's return code 4 would say the same, but Mosquitto (and so its clients' users)
    // expect 5 there; 5.0's 0x86 tells a mistyped password from a missing permission.
    const bool v5 = protocol::is_v5(version_);
    refuse_connect(v5 && bad_credentials ? reason_code::bad_user_name_or_password
                                         : reason_code::not_authorized,
                   "not authorised");
    wake();
}

void session::complete_connect(protocol::connect_packet&& c, clock::time_point now) {
    const bool v5 = protocol::is_v5(version_);
    const auto& cfg = engine_.config();
    const auto& sec = engine_.security(security_slot_);
    max_qos_ = sec.max_qos;
    // 5.0: an empty id is answered with the one given (for use_username_as_clientid the user
    // name, as Mosquitto 2 does); a non-empty id replaced by the user name is not announced.
    const bool assigned = c.client_id.empty() && v5;
    if (sec.use_username_as_clientid) {
        // After authentication (the name is then the checked one, or the certificate's).
        // Mosquitto 2 refuses a client without one as not authorised.
        client_id_ = c.client_id;
        if (!c.username || c.username->empty()) {
            refuse_auth("no user name, use_username_as_clientid true");
            return;
        }
        if (c.username->size() > cfg.max_client_id_length) {
            refuse_connect(reason_code::client_identifier_not_valid,
                           "user name over max_client_id_length, use_username_as_clientid true");
            return;
        }
        c.client_id = *c.username;
    } else if (c.client_id.empty()) {
        c.client_id = engine_.assign_client_id(sec.auto_id_prefix);
    }
    client_id_ = std::move(c.client_id);
    keep_alive_ = c.keep_alive;
    bridge_ = c.bridge && !v5;
    // 5.0: a Keep Alive over max_keepalive (or 0) is replaced by Server Keep Alive.
    const bool server_keep_alive =
        v5 && cfg.max_keepalive != 0 && (keep_alive_ == 0 || keep_alive_ > cfg.max_keepalive);
    if (server_keep_alive) keep_alive_ = cfg.max_keepalive;
    inflight_cap_ = cfg.max_inflight;
    if (v5) {
        inflight_cap_ = std::min(inflight_cap_, c.props.receive_maximum.value_or(65535));
        client_max_packet_ = c.props.maximum_packet_size.value_or(0);
        alias_in_max_ = sec.max_topic_alias.value_or(cfg.max_topic_alias);
        alias_out_max_ = std::min(c.props.topic_alias_maximum.value_or(0), alias_in_max_);
    }
    if (inflight_limit_ != 0) inflight_cap_ = std::min(inflight_cap_, inflight_limit_);
    // At most half of the 65,535 packet ids in flight: next_packet_id() then finds a run of
    // at least as many free ids with each scan of the window, instead of one id per scan
    // (a scan per message) when nearly every id is taken.
    inflight_cap_ = std::min(inflight_cap_, max_outbound_window);
    const bool creates = c.clean_start || engine_.find_session(client_id_.get()) == nullptr;
    if (creates && expiry_for(c) != 0 &&
        engine_.offline_session_count() >= cfg.max_offline_sessions) {
        ++engine_.stats().sessions_refused;
        refuse_connect(v5 ? reason_code::quota_exceeded : reason_code::server_unavailable,
                       "max_offline_sessions reached");
        return;
    }
    state_ = session_state::connected;
    last_rx_ = now;
    // Closes an older connection with this id; discards or resumes the session.
    const auto attached = engine_.attach(*this, client_id_.get(), c.clean_start, now);
    ds_ = attached.state;
    // The durable session holds the id now; ours comes back at the close (client_id()).
    client_id_.reset();
    engine_.identify(*ds_, std::move(c.username), security_slot_, listener_);
    ds_->expiry_interval = expiry_for(c);
    message_ptr will;
    std::uint32_t will_delay = 0;
    if (c.will) {
        if (v5) will_delay = c.will->props.will_delay_interval.value_or(0);
        if (!cfg.retain_available) c.will->retain = false;  // 3.1.1: the flag is ignored
        will = make_message(std::move(*c.will), now);
    }
    ds_->set_will(std::move(will), will_delay);
    if (auto* store = engine_.store()) store->session_online(*ds_);

    protocol::connack_packet ack;
    // Clean Start discarded any session, so this is 0 then (MQTT-3.2.2-1..3, 5.0 §3.2.2.1.1).
    ack.session_present = attached.present;
    if (v5) {
        auto& p = ack.props;
        if (assigned) p.assigned_client_identifier = client_id();
        if (server_keep_alive) p.server_keep_alive = keep_alive_;
        if (!cfg.retain_available) p.retain_available = 0;
        p.receive_maximum = cfg.receive_maximum;
        p.maximum_packet_size = cfg.max_packet_size;
        // Absent (0) when aliases are off: the client may not use any (MQTT-3.2.2-17).
        if (alias_in_max_ != 0) p.topic_alias_maximum = alias_in_max_;
        if (max_qos_ < 2) p.maximum_qos = max_qos_;
    }
    send(ack);
    ++engine_.stats().connects_accepted;
    if (engine_.logging(1)) {
        engine_.log(1, "client " + client_id() + " connected from " + peer_.str() + " (" +
                           std::string{to_string(version_)} + ", keep alive " +
                           std::to_string(keep_alive_) + "s" + (bridge_ ? ", bridge" : "") +
                           (attached.present ? ", session resumed)" : ")"));
    }
    if (attached.present) resume();
}

}  // namespace mqtt::broker
