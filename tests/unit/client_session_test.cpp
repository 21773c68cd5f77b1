// The client session state machine, driven by hand: packets from a scripted broker go in,
// the bytes it answers with are decoded and checked, time is passed explicitly.

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/client/session.hpp"
#include "mqtt/format/message_json.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"
#include "client_test_wire.hpp"

namespace {

using namespace mqtt::protocol;
namespace client = mqtt::client;
using client::clock;
using namespace std::chrono_literals;

// The scripted broker side: feeds packets to the session, decodes what it sends back.
struct harness {
    explicit harness(protocol_version v, std::uint16_t keep_alive = 60) {
        client::session_config cfg;
        cfg.connect.version = v;
        cfg.connect.keep_alive = keep_alive;
        cfg.connect.client_id = "test-client";
        s = std::make_unique<client::session>(cfg);
        version = v;
    }

    void feed(const packet& p) { tern_test::feed_packet(*s, p, version, now); }

    // Everything the session sent since the last call, decoded.
    std::vector<packet> sent() { return tern_test::take_sent(*s, version); }

    std::vector<client::event> events() { return s->take_events(); }

    void connect(connack_packet ack = {}) {
        s->start(now);
        auto out = sent();
        REQUIRE(out.size() == 1);
        REQUIRE(std::holds_alternative<connect_packet>(out[0]));
        feed(ack);
        auto ev = events();
        REQUIRE(ev.size() == 1);
        REQUIRE(std::holds_alternative<client::connected_event>(ev[0]));
    }

    protocol_version version;
    clock::time_point now = clock::time_point{} + 1000s;
    std::unique_ptr<client::session> s;
};

// By value: the vectors are temporaries.
template <class T>
T only(const std::vector<packet>& v) {
    REQUIRE(v.size() == 1);
    REQUIRE(std::holds_alternative<T>(v[0]));
    return std::get<T>(v[0]);
}

template <class T>
T only_event(const std::vector<client::event>& v) {
    REQUIRE(v.size() == 1);
    REQUIRE(std::holds_alternative<T>(v[0]));
    return std::get<T>(v[0]);
}

publish_packet msg(std::string topic, std::string payload, qos q, std::uint16_t id = 0) {
    publish_packet p;
    p.topic = std::move(topic);
    p.payload = std::move(payload);
    p.qos_level = q;
    p.packet_id = id;
    return p;
}

}  // namespace

TEST_CASE("client session: CONNECT carries the configured version and client id") {
    for (auto v : {protocol_version::v3_1, protocol_version::v3_1_1, protocol_version::v5}) {
        harness h(v, 30);
        h.s->start(h.now);
        const auto& c = only<connect_packet>(h.sent());
        CHECK(c.version == v);
        CHECK(c.keep_alive == 30);
        CHECK(c.client_id == "test-client");
        CHECK(h.s->state() == client::session_state::connecting);
        CHECK(h.s->deadline() == h.now + 10s);
    }
}

TEST_CASE("client session: CONNACK accepted, refused (5.0 and 3.1.1), or never") {
    SUBCASE("accepted") {
        harness h(protocol_version::v5);
        h.connect();
        CHECK(h.s->state() == client::session_state::connected);
    }
    SUBCASE("refused, 5.0 reason code and reason string") {
        harness h(protocol_version::v5);
        h.s->start(h.now);
        (void)h.sent();
        connack_packet ack;
        ack.code = reason_code::not_authorized;
        ack.props.reason_string = "go away";
        h.feed(ack);
        const auto& c = only_event<client::closed_event>(h.events());
        CHECK(c.error == client::errc::connection_refused);
        CHECK(c.reason == reason_code::not_authorized);
        CHECK(c.reason_string == "go away");
        CHECK(h.s->closed());
        CHECK(h.sent().empty());  // no DISCONNECT after a refusal
    }
    SUBCASE("refused, 3.1.1 return code 5") {
        harness h(protocol_version::v3_1_1);
        h.s->start(h.now);
        (void)h.sent();
        connack_packet ack;
        ack.code = to_reason_code(connect_return_code::not_authorized);
        h.feed(ack);
        const auto& c = only_event<client::closed_event>(h.events());
        CHECK(c.error == client::errc::connection_refused);
        CHECK(to_connect_return_code(c.reason) == connect_return_code::not_authorized);
    }
    SUBCASE("no CONNACK before the connect timeout") {
        harness h(protocol_version::v5);
        h.s->start(h.now);
        h.s->on_timer(h.now + 9s);
        CHECK(h.events().empty());
        h.s->on_timer(h.now + 10s);
        CHECK(only_event<client::closed_event>(h.events()).error == client::errc::connect_timeout);
    }
    SUBCASE("any other packet before CONNACK is a protocol violation") {
        harness h(protocol_version::v5);
        h.s->start(h.now);
        (void)h.sent();
        h.feed(pingresp_packet{});
        CHECK(only_event<client::closed_event>(h.events()).error ==
              client::errc::protocol_violation);
    }
    SUBCASE("publish before CONNACK is refused locally") {
        harness h(protocol_version::v5);
        h.s->start(h.now);
        CHECK(h.s->publish(msg("a", "x", qos::at_most_once), h.now).error() ==
              client::errc::not_connected);
    }
}

