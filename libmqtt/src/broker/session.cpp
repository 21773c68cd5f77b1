// The connection lifecycle of a session: keep-alive, DISCONNECT, closing, and the packet
// dispatch. CONNECT and authentication are in session_connect.cpp, the PUBLISH and
// SUBSCRIBE flows in session_flows.cpp.

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

// Gives the engine's reused packet or PUBLISH view back when a handler returns.
struct rx_lease {
    engine& e;
    ~rx_lease() { e.return_rx_packet(); }
};

}  // namespace

session::session(engine& e, clock::time_point now, std::string_view peer)
    : engine_(e), peer_(peer), created_(now), last_rx_(now), now_(now) {
    engine_.add(*this);
}

session::~session() {
    release_throttled();
    release_shards(false);  // a close released them already, unless the shards are ending
    stop_waiting();
    // Gone without a close (the transport always closes first): keep the session, no Will.
    if (ds_ != nullptr) engine_.detach(*std::exchange(ds_, nullptr), false, now_);
    engine_.remove(*this);
}

// ---- input ------------------------------------------------------------------------------

void session::on_frame(const protocol::frame& f, clock::time_point now) {
    handle_frame(f, now);
    settle_output();  // the answers, for a client that does not read them
}

void session::handle_frame(const protocol::frame& f, clock::time_point now) {
    if (state_ == session_state::closing) return;
    last_rx_ = now;
    now_ = now;
    if (state_ == session_state::awaiting_connect) {
        handle_connect(f, now);
        return;
    }
    if (state_ == session_state::authenticating) {
        // The driver holds input while a password is checked (input_paused()).
        close(reason_code::protocol_error, "packet while authenticating", false, false);
        return;
    }
    // PUBACK, PUBREL and PUBCOMP with a packet id only (success, no properties: the only
    // form in 3.1.1, the usual one in 5.0) are half of what a busy QoS 1/2 connection
    // reads: handled without building a packet. Id 0 and every other form take the decoder.
    if (f.body.size() == 2 && (f.body[0] | f.body[1]) != 0) {
        const auto id = static_cast<std::uint16_t>((f.body[0] << 8) | f.body[1]);
        switch (f.first_byte) {
            case 0x40: on_puback(id); return;
            case 0x62: on_pubrel(id); return;
            case 0x70: on_pubcomp(id); return;
            default: break;
        }
    }
    if (f.first_byte >> 4 == static_cast<std::uint8_t>(protocol::packet_type::publish)) {
        // A PUBLISH as views of the frame: its topic and payload are copied once, into the
        // message that is routed.
        if (auto* rx = engine_.borrow_rx_publish()) {
            const rx_lease lease{engine_};
            handle_publish_frame(f, *rx, now);
        } else {
            protocol::publish_view fresh;  // the engine's is lent out
            handle_publish_frame(f, fresh, now);
        }
        return;
    }
    if (auto* rx = engine_.borrow_rx_packet()) {
        // Decoded into the engine's reused packet: no property set built and destroyed,
        // no allocation for strings the handler does not take.
        const rx_lease lease{engine_};
        if (const auto ec = protocol::decode_into(f.first_byte, f.body, version_, *rx)) {
            protocol_violation(ec);
            return;
        }
        handle_packet(std::move(*rx), now);
        return;
    }
    auto decoded = protocol::decode(f.first_byte, f.body, version_);
    if (!decoded) {
        protocol_violation(decoded.error());
        return;
    }
    handle_packet(std::move(*decoded), now);
}

void session::handle_publish_frame(const protocol::frame& f, protocol::publish_view& p,
                                   clock::time_point now) {
    if (const auto ec = protocol::decode_publish_view(f.first_byte, f.body, version_, p)) {
        protocol_violation(ec);
        return;
    }
    p.source = f.source;
    on_publish(p, now);
}

void session::on_framing_error(std::error_code ec) {
    if (state_ == session_state::closing) return;
    if (state_ == session_state::awaiting_connect || state_ == session_state::authenticating) {
        ++engine_.stats().protocol_errors;
        close(reason_code::malformed_packet, to_string(static_cast<errc>(ec.value())), false,
              false);
        return;
    }
    protocol_violation(ec);
}

