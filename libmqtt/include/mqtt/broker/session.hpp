#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "mqtt/broker/durable_session.hpp"
#include "mqtt/broker/limits.hpp"
#include "mqtt/broker/message.hpp"
#include "mqtt/broker/peer_name.hpp"
#include "mqtt/broker/security.hpp"
#include "mqtt/broker/string_map.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::broker {

class engine;

// Implemented by the transport driver to hear about output or a close that did not come
// from one of its own calls (a message routed from another client, a takeover, shutdown).
class session_observer {
  public:
    virtual void wake() = 0;
    // deadline() may have come closer outside the driver's own calls into the session (a
    // delivery from another connection made it hold up its publishers): a driver that
    // schedules on_timer() at deadline() looks again. Rare: not once per message.
    virtual void deadline_moved() {}

  protected:
    ~session_observer() = default;
};

enum class session_state : std::uint8_t {
    awaiting_connect,  // the first packet must be CONNECT
    authenticating,    // CONNECT received, its password being checked; input is held
    connected,         // CONNACK 0x00 sent
    closing,           // no more input; flush the output, then close the connection
};

// The server side of one MQTT connection, without I/O: whole packets (frames) and the time
// come in, bytes to write and a "close after flushing" decision come out. The transport
// calls the on_* functions, then looks at has_output(), closing() and deadline().
//
// What must outlive the connection (subscriptions, in-flight and queued messages, inbound
// QoS 2 ids, Will, expiry) is in the durable_session the engine attaches this connection to
// on CONNECT; this object keeps only the connection: output buffer, keep-alive, protocol
// version, observer. Not thread-safe; used on the engine's executor only.
class session {
  public:
    session(engine& e, clock::time_point now, std::string_view peer = {});
    ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    void set_observer(session_observer* o) noexcept { observer_ = o; }

    // ---- input from the transport
    void on_frame(const protocol::frame& f, clock::time_point now);
    void on_framing_error(std::error_code ec);  // the framer failed: close
    // EOF or I/O error from the peer's side.
    void on_transport_closed(clock::time_point now);
    void on_timer(clock::time_point now);  // call at (or after) deadline()
    void on_written();                     // a batch was written: send what waited
    // The answer to take_auth_request(): whether the password is right. A refusal is sent
    // auth_failure_delay later (deadline()/on_timer()), to slow down guessing.
    void on_auth_result(bool ok, clock::time_point now);

    // ---- requests to the transport
    // A CONNECT with a user name while a password_file is set: the password must be
    // checked, which is slow on purpose ($7$), so it is not done here. The driver takes the
    // request once, runs auth_request::passwords->check() on a worker thread and calls
    // on_auth_result() back on this session's executor. Input is paused meanwhile.
    std::optional<auth_request> take_auth_request();

    // ---- output to the transport
    bool has_output() const noexcept { return !out_.empty(); }
    // Moves the pending bytes into `into` (cleared first); the buffers swap capacity. Large
    // payloads stay shared with their messages (a gathered write sends them).
    void take_output(output_batch& into);
    // The same as one contiguous byte sequence (large payloads copied in).
    void take_output(std::vector<std::uint8_t>& into);
    // A written (cleared) batch given back: its buffer becomes the session's next output
    // buffer if that has less room, so a writer that ends does not leave the next burst to
    // allocate anew. `b` keeps the other buffer (the caller drops it). Small buffers (a
    // CONNACK, a few acknowledgements) are not kept: an idle connection holds none.
    void recycle_output(output_batch& b) noexcept;
    bool closing() const noexcept { return state_ == session_state::closing; }
    // The transport stops reading while this is true: the connection's own output is over
    // max_outbound_bytes, or (back-pressure) a QoS 1/2 message it published reached an
    // online subscriber whose queue is over the high-water mark, until that subscriber's
    // queue drains below the low-water mark or it closes. wake() is called when it ends.
    bool input_paused() const noexcept;
    // Back-pressure between shards (threads > 1): set by the engine when a PUBLISH of this
    // session went to a congested shard, cleared (and the driver woken) once it caught up.
    bool paused_for_shards() const noexcept { return shard_paused_; }
    void pause_for_shards() noexcept { shard_paused_ = true; }
    void resume_from_shards() {
        shard_paused_ = false;
        wake();
    }
    // Threads > 1: the driver calls this when the next packet is a SUBSCRIBE. True: hold
    // it (input_paused() is true) until the engine's replica of the retained messages has
    // caught up with the other shards' (engine::hold_for_retained); the next call after
    // that lets it through.
    bool hold_subscribe();
    bool waiting_for_retained() const noexcept { return retained_hold_ == retained_waiting; }
    // From the engine: the replica caught up; the held SUBSCRIBE goes on.
    void retained_caught_up() {
        retained_hold_ = retained_passed;
        wake();
    }
    // When on_timer() must run next: connect timeout, 1.5 x Keep Alive, the end of a pause
    // for max_publish_rate, or (a congested subscriber) backpressure_timeout after its last
    // acknowledgement while it holds up publishers or shards.
    clock::time_point deadline() const noexcept;

