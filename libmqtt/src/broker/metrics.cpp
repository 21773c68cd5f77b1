#include "mqtt/broker/metrics.hpp"

#include <array>
#include <cstdio>
#include <limits>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/figures.hpp"

namespace mqtt::broker {
namespace {

// Appends families in the text format: a HELP and a TYPE line, then the samples.
class exposition {
  public:
    explicit exposition(std::string& out) : out_(out) {}

    void family(std::string_view name, std::string_view type, std::string_view help) {
        name_ = name;
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;  // plain text of ours: no backslash or newline to escape
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    void sample(std::uint64_t v) { sample({}, {}, v); }
    void sample(std::string_view label, std::string_view value, std::uint64_t v) {
        out_ += name_;
        if (!label.empty()) label_set(label, value);
        out_ += ' ';
        out_ += std::to_string(v);
        out_ += '\n';
    }
    // Two labels: {label="value",label2="value2"}.
    void sample(std::string_view label, std::string_view value, std::string_view label2,
                std::string_view value2, std::uint64_t v) {
        out_ += name_;
        label_set(label, value);
        out_.back() = ',';  // the closing brace
        label_value(label2, value2);
        out_ += "} ";
        out_ += std::to_string(v);
        out_ += '\n';
    }
    void sample_double(double v) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.3f", v);
        out_ += name_;
        out_ += ' ';
        out_ += buf;
        out_ += '\n';
    }
    void counter(std::string_view name, std::string_view help, std::uint64_t v) {
        family(name, "counter", help);
        sample(v);
    }
    void gauge(std::string_view name, std::string_view help, std::uint64_t v) {
        family(name, "gauge", help);
        sample(v);
    }
    // One sample per QoS level.
    void by_qos(std::string_view name, std::string_view help,
                const std::array<std::uint64_t, 3>& v) {
        family(name, "counter", help);
        sample("qos", "0", v[0]);
        sample("qos", "1", v[1]);
        sample("qos", "2", v[2]);
    }

  private:
    void label_set(std::string_view label, std::string_view value) {
        out_ += '{';
        label_value(label, value);
        out_ += '}';
    }
    void label_value(std::string_view label, std::string_view value) {
        out_ += label;
        out_ += "=\"";
        for (char ch : value) {  // label values escape \, " and newline
            if (ch == '\\' || ch == '"') {
                out_ += '\\';
                out_ += ch;
            } else if (ch == '\n') {
                out_ += "\\n";
            } else {
                out_ += ch;
            }
        }
        out_ += '"';
    }

