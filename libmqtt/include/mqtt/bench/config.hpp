#pragma once

// What a tern-bench run does: the scenario, the broker, the clients and the load. Plain data,
// filled by the front end from the command line; scenario_defaults() supplies what the
// scenario implies and the user did not set.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/net/tls.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::bench {

enum class scenario : std::uint8_t { pub, sub, fanin, fanout, pairs, conn, shared, reqresp };

std::string_view to_string(scenario s) noexcept;
bool parse_scenario(std::string_view name, scenario& out) noexcept;

struct bench_config {
    bench::scenario scenario = scenario::pairs;
    std::string host = "localhost";
    std::uint16_t port = 1883;
    // Set: every connection speaks TLS with these settings (one OpenSSL context for all).
    std::optional<net::tls_client_settings> tls;
    // Set: MQTT over WebSocket (wss with tls) with this request path.
    std::optional<std::string> websocket_path;
    // MQTT-SN 1.2 over UDP to a gateway (client::mqttsn::session): one QoS 1/2 message
    // outstanding per client, as MQTT-SN asks; pub, sub, fanin, fanout, pairs and conn only.
    bool mqttsn = false;
    protocol::connect_packet connect;  // version, keep-alive, credentials; client_id is a prefix
    std::string client_id_prefix = "tb-";  // + run id (8 hex) + "-" + n: within 3.1's 23

    unsigned publishers = 0;  // 0: the scenario's default
    unsigned subscribers = 0;
    unsigned clients = 0;  // pairs (publisher/subscriber pairs) and conn (connections)
    std::string topic;   // may contain %i (publisher index), %c (client id); empty: the scenario's
    std::string filter;  // may contain %i (subscriber index), %c; empty: the scenario's
    std::string share_group = "tern-bench";  // shared: subscribers use $share/GROUP/filter
    protocol::qos qos = protocol::qos::at_most_once;
    std::size_t size = 64;    // payload bytes, at least the 28-byte header
    std::uint64_t count = 0;  // messages per publisher (sub: per subscriber)
    double duration = 0;      // seconds of publishing instead of a count
    double warmup = 0;        // seconds at the start left out of the figures
    unsigned inflight = 64;   // unacknowledged QoS 1/2 messages per publisher
    double rate = 0;          // total messages per second; 0: closed loop
    // Messages per second of each publisher; apply_scenario_defaults() turns it into `rate`
    // (times the publishers), so both describe the run afterwards. 0: `rate` decides.
    double rate_per_client = 0;
    double connect_rate = 0;  // new connections per second; 0: all at once
    // Local addresses the connections are opened from, taken in turn; empty: the one the
    // route picks. Every source address has the whole ephemeral port range to itself.
    std::vector<std::string> sources;
    double hold = 1;          // conn: seconds to hold the connections open
    double drain = 5;         // seconds to wait for stragglers after publishing
    double time_limit = 0;    // hard wall-clock cap; 0: derived
    std::chrono::milliseconds connect_timeout{10'000};
    bool progress = false;  // a live line on stderr (a terminal)
    // Event loops, each on a thread of its own, the clients spread round-robin over them;
    // 0: one per core. apply_scenario_defaults() resolves 0 and keeps it to the clients' count.
    unsigned threads = 1;
};

// Fills publishers, subscribers, topic, filter, count, time_limit and threads from the
// scenario where they are unset, and the total rate from rate_per_client. Returns an error message for a combination that cannot run, else empty.
std::string apply_scenario_defaults(bench_config& c);

// reqresp: where requester n wants its responses (its Response Topic).
inline constexpr std::string_view response_topic_template = "tern-bench/resp/%c";

// shared: the filter a subscriber of the group sends, $share/GROUP/FILTER.
std::string shared_filter(const bench_config& c, std::string_view filter);

// "%i" replaced by the client's index among those of its role, "%c" by its client id.
std::string expand_template(std::string_view pattern, unsigned index,
                            std::string_view client_id = "");

}  // namespace mqtt::bench
