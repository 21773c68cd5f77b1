#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace mqtt::broker {

using clock = std::chrono::steady_clock;

// Every bound the broker puts on what one peer can make it hold. Defaults suit a
// development broker on a laptop; all of them apply to 3.1, 3.1.1 and 5.0 alike.
struct limits {
    // Largest packet accepted (the framer refuses bigger ones as soon as their fixed
    // header is in) and announced to 5.0 clients as Maximum Packet Size.
    std::uint32_t max_packet_size = 1u << 20;
    // Receive Maximum announced to 5.0 clients; also the most inbound QoS 2 messages
    // awaiting PUBREL a 3.1/3.1.1 client may have open.
    std::uint16_t receive_maximum = 100;
    // Most outbound QoS 1/2 messages awaiting acknowledgement per connection (lowered to
    // the client's Receive Maximum in 5.0).
    std::uint16_t max_inflight = 100;
    // Most payload bytes of those messages held in flight per connection, together with
    // max_inflight (whichever is reached first): a message waits in the queue while it would
    // take the connection's total past this, unless nothing is held in flight (so one
    // message larger than the bound still goes, alone). A QoS 2 message stops counting at
    // PUBREC, when its payload is let go. 0: no limit.
    std::size_t max_inflight_bytes = 0;
    // Bytes waiting to be written to one connection past which QoS 0 messages are dropped,
    // QoS 1/2 messages wait in the queue below, and the connection's own input is paused.
    std::size_t max_outbound_bytes = 4u << 20;
    // Messages waiting for an inflight slot or for the outbound bytes to drain; past
    // either bound new messages for that connection are dropped and counted.
    std::size_t max_queued_messages = 1000;
    std::size_t max_queued_bytes = 16u << 20;
    // Retained messages kept (topics, and payload + topic bytes); a new topic past either
    // bound is not retained (counted).
    std::size_t max_retained_messages = 100'000;
    std::size_t max_retained_bytes = 256u << 20;
    // Subscriptions one connection may hold; more are refused in SUBACK.
    std::size_t max_subscriptions = 10'000;
    // Topic Names and Filters (PUBLISH, SUBSCRIBE, Will): bytes and levels. Each level of a
    // filter is a node of the subscription index, so levels bound its memory per filter.
    std::size_t max_topic_length = 65'535;
    std::size_t max_topic_levels = 200;
    // Client identifiers in CONNECT (bytes): ids are kept per stored session and logged.
    std::size_t max_client_id_length = 256;
    // PUBLISH packets one connection may send per second (a burst of that many at once);
    // past it the connection's input is paused until its rate allows the next one.
    // 0: no limit.
    std::uint32_t max_publish_rate = 0;
    // Bytes of application messages held (queued, in flight, retained), each message
    // counted once however many sessions hold it; at or past it a new PUBLISH is refused
    // (5.0 0x97 Quota exceeded). Counted, not asked of the allocator.
    std::size_t memory_limit = std::size_t{1} << 30;
    // Time a new connection has to send its CONNECT.
    std::chrono::milliseconds connect_timeout{10'000};
    // How long a CONNECT refused for its user name or password waits before its CONNACK:
    // slows down password guessing without holding anything but that connection.
    std::chrono::milliseconds auth_failure_delay{1'000};
    // Open connections, connected or not; more are closed at accept (counted).
    std::size_t max_connections = 10'000;
    // How long a congested subscriber may hold up what feeds it (back-pressure: publishers
    // not read, with threads > 1 whole shards' messages) without acknowledging anything.
    // Past it the publishers and shards are released and its messages over the queue
    // bounds are dropped and counted, until it drains. 0: held for as long as it stays
    // connected.
    std::chrono::milliseconds backpressure_timeout{10'000};

    // ---- session and delivery policy (mosquitto.conf options of the same names)
    // How long a disconnected 3.1/3.1.1 session with Clean Session 0 is kept; 0: for ever.
    std::chrono::seconds persistent_client_expiration{0};
    // Largest Keep Alive accepted; a 5.0 client asking for more (or for 0) is given this
    // value as Server Keep Alive. 0: no limit.
    std::uint16_t max_keepalive = 0;
    // Whether retained messages are kept (5.0 clients are told Retain Available).
    bool retain_available = true;
    // Topic Alias Maximum announced to 5.0 clients (0: clients may not use aliases).
    std::uint16_t max_topic_alias = 10;
    // Sessions kept without a connection; past it a CONNECT that would create a new
    // persistent session is refused (5.0 0x97, 3.1.1 0x03), so client ids invented by a
    // peer cannot grow memory without bound. Clean sessions and resumes are not affected.
    std::size_t max_offline_sessions = 100'000;
    // Whether QoS 0 messages are queued for offline persistent sessions.
    bool queue_qos0_messages = false;
    // Deliver at the subscription's granted QoS even when the message was published lower.
    bool upgrade_outgoing_qos = false;
};

// The limits a running broker takes from a reloaded configuration (SIGHUP): each is read
// where it is used (a CONNECT, a SUBSCRIBE, a PUBLISH, a delivery, the queue bound) and
// none is announced to clients, so a change needs no restart. It applies from the next
// such use; sessions and connections keep what they have. The rest (Maximum Packet Size,
// Receive Maximum, Topic Alias Maximum and Retain Available, which 5.0 clients are told in
// CONNACK, and the in-flight window taken at CONNECT) stay as the broker started.
void copy_reloadable(const limits& from, limits& to) noexcept;

// Counters of everything the broker dropped or refused, for logs and tests.
struct stats {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_refused = 0;  // over max_connections
    std::uint64_t connects_accepted = 0;
    std::uint64_t connects_rejected = 0;  // CONNACK with a failure code
    std::uint64_t protocol_errors = 0;    // closed for a malformed packet or protocol error
    std::uint64_t keep_alive_timeouts = 0;
    std::uint64_t takeovers = 0;
    std::uint64_t messages_received = 0;  // PUBLISH from clients (duplicates excluded)
    std::uint64_t messages_sent = 0;      // PUBLISH written to client buffers
    std::uint64_t wills_published = 0;
    std::uint64_t dropped_qos0_slow = 0;     // QoS 0 dropped: outbound bytes over the limit
    std::uint64_t dropped_queue_full = 0;    // dropped: the session's queue over its bounds
    std::uint64_t dropped_too_large = 0;     // over the client's Maximum Packet Size
    std::uint64_t dropped_retain_full = 0;   // not retained: retained store bounds reached
    std::uint64_t dropped_sys_publish = 0;   // clients may not publish to $SYS
    std::uint64_t dropped_acl = 0;           // publishes and Wills the acl_file denied
    std::uint64_t dropped_memory_limit = 0;  // PUBLISH refused: memory_limit reached
    std::uint64_t dropped_store_failing = 0;  // QoS 1/2 PUBLISH refused: the store cannot write
    std::uint64_t dropped_topic_limit = 0;   // PUBLISH refused: max_topic_length/_levels
    std::uint64_t rate_limited = 0;          // input paused by max_publish_rate
    std::uint64_t backpressure_timeouts = 0;  // subscribers that held others past backpressure_timeout
    std::uint64_t auth_failures = 0;         // CONNECT refused: anonymous, user or password
    std::uint64_t dropped_qos0_offline = 0;  // QoS 0 for an offline session (not queued)
    std::uint64_t dropped_expired = 0;       // Message Expiry Interval passed while queued
    std::uint64_t sessions_resumed = 0;      // CONNECT found the session (Session Present 1)
    std::uint64_t sessions_expired = 0;      // offline sessions removed at their expiry
    std::uint64_t sessions_refused = 0;      // new persistent session over max_offline_sessions
    std::uint64_t connected_maximum = 0;     // most clients connected at once ($SYS)
    std::uint64_t bytes_received = 0;        // read from client sockets (the net layer counts)
    std::uint64_t bytes_sent = 0;            // written to client sockets
    // The same PUBLISH counts by QoS (index 0, 1, 2) with their payload bytes, for the
    // metrics endpoint: received as published, sent at the QoS of the delivery.
    std::array<std::uint64_t, 3> received_by_qos{};
    std::array<std::uint64_t, 3> sent_by_qos{};
    std::array<std::uint64_t, 3> payload_bytes_received_by_qos{};
    std::array<std::uint64_t, 3> payload_bytes_sent_by_qos{};
    // The MQTT-SN gateways (every protocol mqttsn listener together).
    std::uint64_t mqttsn_clients = 0;                 // gauge: clients a gateway holds now
    std::uint64_t mqttsn_datagrams_malformed = 0;     // did not decode: dropped
    std::uint64_t mqttsn_datagrams_unexpected = 0;    // decoded, not valid then: dropped
    // Dropped by the kernel before the gateway read them (the socket's receive buffer was
    // full): the sockets' drop counts, where the kernel reports them (Linux SO_MEMINFO).
    std::uint64_t mqttsn_datagrams_receive_buffer = 0;
    std::uint64_t mqttsn_dropped_sleep_buffer = 0;    // QoS 0 over mqttsn_max_buffered_messages
    std::uint64_t mqttsn_dropped_undeliverable = 0;   // no topic id left, or too long
    std::uint64_t mqttsn_retransmissions = 0;         // REGISTER, PUBLISH, PUBREL sent again
    std::uint64_t mqttsn_clients_lost = 0;            // N_RETRY or the sleep timer ran out

    void count_received(unsigned qos, std::size_t payload) noexcept {
        ++messages_received;
        ++received_by_qos[qos % 3];
        payload_bytes_received_by_qos[qos % 3] += payload;
    }
    void count_sent(unsigned qos, std::size_t payload) noexcept {
        ++messages_sent;
        ++sent_by_qos[qos % 3];
        payload_bytes_sent_by_qos[qos % 3] += payload;
    }
};

}  // namespace mqtt::broker
