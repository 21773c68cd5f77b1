// The limits that keep one client from taking the broker's memory or time (docs/security.md):
// memory_limit, max_topic_length / max_topic_levels, max_client_id_length,
// max_subscriptions, max_publish_rate, connect_timeout_ms. Exact bytes where the wire
// answer is the point.

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/config.hpp"
#include "mqtt/broker/engine.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::limits;
using namespace std::chrono_literals;

namespace {

// A session that queues every QoS 1 message for "t/#" while offline (expiry never).
void offline_subscriber(engine& e, clock::time_point& now, const std::string& id) {
    test_client s{e, protocol_version::v5, now};
    s.connect_persistent(id);
    s.subscribe("t/#", qos::at_least_once);
    disconnect_packet d;
    s.send(d);
}

std::string kib(std::size_t n) {
    return std::string(n * 1024, 'x');
}

}  // namespace

TEST_CASE("memory_limit: 5.0 PUBACK/PUBREC 0x97 once the held messages reach it") {
    auto now = test_epoch();
    limits l;
    l.memory_limit = 8 * 1024;
    engine e{l};
    offline_subscriber(e, now, "sub");
    test_client p{e, protocol_version::v5, now};
    p.connect("p");
    // Each 3 KiB message is queued for the offline subscriber: held until it is delivered.
    for (std::uint16_t id = 1; id <= 3; ++id) {
        p.publish("t/a", kib(3), qos::at_least_once, false, id);
        const auto in = p.received();
        REQUIRE(in.size() == 1);
        CHECK(as<puback_packet>(in[0]).code == reason_code::success);
    }
    CHECK(e.held_bytes() >= 9 * 1024);
    CHECK(e.memory_full());
    SUBCASE("QoS 1: PUBACK 0x97, not routed") {
        p.publish("t/a", "more", qos::at_least_once, false, 4);
        CHECK(p.received_bytes() == bytes{0x40, 0x03, 0x00, 0x04, 0x97});
        CHECK(e.find_session("sub")->queue.size() == 3);
        CHECK(e.stats().dropped_memory_limit == 1);
        CHECK_FALSE(p.session().closing());
    }
    SUBCASE("QoS 2: PUBREC 0x97 ends the exchange (no id kept)") {
        p.publish("t/a", "more", qos::exactly_once, false, 5);
        CHECK(p.received_bytes() == bytes{0x50, 0x03, 0x00, 0x05, 0x97});
        CHECK(e.find_session("sub")->qos2_in.empty());
        CHECK(p.session().durable()->qos2_in.empty());
    }
    SUBCASE("QoS 0: dropped, nothing sent back") {
        p.publish("t/a", "more");
        CHECK(p.received_bytes().empty());
        CHECK(e.stats().dropped_memory_limit == 1);
    }
    SUBCASE("the subscriber takes its messages: memory is given back, publishes go through") {
        test_client s{e, protocol_version::v5, now};
        connect_packet c;
        c.client_id = "sub";
        c.clean_start = true;  // discards the session and its queue
        s.connect_with(c);
        CHECK(e.held_bytes() == 0);
        CHECK_FALSE(e.memory_full());
        p.publish("t/a", "more", qos::at_least_once, false, 6);
        CHECK(p.received_bytes() == bytes{0x40, 0x03, 0x00, 0x06, 0x10});  // no subscribers
    }
}

TEST_CASE("memory_limit: 3.1.1 QoS 1/2 closes without acknowledging, QoS 0 is dropped") {
    auto now = test_epoch();
    limits l;
    l.memory_limit = 4 * 1024;
    engine e{l};
    offline_subscriber(e, now, "sub");
    test_client p{e, protocol_version::v3_1_1, now};
    p.connect("p");
    p.publish("t/a", kib(5), qos::at_least_once, false, 1);
    CHECK(p.received_bytes() == bytes{0x40, 0x02, 0x00, 0x01});
    REQUIRE(e.memory_full());
    SUBCASE("QoS 0") {
        p.publish("t/a", "x");
        CHECK(p.received_bytes().empty());
        CHECK_FALSE(p.session().closing());
    }
    SUBCASE("QoS 1") {
        p.publish("t/a", "x", qos::at_least_once, false, 2);
        CHECK(p.received_bytes().empty());
        CHECK(p.session().closing());
        CHECK(p.session().close_reason() == "memory_limit reached");
    }
    CHECK(e.find_session("sub")->queue.size() == 1);
}

