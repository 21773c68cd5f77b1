#pragma once

// The MQTT-SN gateway's per-client state machine, without I/O: datagrams from one client
// and the time come in, datagrams to that client come out. Each MQTT-SN client is an MQTT
// 3.1.1 broker::session of the engine (no TCP hop): its CONNECT, PUBLISH, SUBSCRIBE, ...
// are translated into MQTT packets fed to that session, and what the session answers
// (CONNACK, PUBACK, deliveries) is translated back. Limits, ACLs, retained messages,
// persistence and keep-alive are therefore those of MQTT clients.
//
// The mapping (docs/mqtt-sn.md): topic ids registered per client (REGISTER from the client,
// or REGISTER from the gateway before the first delivery on a topic, held until REGACK),
// predefined topic ids from the settings, two-character short names as the topic itself;
// MQTT-SN MsgId = MQTT Packet Identifier; QoS -1 without a connection goes straight to
// the engine as a QoS 0 publish.
//
// Retransmission (MQTT-SN 1.2, 6.13): the gateway's REGISTER, QoS 1/2 PUBLISH and PUBREL
// are resent (a PUBLISH with DUP set) every retry_interval until answered, at most
// retry_count times; then the client is lost, as at a keep-alive expiry (its Will goes out).
//
// Sleeping clients (6.14): DISCONNECT with a Duration makes the client asleep. Deliveries
// are then held (QoS 0 ones up to max_buffered, the others bounded by the session's
// in-flight window and queue); a PINGREQ wakes it: the gateway sends what it holds and,
// once everything is acknowledged, PINGRESP, and the client is asleep again. CONNECT makes
// it active. No datagram for 1.5 x the Duration: lost. The MQTT session stays connected
// meanwhile (the gateway keeps it alive).
//
// Will updates (5.4.22 to 5.4.25): WILLTOPICUPD / WILLMSGUPD replace the Will held by the
// session (broker::session::replace_will); the empty WILLTOPICUPD deletes it.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/mqttsn.hpp"

namespace mqtt::broker {

class engine;

struct mqttsn_settings {
    std::uint8_t gateway_id = 1;
    // Predefined topic ids, the same for every client: id -> topic name.
    std::map<std::uint16_t, std::string> predefined;
    // Normal topic ids one client may hold (its REGISTERs and the gateway's).
    std::size_t max_topic_ids = 1000;
    // T_RETRY and N_RETRY.
    std::chrono::milliseconds retry_interval{10'000};
    unsigned retry_count = 3;
    // QoS 0 deliveries one client may have held (asleep, or waiting for a REGACK); more are
    // dropped and counted.
    std::size_t max_buffered = 100;
    // QoS 1/2 PUBLISHes sent to one client and not yet acknowledged (mqttsn_max_inflight):
    // the session's in-flight window; its queue holds the rest. MQTT-SN 1.2 clients expect
    // one at a time.
    std::uint16_t max_inflight = 1;
    // SO_RCVBUF of the listener's UDP socket (mqttsn_receive_buffer), asked of the kernel,
    // which caps it at net.core.rmem_max; 0: the system's default.
    std::size_t receive_buffer = 4 << 20;
    // The engine's security policy slot of this listener (per_listener_settings); 0: the
    // broker's.
    std::size_t security_slot = 0;
    // The number of this listener (its index in the configuration + 1), for the store
    // (session::set_listener).
    std::size_t listener = 0;
    // Periodic ADVERTISE, sent by the UDP driver to advertise_host:advertise_port every
    // advertise_interval; 0: none.
    std::chrono::seconds advertise_interval{0};
    std::string advertise_host;
    std::uint16_t advertise_port = 0;
};

// What the gateway does with a datagram from an address that has no client yet.
enum class mqttsn_unattached {
    new_client,  // a CONNECT: make a gateway_client and give it the datagram
    answered,    // SEARCHGW (GWINFO in `reply`) or a QoS -1 PUBLISH (routed)
    dropped,     // malformed or not for a gateway without a connection: counted
};
mqttsn_unattached mqttsn_handle_unattached(engine& e, const mqttsn_settings& s,
                                           std::span<const std::uint8_t> datagram,
                                           clock::time_point now,
                                           std::vector<std::uint8_t>& reply);

// The forwarder encapsulation (MQTT-SN 1.2, 5.5): a forwarder relays the messages of
// wireless nodes to the gateway, each wrapped with the node's Wireless Node Id. The gateway
// keeps one client per (forwarder address, node id) and wraps what it sends to that node.
struct mqttsn_envelope {
    std::optional<std::string> node;        // the Wireless Node Id; nullopt: not wrapped
    std::span<const std::uint8_t> message;  // the message itself (within the datagram)
};
// nullopt: an encapsulation that does not decode (or wraps one that does not).
std::optional<mqttsn_envelope> mqttsn_open(std::span<const std::uint8_t> datagram);
// `message` wrapped for the node `node` (Ctrl 0: the radius is for broadcasts).
std::vector<std::uint8_t> mqttsn_wrap(const std::string& node, std::span<const std::uint8_t> message);

// The client id a datagram from an address without a client names: a PINGREQ with a
// client id (a sleeping client waking from another address) or a CONNECT. Empty for any
// other datagram. The driver gives such a datagram to the sleeping (or awake) client of
// that id, which then lives at the new address.
std::string mqttsn_claimed_client_id(std::span<const std::uint8_t> datagram);

class mqttsn_client {
  public:
    mqttsn_client(engine& e, const mqttsn_settings& s, clock::time_point now, std::string peer);
    ~mqttsn_client();
    mqttsn_client(const mqttsn_client&) = delete;
    mqttsn_client& operator=(const mqttsn_client&) = delete;