    std::string& out_;
    std::string_view name_;
};

void connection_metrics(exposition& x, const figures& f) {
    const auto& st = f.stats;
    x.gauge("tern_connections", "Open network connections, MQTT-connected or not yet.",
            f.connections);
    x.gauge("tern_clients_connected", "Clients connected (CONNECT accepted).", f.connected);
    x.gauge("tern_clients_maximum", "Most clients connected at once since the start.",
            st.connected_maximum);
    x.counter("tern_connections_accepted_total", "Network connections accepted by the listeners.",
              st.connections_accepted);
    x.counter("tern_connections_refused_total",
              "Connections closed at accept (max_connections) or refused in the TLS handshake.",
              st.connections_refused);
    x.counter("tern_connects_accepted_total", "CONNECT packets answered with success.",
              st.connects_accepted);
    x.counter("tern_connects_rejected_total", "CONNECT packets answered with a failure code.",
              st.connects_rejected);
    x.counter("tern_auth_failures_total",
              "CONNECT refused for the user name or password (or anonymous).", st.auth_failures);
    x.counter("tern_protocol_errors_total",
              "Connections closed for a malformed packet or a protocol error.", st.protocol_errors);
    x.counter("tern_keepalive_timeouts_total", "Connections closed when the keep-alive ran out.",
              st.keep_alive_timeouts);
    x.counter("tern_takeovers_total", "Connections closed by a new one with the same client id.",
              st.takeovers);
}

void session_metrics(exposition& x, const figures& f) {
    const auto& st = f.stats;
    x.gauge("tern_sessions", "MQTT sessions stored, connected or offline.", f.stored_sessions);
    x.gauge("tern_sessions_offline", "Stored sessions without a connection.", f.offline_sessions);
    x.counter("tern_sessions_resumed_total", "CONNECTs that resumed a stored session.",
              st.sessions_resumed);
    x.counter("tern_sessions_expired_total", "Offline sessions removed at their expiry.",
              st.sessions_expired);
    x.counter("tern_sessions_refused_total",
              "New persistent sessions refused over max_offline_sessions.", st.sessions_refused);
    x.counter("tern_wills_published_total", "Will messages published.", st.wills_published);
}

void message_metrics(exposition& x, const figures& f) {
    const auto& st = f.stats;
    x.by_qos("tern_messages_received_total",
             "PUBLISH packets received from clients and routed, by QoS (duplicates excluded).",
             st.received_by_qos);
    x.by_qos("tern_messages_sent_total", "PUBLISH packets sent to clients, by delivery QoS.",
             st.sent_by_qos);
    x.by_qos("tern_payload_bytes_received_total",
             "Payload bytes of the PUBLISH packets received, by QoS.",
             st.payload_bytes_received_by_qos);
    x.by_qos("tern_payload_bytes_sent_total", "Payload bytes of the PUBLISH packets sent, by QoS.",
             st.payload_bytes_sent_by_qos);
    x.counter("tern_bytes_received_total", "Bytes read from client connections.",
              st.bytes_received);
    x.counter("tern_bytes_sent_total", "Bytes written to client connections.", st.bytes_sent);
    x.family("tern_messages_dropped_total", "counter", "Messages dropped, by reason.");
    x.sample("reason", "qos0_slow_client", st.dropped_qos0_slow);
    x.sample("reason", "queue_full", st.dropped_queue_full);
    x.sample("reason", "too_large", st.dropped_too_large);
    x.sample("reason", "expired", st.dropped_expired);
    x.sample("reason", "qos0_offline", st.dropped_qos0_offline);
    x.sample("reason", "acl_denied", st.dropped_acl);
    x.sample("reason", "sys_topic", st.dropped_sys_publish);
    x.sample("reason", "memory_limit", st.dropped_memory_limit);
    x.sample("reason", "topic_limit", st.dropped_topic_limit);
    x.sample("reason", "store_failing", st.dropped_store_failing);
    x.counter("tern_rate_limited_total",
              "Times a connection's input was paused by max_publish_rate.", st.rate_limited);
    x.counter("tern_backpressure_timeouts_total",
              "Congested subscribers that acknowledged nothing for backpressure_timeout_ms "
              "while holding up publishers or shards, which were then released.",
              st.backpressure_timeouts);
    x.counter("tern_retained_refused_total",
              "Messages not retained: the retained store's bounds were reached.",
              st.dropped_retain_full);
}

void state_metrics(exposition& x, const figures& f) {
    const auto& q = f.queues;
    x.gauge("tern_queued_messages",
            "Messages waiting in session queues (for an in-flight slot or an offline client).",
            q.queued);
    x.gauge("tern_queued_bytes", "Topic and payload bytes of the queued messages.", q.queued_bytes);
    x.gauge("tern_queue_depth_max", "Messages in the longest session queue.", q.largest_queue);
    x.gauge("tern_inflight_messages", "QoS 1 and 2 messages sent and not yet acknowledged.",
            q.inflight);
    x.gauge("tern_subscriptions", "Subscriptions of all sessions, shared ones included.",
            f.subscriptions);
    x.gauge("tern_shared_subscription_groups", "Share groups ($share/NAME/FILTER).",
            f.share_groups);
    x.gauge("tern_retained_messages", "Retained messages held.", f.retained_count);
    x.gauge("tern_retained_bytes", "What the retained store's byte bound counts.",
            f.retained_bytes);
    x.family("tern_memory_bytes", "gauge",
             "Bytes counted against memory_limit: messages held (queued, in flight, retained; "
             "each once) and output waiting to be written to clients.");
    x.sample("kind", "messages", f.held_bytes);
    x.sample("kind", "output", f.output_bytes);
    const auto limit = f.memory_limit;
    x.gauge("tern_memory_limit_bytes", "memory_limit (0: none).",
            limit == std::numeric_limits<std::size_t>::max() ? 0 : limit);
}

void mqttsn_metrics(exposition& x, const figures& f) {
    const auto& st = f.stats;
    x.gauge("tern_mqttsn_clients",
            "MQTT-SN clients the gateways hold (connecting, connected or asleep).",
            st.mqttsn_clients);
    x.family("tern_mqttsn_datagrams_dropped_total", "counter",
             "Datagrams the MQTT-SN gateways dropped, by reason: malformed (did not decode), "
             "unexpected (not valid from that address in that state) or receive_buffer "
             "(dropped by the kernel: the socket's receive buffer was full).");
    x.sample("reason", "malformed", st.mqttsn_datagrams_malformed);
    x.sample("reason", "unexpected", st.mqttsn_datagrams_unexpected);
    x.sample("reason", "receive_buffer", st.mqttsn_datagrams_receive_buffer);
    x.family("tern_mqttsn_messages_dropped_total", "counter",
             "Deliveries to MQTT-SN clients dropped, by reason: sleep_buffer (QoS 0 over "
             "mqttsn_max_buffered_messages held) or undeliverable (no topic id left, too long).");
    x.sample("reason", "sleep_buffer", st.mqttsn_dropped_sleep_buffer);
    x.sample("reason", "undeliverable", st.mqttsn_dropped_undeliverable);
    x.counter("tern_mqttsn_retransmissions_total",
              "REGISTER, PUBLISH and PUBREL datagrams sent again (T_RETRY, or at a wake).",
              st.mqttsn_retransmissions);
    x.counter("tern_mqttsn_clients_lost_total",
              "MQTT-SN clients lost: unanswered after mqttsn_retry_count retransmissions, or "
              "silent past 1.5 times their sleep Duration.",
              st.mqttsn_clients_lost);
}

// The bridges of `connection` blocks (docs/metrics.md): one sample per bridge (and side or
// direction); the label `bridge` is the connection name.
void bridge_metrics(exposition& x, const std::vector<bridge::bridge_state>& bridges) {
    x.family("tern_bridge_connected", "gauge",
             "1 while the bridge's side is connected (local: the local broker, tern-broker "
             "itself for its own bridges; remote: the remote one).");
    for (const auto& b : bridges) {
        x.sample("bridge", b.name, "side", "local", b.local_connected ? 1 : 0);
        x.sample("bridge", b.name, "side", "remote", b.remote_connected ? 1 : 0);
    }
    x.family("tern_bridge_remote_connects_total", "counter",
             "Connections the bridge made to the remote broker (CONNACK received).");
    for (const auto& b : bridges) x.sample("bridge", b.name, b.remote_connects);
    x.family("tern_bridge_local_connects_total", "counter",
             "Connections the bridge made to the local broker (CONNACK received).");
    for (const auto& b : bridges) x.sample("bridge", b.name, b.local_connects);
    x.family("tern_bridge_messages_forwarded_total", "counter",
             "Messages the bridge handed over: out (to the remote broker), in (to the local "
             "one).");
    for (const auto& b : bridges) {
        x.sample("bridge", b.name, "direction", "out", b.forwarded_out);
        x.sample("bridge", b.name, "direction", "in", b.forwarded_in);
    }
    x.family("tern_bridge_messages_queued", "gauge",
             "Messages waiting for the destination side or not yet acknowledged by it "
             "(on-disk queue included).");
    for (const auto& b : bridges) {
        x.sample("bridge", b.name, "direction", "out", b.queued_out);
        x.sample("bridge", b.name, "direction", "in", b.queued_in);
    }
    x.family("tern_bridge_queued_bytes", "gauge", "Bytes in the bridge's on-disk queue.");
    for (const auto& b : bridges) {
        x.sample("bridge", b.name, "direction", "out", b.queued_bytes_out);
        x.sample("bridge", b.name, "direction", "in", b.queued_bytes_in);
    }
    x.family("tern_bridge_messages_dropped_total", "counter",
             "Messages the bridge dropped, by reason: loop (its own coming back), no_route, "
             "refused (by the destination), offline (QoS 0 while the destination was down), "
             "queue_full.");
    for (const auto& b : bridges) {
        x.sample("bridge", b.name, "reason", "loop", b.dropped_loop);
        x.sample("bridge", b.name, "reason", "no_route", b.dropped_no_route);
        x.sample("bridge", b.name, "reason", "refused", b.dropped_refused);
        x.sample("bridge", b.name, "reason", "offline", b.dropped_offline);
        x.sample("bridge", b.name, "reason", "queue_full", b.dropped_queue_full);
    }
}

std::string_view reason_phrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 431:
            return "Request Header Fields Too Large";
        default:
            return "Error";
    }
}