void session::on_transport_closed(clock::time_point now) {
    if (state_ == session_state::closing) return;
    now_ = std::max(now_, now);
    // Closed without DISCONNECT: the Will is published (MQTT-3.1.2-8).
    close(reason_code::unspecified_error, "connection lost", false, true);
}

void session::on_timer(clock::time_point now) {
    if (state_ == session_state::closing || now < deadline()) return;
    now_ = std::max(now_, now);
    if (state_ == session_state::awaiting_connect) {
        ++engine_.stats().protocol_errors;
        close(reason_code::maximum_connect_time, "no CONNECT in time", false, false);
        return;
    }
    if (state_ == session_state::authenticating) {
        if (refuse_at() <= now) {
            refuse_auth("bad user name or password", true);
        } else {
            close(reason_code::maximum_connect_time, "password check took too long", false, false);
        }
        return;
    }
    const auto hold = engine_.config().backpressure_timeout;
    if (holding_any() && hold.count() != 0 && more_->held_since + hold <= now) {
        expire_hold();
        // The keep-alive may be due as well: on below; else the watchdog comes back for it.
        if (now < deadline()) return;
    }
    if (rate_paused() && more_->rate_resume <= now) {
        // The pause for max_publish_rate is over: read again. The client's silence was
        // ours, so its keep-alive starts again from now.
        more_->rate_resume = {};
        last_rx_ = now;
        wake();
        return;
    }
    if (waiting()) {
        // We stopped reading this publisher ourselves (back-pressure): its silence is ours,
        // not a dead client. Its keep-alive starts again from now.
        last_rx_ = now;
        return;
    }
    ++engine_.stats().keep_alive_timeouts;
    close(reason_code::keep_alive_timeout, "keep_alive_timeout", true, true);  // MQTT-3.1.2-24
}

void session::on_written() {
    pump();
}

// ---- output -----------------------------------------------------------------------------

void session::settle_output() {
    engine_.charge_output(out_);
}

// The batch goes to the connection with its charge, which the connection gives back once it
// is written (output_batch::clear()).
void session::take_output(output_batch& into) {
    into.clear();
    settle_output();
    std::swap(into, out_);
    // Keep the capacity of ordinary batches, not of one huge message.
    if (out_.bytes.capacity() > (std::size_t{256} << 10)) {
        std::vector<std::uint8_t>{}.swap(out_.bytes);
    }
}

void session::take_output(std::vector<std::uint8_t>& into) {
    into.clear();
    if (out_.payloads().empty()) {
        std::swap(into, out_.bytes);
    } else {
        out_.flatten_into(into);
        out_.clear();
    }
    settle_output();  // held by the caller now, not counted
    if (out_.bytes.capacity() > (std::size_t{256} << 10)) {
        std::vector<std::uint8_t>{}.swap(out_.bytes);
    }
}

void session::recycle_output(output_batch& b) noexcept {
    if (!out_.empty() || !b.empty() || b.bytes.capacity() <= out_.bytes.capacity()) return;
    if (b.bytes.capacity() > (std::size_t{256} << 10)) return;  // as take_output(): not huge ones
    if (b.bytes.capacity() < 256) return;  // cheap to allocate again; idle connections keep none
    std::swap(out_.bytes, b.bytes);
}

bool session::hold_subscribe() {
    if (retained_hold_ == retained_waiting) return true;
    if (std::exchange(retained_hold_, std::uint8_t{0}) == retained_passed) return false;
    if (state_ != session_state::connected || !engine_.hold_for_retained(*this)) return false;
    retained_hold_ = retained_waiting;
    return true;
}

bool session::input_paused() const noexcept {
    if (state_ == session_state::authenticating || retained_hold_ == retained_waiting) return true;
    // The pause for shards applies only to a session nobody waits for: a congested one, or
    // one holding up publishers or shards, goes on reading the acknowledgements that drain
    // it (what is paused holds nothing up, so no wait across shards can close a cycle).
    const bool for_shards =
        shard_paused_ && !throttling_any() && !holding_shards() && !congested();
    return waiting() || for_shards || rate_paused() ||
           out_.size() > engine_.config().max_outbound_bytes;
}