    // Deliveries routed from other clients wake the observer; the driver then calls
    // take_output().
    void set_observer(session_observer* o) noexcept { session_.set_observer(o); }

    // ---- input
    void on_datagram(std::span<const std::uint8_t> datagram, clock::time_point now);
    void on_timer(clock::time_point now);  // at (or after) deadline()
    // The driver drops the client (shutdown): the session ends as for a lost connection.
    void on_transport_closed(clock::time_point now);

    // ---- output
    // The datagrams to send, in order (moved out). `now` times the retransmissions of
    // what goes out.
    std::vector<std::vector<std::uint8_t>> take_output(clock::time_point now);
    clock::time_point deadline() const noexcept;
    // Over: send what take_output() gave, then destroy this object.
    bool closed() const noexcept { return closed_; }

    // ---- inspection
    std::size_t dropped() const noexcept { return dropped_; }  // malformed or unexpected
    // QoS 0 deliveries dropped because max_buffered were held.
    std::size_t buffer_dropped() const noexcept { return buffer_dropped_; }
    std::size_t retransmitted() const noexcept { return retransmitted_; }
    bool asleep() const noexcept { return state_ == sleep_state::asleep; }
    bool awake() const noexcept { return state_ == sleep_state::awake; }
    bool lost() const noexcept { return lost_; }  // N_RETRY or the sleep timer ran out
    std::size_t unacknowledged() const noexcept { return unacked_.size(); }
    std::size_t buffered() const noexcept { return outbox_.size(); }
    const broker::session& session() const noexcept { return session_; }
    std::string_view client_id() const noexcept { return session_.client_id(); }

  private:
    void handle(protocol::mqttsn::message&& m, clock::time_point now);
    void on_connect(protocol::mqttsn::connect&& c, clock::time_point now);
    void finish_connect(std::optional<protocol::will_message> will, clock::time_point now);
    void on_publish(protocol::mqttsn::publish&& p, clock::time_point now);
    void on_register(const protocol::mqttsn::register_& r);
    void on_subscribe(protocol::mqttsn::subscribe&& s, clock::time_point now);
    void on_unsubscribe(protocol::mqttsn::unsubscribe&& u, clock::time_point now);
    void on_disconnect(const protocol::mqttsn::disconnect& d, clock::time_point now);
    void on_pingreq(clock::time_point now);
    // mqttsn_will.cpp: the Will of the connected client replaced in its session.
    void on_willtopicupd(protocol::mqttsn::willtopicupd&& u);
    void on_willmsgupd(protocol::mqttsn::willmsgupd&& u);

    // MQTT side.
    void feed(const protocol::packet& p, clock::time_point now);
    void pump();
    void translate(protocol::packet&& p);
    void deliver(protocol::publish_packet&& p);

    // Topic ids.
    std::optional<std::string> topic_of(protocol::mqttsn::topic_id_type t, std::uint16_t id) const;
    std::uint16_t register_topic(const std::string& name);  // 0 when the ids ran out

