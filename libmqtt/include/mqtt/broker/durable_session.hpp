#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mqtt/broker/limits.hpp"
#include "mqtt/broker/message.hpp"
#include "mqtt/broker/sliding_vector.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::broker {

class session;

// Session Expiry Interval meaning "never" (MQTT 5.0 §3.1.2.11.2); also used for 3.1.1
// sessions with Clean Session 0 when persistent_client_expiration is 0.
inline constexpr std::uint32_t session_never_expires = 0xFFFFFFFF;

// What an outbound QoS 1/2 delivery waits for.
enum class outbound_stage : std::uint8_t { puback, pubrec, pubcomp };

// An outbound QoS 1/2 message sent and not yet acknowledged. The message is kept so it
// can be sent again with DUP=1 when the session resumes (MQTT-4.4.0-1).
struct outbound_delivery {
    message_ptr msg;
    std::uint16_t id = 0;
    protocol::qos q = protocol::qos::at_least_once;
    bool retain = false;
    outbound_stage waiting = outbound_stage::puback;
    subscription_ids ids;  // sent again with the message on a resend
    // Not yet sent again on the current connection since the session resumed: it waits
    // for the client's Receive Maximum to allow it (5.0 §4.9). Not state to persist.
    bool resend_pending = false;
};

// A delivery waiting for an in-flight slot, for the output to drain, or for the client
// to come back.
struct queued_delivery {
    message_ptr msg;
    protocol::qos q = protocol::qos::at_most_once;
    bool retain = false;
    subscription_ids ids;
};

// A first-in first-out queue that allocates nothing until its first element: most
// sessions never queue, and an empty std::deque already holds its map and a 512-byte
// block (half the memory of an idle connection's session state). Once used, the storage
// stays until clear(), so a busy queue does not allocate again each time it drains.
template <class T>
class lazy_queue {
  public:
    using const_iterator = typename std::deque<T>::const_iterator;

    lazy_queue() = default;
    lazy_queue(const lazy_queue& o) : q_(o.q_ ? std::make_unique<std::deque<T>>(*o.q_) : nullptr) {}
    lazy_queue(lazy_queue&&) noexcept = default;
    lazy_queue& operator=(const lazy_queue& o) {
        if (this != &o) q_ = o.q_ ? std::make_unique<std::deque<T>>(*o.q_) : nullptr;
        return *this;
    }
    lazy_queue& operator=(lazy_queue&&) noexcept = default;

    bool empty() const noexcept { return !q_ || q_->empty(); }
    std::size_t size() const noexcept { return q_ ? q_->size() : 0; }
    T& front() { return q_->front(); }
    const T& front() const { return q_->front(); }
    T& back() { return q_->back(); }
    const T& back() const { return q_->back(); }
    void push_back(T v) {
        if (!q_) q_ = std::make_unique<std::deque<T>>();
        q_->push_back(std::move(v));
    }
    void pop_front() { q_->pop_front(); }
    void clear() noexcept { q_.reset(); }
    // Value-initialised deque iterators compare equal: an unused queue is an empty range.
    const_iterator begin() const noexcept { return q_ ? q_->cbegin() : const_iterator{}; }
    const_iterator end() const noexcept { return q_ ? q_->cend() : const_iterator{}; }

  private:
    std::unique_ptr<std::deque<T>> q_;
};

// A subscription as its session holds it: the options and the 5.0 Subscription Identifier
// (0 when the SUBSCRIBE carried none). The filter is the map key, `$share/...` included.
struct subscription_entry {
    protocol::subscription_options options;
    std::uint32_t id = 0;
};

// The MQTT session: the state that outlives one network connection (MQTT 5.0 §4.1,
// 3.1.1 §4.1). Owned by the engine, keyed by client id; a connection (`session`) attaches
// to it on CONNECT and detaches on close. Plain data apart from `connection`, so that it
// can be written to disk later: messages are values, times are steady-clock points that a
// serializer would turn into remaining seconds.
struct durable_session {
    std::string client_id;
    // Filter -> options; the same entries are in the engine's subscription trie.
    std::unordered_map<std::string, subscription_entry> subscriptions;
    // Outbound QoS 1/2 awaiting acknowledgement, in the order first sent.
    sliding_vector<outbound_delivery> inflight;
    // Messages not sent yet: waiting for a slot or for the client to reconnect.
    lazy_queue<queued_delivery> queue;
    std::size_t queued_bytes = 0;
    // The payload bytes of the in-flight entries that still hold their message (QoS 1
    // until PUBACK, QoS 2 until PUBREC): what max_inflight_bytes bounds (inflight_cost).
    std::size_t inflight_bytes = 0;
    // Inbound QoS 2 packet ids whose PUBREL has not come yet (sorted): a resent PUBLISH with
    // one of these ids is acknowledged but not routed again, also after a reconnect.
    std::vector<std::uint16_t> qos2_in;
    std::uint16_t next_packet_id = 1;
    // With threads > 1: its subscriptions to share groups homed on another shard (each of
    // those homes is told when its connection turns busy or ready). Not stored: counted
    // again as the subscriptions are restored.
    std::uint16_t remote_shares = 0;
    // Seconds the session is kept after its connection closes; 0 ends it at the close.
    std::uint32_t expiry_interval = 0;
    // Its block in the ACL file (-1: none), for the read checks of deliveries made while
    // offline and for the Will.
    int acl_block = -1;
    // The engine's security policy slot of the listener the client last came through
    // (per_listener_settings); 0: the broker's. 16 bits each, as in `session`: the two
    // share the word after acl_block, which keeps this struct at its size.
    std::uint16_t security_slot = 0;
    // The number of that listener (its index in the configuration + 1; 0: not known, an
    // in-process bridge). The store keeps it (session_record::listener, as the listener's
    // key), so that a restored session gets the slot of its listener under the
    // configuration it is restored with. listener_gone: restored from a record whose
    // listener this configuration does not have (or no longer tells apart from another):
    // until its client comes back through one, every policy's ACL must allow what it
    // receives or its Will publishes, as the client may come back through any listener
    // (engine::may_receive; the same rule as a replay at start, store::read_check_of), with
    // the user name the record keeps; listener_gone_unnamed: the same for a record without
    // one (no user's block applies, as for any such session).
    std::uint16_t listener = 0;
    static constexpr std::uint16_t listener_gone = 0xffff;
    static constexpr std::uint16_t listener_gone_unnamed = 0xfffe;
    bool listener_is_gone() const noexcept { return listener >= listener_gone_unnamed; }