clock::time_point session::deadline() const noexcept {
    switch (state_) {
        case session_state::awaiting_connect:
            return created_ + engine_.config().connect_timeout;
        case session_state::authenticating:
            if (refuse_at() != clock::time_point::max()) return refuse_at();
            return created_ + engine_.config().connect_timeout;
        case session_state::connected: {
            // One and a half times the Keep Alive (MQTT-3.1.2-24).
            const auto keep_alive =
                keep_alive_ == 0
                    ? clock::time_point::max()
                    : last_rx_ + std::chrono::milliseconds{std::uint64_t{keep_alive_} * 1500};
            auto next = rate_paused() ? std::min(keep_alive, more_->rate_resume) : keep_alive;
            const auto hold = engine_.config().backpressure_timeout;
            if (holding_any() && hold.count() != 0) next = std::min(next, more_->held_since + hold);
            return next;
        }
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
    [[maybe_unused]] const auto ec = protocol::encode_append(p, v, out_.bytes);
}

// ---- dispatch ---------------------------------------------------------------------------

void session::handle_packet(protocol::packet&& p, clock::time_point now) {
    using protocol::packet_type;
    switch (protocol::type_of(p)) {
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
        // PUBLISH never comes here: handle_frame hands every PUBLISH frame to
        // handle_publish_frame. Should one arrive, it is refused below, not dropped.
        default:  // CONNACK, SUBACK, UNSUBACK, PINGRESP: server-to-client only; AUTH: no method
            protocol_violation(reason_code::protocol_error,
                               "unexpected " + std::string{to_string(protocol::type_of(p))});
            return;
    }
}

void session::on_disconnect(const protocol::disconnect_packet& p) {
    if (protocol::is_v5(version_) && p.props.session_expiry_interval) {
        // Session Expiry may not go from 0 to non-zero at DISCONNECT (MQTT-3.14.2-2).
        if (ds_->expiry_interval == 0 && *p.props.session_expiry_interval != 0) {
            protocol_violation(reason_code::protocol_error, "session expiry set at DISCONNECT");
            return;
        }
        ds_->expiry_interval = *p.props.session_expiry_interval;  // §3.14.2.2.2
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
    close(protocol::allowed_or_unspecified(rc, protocol::packet_type::disconnect), why, true, true);
}

void session::close_by_server(reason_code rc, clock::time_point now) {
    now_ = std::max(now_, now);
    close_by_server(rc);
}

void session::close_by_server(reason_code rc) {
    if (state_ == session_state::closing) return;
    // A 5.0 connection taken over releases its Will (§3.1.4, after its Will Delay, which a
    // resuming takeover cancels: MQTT-3.1.3-9). 3.1.1 takeover sends no Will.
    const bool will = rc == reason_code::session_taken_over && protocol::is_v5(version_);
    close(rc, to_string(rc), true, will);
    wake();
}

void session::close(reason_code rc, std::string_view why, bool send_disconnect, bool publish_will) {
    if (state_ == session_state::closing) return;
    const bool was_connected = state_ == session_state::connected;
    state_ = session_state::closing;
    more().close_reason.assign(why);
    // Whatever this connection was waiting for or holding up ends with it.
    release_throttled();
    release_shards();
    stop_waiting();
    if (send_disconnect && was_connected && protocol::is_v5(version_)) {
        protocol::disconnect_packet d;
        d.code = rc;
        send(d);
    }
    if (engine_.logging(1) && was_connected) {
        engine_.log(1, "client " + client_id() + " closed: " + more_->close_reason);
    }
    // Last: the engine may end the session and publish the Will, or keep it offline.
    if (ds_ != nullptr) {
        client_id_ = ds_->client_id;  // for the logs after the close
        engine_.detach(*std::exchange(ds_, nullptr), publish_will, now_);
    }
}

}  // namespace mqtt::broker