    void send(const protocol::mqttsn::message& m);
    // A datagram that decoded but is not valid in this state.
    void drop() noexcept {
        ++dropped_;
        ++stats_.mqttsn_datagrams_unexpected;
    }
    // A delivery that cannot be sent to this client (no topic id left, too long).
    void drop_delivery() noexcept {
        ++dropped_;
        ++stats_.mqttsn_dropped_undeliverable;
    }

    // Retransmission and sleep.
    enum class sleep_state : std::uint8_t { active, asleep, awake };
    enum class answer : std::uint8_t { none, regack, puback_pubrec, pubcomp };
    // Sends m now (and arms its retry timer when it expects `a`), or holds it while asleep.
    void emit(protocol::mqttsn::message&& m, answer a, std::uint16_t msg_id);
    void track(protocol::mqttsn::message&& m, answer a, std::uint16_t msg_id);
    bool settle(answer a, std::uint16_t msg_id);  // false: nothing was waiting for it
    void retransmit_due(clock::time_point now);
    void resend_all();  // after a wake: everything unacknowledged, at once
    void wake(sleep_state to, clock::time_point now);
    void go_asleep(clock::time_point now);
    void sleep_again_if_done();
    void keep_session_alive(clock::time_point now);
    void lose(clock::time_point now);

    const mqttsn_settings& settings_;
    broker::stats& stats_;  // the engine's: the gateway counters of $SYS and /metrics
    broker::session session_;
    protocol::framer from_session_;
    std::vector<std::uint8_t> scratch_;
    std::vector<std::vector<std::uint8_t>> out_;
    bool connected_ = false;  // CONNACK accepted went out
    bool closed_ = false;
    bool client_disconnected_ = false;
    std::size_t dropped_ = 0;

    // CONNECT with the Will flag: held while WILLTOPIC and WILLMSG are asked for.
    std::optional<protocol::mqttsn::connect> pending_connect_;
    std::optional<protocol::mqttsn::willtopic> pending_will_topic_;
    // A WILLMSGUPD while the client has no Will: the message of its next WILLTOPICUPD.
    std::optional<std::string> will_message_only_;

    // Normal topic ids of this client, both ways.
    std::unordered_map<std::uint16_t, std::string> topics_;
    std::unordered_map<std::string, std::uint16_t> topic_ids_;
    std::uint16_t next_topic_id_ = 1;
    // Deliveries held until the client acknowledges the REGISTER of their topic:
    // gateway REGISTER MsgId -> the PUBLISHes waiting.
    std::map<std::uint16_t, std::vector<protocol::mqttsn::publish>> awaiting_regack_;
    std::uint16_t next_register_msg_id_ = 1;
    std::unordered_map<std::uint16_t, std::uint16_t> unacked_topics_;  // TopicId -> MsgId
    // Client QoS 1/2 publishes waiting for the session's PUBACK/PUBREC: MsgId -> TopicId,
    // and SUBSCRIBEs waiting for SUBACK: MsgId -> the TopicId to return.
    std::unordered_map<std::uint16_t, std::uint16_t> publish_topic_;
    std::unordered_map<std::uint16_t, std::uint16_t> subscribe_topic_;

    // What the gateway sent and waits an answer for, in the order sent.
    struct unacked {
        answer expects;
        std::uint16_t msg_id;
        protocol::mqttsn::message m;
        unsigned resent = 0;
        clock::time_point due;
    };
    std::vector<unacked> unacked_;
    // Deliveries (and REGISTERs) held while the client sleeps, in order.
    struct held_message {
        protocol::mqttsn::message m;
        answer expects;
        std::uint16_t msg_id;
    };
    std::deque<held_message> outbox_;
    std::size_t held_qos0_ = 0;  // QoS 0 PUBLISHes in outbox_ and awaiting_regack_
    sleep_state state_ = sleep_state::active;
    std::chrono::seconds sleep_duration_{0};
    clock::time_point sleep_deadline_ = clock::time_point::max();
    clock::time_point now_{};
    unsigned swallow_pingresp_ = 0;  // PINGREQs the gateway fed the session itself
    bool lost_ = false;
    std::size_t buffer_dropped_ = 0;
    std::size_t retransmitted_ = 0;
};

}  // namespace mqtt::broker