bool is_token_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127) return false;
    return std::string_view{"()<>@,;:\\\"/[]?={}"}.find(c) == std::string_view::npos;
}

}  // namespace

std::string render_metrics(const engine& e, const metrics_context& c) {
    return render_metrics(figures_of(e), c);
}

std::string render_metrics(const figures& f, const metrics_context& c) {
    std::string out;
    out.reserve(8192);
    exposition x{out};
    x.family("tern_build_info", "gauge", "The running version (always 1).");
    x.sample("version", c.version, 1);
    x.family("tern_uptime_seconds", "gauge", "Seconds since the broker started.");
    x.sample_double(c.uptime_seconds);
    connection_metrics(x, f);
    session_metrics(x, f);
    message_metrics(x, f);
    state_metrics(x, f);
    if (c.mqttsn) mqttsn_metrics(x, f);
    if (!c.bridges.empty()) bridge_metrics(x, c.bridges);
    if (c.persistence) {
        x.gauge("tern_store_file_bytes",
                "Bytes of records in the persistence store file, with threads > 1 the sum of "
                "every shard's file (each file on disk may be up to 1 MiB larger: zeros made "
                "ahead of the records).",
                c.store_file_bytes);
    }
    return out;
}

std::string render_bridge_metrics(const std::vector<bridge::bridge_state>& bridges) {
    std::string out;
    out.reserve(2048 + bridges.size() * 1024);
    exposition x{out};
    bridge_metrics(x, bridges);
    return out;
}

