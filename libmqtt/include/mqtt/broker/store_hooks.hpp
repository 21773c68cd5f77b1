#pragma once

#include <cstdint>
#include <string_view>

#include "mqtt/broker/durable_session.hpp"
#include "mqtt/broker/message.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::broker {

// What the engine tells a store about every change to the state that must survive a
// restart, right after making it (and before any acknowledgement of it is written to a
// connection's output). The store decides what it keeps (only sessions with a Session
// Expiry Interval, for instance) and does no I/O in these calls: it appends records to a
// buffer that the transport driver writes and syncs before releasing the output.
class store_hooks {
  public:
    // A CONNECT was accepted: the session was created or resumed, its expiry_interval set.
    virtual void session_online(const durable_session& s) = 0;
    // The connection closed and the session is kept (expires_at / will_at are set), or its
    // delayed Will was published while offline.
    virtual void session_offline(const durable_session& s) = 0;
    // The session is about to be destroyed (expired, Clean Start, Session Expiry 0).
    virtual void session_ended(const durable_session& s) = 0;
    virtual void subscribed(const durable_session& s, std::string_view filter,
                            const subscription_entry& e) = 0;
    virtual void unsubscribed(const durable_session& s, std::string_view filter) = 0;
    // Appended to s.queue / the front of s.queue left it.
    virtual void queued(const durable_session& s, const queued_delivery& d) = 0;
    virtual void dequeued(const durable_session& s) = 0;
    // Outbound QoS 1/2: sent (appended to s.inflight), PUBREC received (only PUBREL /
    // PUBCOMP left), finished or given up.
    virtual void inflight_added(const durable_session& s, const outbound_delivery& o) = 0;
    virtual void inflight_released(const durable_session& s, std::uint16_t id) = 0;
    virtual void inflight_removed(const durable_session& s, std::uint16_t id) = 0;
    // Inbound QoS 2: routed and awaiting PUBREL / PUBREL came.
    virtual void qos2_received(const durable_session& s, std::uint16_t id) = 0;
    virtual void qos2_released(const durable_session& s, std::uint16_t id) = 0;
    virtual void retained_set(const message_ptr& m) = 0;
    virtual void retained_cleared(std::string_view topic) = 0;

  protected:
    ~store_hooks() = default;
};

}  // namespace mqtt::broker