TEST_CASE("client session: outbound QoS 0, 1 and 2 flows") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(v);
        harness h(v);
        h.connect();
        SUBCASE("QoS 0: sent with no packet id, nothing awaited") {
            auto id = h.s->publish(msg("t", "zero", qos::at_most_once), h.now);
            REQUIRE(id.has_value());
            CHECK(*id == 0);
            const auto& p = only<publish_packet>(h.sent());
            CHECK(p.payload == "zero");
            CHECK(h.s->unacknowledged() == 0);
        }
        SUBCASE("QoS 1: PUBLISH, PUBACK, done") {
            auto id = h.s->publish(msg("t", "one", qos::at_least_once), h.now);
            REQUIRE(id.has_value());
            CHECK(*id != 0);
            CHECK(only<publish_packet>(h.sent()).packet_id == *id);
            CHECK(h.s->unacknowledged() == 1);
            h.feed(puback_packet{*id, reason_code::success, {}});
            CHECK(only_event<client::publish_done_event>(h.events()).packet_id == *id);
            CHECK(h.s->unacknowledged() == 0);
            h.feed(puback_packet{*id, reason_code::success, {}});  // stale: ignored
            CHECK(h.events().empty());
            CHECK_FALSE(h.s->closed());
        }
        SUBCASE("QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP, done") {
            auto id = h.s->publish(msg("t", "two", qos::exactly_once), h.now);
            REQUIRE(id.has_value());
            CHECK(only<publish_packet>(h.sent()).qos_level == qos::exactly_once);
            h.feed(pubrec_packet{*id, reason_code::success, {}});
            CHECK(only<pubrel_packet>(h.sent()).packet_id == *id);
            CHECK(h.events().empty());
            h.feed(pubrec_packet{*id, reason_code::success, {}});  // resent PUBREC
            CHECK(only<pubrel_packet>(h.sent()).packet_id == *id);
            h.feed(pubcomp_packet{*id, reason_code::success, {}});
            CHECK(only_event<client::publish_done_event>(h.events()).packet_id == *id);
            CHECK(h.s->unacknowledged() == 0);
        }
        SUBCASE("packet ids are distinct while in flight") {
            auto a = h.s->publish(msg("t", "a", qos::at_least_once), h.now);
            auto b = h.s->publish(msg("t", "b", qos::exactly_once), h.now);
            REQUIRE(a.has_value());
            REQUIRE(b.has_value());
            CHECK(*a != *b);
        }
        SUBCASE("an invalid topic name is refused locally") {
            CHECK(h.s->publish(msg("a/+", "x", qos::at_most_once), h.now).error() ==
                  client::errc::invalid_topic_name);
        }
    }
}