    session* connection = nullptr;  // the attached connection (not state to persist)

    // The Will of the current (or last) connection, its Will Delay Interval (5.0).
    const message_ptr& will() const noexcept { return more_ ? more_->will : no_will; }
    std::uint32_t will_delay() const noexcept { return more_ ? more_->will_delay : 0; }
    void set_will(message_ptr w, std::uint32_t delay = 0);
    // The Will, taken out (to publish it); no Will is due any more.
    message_ptr take_will();
    // The user name of the last CONNECT (nullptr: none).
    const std::string* username() const noexcept {
        return more_ && more_->username ? &*more_->username : nullptr;
    }
    void set_username(std::optional<std::string> u);
    // client_id as a client_id_ptr, made at the first call (and kept until the session
    // ends): with threads > 1, what the session publishes to other shards carries it for No
    // Local there. A cache, hence const; the session's client_id does not change once the
    // engine holds it.
    const client_id_ptr& shared_client_id() const;
    // ---- while no connection is attached (time_point::max(): none): when a pending Will
    // is due, when the session is removed, and the engine's key for it in its deadlines
    clock::time_point will_at() const noexcept { return more_ ? more_->will_at : never; }
    clock::time_point expires_at() const noexcept { return more_ ? more_->expires_at : never; }
    clock::time_point timer_key() const noexcept { return more_ ? more_->timer_key : never; }
    void set_will_at(clock::time_point t);
    void set_expires_at(clock::time_point t);
    void set_timer_key(clock::time_point t);

  private:
    static constexpr clock::time_point never = clock::time_point::max();
    static inline const message_ptr no_will{};
    // What most idle connections do not have (a Will, a user name, with threads > 1 the
    // shared client id of one that published to another shard) and what only a session
    // without connection uses (its times): one object, allocated when one of them is set
    // and freed when none is (durable_session.cpp).
    struct extras {
        message_ptr will;
        std::optional<std::string> username;
        std::uint32_t will_delay = 0;
        clock::time_point will_at = never;
        clock::time_point expires_at = never;
        clock::time_point timer_key = never;
        client_id_ptr shared_id;  // shared_client_id()
        bool unused() const noexcept {
            return !will && !username && will_delay == 0 && will_at == never &&
                   expires_at == never && timer_key == never && !shared_id;
        }
    };
    // Copies its object (tests keep sessions in maps; the engine only moves them).
    struct extras_ptr : std::unique_ptr<extras> {
        extras_ptr() = default;
        extras_ptr(const extras_ptr& o)
            : std::unique_ptr<extras>(o ? std::make_unique<extras>(*o) : nullptr) {}
        extras_ptr(extras_ptr&&) noexcept = default;
        extras_ptr& operator=(const extras_ptr& o) {
            if (this != &o) reset(o ? new extras(*o) : nullptr);
            return *this;
        }
        extras_ptr& operator=(extras_ptr&&) noexcept = default;
    };
    extras& more();  // allocated if it is not there
    void trim() noexcept;  // freed when nothing in it is set
    extras_ptr more_;
};

// The bytes a queued message is charged against max_queued_bytes.
inline std::size_t queue_cost(const message& m) noexcept {
    return m.topic.size() + m.payload.size();
}

// The bytes an in-flight entry is charged against max_inflight_bytes: its payload while
// the broker holds the message (none once only PUBREL / PUBCOMP is left).
inline std::size_t inflight_cost(const outbound_delivery& o) noexcept {
    return o.msg ? o.msg->payload.size() : 0;
}

// Appends to the session's queue unless max_queued_messages / max_queued_bytes would be
// passed; false when it was dropped (the caller counts it).
bool enqueue(durable_session& s, const limits& l, queued_delivery d);

}  // namespace mqtt::broker
