#pragma once

// The client side of MQTT-SN 1.2, without I/O: datagrams from the gateway and the time come
// in, datagrams to send and events come out (the same shape as mqtt::client::session).
// Used by tern-pub and tern-sub for mqttsn:// URLs.
//
// One operation at a time, as MQTT-SN 1.2 asks of clients (6.13: one QoS 1/2 PUBLISH
// outstanding): CONNECT, then each queued publish (a REGISTER first for a topic name the
// client has no id for), subscribe or disconnect in order. What expects an answer is resent
// every retry_interval (T_RETRY), DUP set on PUBLISH and SUBSCRIBE, at most retry_count times
// (N_RETRY); then the session is lost. Idle for the keep-alive: PINGREQ. From the gateway:
// REGISTER (answered REGACK), PUBLISH at QoS 0, 1, 2 (PUBACK; PUBREC, then PUBCOMP for its
// PUBREL; a QoS 2 duplicate is delivered once), DISCONNECT.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "mqtt/protocol/mqttsn.hpp"

namespace mqtt::client::mqttsn {

// SO_RCVBUF the tools ask for on their MQTT-SN sockets (the gateway's default too): a burst
// from the gateway waits in the socket instead of being dropped. Linux caps it at
// net.core.rmem_max.
inline constexpr int udp_receive_buffer = 4 << 20;

namespace sn = protocol::mqttsn;
using clock = std::chrono::steady_clock;

struct session_config {
    std::string client_id;
    std::uint16_t keep_alive = 60;  // seconds; 0: no PINGREQ
    bool clean_session = true;
    std::chrono::milliseconds retry_interval{10'000};
    unsigned retry_count = 3;
    // Predefined topic ids the gateway shares with us: id -> topic name, to name what
    // arrives by predefined id.
    std::map<std::uint16_t, std::string> predefined;
};

// How a publish or subscribe names its topic: by name (REGISTER when needed; a two-character
// name goes as a short topic name) or by predefined id.
struct topic_ref {
    std::string name;
    std::optional<std::uint16_t> predefined_id;
};

struct connected_event {};
struct publish_done_event {
    std::uint64_t token = 0;  // publish()'s return value
    std::uint16_t msg_id = 0;
    sn::return_code code = sn::return_code::accepted;  // PUBACK's, or REGACK's refusal
};
struct suback_event {
    std::string filter;
    sn::qos granted = sn::qos::at_most_once;
    sn::return_code code = sn::return_code::accepted;
};
struct message_event {
    std::string topic;
    std::string payload;
    sn::qos qos = sn::qos::at_most_once;
    bool retain = false;
    bool dup = false;
    std::uint16_t msg_id = 0;
};
struct closed_event {
    std::string why;       // empty: a DISCONNECT answered ours
    bool refused = false;  // CONNACK with a refusal
};
using event =
    std::variant<connected_event, publish_done_event, suback_event, message_event, closed_event>;

class session {
  public:
    explicit session(session_config c);

    // ---- requests (queued, run in order once connected)
    void start(clock::time_point now);  // sends CONNECT
    std::uint64_t publish(topic_ref topic, std::string payload, sn::qos q, bool retain);
    void subscribe(topic_ref filter, sn::qos q);
    void disconnect();

    // ---- input
    void on_datagram(std::span<const std::uint8_t> d, clock::time_point now);
    void on_timer(clock::time_point now);  // at (or after) deadline()

    // ---- output
    std::vector<std::vector<std::uint8_t>> take_output(clock::time_point now);
    std::vector<event> take_events() { return std::exchange(events_, {}); }
    clock::time_point deadline() const noexcept;
    bool connected() const noexcept { return state_ == state::connected; }
    bool closed() const noexcept { return state_ == state::closed; }
    // Requests not finished yet (queued or running).
    std::size_t pending() const noexcept { return queue_.size() + (running_ ? 1 : 0); }
    std::size_t dropped() const noexcept { return dropped_; }  // malformed or unexpected

  private:
    enum class state : std::uint8_t { idle, connecting, connected, disconnecting, closed };
    struct request {
        enum class kind : std::uint8_t { publish, subscribe, disconnect } what;
        topic_ref topic;
        std::string payload;
        sn::qos qos = sn::qos::at_most_once;
        bool retain = false;
        std::uint64_t token = 0;
    };
    // The one datagram waiting for an answer: what answers it, and its retry timer.
    enum class answer : std::uint8_t {
        connack,
        regack,
        puback,
        pubrec,
        pubcomp,
        suback,
        disconnect,
        pingresp
    };
    struct outstanding {
        answer expects;
        std::uint16_t msg_id = 0;
        sn::message m;
        unsigned resent = 0;
        clock::time_point due;
    };

    void handle(sn::message&& m, clock::time_point now);
    void on_gateway_publish(sn::publish&& p, clock::time_point now);
    void next(clock::time_point now);  // starts the next request when nothing is outstanding
    void start_publish(clock::time_point now);
    void send_publish(std::uint16_t topic_id, sn::topic_id_type type, clock::time_point now);
    void finish(clock::time_point now);
    void expect(sn::message m, answer a, std::uint16_t msg_id, clock::time_point now);
    bool answers(answer a, std::uint16_t msg_id) const noexcept;
    void send(const sn::message& m, clock::time_point now);
    void close(std::string why, bool refused = false);
    std::uint16_t next_msg_id() noexcept;

    session_config cfg_;
    state state_ = state::idle;
    std::deque<request> queue_;
    std::optional<request> running_;
    std::optional<outstanding> waiting_;
    std::vector<std::vector<std::uint8_t>> out_;
    std::vector<event> events_;
    std::map<std::string, std::uint16_t> ids_;    // topic name -> normal topic id
    std::map<std::uint16_t, std::string> names_;  // normal topic id -> name
    std::set<std::uint16_t> qos2_received_;       // PUBREC sent, PUBREL not yet seen
    std::uint16_t msg_id_ = 0;
    std::uint64_t tokens_ = 0;
    clock::time_point last_sent_{};
    std::size_t dropped_ = 0;
};

}  // namespace mqtt::client::mqttsn