TEST_CASE("memory_limit: retained messages count, clearing one is accepted when full") {
    auto now = test_epoch();
    limits l;
    l.memory_limit = 4 * 1024;
    engine e{l};
    test_client p{e, protocol_version::v5, now};
    p.connect("p");
    p.publish("r", kib(5), qos::at_least_once, true, 1);
    CHECK(as<puback_packet>(p.received().at(0)).code == reason_code::no_matching_subscribers);
    CHECK(e.memory_full());
    p.publish("r2", "x", qos::at_least_once, true, 2);
    CHECK(as<puback_packet>(p.received().at(0)).code == reason_code::quota_exceeded);
    p.publish("r", "", qos::at_least_once, true, 3);  // clears "r"
    CHECK(as<puback_packet>(p.received().at(0)).code == reason_code::no_matching_subscribers);
    CHECK(e.retained().size() == 0);
    CHECK(e.held_bytes() == 0);
}

TEST_CASE("memory_limit: a message is counted once however many sessions hold it") {
    auto now = test_epoch();
    engine e;
    for (int i = 0; i < 10; ++i) offline_subscriber(e, now, "s" + std::to_string(i));
    test_client p{e, protocol_version::v5, now};
    p.connect("p");
    p.publish("t/a", kib(1), qos::at_least_once, false, 1);
    const auto held = e.held_bytes();
    CHECK(held >= 1024);
    CHECK(held < 2 * 1024);
}

TEST_CASE("memory_limit: output waiting for clients that do not read counts, until written") {
    auto now = test_epoch();
    limits l;
    l.memory_limit = 64 * 1024;
    engine e{l};
    std::vector<std::unique_ptr<test_client>> subs;
    for (int i = 0; i < 4; ++i) {
        subs.push_back(std::make_unique<test_client>(e, protocol_version::v5, now));
        subs.back()->connect("slow" + std::to_string(i));
        subs.back()->subscribe("t/#", qos::at_most_once);
    }
    CHECK(e.output_bytes() == 0);  // the CONNACKs and SUBACKs were taken
    test_client p{e, protocol_version::v5, now};
    p.connect("p");
    // 1,000-byte payloads are copied into each subscriber's output buffer: 4 KiB a message.
    std::size_t accepted = 0;
    std::uint16_t id = 1;
    for (; id <= 100; ++id) {
        p.publish("t/a", std::string(1000, 'o'), qos::at_least_once, false, id);
        const auto ack = p.received_bytes();
        REQUIRE(ack.size() >= 4);
        if (ack.size() == 5 && ack[4] == 0x97) break;
        ++accepted;
    }
    CHECK(e.held_bytes() == 0);  // QoS 0 deliveries: no message is held, only output
    CHECK(accepted >= 15);
    CHECK(accepted <= 17);
    CHECK(e.output_bytes() >= 64 * 1024);
    CHECK(e.output_bytes() < 64 * 1024 + 5 * 1024);
    CHECK(e.memory_full());
    CHECK(e.stats().dropped_memory_limit == 1);
    // A connection takes a subscriber's output to write it: still counted until written.
    const auto before = e.output_bytes();
    mqtt::broker::output_batch writing;
    subs[0]->session().take_output(writing);
    CHECK(writing.bytes.size() > 15 * 1000);
    CHECK(e.output_bytes() == before);
    writing.clear();  // written
    CHECK(e.output_bytes() < before - 15 * 1000);
    // A connection that goes away with output unwritten gives it back; so does taking it.
    subs[1]->drop();
    (void)subs[2]->received_bytes();
    CHECK_FALSE(e.memory_full());
    p.publish("t/a", "again", qos::at_least_once, false, ++id);
    CHECK(p.received_bytes() == bytes{0x40, 0x02, 0x00, static_cast<std::uint8_t>(id)});
    subs.clear();
    (void)p.received_bytes();
    CHECK(e.output_bytes() == 0);
}

