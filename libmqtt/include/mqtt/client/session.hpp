#pragma once

// The client side of an MQTT connection as a sans-I/O state machine: frames and time go in,
// bytes to send, events and one timer deadline come out. No sockets, no clock, no Asio; the
// driver (net_client.cpp) or a test moves the bytes and passes the time.

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "mqtt/client/error.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/packet.hpp"
#include "mqtt/result.hpp"

namespace mqtt::client {

using clock = std::chrono::steady_clock;

struct session_config {
    protocol::connect_packet connect;  // the version to speak is connect.version
    std::chrono::milliseconds connect_timeout{10'000};
    // Outbound QoS 1/2 messages in flight at once before MQTT 5.0, where the broker cannot
    // announce a Receive Maximum: Mosquitto closes a 3.1.1 connection with more than its
    // max_inflight_messages (20) QoS 2 messages open. In 5.0 the broker's value applies.
    std::uint16_t max_inflight_v3 = 20;
    // Keep a copy of every unacknowledged QoS 1/2 PUBLISH, and the queue past the Receive
    // Maximum, across the end of a connection, so that reconnect() can send them again.
    bool keep_unacknowledged = false;
    // Inbound QoS 1/2 messages are acknowledged (PUBACK, PUBREC) only when the application
    // calls acknowledge() with the message's ack_token, e.g. once a bridge's destination has
    // taken the message. Until then a resend with the same packet id is not delivered again.
    bool manual_ack = false;
    // Packet identifiers publish(), subscribe() and unsubscribe() allocate start here; those
    // below are the application's, for publish_with_id() (the bridge's on-disk queue).
    std::uint16_t first_auto_id = 1;
    // A QoS 2 PUBREC is also reported, as a publish_done_event with `received` set, before
    // the PUBCOMP's (so that the application can record it before the PUBREL goes out).
    bool report_pubrec = false;
};

// ---- events (what the application learns) ----------------------------------------------

struct connected_event {
    protocol::connack_packet connack;
};
// A message from the broker, delivered once (QoS 2: once per packet identifier exchange).
struct message_event {
    protocol::publish_packet message;
    // With manual_ack, for QoS 1 and 2: pass to acknowledge() (0 otherwise).
    std::uint64_t ack_token = 0;
};
// An outbound QoS 1 or 2 message is done: acknowledged (code < 0x80) or refused by the
// broker (code >= 0x80, MQTT 5.0).
struct publish_done_event {
    std::uint16_t packet_id = 0;
    protocol::reason_code code = protocol::reason_code::success;
    bool received = false;  // with report_pubrec: PUBREC only, the PUBCOMP is yet to come
};
struct suback_event {
    std::uint16_t packet_id = 0;
    std::vector<protocol::reason_code> codes;
};
struct unsuback_event {
    std::uint16_t packet_id = 0;
    std::vector<protocol::reason_code> codes;  // MQTT 5.0 only
};
// The end. `error` is empty after disconnect(); `reason` is what the broker said (CONNACK or
// DISCONNECT code) or what we sent in our DISCONNECT.
struct closed_event {
    std::error_code error;
    protocol::reason_code reason = protocol::reason_code::success;
    std::string reason_string;  // MQTT 5.0 Reason String from the broker, if any
};

using event = std::variant<connected_event, message_event, publish_done_event, suback_event,
                           unsuback_event, closed_event>;

enum class session_state : std::uint8_t { idle, connecting, connected, closed };

// The driver's loop: start(), then on_frame() for every frame, on_timer() at deadline(),
// on_transport_closed() at EOF; after each call, send take_output() and handle
// take_events(). Once closed(), flush the output (a last DISCONNECT) and close the socket.
class session {
  public:
    explicit session(session_config cfg);

    void start(clock::time_point now);  // queues CONNECT
    void on_frame(const protocol::frame& f, clock::time_point now);
    void on_framing_error(std::error_code ec);
    void on_timer(clock::time_point now);
    void on_transport_closed(std::error_code ec);

    // Queue a PUBLISH; the packet id is assigned here (0 for QoS 0). Past the broker's
    // Receive Maximum the message waits in order and goes out when an ack frees a slot.
    result<std::uint16_t> publish(protocol::publish_packet p, clock::time_point now);
    // The same without taking the packet, which stays the caller's (its packet_id and dup
    // are set as sent): the session copies it only to keep it, past the Receive Maximum or
    // with keep_unacknowledged. A caller that reuses one packet for message after message
    // (tern-bench) saves a copy of every payload.
    result<std::uint16_t> publish_borrowed(protocol::publish_packet& p, clock::time_point now);
    // The same with the application's packet id (below first_auto_id, not in use), and its
    // DUP flag kept: a message sent again after the application restarted.
    result<std::uint16_t> publish_with_id(protocol::publish_packet p, std::uint16_t id,
                                          clock::time_point now);
    // Before start() (with keep_unacknowledged): a QoS 2 message with this id, whose PUBREC
    // an earlier run of the application had received, waits for its PUBCOMP: the CONNACK
    // sends its PUBREL when the broker kept the session, and reports it done when not.
    bool restore_released(std::uint16_t id);
    result<std::uint16_t> subscribe(std::vector<protocol::subscription> subs,
                                    protocol::properties props, clock::time_point now);
    result<std::uint16_t> unsubscribe(std::vector<std::string> filters, clock::time_point now);
    result<std::uint16_t> unsubscribe(std::vector<std::string> filters, protocol::properties props,
                                      clock::time_point now);
    // With manual_ack: acknowledge the inbound message delivered with `token` (PUBACK for
    // QoS 1, PUBREC for QoS 2, with `rc` in MQTT 5.0). False when the token is unknown: the
    // message was acknowledged already, or belonged to a session the broker did not keep.
    // While disconnected a QoS 2 acknowledgement waits for the broker's resend (answered
    // with PUBREC, not delivered again); a QoS 1 message is then delivered again.
    bool acknowledge(std::uint64_t token,
                     protocol::reason_code rc = protocol::reason_code::success);
    // Inbound messages delivered but not yet acknowledge()d.
    std::size_t held() const noexcept { return held_.size(); }
    // Sends DISCONNECT (when connected) and closes with no error.
    void disconnect(protocol::reason_code rc = protocol::reason_code::success);
    // The same with DISCONNECT properties (MQTT 5.0; ignored before).
    void disconnect(protocol::reason_code rc, protocol::properties props);

