#pragma once

// What one bridge is: two brokers, the topic rules between them, and how to connect. Filled
// from tern-bridge's flags or from a file in Mosquitto's bridge syntax (parse_config), which
// may hold several bridges, each starting at a `connection` line.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/bridge/disk_queue.hpp"
#include "mqtt/bridge/topic_map.hpp"
#include "mqtt/net/tls.hpp"
#include "mqtt/protocol/types.hpp"

namespace mqtt::bridge {

struct address {
    std::string host;
    std::uint16_t port = 1883;
    bool tls = false;  // TLS with the side's tls settings (mqtts://, wss://, bridge_cafile, ...)
    bool websocket = false;  // MQTT over WebSocket (ws://, wss://) with the request `path`
    std::string path = {};
    // The broker of this process (tern-broker's `connection` blocks): no host, no port; the
    // runner asks run_options::connect_local for the connection.
    bool in_process = false;
    bool operator==(const address&) const = default;
};

// One side's credentials and identity.
struct side_config {
    std::vector<address> addresses;  // tried in order (see round_robin)
    std::string client_id;
    std::optional<std::string> username;
    std::optional<std::string> password;
    // For the addresses with `tls` set; the certificate must name the host connected to
    // unless tls.insecure.
    net::tls_client_settings tls;
    bool operator==(const side_config&) const = default;
};

// The on-disk queue (queue_dir, queue_max_bytes, queue_full_policy; --queue-dir, ...).
struct queue_settings {
    std::string dir;  // empty: no on-disk queue; else DIR/<bridge>.<remote|local>/
    std::uint64_t max_bytes = std::uint64_t{1} << 30;
    full_policy policy = full_policy::block;
    bool operator==(const queue_settings&) const = default;
};

struct bridge_config {
    std::string name;  // `connection NAME`
    side_config local;
    side_config remote;
    std::vector<topic_rule> topics;
    protocol::protocol_version version = protocol::protocol_version::v3_1_1;
    std::uint16_t keepalive = 60;  // seconds, both sides
    bool clean_session = false;    // towards the remote broker (Mosquitto's cleansession)
    // Towards the local broker (Mosquitto's local_cleansession); unset: clean_session.
    std::optional<bool> local_clean_session;
    // Reconnect back-off: jittered exponential from `restart_base` up to `restart_max`.
    std::chrono::milliseconds restart_base{5'000};
    std::chrono::milliseconds restart_max{30'000};
    bool round_robin = false;  // false: the first remote address is the main one
    bool try_private = true;   // announce a bridge (protocol level | 0x80) before MQTT 5.0
    bool notifications = true;
    std::string notification_topic;  // empty: $SYS/broker/connection/<remote id>/state
    bool notifications_local_only = false;
    queue_settings queue;

    // The notification topic in effect.
    std::string state_topic() const;
};

struct config_error {
    std::string file;
    std::size_t line = 0;  // 0: the file as a whole
    std::string message;
    // "FILE:LINE: message".
    std::string to_string() const;
};

struct config_result {
    std::vector<bridge_config> bridges;
    std::optional<config_error> error;
};

// Parses a bridge file's text. `file` names it in errors; `hostname` makes the default
// remote client id "<hostname>.<connection>" as Mosquitto does; `local` is the local broker
// used when a bridge names none (Tern's `local_address` option). The queue_* options may
// also come before the first `connection`: defaults for every bridge (as `queue` does). `#` starts
// a comment line; options outside a `connection` block, unknown options, bad values, a bridge
// without an address or a topic, and two bridges with one name are errors.
config_result parse_config(std::string_view text, std::string_view file, std::string_view hostname,
                           const address& local, const queue_settings& queue = {});

// "block", "drop-new", "drop-oldest".
std::optional<full_policy> parse_full_policy(std::string_view text);
std::string_view to_string(full_policy p);
// A byte count with an optional K, M or G (powers of 1024), at least 64K.
std::optional<std::uint64_t> parse_byte_size(std::string_view text);

// "host", "host:port", "[v6]:port" into an address; std::nullopt when malformed.
std::optional<address> parse_address(std::string_view text, std::uint16_t default_port = 1883);

}  // namespace mqtt::bridge