    // ---- from the engine
    // One delivery at QoS q (already min(published, granted)); retain is the RETAIN flag
    // to send. `from` is the publishing connection (nullptr for Wills and retained
    // messages): it is throttled when a QoS 1/2 delivery finds this subscriber congested.
    // `ids` are the Subscription Identifiers the PUBLISH carries (5.0).
    void deliver(const message_ptr& m, protocol::qos q, bool retain, session* from = nullptr,
                 subscription_ids ids = {});
    // Whether a delivery at QoS q would be taken now rather than dropped for a bound.
    bool can_take(protocol::qos q) const noexcept;
    // Whether a delivery at QoS q would be sent now: for QoS 1/2 nothing waits, an
    // in-flight slot is free (the client's Receive Maximum, max_inflight_messages) and the
    // bytes held in flight are under max_inflight_bytes; for QoS 0 the output is within
    // max_outbound_bytes. Share groups prefer such a member.
    bool can_send_now(protocol::qos q) const noexcept;
    // can_send_now() at QoS 1, as the home shards of its remote share groups last heard.
    bool share_ready_now() const noexcept { return can_send_now(protocol::qos::at_least_once); }
    // Server-initiated close: DISCONNECT with rc to a 5.0 client, then close.
    void close_by_server(protocol::reason_code rc);
    void close_by_server(protocol::reason_code rc, clock::time_point now);
    // A TLS listener with use_identity_as_username / use_subject_as_username: the user name
    // is the one from the client's certificate (nullopt: the certificate has none), not the
    // CONNECT's, and the password_file is not consulted. Called before any input.
    void use_certificate_username(std::optional<std::string> name);
    // Replaces the Will of the connected client (nullopt: deletes it), as the MQTT-SN
    // gateway's WILLTOPICUPD / WILLMSGUPD do. False, and nothing changed: not connected, or
    // the topic is over max_topic_length / max_topic_levels.
    bool replace_will(std::optional<protocol::will_message> w);
    // The engine's security policy slot of this client's listener (per_listener_settings):
    // its allow_anonymous, password_file and acl_file. Called before any input.
    void set_security_slot(std::size_t slot) noexcept {
        security_slot_ = static_cast<std::uint16_t>(slot);
    }
    // The number of the listener this client came through (its index in the configuration
    // + 1; 0: none, an in-process bridge), kept in its durable session
    // (durable_session::listener) for the store. Called before any input.
    void set_listener(std::size_t listener) noexcept {
        listener_ = static_cast<std::uint16_t>(listener);
    }
    // At most `n` QoS 1/2 deliveries in flight on this connection, below max_inflight_messages
    // and the client's Receive Maximum (the MQTT-SN gateway's window); 0: no extra limit.
    // Called before CONNECT.
    void set_inflight_limit(std::uint16_t n) noexcept { inflight_limit_ = n; }