    // After closed(): start over on a new transport with the session state kept: CONNECT
    // again with clean start off. At CONNACK, unacknowledged QoS 1/2 messages (with
    // keep_unacknowledged) go out again: as DUP resends (PUBREL where PUBREC had arrived) when
    // the broker kept the session, as new messages when it did not (a message whose PUBREC
    // had arrived is then reported done: the broker had taken it). Pending (un)subscriptions
    // are forgotten (so are unacknowledged messages without keep_unacknowledged); inbound QoS
    // 2 state survives only a kept session.
    void reconnect(clock::time_point now);
    // The user name and password of the next CONNECT (start() or reconnect()), e.g. after a
    // configuration reload; the rest of the session is kept.
    void set_credentials(std::optional<std::string> username, std::optional<std::string> password);
    // CONNACKs with the session present flag set since start() (0 or 1 before a reconnect).
    bool resumed() const noexcept { return resumed_; }

    bool has_output() const noexcept { return !output_.empty(); }
    // The bytes queued for the transport (what take_output() would hand over).
    std::size_t output_size() const noexcept { return output_.size(); }
    // Swaps the queued bytes into `into` (whose old content is dropped).
    void take_output(std::vector<std::uint8_t>& into);
    bool has_events() const noexcept { return !events_.empty(); }
    std::vector<event> take_events();

    clock::time_point deadline() const noexcept;
    session_state state() const noexcept { return state_; }
    bool closed() const noexcept { return state_ == session_state::closed; }
    protocol::protocol_version version() const noexcept { return version_; }
    const protocol::connack_packet& connack() const noexcept { return connack_; }
    // Outbound QoS 1/2 messages and (un)subscriptions not yet acknowledged, queued included.
    std::size_t unacknowledged() const noexcept { return outbound_.size(); }
    // Once closed(): what the closed_event said.
    const closed_event& close_info() const noexcept { return close_info_; }

  private:
    enum class pending : std::uint8_t { puback, pubrec, pubcomp, suback, unsuback };

    void send(const protocol::packet& p);
    void fail(std::error_code ec, protocol::reason_code rc);
    void close(std::error_code ec, protocol::reason_code rc, std::string reason_string = {});
    result<std::uint16_t> allocate_id();
    // P: publish_packet (moved where kept) or publish_packet& (copied where kept).
    template <class P>
    result<std::uint16_t> publish_as(P&& p, std::uint16_t id, clock::time_point now);
    void release_slot();
    std::uint16_t send_quota() const noexcept;

    void on_connack(protocol::connack_packet& p, clock::time_point now);
    void on_publish(protocol::publish_packet& p);
    void on_puback(const protocol::puback_packet& p);
    void on_pubrec(const protocol::pubrec_packet& p);
    void on_pubrel(const protocol::pubrel_packet& p);
    void on_pubcomp(const protocol::pubcomp_packet& p);
    void on_suback(protocol::suback_packet& p);
    void on_unsuback(protocol::unsuback_packet& p);
    void on_disconnect(const protocol::disconnect_packet& p);
    void resend_after_reconnect(clock::time_point now);
    void forget_sent(std::uint16_t id);

    session_config cfg_;
    protocol::protocol_version version_;
    session_state state_ = session_state::idle;
    protocol::connack_packet connack_;
    protocol::packet in_;  // decode_into target, reused
    std::vector<std::uint8_t> output_;
    std::vector<event> events_;
    closed_event close_info_;

    std::unordered_map<std::uint16_t, pending> outbound_;
    std::deque<protocol::publish_packet> waiting_;  // past the Receive Maximum
    std::deque<protocol::publish_packet> sent_;     // with keep_unacknowledged, in send order
    bool reconnecting_ = false;
    bool resumed_ = false;
    std::vector<std::string> inbound_aliases_;  // Topic Alias -> topic, when we allow them
    std::uint16_t topic_alias_maximum_ = 0;     // the broker's, for what we send
    std::uint16_t in_flight_publishes_ = 0;
    std::unordered_set<std::uint16_t> inbound_qos2_;  // PUBREC sent, PUBREL not yet seen
    std::uint16_t next_id_ = 1;
    struct held_message {
        std::uint16_t packet_id;
        protocol::qos qos_level;
    };
    std::unordered_map<std::uint64_t, held_message> held_;       // manual_ack: token -> message
    std::unordered_map<std::uint16_t, std::uint64_t> held_ids_;  // packet id -> token
    std::uint64_t next_token_ = 1;
    std::uint64_t hold(std::uint16_t id, protocol::qos q);

    // Limits from CONNACK (MQTT 5.0); the defaults are the specification's.
    std::uint16_t receive_maximum_ = 65535;
    std::uint32_t maximum_packet_size_ = protocol::max_packet_size;
    protocol::qos maximum_qos_ = protocol::qos::exactly_once;
    bool retain_available_ = true;

    std::chrono::seconds keep_alive_{0};
    clock::time_point connect_deadline_ = clock::time_point::max();
    clock::time_point last_sent_{};
    clock::time_point ping_sent_{};
    bool ping_outstanding_ = false;
};

}  // namespace mqtt::client