TEST_CASE("client session: 5.0 PUBACK/PUBREC with an error code ends the flow as refused") {
    harness h(protocol_version::v5);
    h.connect();
    auto a = h.s->publish(msg("t", "a", qos::at_least_once), h.now);
    auto b = h.s->publish(msg("t", "b", qos::exactly_once), h.now);
    (void)h.sent();
    h.feed(puback_packet{*a, reason_code::not_authorized, {}});
    CHECK(only_event<client::publish_done_event>(h.events()).code == reason_code::not_authorized);
    h.feed(pubrec_packet{*b, reason_code::quota_exceeded, {}});
    CHECK(only_event<client::publish_done_event>(h.events()).code == reason_code::quota_exceeded);
    CHECK(h.sent().empty());  // no PUBREL for a refused QoS 2 message
}

TEST_CASE("client session: the broker's Receive Maximum holds back further publishes") {
    harness h(protocol_version::v5);
    connack_packet ack;
    ack.props.receive_maximum = 1;
    h.connect(ack);
    auto a = h.s->publish(msg("t", "a", qos::at_least_once), h.now);
    auto b = h.s->publish(msg("t", "b", qos::at_least_once), h.now);
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(only<publish_packet>(h.sent()).payload == "a");
    h.feed(puback_packet{*a, reason_code::success, {}});
    CHECK(only<publish_packet>(h.sent()).payload == "b");
}

TEST_CASE("client session: a borrowed PUBLISH stays the caller's, and is copied when kept") {
    harness h(protocol_version::v5);
    connack_packet ack;
    ack.props.receive_maximum = 1;
    h.connect(ack);
    auto p = msg("t", "first", qos::at_least_once);
    auto a = h.s->publish_borrowed(p, h.now);
    REQUIRE(a.has_value());
    CHECK(p.payload == "first");  // not moved from
    CHECK(p.packet_id == *a);     // as sent
    auto sent = only<publish_packet>(h.sent());
    CHECK(sent.payload == "first");
    CHECK(sent.packet_id == *a);
    // Past the Receive Maximum the session keeps a copy: the caller's next change to its
    // packet is not what goes out later.
    p.payload = "second";
    auto b = h.s->publish_borrowed(p, h.now);
    REQUIRE(b.has_value());
    CHECK(*b != *a);
    CHECK(h.sent().empty());
    p.payload = "changed after";
    h.feed(puback_packet{*a, reason_code::success, {}});
    sent = only<publish_packet>(h.sent());
    CHECK(sent.payload == "second");
    CHECK(sent.packet_id == *b);
}

TEST_CASE("client session: before 5.0, at most max_inflight_v3 messages are in flight") {
    harness h(protocol_version::v3_1_1);
    h.connect();
    std::vector<std::uint16_t> ids;
    for (int i = 0; i < 25; ++i) {
        auto id = h.s->publish(msg("t", std::to_string(i), qos::exactly_once), h.now);
        REQUIRE(id.has_value());
        ids.push_back(*id);
    }
    CHECK(h.sent().size() == 20);
    h.feed(pubrec_packet{ids[0], reason_code::success, {}});
    CHECK(only<pubrel_packet>(h.sent()).packet_id == ids[0]);  // still in flight
    h.feed(pubcomp_packet{ids[0], reason_code::success, {}});
    CHECK(only<publish_packet>(h.sent()).payload == "20");  // its slot goes to the next
}

TEST_CASE("client session: the broker's Maximum QoS and Retain Available are respected") {
    harness h(protocol_version::v5);
    connack_packet ack;
    ack.props.maximum_qos = 1;
    ack.props.retain_available = 0;
    h.connect(ack);
    CHECK(h.s->publish(msg("t", "x", qos::exactly_once), h.now).error() ==
          client::errc::qos_not_supported);
    auto r = msg("t", "x", qos::at_most_once);
    r.retain = true;
    CHECK(h.s->publish(r, h.now).error() == client::errc::retain_not_supported);
}