    // ---- inspection (tests, logs)
    session_state state() const noexcept { return state_; }
    const std::string& client_id() const noexcept { return ds_ ? ds_->client_id : client_id_.get(); }
    std::string peer() const { return peer_.str(); }
    protocol::protocol_version version() const noexcept { return version_; }
    // The MQTT session attached while connected; nullptr before CONNECT and once closing.
    const durable_session* durable() const noexcept { return ds_; }
    std::size_t subscription_count() const noexcept { return ds_ ? ds_->subscriptions.size() : 0; }
    std::size_t inflight() const noexcept { return ds_ ? ds_->inflight.size() : 0; }
    std::size_t queued() const noexcept { return ds_ ? ds_->queue.size() : 0; }
    // Back-pressure: congested subscribers this publisher waits for, and publishers this
    // subscriber holds paused.
    std::size_t throttled_by() const noexcept { return more_ ? more_->waiting_on.size() : 0; }
    std::size_t throttling() const noexcept { return more_ ? more_->throttled.size() : 0; }
    // Shards whose messages this congested subscriber holds up (threads > 1).
    std::size_t shards_held() const noexcept { return more_ ? more_->held_shards.size() : 0; }
    // Why the session closed ("keep_alive_timeout", "invalid_qos", ...); empty while open.
    std::string_view close_reason() const noexcept {
        return more_ ? std::string_view{more_->close_reason} : std::string_view{};
    }

  private:
    // The state few connections ever need, on the heap from the first use (most clients
    // never use topic aliases, back-pressure, max_publish_rate or a password check, and
    // the close reason comes at the end): 168 bytes less for every idle connection.
    struct extras {
        std::string close_reason;
        std::vector<std::string> aliases_in;  // the client's topic aliases: [alias - 1] -> topic
        // While authenticating: the CONNECT waiting for its answer (over 1 KB: on the heap
        // again), the password check not yet taken by the driver, and when a refusal goes
        // out (max: no answer yet).
        std::unique_ptr<protocol::connect_packet> pending_connect;
        std::unique_ptr<broker::auth_request> auth;
        clock::time_point refuse_at = clock::time_point::max();
        // use_certificate_username(): the certificate's name (nullopt: it has none).
        std::optional<std::string> certificate_name;
        // Back-pressure links, kept symmetric (a few entries: publishers x congested
        // subscribers): publishers this subscriber paused, subscribers this publisher waits for.
        std::vector<session*> throttled;
        std::vector<session*> waiting_on;
        // Shards (threads > 1) whose messages this congested subscriber holds up: the
        // engine's receiving side stops taking from them until it drains (see
        // engine::route_from_shard).
        std::vector<std::uint16_t> held_shards;
        // While it holds up publishers or shards: when it started to, or acknowledged a
        // delivery since (backpressure_timeout counts from there).
        clock::time_point held_since{};
        // It held them past backpressure_timeout: it holds nothing up again (its messages
        // over the queue bounds are dropped) until it has drained.
        bool hold_expired = false;
        // max_publish_rate: when the next PUBLISH would be on time (the theoretical arrival
        // time of a virtual scheduler), and until when input is paused ({}: not paused).
        clock::time_point rate_next{};
        clock::time_point rate_resume{};
        // Topic aliases towards a 5.0 client, by topic (see alias_out_max_); looked up
        // by a message's topic without making a string of it.
        string_map<std::uint16_t> aliases_out;
    };
    extras& more() {
        if (!more_) more_ = std::make_unique<extras>();
        return *more_;
    }
    bool waiting() const noexcept { return more_ && !more_->waiting_on.empty(); }
    bool throttling_any() const noexcept { return more_ && !more_->throttled.empty(); }
    bool holding_shards() const noexcept { return more_ && !more_->held_shards.empty(); }
    bool holding_any() const noexcept {
        return more_ && (!more_->throttled.empty() || !more_->held_shards.empty());
    }
    bool hold_expired() const noexcept { return more_ && more_->hold_expired; }
    // The first publisher or shard this subscriber holds up, at `since`.
    void start_holding(clock::time_point since);
    // backpressure_timeout passed: what it holds up is released.
    void expire_hold();
    bool rate_paused() const noexcept {
        return more_ && more_->rate_resume != clock::time_point{};
    }
    clock::time_point refuse_at() const noexcept {
        return more_ ? more_->refuse_at : clock::time_point::max();
    }