TEST_CASE("max_topic_levels / max_topic_length: PUBLISH, SUBSCRIBE and Will") {
    auto now = test_epoch();
    limits l;
    l.max_topic_levels = 3;
    l.max_topic_length = 16;
    engine e{l};
    test_client sub{e, protocol_version::v5, now};
    sub.connect("sub");
    sub.subscribe("#", qos::at_least_once);
    SUBCASE("5.0 PUBLISH: PUBACK 0x90, QoS 0 dropped, the limit itself is fine") {
        test_client p{e, protocol_version::v5, now};
        p.connect("p");
        p.publish("a/b/c/d", "x", qos::at_least_once, false, 1);
        CHECK(p.received_bytes() == bytes{0x40, 0x03, 0x00, 0x01, 0x90});
        p.publish("a/b/c/d", "x");
        p.publish("0123456789abcdefg", "x", qos::at_least_once, false, 2);  // 17 bytes
        CHECK(p.received_bytes() == bytes{0x40, 0x03, 0x00, 0x02, 0x90});
        CHECK(sub.received().empty());
        CHECK(e.stats().dropped_topic_limit == 3);
        p.publish("a/b/c", "x", qos::at_least_once, false, 3);
        CHECK(as<puback_packet>(p.received().at(0)).code == reason_code::success);
        CHECK(sub.received().size() == 1);
    }
    SUBCASE("3.1.1 PUBLISH QoS 1: closed, the Will goes out") {
        test_client p{e, protocol_version::v3_1_1, now};
        p.connect("p", 60, will_message{"will", "gone", qos::at_most_once, false, {}});
        p.publish("a/b/c/d", "x", qos::at_least_once, false, 1);
        CHECK(p.received_bytes().empty());
        CHECK(p.session().closing());
        const auto in = sub.received();
        REQUIRE(in.size() == 1);
        CHECK(as<publish_packet>(in[0]).topic == "will");
    }
    SUBCASE("SUBSCRIBE: 0x8F in 5.0, 0x80 in 3.1.1") {
        test_client s5{e, protocol_version::v5, now};
        s5.connect("s5");
        CHECK(s5.subscribe("a/+/c/#", qos::at_most_once) ==
              std::vector{reason_code::topic_filter_invalid});
        CHECK(s5.subscribe("a/+/#", qos::at_most_once) == std::vector{reason_code::success});
        test_client s3{e, protocol_version::v3_1_1, now};
        s3.connect("s3");
        subscribe_packet sp;
        sp.packet_id = 7;
        sp.subscriptions.push_back({"a/+/c/#", {qos::at_most_once}});
        s3.send(sp);
        CHECK(s3.received_bytes() == bytes{0x90, 0x03, 0x00, 0x07, 0x80});
    }
    SUBCASE("Will topic: 5.0 CONNACK 0x90, 3.1.1 closed without CONNACK") {
        test_client c5{e, protocol_version::v5, now};
        connect_packet c;
        c.client_id = "w";
        c.will = will_message{"a/b/c/d", "x", qos::at_most_once, false, {}};
        CHECK(c5.connect_with(c).code == reason_code::topic_name_invalid);
        CHECK(c5.session().closing());
        test_client c3{e, protocol_version::v3_1_1, now};
        c.version = protocol_version::v3_1_1;
        c3.send(c);
        CHECK(c3.received_bytes().empty());
        CHECK(c3.session().closing());
    }
}