TEST_CASE("client session: inbound QoS 0, 1 and exactly-once QoS 2") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(v);
        harness h(v);
        h.connect();
        SUBCASE("QoS 0 and 1") {
            h.feed(msg("a/b", "zero", qos::at_most_once));
            CHECK(only_event<client::message_event>(h.events()).message.payload == "zero");
            CHECK(h.sent().empty());
            h.feed(msg("a/b", "one", qos::at_least_once, 7));
            CHECK(only_event<client::message_event>(h.events()).message.payload == "one");
            CHECK(only<puback_packet>(h.sent()).packet_id == 7);
        }
        SUBCASE("QoS 2 delivered once, however often the PUBLISH is resent before PUBREL") {
            h.feed(msg("a/b", "two", qos::exactly_once, 9));
            CHECK(only_event<client::message_event>(h.events()).message.payload == "two");
            CHECK(only<pubrec_packet>(h.sent()).packet_id == 9);
            auto again = msg("a/b", "two", qos::exactly_once, 9);
            again.dup = true;
            h.feed(again);
            CHECK(h.events().empty());
            CHECK(only<pubrec_packet>(h.sent()).packet_id == 9);
            h.feed(pubrel_packet{9, reason_code::success, {}});
            const auto& comp = only<pubcomp_packet>(h.sent());
            CHECK(comp.packet_id == 9);
            CHECK(comp.code == reason_code::success);
            // The exchange is over: the same id now starts a new message.
            h.feed(msg("a/b", "next", qos::exactly_once, 9));
            CHECK(only_event<client::message_event>(h.events()).message.payload == "next");
        }
        SUBCASE("PUBREL for an unknown id still gets its PUBCOMP") {
            h.feed(pubrel_packet{42, reason_code::success, {}});
            CHECK(only<pubcomp_packet>(h.sent()).packet_id == 42);
        }
    }
}

TEST_CASE("client session: SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK") {
    harness h(protocol_version::v5);
    h.connect();
    std::vector<subscription> subs{{"a/#", {qos::at_least_once}}, {"b/+", {qos::exactly_once}}};
    auto id = h.s->subscribe(subs, {}, h.now);
    REQUIRE(id.has_value());
    const auto& sub = only<subscribe_packet>(h.sent());
    CHECK(sub.packet_id == *id);
    CHECK(sub.subscriptions == subs);
    h.feed(suback_packet{*id, {reason_code::granted_qos_1, reason_code::not_authorized}, {}});
    const auto& ack = only_event<client::suback_event>(h.events());
    CHECK(ack.codes ==
          std::vector<reason_code>{reason_code::granted_qos_1, reason_code::not_authorized});
    auto uid = h.s->unsubscribe({"a/#"}, h.now);
    REQUIRE(uid.has_value());
    CHECK(only<unsubscribe_packet>(h.sent()).filters == std::vector<std::string>{"a/#"});
    h.feed(unsuback_packet{*uid, {reason_code::success}, {}});
    CHECK(only_event<client::unsuback_event>(h.events()).packet_id == *uid);
    CHECK(h.s->subscribe({{"a/#+", {}}}, {}, h.now).error() == client::errc::invalid_topic_filter);
    // A SUBACK nobody asked for is a protocol violation.
    h.feed(suback_packet{999, {reason_code::success}, {}});
    CHECK(only_event<client::closed_event>(h.events()).error == client::errc::protocol_violation);
    CHECK(only<disconnect_packet>(h.sent()).code == reason_code::protocol_error);
}

TEST_CASE("client session: keep-alive sends PINGREQ and gives up without PINGRESP") {
    harness h(protocol_version::v3_1_1, 10);
    h.connect();
    CHECK(h.s->deadline() == h.now + 10s);
    h.s->on_timer(h.now + 5s);  // early: nothing
    CHECK(h.sent().empty());
    h.s->on_timer(h.now + 10s);
    CHECK(std::holds_alternative<pingreq_packet>(h.sent().at(0)));
    SUBCASE("PINGRESP in time") {
        h.feed(pingresp_packet{});
        CHECK(h.s->deadline() == h.now + 20s);
        CHECK_FALSE(h.s->closed());
    }
    SUBCASE("no PINGRESP") {
        h.s->on_timer(h.now + 20s);
        CHECK(only_event<client::closed_event>(h.events()).error ==
              client::errc::keep_alive_timeout);
    }
}

