#pragma once

// tern-broker's metrics endpoint (metrics_listener in tern.conf; tern-bridge's
// --metrics-listener uses the bridge part and the HTTP part), sans-I/O: the engine's
// counters and gauges in the Prometheus text exposition format 0.0.4, and the small piece of
// HTTP/1.1 the endpoint speaks (a bounded request head in, a whole response out). The net
// layer only moves the bytes. docs/metrics.md lists every metric.

#include <vector>

#include "mqtt/bridge/state.hpp"
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace mqtt::broker {

class engine;
struct figures;

// What the engine does not know itself.
struct metrics_context {
    std::string_view version;   // tern_build_info{version="..."}
    double uptime_seconds = 0;  // since the server started
    bool persistence = false;   // the store gauges are present only with persistence on
    bool mqttsn = false;        // the gateway's families only with an MQTT-SN listener
    std::uint64_t store_file_bytes = 0;
    // The bridges of `connection` blocks (their families only when there are some).
    std::vector<bridge::bridge_state> bridges;
};

// The exposition (Content-Type text/plain; version=0.0.4): every family with its HELP and
// TYPE lines, counters ending in _total. One pass over the stored sessions for the queue
// gauges; nothing else is walked.
std::string render_metrics(const engine& e, const metrics_context& c);
// The same from figures read before: with threads > 1 every shard's summed (add_shard).
std::string render_metrics(const figures& f, const metrics_context& c);

// The bridges' families alone (tern_bridge_*, each with HELP and TYPE even when `bridges` is
// empty): tern-bridge's /metrics; render_metrics() has them too when there are bridges.
std::string render_bridge_metrics(const std::vector<bridge::bridge_state>& bridges);

// ---- HTTP

// The request head may be at most this long (request line and headers); a longer one is
// answered 431 and closed.
inline constexpr std::size_t max_http_head_bytes = 8192;

struct http_request {
    std::string method;
    std::string target;  // the path, without the query
};

enum class http_parse {
    incomplete,  // no blank line yet: read more (up to max_http_head_bytes)
    complete,    // `out` is filled
    bad,         // not an HTTP/1.x request line: 400
    too_large,   // no end of the head within max_http_head_bytes: 431
};

// Looks for a whole request head at the start of `bytes`.
http_parse parse_http_request(std::string_view bytes, http_request& out);

// A whole response with Content-Length and Connection: close.
std::string http_response(int status, std::string_view content_type, std::string_view body,
                          std::string_view extra_headers = {});

// The endpoint: GET /metrics (render() is called then), GET /healthz ("ok"), 404 for other
// paths, 405 for other methods.
std::string metrics_http_response(const http_request& r,
                                  const std::function<std::string()>& render);
// True when metrics_http_response() calls render() for r (GET /metrics).
bool asks_for_metrics(const http_request& r);

// The response to a request that could not be parsed (400 or 431).
std::string http_error_response(http_parse p);

}  // namespace mqtt::broker