TEST_CASE("max_client_id_length: CONNACK 0x85 (5.0) / 0x02 (3.1.1)") {
    auto now = test_epoch();
    limits l;
    l.max_client_id_length = 30;
    engine e{l};
    test_client ok{e, protocol_version::v5, now};
    ok.connect(std::string(30, 'c'));
    test_client c5{e, protocol_version::v5, now};
    connect_packet c;
    c.client_id = std::string(31, 'c');
    CHECK(c5.connect_with(c).code == reason_code::client_identifier_not_valid);
    CHECK(c5.session().closing());
    test_client c3{e, protocol_version::v3_1_1, now};
    c.version = protocol_version::v3_1_1;
    c3.send(c);
    CHECK(c3.received_bytes() == bytes{0x20, 0x02, 0x00, 0x02});
    CHECK(e.stored_session_count() == 1);
}

TEST_CASE("max_subscriptions: past it SUBACK 0x97 (5.0) / 0x80 (3.1.1)") {
    auto now = test_epoch();
    limits l;
    l.max_subscriptions = 2;
    engine e{l};
    for (const auto v : {protocol_version::v5, protocol_version::v3_1_1}) {
        CAPTURE(static_cast<int>(v));
        test_client c{e, v, now};
        c.connect(is_v5(v) ? "c5" : "c3");
        subscribe_packet sp;
        sp.packet_id = 9;
        for (const char* f : {"a", "b", "c", "a"})
            sp.subscriptions.push_back({f, {qos::at_most_once}});
        c.send(sp);
        const auto fail = is_v5(v) ? std::uint8_t{0x97} : std::uint8_t{0x80};
        const bytes props = is_v5(v) ? bytes{0x00} : bytes{};
        bytes want{0x90, 0x00, 0x00, 0x09};
        want.insert(want.end(), props.begin(), props.end());
        want.insert(want.end(), {0x00, 0x00, fail, 0x00});  // "a" again replaces, not counted
        want[1] = static_cast<std::uint8_t>(want.size() - 2);
        CHECK(c.received_bytes() == want);
        CHECK(c.session().subscription_count() == 2);
    }
}

TEST_CASE("max_publish_rate: a burst of `rate`, then input pauses until the next is on time") {
    auto now = test_epoch();
    limits l;
    l.max_publish_rate = 2;
    engine e{l};
    test_client p{e, protocol_version::v3_1_1, now};
    p.connect("p", 1);  // keep alive 1 s: the pause must not count against it
    p.publish("t", "1", qos::at_least_once, false, 1);
    CHECK_FALSE(p.session().input_paused());
    p.publish("t", "2", qos::at_least_once, false, 2);
    // Both handled and acknowledged; the driver stops reading now.
    CHECK(p.received_bytes() == bytes{0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02});
    CHECK(p.session().input_paused());
    CHECK(p.session().deadline() == now + 500ms);
    CHECK(e.stats().rate_limited == 1);
    const int wakes = p.wakes();
    p.session().on_timer(now + 499ms);
    CHECK(p.session().input_paused());
    now += 500ms;
    p.session().on_timer(now);
    CHECK_FALSE(p.session().input_paused());
    CHECK(p.wakes() == wakes + 1);
    CHECK(p.session().deadline() == now + 1500ms);  // keep-alive from the end of the pause
    // Steady state: one every 500 ms.
    p.publish("t", "3", qos::at_least_once, false, 3);
    CHECK(p.session().input_paused());
    CHECK(p.session().deadline() == now + 500ms);
    now += 2s;  // long quiet: the full burst is available again
    p.session().on_timer(now);
    p.publish("t", "4", qos::at_most_once);
    CHECK_FALSE(p.session().input_paused());
    CHECK_FALSE(p.session().closing());
}

TEST_CASE("max_publish_rate 0: never paused") {
    auto now = test_epoch();
    engine e;
    test_client p{e, protocol_version::v5, now};
    p.connect("p");
    for (int i = 0; i < 1000; ++i) p.publish("t", "x");
    CHECK_FALSE(p.session().input_paused());
}

