// The metrics endpoint's sans-I/O parts: the Prometheus exposition of the engine's counters
// (render_metrics) and the bounded HTTP request head parser and router.

#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/metrics.hpp"
#include "mqtt/broker/sys_topics.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::http_parse;
using mqtt::broker::http_request;
using mqtt::broker::parse_http_request;

TEST_CASE("metrics: counters by QoS, queues, subscriptions, retained") {
    auto now = test_epoch();
    engine e;
    test_client sub{e, protocol_version::v5, now};
    sub.connect("sub");
    sub.subscribe("t/#", qos::exactly_once);
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("pub");
    pub.publish("t/a", "12345", qos::at_most_once);
    pub.publish("t/b", "123", qos::at_least_once);
    pub.publish("t/c", "1", qos::exactly_once, true);
    (void)pub.received();
    (void)sub.received();
    test_client off{e, protocol_version::v3_1_1, now};
    off.connect_persistent("off");
    off.subscribe("q", qos::at_least_once);
    off.lose_connection();
    pub.publish("q", "queued", qos::at_least_once);
    pub.publish("q", "dropped", qos::at_most_once);

    mqtt::broker::metrics_context c;
    c.version = "9.9";
    c.uptime_seconds = 1.5;
    const auto text = render_metrics(e, c);
    CHECK(text.find("tern_build_info{version=\"9.9\"} 1\n") != std::string::npos);
    CHECK(text.find("tern_uptime_seconds 1.500\n") != std::string::npos);
    CHECK(sample(text, "tern_messages_received_total{qos=\"0\"}") == 2);
    CHECK(sample(text, "tern_messages_received_total{qos=\"1\"}") == 2);
    CHECK(sample(text, "tern_messages_received_total{qos=\"2\"}") == 1);
    CHECK(sample(text, "tern_messages_sent_total{qos=\"0\"}") == 1);
    CHECK(sample(text, "tern_messages_sent_total{qos=\"1\"}") == 1);
    CHECK(sample(text, "tern_messages_sent_total{qos=\"2\"}") == 1);
    CHECK(sample(text, "tern_payload_bytes_received_total{qos=\"0\"}") == 5 + 7);
    CHECK(sample(text, "tern_payload_bytes_sent_total{qos=\"1\"}") == 3);
    CHECK(sample(text, "tern_messages_dropped_total{reason=\"qos0_offline\"}") == 1);
    CHECK(sample(text, "tern_queued_messages") == 1);
    CHECK(sample(text, "tern_queue_depth_max") == 1);
    CHECK(sample(text, "tern_queued_bytes") == 1 + 6);
    CHECK(sample(text, "tern_inflight_messages") == 2);  // sub has not acknowledged QoS 1 and 2
    CHECK(sample(text, "tern_subscriptions") == 2);
    CHECK(sample(text, "tern_retained_messages") == 1);
    CHECK(sample(text, "tern_clients_connected") == 2);
    CHECK(sample(text, "tern_sessions_offline") == 1);
    CHECK(sample(text, "tern_store_file_bytes") == -1);  // persistence off
    c.persistence = true;
    c.store_file_bytes = 4096;
    CHECK(sample(render_metrics(e, c), "tern_store_file_bytes") == 4096);
}

TEST_CASE("metrics: publishes refused while the store cannot write are counted by reason") {
    auto now = test_epoch();
    engine e;
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    mqtt::broker::metrics_context c;
    CHECK(sample(render_metrics(e, c), "tern_messages_dropped_total{reason=\"store_failing\"}") ==
          0);
    e.set_store_failing(true);
    pub.publish("t", "x", qos::at_least_once);
    pub.publish("t", "y", qos::at_most_once);  // QoS 0 is not refused: nothing to make durable
    e.set_store_failing(false);
    pub.publish("t", "z", qos::at_least_once);
    const auto text = render_metrics(e, c);
    CHECK(sample(text, "tern_messages_dropped_total{reason=\"store_failing\"}") == 1);
    CHECK(sample(text, "tern_messages_dropped_total{reason=\"memory_limit\"}") == 0);
    CHECK(sample(text, "tern_messages_dropped_total{reason=\"topic_limit\"}") == 0);
    CHECK(sample(text, "tern_messages_received_total{qos=\"1\"}") == 1);
}

TEST_CASE("metrics: every sample has HELP and TYPE, counters end in _total") {
    engine e;
    const auto text = render_metrics(e, {});
    std::istringstream in{text};
    std::string line, help, type, kind;
    int samples = 0;
    while (std::getline(in, line)) {
        CAPTURE(line);
        if (line.rfind("# HELP ", 0) == 0) {
            help = line.substr(7, line.find(' ', 7) - 7);
        } else if (line.rfind("# TYPE ", 0) == 0) {
            type = line.substr(7, line.find(' ', 7) - 7);
            kind = line.substr(line.rfind(' ') + 1);
            CHECK(type == help);
            CHECK((kind == "counter" || kind == "gauge"));
            if (kind == "counter") CHECK(type.ends_with("_total"));
        } else {
            const auto name = line.substr(0, line.find_first_of("{ "));
            CHECK(name == type);
            ++samples;
        }
    }
    CHECK(samples > 30);
}