http_parse parse_http_request(std::string_view bytes, http_request& out) {
    const auto end = bytes.find("\r\n\r\n");
    if (end == std::string_view::npos) {
        // Judge the request line as soon as it is in, so garbage is refused at once.
        const auto eol = bytes.find("\r\n");
        if (eol != std::string_view::npos) {
            http_request probe;
            if (parse_http_request(std::string{bytes.substr(0, eol)} + "\r\n\r\n", probe) ==
                http_parse::bad) {
                return http_parse::bad;
            }
        }
        return bytes.size() >= max_http_head_bytes ? http_parse::too_large : http_parse::incomplete;
    }
    if (end + 4 > max_http_head_bytes) return http_parse::too_large;
    const auto line = bytes.substr(0, bytes.find("\r\n"));
    // METHOD SP request-target SP HTTP/1.x
    const auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0) return http_parse::bad;
    const auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return http_parse::bad;
    const auto method = line.substr(0, sp1);
    const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const auto version = line.substr(sp2 + 1);
    for (char ch : method) {
        if (!is_token_char(ch)) return http_parse::bad;
    }
    for (char ch : target) {
        const auto u = static_cast<unsigned char>(ch);
        if (u <= 32 || u >= 127) return http_parse::bad;
    }
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return http_parse::bad;
    // A query without a path ("GET ?x") names no resource.
    if (target.front() == '?') return http_parse::bad;
    out.method = std::string{method};
    out.target = std::string{target.substr(0, target.find('?'))};
    return http_parse::complete;
}

std::string http_response(int status, std::string_view content_type, std::string_view body,
                          std::string_view extra_headers) {
    std::string out =
        "HTTP/1.1 " + std::to_string(status) + ' ' + std::string{reason_phrase(status)} + "\r\n";
    out += "Content-Type: ";
    out += content_type;
    out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    out += extra_headers;
    out += "Connection: close\r\n\r\n";
    out += body;
    return out;
}

std::string metrics_http_response(const http_request& r,
                                  const std::function<std::string()>& render) {
    constexpr std::string_view text = "text/plain; charset=utf-8";
    const bool metrics = r.target == "/metrics";
    if (!metrics && r.target != "/healthz") return http_response(404, text, "not found\n");
    if (r.method != "GET") {
        return http_response(405, text, "method not allowed\n", "Allow: GET\r\n");
    }
    if (!metrics) return http_response(200, text, "ok\n");
    return http_response(200, "text/plain; version=0.0.4; charset=utf-8", render());
}

bool asks_for_metrics(const http_request& r) {
    return r.target == "/metrics" && r.method == "GET";
}

std::string http_error_response(http_parse p) {
    constexpr std::string_view text = "text/plain; charset=utf-8";
    if (p == http_parse::too_large) return http_response(431, text, "request head too large\n");
    return http_response(400, text, "bad request\n");
}

}  // namespace mqtt::broker