TEST_CASE("config: the limits against hostile clients") {
    const auto parse = [](std::string_view text) {
        auto r = mqtt::broker::parse_config(text, "t.conf");
        INFO(r.error.to_string());
        REQUIRE(r);
        return *r.value;
    };
    const auto defaults = parse("").limits;
    CHECK(defaults.max_subscriptions == 10'000);
    CHECK(defaults.max_topic_length == 65'535);
    CHECK(defaults.max_topic_levels == 200);
    CHECK(defaults.max_client_id_length == 256);
    CHECK(defaults.max_publish_rate == 0);
    CHECK(defaults.memory_limit == std::size_t{1} << 30);
    CHECK(defaults.connect_timeout == 10s);
    CHECK(defaults.max_outbound_bytes == 4u << 20);
    CHECK(defaults.backpressure_timeout == 10s);
    const auto c = parse(
        "max_subscriptions 5\nmax_topic_length 100\nmax_topic_levels 8\n"
        "max_client_id_length 64\nmax_publish_rate 50\nmemory_limit 1048576\n"
        "connect_timeout_ms 250\nmax_outbound_bytes 65536\nbackpressure_timeout_ms 1500\n");
    CHECK(c.limits.max_outbound_bytes == 65'536);
    CHECK(c.limits.max_subscriptions == 5);
    CHECK(c.limits.max_topic_length == 100);
    CHECK(c.limits.max_topic_levels == 8);
    CHECK(c.limits.max_client_id_length == 64);
    CHECK(c.limits.max_publish_rate == 50);
    CHECK(c.limits.memory_limit == 1'048'576);
    CHECK(c.limits.connect_timeout == 250ms);
    CHECK(c.limits.backpressure_timeout == 1500ms);
    CHECK(parse("backpressure_timeout_ms 0\n").limits.backpressure_timeout == 0ms);
    const auto json = mqtt::broker::to_json(c);
    for (const char* kv :
         {"\"max_subscriptions\":5", "\"max_topic_length\":100", "\"max_topic_levels\":8",
          "\"max_client_id_length\":64", "\"max_publish_rate\":50", "\"memory_limit\":1048576",
          "\"connect_timeout_ms\":250", "\"max_outbound_bytes\":65536",
          "\"backpressure_timeout_ms\":1500"}) {
        CHECK_MESSAGE(json.find(kv) != std::string::npos, kv);
    }
    const auto unlimited = parse("memory_limit 0\nmax_subscriptions 0\n");
    CHECK(unlimited.limits.memory_limit == std::numeric_limits<std::size_t>::max());
    CHECK(mqtt::broker::to_json(unlimited).find("\"memory_limit\":0") != std::string::npos);
    for (const char* bad :
         {"max_topic_length 0", "max_topic_levels 65536", "max_client_id_length 22",
          "connect_timeout_ms 0", "max_publish_rate -1", "memory_limit 1k",
          "max_outbound_bytes 0", "max_outbound_bytes 1023", "max_outbound_bytes 2000000000000",
          "backpressure_timeout_ms -1", "backpressure_timeout_ms 86400001",
          "backpressure_timeout_ms 1s"}) {
        CAPTURE(bad);
        CHECK_FALSE(mqtt::broker::parse_config(bad, "t.conf"));
    }
}

TEST_CASE("memory_limit: a copy made for a Message Expiry Interval is counted while held") {
    auto now = test_epoch();
    engine e;
    test_client p{e, protocol_version::v5, now};
    p.connect("p");
    publish_packet r;
    r.topic = "r";
    r.payload = kib(2);
    r.qos_level = qos::at_least_once;
    r.packet_id = 1;
    r.retain = true;
    r.props.message_expiry_interval = 100;
    p.send(r);
    const auto retained_only = e.held_bytes();
    CHECK(retained_only >= 2048);
    now += 10s;  // delivered later: a copy with 90 s left goes in flight
    test_client s{e, protocol_version::v5, now};
    s.connect("s");
    s.subscribe("r", qos::at_least_once);
    const auto sent = s.after_suback();
    REQUIRE(sent.size() == 1);
    CHECK(as<publish_packet>(sent[0]).props.message_expiry_interval == 90);
    CHECK(e.held_bytes() >= retained_only + 2048);
    s.send(puback_packet{as<publish_packet>(sent[0]).packet_id, reason_code::success, {}});
    CHECK(e.held_bytes() == retained_only);
}