TEST_CASE("metrics: bridge states, two labels, only with bridges") {
    engine e;
    mqtt::broker::metrics_context c;
    CHECK(render_metrics(e, c).find("tern_bridge_") == std::string::npos);
    mqtt::bridge::bridge_state b;
    b.name = "cen\"tral";  // label values are escaped
    b.local_connected = true;
    b.forwarded_out = 7;
    b.forwarded_in = 3;
    b.queued_out = 2;
    b.dropped_offline = 4;
    b.remote_connects = 5;
    c.bridges.push_back(b);
    c.bridges.push_back(mqtt::bridge::bridge_state{});
    c.bridges.back().name = "second";
    c.bridges.back().remote_connected = true;
    const auto text = render_metrics(e, c);
    const std::string n = "{bridge=\"cen\\\"tral\",";
    CHECK(sample(text, "tern_bridge_connected" + n + "side=\"local\"}") == 1);
    CHECK(sample(text, "tern_bridge_connected" + n + "side=\"remote\"}") == 0);
    CHECK(sample(text, "tern_bridge_connected{bridge=\"second\",side=\"remote\"}") == 1);
    CHECK(sample(text, "tern_bridge_messages_forwarded_total" + n + "direction=\"out\"}") == 7);
    CHECK(sample(text, "tern_bridge_messages_forwarded_total" + n + "direction=\"in\"}") == 3);
    CHECK(sample(text, "tern_bridge_messages_queued" + n + "direction=\"out\"}") == 2);
    CHECK(sample(text, "tern_bridge_messages_dropped_total" + n + "reason=\"offline\"}") == 4);
    CHECK(sample(text, "tern_bridge_remote_connects_total{bridge=\"cen\\\"tral\"}") == 5);
    // Each family once, with HELP and TYPE, whatever the number of bridges.
    std::size_t at = 0;
    int families = 0;
    while ((at = text.find("# TYPE tern_bridge_connected ", at)) != std::string::npos) {
        ++families;
        ++at;
    }
    CHECK(families == 1);
}

TEST_CASE("metrics: the bridge families alone (tern-bridge's /metrics)") {
    using mqtt::broker::render_bridge_metrics;
    // No bridge yet: every family is there, with HELP and TYPE and no samples.
    const auto empty = render_bridge_metrics({});
    for (const char* f :
         {"tern_bridge_connected gauge", "tern_bridge_local_connects_total counter",
          "tern_bridge_remote_connects_total counter",
          "tern_bridge_messages_forwarded_total counter", "tern_bridge_messages_queued gauge",
          "tern_bridge_queued_bytes gauge", "tern_bridge_messages_dropped_total counter"}) {
        CAPTURE(f);
        CHECK(empty.find(std::string{"# TYPE "} + f + "\n") != std::string::npos);
    }
    CHECK(empty.find("{") == std::string::npos);
    mqtt::bridge::bridge_state b;
    b.name = "site";
    b.remote_connected = true;
    b.local_connects = 2;
    b.remote_connects = 3;
    b.queued_bytes_out = 4096;
    b.dropped_queue_full = 9;
    const auto text = render_bridge_metrics({b});
    CHECK(sample(text, "tern_bridge_connected{bridge=\"site\",side=\"local\"}") == 0);
    CHECK(sample(text, "tern_bridge_connected{bridge=\"site\",side=\"remote\"}") == 1);
    CHECK(sample(text, "tern_bridge_local_connects_total{bridge=\"site\"}") == 2);
    CHECK(sample(text, "tern_bridge_remote_connects_total{bridge=\"site\"}") == 3);
    CHECK(sample(text, "tern_bridge_queued_bytes{bridge=\"site\",direction=\"out\"}") == 4096);
    CHECK(sample(text,
                 "tern_bridge_messages_dropped_total{bridge=\"site\",reason=\"queue_full\"}") == 9);
    // Nothing of the broker's own families.
    CHECK(text.find("tern_uptime_seconds") == std::string::npos);
    CHECK(text.find("tern_connections") == std::string::npos);
}

TEST_CASE("metrics: HTTP request heads") {
    http_request r;
    CHECK(parse_http_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", r) ==
          http_parse::complete);
    CHECK(r.method == "GET");
    CHECK(r.target == "/metrics");
    CHECK(parse_http_request("GET /metrics?a=b HTTP/1.0\r\n\r\n", r) == http_parse::complete);
    CHECK(r.target == "/metrics");
    CHECK(parse_http_request("GET /metrics HTTP/1.1\r\nHost:", r) == http_parse::incomplete);
    CHECK(parse_http_request("GE", r) == http_parse::incomplete);
    CHECK(parse_http_request("\x16\x03\x01 garbage\r\n", r) == http_parse::bad);
    CHECK(parse_http_request("GET /metrics SPDY/3\r\n\r\n", r) == http_parse::bad);
    CHECK(parse_http_request("GET  HTTP/1.1\r\n\r\n", r) == http_parse::bad);
    CHECK(parse_http_request("GET /a b HTTP/1.1\r\n\r\n", r) == http_parse::bad);
    // A query alone left an empty path (found by config_fuzz).
    CHECK(parse_http_request("GET ?nope HTTP/1.1\r\n\r\n", r) == http_parse::bad);
    const std::string big = "GET / HTTP/1.1\r\nX: " + std::string(9000, 'a');
    CHECK(parse_http_request(big, r) == http_parse::too_large);
    CHECK(parse_http_request(big + "\r\n\r\n", r) == http_parse::too_large);
}

