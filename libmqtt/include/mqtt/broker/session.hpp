#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <vector>

#include "mqtt/broker/limits.hpp"
#include "mqtt/broker/message.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::broker {

class engine;

// Implemented by the transport driver to hear about output or a close that did not come
// from one of its own calls (a message routed from another client, a takeover, shutdown).
class session_observer {
  public:
    virtual void wake() = 0;

  protected:
    ~session_observer() = default;
};

enum class session_state : std::uint8_t {
    awaiting_connect,  // the first packet must be CONNECT
    connected,         // CONNACK 0x00 sent
    closing,           // no more input; flush the output, then close the connection
};

// The server side of one MQTT connection, without I/O: whole packets (frames) and the time
// come in, bytes to write and a "close after flushing" decision come out. The transport
// calls the on_* functions, then looks at has_output(), closing() and deadline().
//
// Sessions are clean in this slice: state lives as long as the connection (see
// docs/broker.md). Not thread-safe; used on the engine's executor only.
class session {
  public:
    session(engine& e, clock::time_point now, std::string peer = {});
    ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    void set_observer(session_observer* o) noexcept { observer_ = o; }

    // ---- input from the transport
    void on_frame(const protocol::frame& f, clock::time_point now);
    void on_framing_error(std::error_code ec);  // the framer failed: close
    void on_transport_closed();                 // EOF or I/O error from the peer's side
    void on_timer(clock::time_point now);       // call at (or after) deadline()
    void on_written();                          // a batch was written: send what waited

    // ---- output to the transport
    bool has_output() const noexcept { return !out_.empty(); }
    // Moves the pending bytes into `into` (cleared first); the buffers swap capacity.
    void take_output(std::vector<std::uint8_t>& into);
    bool closing() const noexcept { return state_ == session_state::closing; }
    // Over the outbound byte limit: the transport stops reading until output drains.
    bool input_paused() const noexcept;
    // When on_timer() must run next: connect timeout or 1.5 x Keep Alive.
    clock::time_point deadline() const noexcept;

    // ---- from the engine
    // One delivery at QoS q (already min(published, granted)); retain is the RETAIN flag
    // to send.
    void deliver(const message_ptr& m, protocol::qos q, bool retain);
    // Whether a delivery at QoS q would be taken now rather than dropped for a bound.
    bool can_take(protocol::qos q) const noexcept;
    // Server-initiated close: DISCONNECT with rc to a 5.0 client, then close.
    void close_by_server(protocol::reason_code rc);

    // ---- inspection (tests, logs)
    session_state state() const noexcept { return state_; }
    const std::string& client_id() const noexcept { return client_id_; }
    const std::string& peer() const noexcept { return peer_; }
    protocol::protocol_version version() const noexcept { return version_; }
    const std::unordered_set<std::string>& filters() const noexcept { return filters_; }
    std::size_t inflight() const noexcept { return inflight_.size(); }
    std::size_t queued() const noexcept { return queue_.size(); }
    // Why the session closed ("keep_alive_timeout", "invalid_qos", ...); empty while open.
    std::string_view close_reason() const noexcept { return close_reason_; }

  private:
    enum class stage : std::uint8_t { puback, pubrec, pubcomp };  // what we wait for
    struct outbound {
        std::uint16_t id;
        stage waiting;
    };
    struct queued_delivery {
        message_ptr msg;
        protocol::qos q;
        bool retain;
    };

    void handle_connect(const protocol::frame& f, clock::time_point now);
    void accept_connect(protocol::connect_packet&& c, clock::time_point now);
    void refuse_connect(protocol::reason_code rc, std::string_view why);
    void handle_packet(protocol::packet&& p, clock::time_point now);
    void on_publish(protocol::publish_packet&& p, clock::time_point now);
    void on_puback(std::uint16_t id);
    void on_pubrec(const protocol::pubrec_packet& p);
    void on_pubrel(std::uint16_t id);
    void on_pubcomp(std::uint16_t id);
    void on_subscribe(protocol::subscribe_packet&& p, clock::time_point now);
    protocol::reason_code subscribe_one(const protocol::subscription& s, bool& send_retained);
    void on_unsubscribe(const protocol::unsubscribe_packet& p);
    void on_disconnect(const protocol::disconnect_packet& p);

    void send(const protocol::packet& p);
    void send_in(const protocol::packet& p, protocol::protocol_version v);
    bool can_send_qos12() const noexcept;
    void send_qos12(const message_ptr& m, protocol::qos q, bool retain);
    void enqueue(const message_ptr& m, protocol::qos q, bool retain);
    void pump();
    std::uint16_t next_packet_id() noexcept;

    // Closes for a malformed packet or a protocol error: DISCONNECT rc to a 5.0 client.
    void protocol_violation(protocol::reason_code rc, std::string_view why);
    void protocol_violation(std::error_code ec);
    void close(protocol::reason_code rc, std::string_view why, bool send_disconnect,
               bool publish_will);
    void wake() {
        if (observer_ != nullptr) observer_->wake();
    }

    engine& engine_;
    session_observer* observer_ = nullptr;
    session_state state_ = session_state::awaiting_connect;
    protocol::protocol_version version_ = protocol::protocol_version::v3_1_1;
    std::string client_id_;
    std::string peer_;
    std::string close_reason_;
    bool attached_ = false;  // registered under client_id_ in the engine
    clock::time_point created_;
    clock::time_point last_rx_;
    std::uint16_t keep_alive_ = 0;
    std::uint32_t session_expiry_ = 0;     // 5.0 CONNECT value (we keep nothing after close)
    std::uint32_t client_max_packet_ = 0;  // 5.0 Maximum Packet Size of the client; 0: none
    std::uint16_t inflight_cap_ = 0;
    std::uint16_t next_id_ = 1;
    message_ptr will_;
    std::unordered_set<std::string> filters_;  // this connection's subscriptions
    std::vector<std::uint16_t> qos2_in_;       // sorted: inbound QoS 2 ids awaiting PUBREL
    std::vector<outbound> inflight_;           // outbound QoS 1/2 awaiting acknowledgement
    std::deque<queued_delivery> queue_;        // waiting for a slot or for output to drain
    std::size_t queued_bytes_ = 0;
    std::vector<std::uint8_t> out_;  // bytes not yet handed to the transport
};

}  // namespace mqtt::broker