    void handle_connect(const protocol::frame& f, clock::time_point now);
    void accept_connect(protocol::connect_packet&& c, clock::time_point now);
    void authenticate(protocol::connect_packet&& c, clock::time_point now);
    void complete_connect(protocol::connect_packet&& c, clock::time_point now);
    // CONNACK 5 (3.1.1); 5.0: 0x86 when `bad_credentials` (the password_file said no),
    // else 0x87.
    void refuse_auth(std::string_view why, bool bad_credentials = false);
    bool check_connect(const protocol::connect_packet& c);
    std::uint32_t expiry_for(const protocol::connect_packet& c) const noexcept;
    void resume();
    void resend();
    void settle(outbound_delivery& o) noexcept;
    void refuse_connect(protocol::reason_code rc, std::string_view why);
    void handle_packet(protocol::packet&& p, clock::time_point now);
    void on_publish(protocol::publish_view& p, clock::time_point now);
    bool resolve_topic_alias(protocol::publish_view& p);  // false: closed for an error
    void on_puback(std::uint16_t id);
    void on_pubrec(const protocol::pubrec_packet& p);
    void on_pubrel(std::uint16_t id);
    void on_pubcomp(std::uint16_t id);
    void on_subscribe(protocol::subscribe_packet&& p, clock::time_point now);
    protocol::reason_code subscribe_one(const protocol::subscription& s, std::uint32_t id,
                                        bool& send_retained);
    void on_unsubscribe(const protocol::unsubscribe_packet& p);
    void on_disconnect(const protocol::disconnect_packet& p);
    bool topic_within_limits(std::string_view topic) const noexcept;
    void count_publish(clock::time_point now);
    // A PUBLISH that may not be routed: 0x00 when it may; else the 5.0 reason code for its
    // acknowledgement. 3.1/3.1.1 connections are closed instead (false: closed).
    bool admit_publish(const protocol::publish_view& p, protocol::reason_code& rc);

    void send(const protocol::packet& p);
    void send_in(const protocol::packet& p, protocol::protocol_version v);
    // A QoS 1/2 delivery of `payload` bytes would go now: an in-flight slot, room in the
    // output, and within max_inflight_bytes.
    bool can_send_qos12(std::size_t payload) const noexcept;
    bool inflight_bytes_allow(std::size_t payload, std::size_t cap) const noexcept;
    // The 5.0 Topic Alias for a delivery about to be appended to out_ (none when the client
    // takes none or it would not pay); a new alias is remembered from here on.
    topic_alias_use alias_for(const message& m, protocol::qos q, std::span<const std::uint32_t> ids);
    bool too_large(const message& m, protocol::qos q,
                   std::span<const std::uint32_t> ids = {}) const noexcept;
    void send_qos12(const message_ptr& m, protocol::qos q, bool retain, subscription_ids ids);
    void pump();
    void send_queued();
    // With threads > 1: tells the homes of its remote share groups when share_ready_now()
    // changed since they last heard (share_op::busy / ready).
    void note_share_ready();
    std::uint16_t next_packet_id() noexcept;
    bool congested() const noexcept;
    bool drained() const noexcept;
    void throttle(session& publisher, clock::time_point since);
    void release_throttled();
    void hold_shard(std::size_t from, clock::time_point since);
    void release_shards(bool resume = true);
    void stop_waiting();