TEST_CASE("metrics: routes and responses") {
    int rendered = 0;
    auto render = [&] {
        ++rendered;
        return std::string{"tern_x 1\n"};
    };
    auto respond = [&](const char* method, const char* target) {
        return mqtt::broker::metrics_http_response(http_request{method, target}, render);
    };
    const auto ok = respond("GET", "/metrics");
    CHECK(ok.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(ok.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
    CHECK(ok.find("Content-Length: 9\r\n") != std::string::npos);
    CHECK(ok.find("Connection: close\r\n") != std::string::npos);
    CHECK(ok.ends_with("\r\n\r\ntern_x 1\n"));
    CHECK(rendered == 1);
    CHECK(respond("GET", "/healthz").ends_with("\r\n\r\nok\n"));
    CHECK(respond("GET", "/").starts_with("HTTP/1.1 404 "));
    const auto post = respond("POST", "/metrics");
    CHECK(post.starts_with("HTTP/1.1 405 "));
    CHECK(post.find("Allow: GET\r\n") != std::string::npos);
    CHECK(rendered == 1);  // nothing rendered for the refused ones
    CHECK(mqtt::broker::http_error_response(http_parse::too_large).starts_with("HTTP/1.1 431 "));
    CHECK(mqtt::broker::http_error_response(http_parse::bad).starts_with("HTTP/1.1 400 "));
}

TEST_CASE("metrics and $SYS: what the limits refused, and what memory_limit counts") {
    auto now = test_epoch();
    mqtt::broker::limits l;
    l.memory_limit = 8 * 1024;
    l.max_topic_levels = 3;
    l.max_publish_rate = 2;
    engine e{l};
    test_client slow{e, protocol_version::v5, now};  // subscribed, never reads
    slow.connect("slow");
    slow.subscribe("t/#", qos::at_most_once);
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    mqtt::broker::metrics_context c;
    auto text = render_metrics(e, c);
    CHECK(sample(text, "tern_memory_bytes{kind=\"output\"}") == 0);
    CHECK(sample(text, "tern_memory_limit_bytes") == 8 * 1024);
    CHECK(sample(text, "tern_rate_limited_total") == 0);
    // Three messages fill the slow subscriber's output past 8 KiB, the fourth is refused; the
    // burst of max_publish_rate 2 is used up on the way (pauses counted).
    pub.publish("t/a", std::string(3000, 'x'), qos::at_least_once, false, 1);
    pub.publish("t/a", std::string(3000, 'x'), qos::at_least_once, false, 2);
    now += std::chrono::seconds{1};
    pub.session().on_timer(now);
    pub.publish("t/a", std::string(3000, 'x'), qos::at_least_once, false, 3);
    pub.publish("t/a", std::string(3000, 'x'), qos::at_least_once, false, 4);
    pub.publish("t/a/b/c", "deep", qos::at_least_once, false, 5);
    const auto acks = pub.received_bytes();
    CHECK(acks.size() == 3 * 4 + 2 * 5);  // 1..3 accepted, 4 refused 0x97, 5 refused 0x90
    text = render_metrics(e, c);
    CHECK(sample(text, "tern_messages_dropped_total{reason=\"memory_limit\"}") == 1);
    CHECK(sample(text, "tern_messages_dropped_total{reason=\"topic_limit\"}") == 1);
    const auto paused = static_cast<long long>(e.stats().rate_limited);
    CHECK(paused >= 1);
    CHECK(sample(text, "tern_rate_limited_total") == paused);
    const auto output = sample(text, "tern_memory_bytes{kind=\"output\"}");
    CHECK(output >= 9000);
    CHECK(sample(text, "tern_memory_bytes{kind=\"messages\"}") == 0);

    mqtt::broker::sys_topics sys{e, std::chrono::seconds{10}, now, "v"};
    sys.on_timer(now);
    std::map<std::string, std::string> got;
    e.retained().match("$SYS/broker/limits/#", [&](const mqtt::broker::message_ptr& m) {
        got[std::string{m->topic.substr(12)}] = m->payload;
        return true;
    });
    CHECK(got["limits/memory/refused"] == "1");
    CHECK(got["limits/topic/refused"] == "1");
    CHECK(got["limits/rate/paused"] == std::to_string(paused));
    CHECK(got["limits/memory/output"] == std::to_string(output));
    CHECK(std::stoll(got["limits/memory/bytes"]) >= output);  // + the $SYS messages retained
    CHECK(got["limits/backpressure/timeouts"] == "0");
    CHECK(got.size() == 6);
}