TEST_CASE("client session: 5.0 Server Keep Alive replaces ours, keep-alive 0 disables the timer") {
    harness h(protocol_version::v5, 60);
    connack_packet ack;
    ack.props.server_keep_alive = 5;
    h.connect(ack);
    CHECK(h.s->deadline() == h.now + 5s);
    harness z(protocol_version::v5, 0);
    z.connect();
    CHECK(z.s->deadline() == clock::time_point::max());
}

TEST_CASE("client session: DISCONNECT both ways, and the transport closing") {
    SUBCASE("ours") {
        harness h(protocol_version::v5);
        h.connect();
        h.s->disconnect();
        CHECK(only<disconnect_packet>(h.sent()).code == reason_code::success);
        CHECK_FALSE(only_event<client::closed_event>(h.events()).error);
        CHECK(h.s->publish(msg("t", "x", qos::at_most_once), h.now).error() ==
              client::errc::not_connected);
    }
    SUBCASE("the broker's, with a reason") {
        harness h(protocol_version::v5);
        h.connect();
        disconnect_packet d;
        d.code = reason_code::server_shutting_down;
        h.feed(d);
        const auto& c = only_event<client::closed_event>(h.events());
        CHECK(c.error == client::errc::disconnected_by_server);
        CHECK(c.reason == reason_code::server_shutting_down);
    }
    SUBCASE("EOF") {
        harness h(protocol_version::v3_1_1);
        h.connect();
        h.s->on_transport_closed({});
        CHECK(only_event<client::closed_event>(h.events()).error ==
              client::errc::connection_closed);
    }
}

TEST_CASE("client session: a malformed packet from the broker closes with its reason") {
    harness h(protocol_version::v5);
    h.connect();
    const std::vector<std::uint8_t> bad{0x40, 0x01, 0x00};  // PUBACK cut short
    framer f;
    f.feed(bad);
    auto fr = f.next();
    REQUIRE(fr.has_value());
    REQUIRE(fr->has_value());
    h.s->on_frame(**fr, h.now);
    CHECK(only_event<client::closed_event>(h.events()).error);
    CHECK(only<disconnect_packet>(h.sent()).code == reason_code::malformed_packet);
}

TEST_CASE("message format: JSON line fields, text and binary payloads") {
    using namespace mqtt::format;
    CHECK(base64_encode("") == "");
    CHECK(base64_encode("f") == "Zg==");
    CHECK(base64_encode("fo") == "Zm8=");
    CHECK(base64_encode("foo") == "Zm9v");
    CHECK(base64_encode(std::string("\x00\xff", 2)) == "AP8=");
    CHECK(is_utf8_text("h\xc3\xa9llo"));
    CHECK(is_utf8_text(std::string("a\0b", 3)));
    CHECK_FALSE(is_utf8_text("\xff"));
    CHECK_FALSE(is_utf8_text(std::string("a\0\xff", 3)));
    CHECK(iso8601_utc(std::chrono::system_clock::time_point{} + 1'700'000'000'123'456us) ==
          "2023-11-14T22:13:20.123456Z");

    const auto at = std::chrono::system_clock::time_point{};
    std::string out;
    auto m = msg("a/\"b\"", "line\n", qos::at_least_once, 5);
    m.retain = true;
    append_message_json(out, m, protocol_version::v3_1_1, at);
    CHECK(out ==
          R"({"topic":"a/\"b\"","payload":"line\n","qos":1,"retain":true,"dup":false,"mid":5,)"
          R"("received_at":"1970-01-01T00:00:00.000000Z"})");

    out.clear();
    auto b = msg("t", std::string("\x00\xff", 2), qos::at_most_once);
    b.props.user_properties = {{"k", "v"}, {"k", "w"}};
    b.props.content_type = "application/octet-stream";
    append_message_json(out, b, protocol_version::v5, at);
    CHECK(out == R"({"topic":"t","payload_base64":"AP8=","qos":0,"retain":false,"dup":false,)"
                 R"("received_at":"1970-01-01T00:00:00.000000Z","properties":{)"
                 R"("content_type":"application/octet-stream",)"
                 R"("user_property":[["k","v"],["k","w"]]}})");

    out.clear();
    append_message_text(out, msg("x/y", "hi", qos::at_most_once), true);
    CHECK(out == "x/y hi");
}