    // Closes for a malformed packet or a protocol error: DISCONNECT rc to a 5.0 client.
    void protocol_violation(protocol::reason_code rc, std::string_view why);
    void protocol_violation(std::error_code ec);
    void close(protocol::reason_code rc, std::string_view why, bool send_disconnect,
               bool publish_will);
    void wake() {
        settle_output();
        if (observer_ != nullptr) observer_->wake();
    }
    // Brings out_'s charge against memory_limit up to date (after it grew).
    void settle_output();
    void handle_frame(const protocol::frame& f, clock::time_point now);
    void handle_publish_frame(const protocol::frame& f, protocol::publish_view& p,
                              clock::time_point now);

    engine& engine_;
    session_observer* observer_ = nullptr;
    session_state state_ = session_state::awaiting_connect;
    protocol::protocol_version version_ = protocol::protocol_version::v3_1_1;
    bool certificate_username_ = false;  // use_certificate_username was called
    bool bridge_ = false;  // a 3.1/3.1.1 bridge: protocol level 0x83/0x84 (try_private)
    // Fields are ordered to leave no padding: this object is in every connection.
    std::uint16_t security_slot_ = 0;
    std::uint16_t listener_ = 0;
    // The client id until the durable session is attached (which holds it then: one copy
    // per connection, not two) and again after the close. One word while it is not here.
    class boxed_string {
      public:
        const std::string& get() const noexcept {
            static const std::string none;
            return p_ ? *p_ : none;
        }
        boxed_string& operator=(std::string s) {
            if (p_) {
                *p_ = std::move(s);
            } else {
                p_ = std::make_unique<std::string>(std::move(s));
            }
            return *this;
        }
        void reset() noexcept { p_.reset(); }

      private:
        std::unique_ptr<std::string> p_;
    };
    boxed_string client_id_;
    peer_name peer_;                 // one word for an IPv4 peer (see peer_name)
    durable_session* ds_ = nullptr;  // attached (by the engine) while connected
    clock::time_point created_;
    clock::time_point last_rx_;
    clock::time_point now_;  // the latest time given to us, for calls that bring none
    std::uint16_t keep_alive_ = 0;
    // The most QoS 1/2 deliveries in flight whatever the limits and the client allow: half of
    // the packet ids (see complete_connect).
    static constexpr std::uint16_t max_outbound_window = 32768;
    std::uint16_t inflight_cap_ = 0;
    std::uint16_t inflight_limit_ = 0;  // set_inflight_limit(); 0: none
    // next_packet_id(): how many of the next ids from the counter are known to be free (no
    // in-flight entry holds them), counted when the window was last scanned.
    std::uint16_t free_ids_ = 0;
    std::uint32_t client_max_packet_ = 0;  // 5.0 Maximum Packet Size of the client; 0: none
    // In-flight entries not yet resent on this connection (at most 65,535: one per packet id).
    std::uint32_t resend_pending_ = 0;
    output_batch out_;  // output not yet handed to the transport
    // Topic aliases towards a 5.0 client (§3.3.2.3.4): how many it takes (the lower of its
    // Topic Alias Maximum and max_topic_alias) and the ones given on this connection, by
    // topic (allocated at the first delivery that uses one).
    std::uint16_t alias_out_max_ = 0;
    // What CONNACK announced, from the listener's policy (kept: a SIGHUP changes the policy
    // for the next CONNECT only): Topic Alias Maximum towards us, and max_qos.
    std::uint16_t alias_in_max_ = 0;
    std::uint8_t max_qos_ = 2;
    bool shard_paused_ = false;  // pause_for_shards()
    bool share_ready_ = true;    // what note_share_ready() last said
    // hold_subscribe(): none, a SUBSCRIBE held for the retained replica, or let through.
    static constexpr std::uint8_t retained_waiting = 1, retained_passed = 2;
    std::uint8_t retained_hold_ = 0;
    std::unique_ptr<extras> more_;  // see extras
    // The engine's list of connections (engine::add / remove).
    friend class engine;
    session* prev_connection_ = nullptr;
    session* next_connection_ = nullptr;
};

}  // namespace mqtt::broker
