// The client's newer parts without sockets: session resume after a lost connection (resends,
// DUP, PUBREL), topic aliases, DISCONNECT properties, the back-off, -D property parsing and
// the --json-in line format.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/client/backoff.hpp"
#include "mqtt/client/session.hpp"
#include "mqtt/error.hpp"
#include "mqtt/format/format_string.hpp"
#include "mqtt/format/message_json.hpp"
#include "mqtt/format/message_json_in.hpp"
#include "mqtt/format/properties_in.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/publish_codec.hpp"
#include "client_test_wire.hpp"

namespace {

using namespace mqtt::protocol;
namespace client = mqtt::client;
namespace format = mqtt::format;
using client::clock;
using namespace std::chrono_literals;

struct peer {
    explicit peer(bool keep = true, protocol_version v = protocol_version::v5) : version(v) {
        client::session_config cfg;
        cfg.connect.version = v;
        cfg.connect.client_id = "c";
        cfg.keep_unacknowledged = keep;
        cfg.connect.props.topic_alias_maximum = 4;
        s = std::make_unique<client::session>(cfg);
    }
    void feed(const packet& p) { tern_test::feed_packet(*s, p, version, now); }
    std::vector<packet> sent() { return tern_test::take_sent(*s, version); }
    publish_packet msg(const std::string& payload, qos q) {
        publish_packet p;
        p.topic = "t";
        p.payload = payload;
        p.qos_level = q;
        return p;
    }
    protocol_version version;
    clock::time_point now = clock::time_point{} + 1000s;
    std::unique_ptr<client::session> s;
};

}  // namespace

TEST_CASE(
    "client session: reconnect resends unacknowledged messages with DUP, PUBREL after PUBREC") {
    peer p;
    p.s->start(p.now);
    (void)p.sent();
    p.feed(connack_packet{});
    (void)p.s->take_events();
    auto a = p.s->publish(p.msg("a", qos::at_least_once), p.now);  // will be lost
    auto b = p.s->publish(p.msg("b", qos::exactly_once), p.now);   // PUBREC arrives
    auto c = p.s->publish(p.msg("c", qos::at_least_once), p.now);  // acknowledged
    REQUIRE((a && b && c));
    (void)p.sent();
    p.feed(pubrec_packet{*b, reason_code::success, {}});
    p.feed(puback_packet{*c, reason_code::success, {}});
    (void)p.sent();
    p.s->on_transport_closed({});
    CHECK(p.s->closed());
    CHECK(p.s->unacknowledged() == 2);
    (void)p.s->take_events();

    p.s->reconnect(p.now);
    auto out = p.sent();
    REQUIRE(out.size() == 1);
    auto* conn = std::get_if<connect_packet>(&out[0]);
    REQUIRE(conn);
    CHECK_FALSE(conn->clean_start);

    SUBCASE("the broker kept the session: PUBLISH a with DUP, PUBREL b, in the original order") {
        connack_packet ack;
        ack.session_present = true;
        p.feed(ack);
        out = p.sent();
        REQUIRE(out.size() == 2);
        auto* pa = std::get_if<publish_packet>(&out[0]);
        REQUIRE(pa);
        CHECK(pa->payload == "a");
        CHECK(pa->dup);
        CHECK(pa->packet_id == *a);
        auto* rel = std::get_if<pubrel_packet>(&out[1]);
        REQUIRE(rel);
        CHECK(rel->packet_id == *b);
        CHECK(p.s->resumed());
        p.feed(puback_packet{*a, reason_code::success, {}});
        p.feed(pubcomp_packet{*b, reason_code::success, {}});
        CHECK(p.s->unacknowledged() == 0);
    }
    SUBCASE("the broker lost it: a again as a new message, b (PUBREC seen) is done") {
        p.feed(connack_packet{});
        out = p.sent();
        REQUIRE(out.size() == 1);
        auto* pa = std::get_if<publish_packet>(&out[0]);
        REQUIRE(pa);
        CHECK(pa->payload == "a");
        CHECK_FALSE(pa->dup);
        CHECK(p.s->unacknowledged() == 1);
        bool b_done = false;
        for (auto& e : p.s->take_events())
            if (auto* d = std::get_if<client::publish_done_event>(&e)) b_done = d->packet_id == *b;
        CHECK(b_done);
    }
}

TEST_CASE("client session: without keep_unacknowledged nothing is resent after reconnect") {
    peer p(false);
    p.s->start(p.now);
    (void)p.sent();
    p.feed(connack_packet{});
    REQUIRE(p.s->publish(p.msg("a", qos::at_least_once), p.now));
    (void)p.sent();
    p.s->on_transport_closed({});
    p.s->reconnect(p.now);
    (void)p.sent();
    connack_packet ack;
    ack.session_present = true;
    p.feed(ack);
    CHECK(p.sent().empty());
    CHECK(p.s->unacknowledged() == 0);
}

TEST_CASE("client session: a PUBLISH over the broker's Maximum Packet Size is refused unsent") {
    peer p(false);
    p.s->start(p.now);
    (void)p.sent();
    connack_packet ack;
    ack.props.maximum_packet_size = 40;
    ack.props.receive_maximum = 1;
    p.feed(ack);
    (void)p.s->take_events();
    const std::string big(40, 'x');
    for (auto q : {qos::at_most_once, qos::at_least_once}) {
        auto r = p.s->publish(p.msg(big, q), p.now);
        REQUIRE_FALSE(r);
        CHECK(r.error() == client::errc::packet_too_large);
        CHECK_FALSE(p.s->has_output());
        CHECK(p.s->unacknowledged() == 0);
    }
    auto a = p.s->publish(p.msg("a", qos::at_least_once), p.now);  // fits: sent
    REQUIRE(a);
    // While `a` holds the only slot, a large one is refused before it would wait.
    auto r = p.s->publish(p.msg(big, qos::at_least_once), p.now);
    REQUIRE_FALSE(r);
    CHECK(r.error() == client::errc::packet_too_large);
    auto b = p.s->publish(p.msg("b", qos::at_least_once), p.now);  // waits
    REQUIRE(b);
    auto out = p.sent();
    REQUIRE(out.size() == 1);
    CHECK(std::get<publish_packet>(out[0]).payload == "a");
    p.feed(puback_packet{*a, reason_code::success, {}});
    out = p.sent();
    REQUIRE(out.size() == 1);
    CHECK(std::get<publish_packet>(out[0]).payload == "b");
    CHECK(p.s->unacknowledged() == 1);
}

// A topic, filter or string property that is not UTF-8 went out as a malformed packet (the
// broker then closes the connection); the session refuses it instead (found by client_fuzz).
TEST_CASE("client session: strings that are not UTF-8 are refused unsent") {
    peer p(false);
    p.s->start(p.now);
    (void)p.sent();
    p.feed(connack_packet{});
    (void)p.s->take_events();
    auto bad_topic = p.msg("x", qos::at_least_once);
    bad_topic.topic = "a/\xff";
    auto r = p.s->publish(bad_topic, p.now);
    REQUIRE_FALSE(r);
    CHECK(r.error() == client::errc::invalid_topic_name);
    auto bad_prop = p.msg("x", qos::at_most_once);
    bad_prop.props.user_properties = {{"k", "\xda\xff"}};
    r = p.s->publish(bad_prop, p.now);
    REQUIRE_FALSE(r);
    CHECK(r.error() == client::errc::invalid_property);
    bad_prop.props.user_properties.clear();
    bad_prop.props.content_type = "\xc3";
    CHECK(p.s->publish(bad_prop, p.now).error() == client::errc::invalid_property);
    bad_prop.props.content_type.reset();
    bad_prop.props.correlation_data = "\xff\x00";  // Binary Data: any bytes
    CHECK(p.s->publish(bad_prop, p.now));
    (void)p.sent();
    r = p.s->subscribe({{"a/\xc3/#", {}}}, {}, p.now);
    REQUIRE_FALSE(r);
    CHECK(r.error() == client::errc::invalid_topic_filter);
    properties sub_props;
    sub_props.user_properties = {{"\xff", "v"}};
    CHECK(p.s->subscribe({{"a/#", {}}}, sub_props, p.now).error() ==
          client::errc::invalid_property);
    CHECK(p.s->unsubscribe({"\xe2\x82"}, p.now).error() == client::errc::invalid_topic_filter);
    CHECK_FALSE(p.s->has_output());
    CHECK(p.s->unacknowledged() == 0);
    CHECK_FALSE(p.s->closed());
}

TEST_CASE("publish_codec: the PUBLISH overloads write what the packet variant ones write") {
    publish_packet p;
    p.topic = "a/b";
    p.payload = std::string("\x00\xff payload", 10);
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        for (auto q : {qos::at_most_once, qos::at_least_once, qos::exactly_once}) {
            p.qos_level = q;
            p.packet_id = q == qos::at_most_once ? 0 : 513;
            p.retain = q == qos::exactly_once;
            p.dup = q == qos::at_least_once;
            p.props = {};
            if (v == protocol_version::v5) {
                p.props.message_expiry_interval = 60;
                p.props.user_properties.push_back({"k", "v"});
            }
            std::vector<std::uint8_t> direct = {0xAA};  // appended after what is there
            REQUIRE_FALSE(encode_append(p, v, direct));
            auto via = encode(packet{p}, v);
            REQUIRE(via);
            REQUIRE(direct.size() == via->size() + 1);
            CHECK(std::equal(via->begin(), via->end(), direct.begin() + 1));
            auto size = encoded_size(p, v);
            REQUIRE(size);
            CHECK(*size == via->size());
        }
    }
    p.topic = "a/+";  // the same checks
    CHECK(encoded_size(p, protocol_version::v5).error() ==
          encoded_size(packet{p}, protocol_version::v5).error());
    std::vector<std::uint8_t> out;
    CHECK(encode_append(p, protocol_version::v5, out));
    CHECK(out.empty());
    p.topic = "t";
    p.qos_level = qos::at_least_once;
    p.packet_id = 0;
    CHECK(encoded_size(p, protocol_version::v5).error() == mqtt::errc::zero_packet_identifier);
}

TEST_CASE("client session: topic aliases both ways and DISCONNECT properties") {
    peer p;
    p.s->start(p.now);
    (void)p.sent();
    connack_packet ack;
    ack.props.topic_alias_maximum = 2;
    p.feed(ack);
    (void)p.s->take_events();
    auto m = p.msg("x", qos::at_most_once);
    m.props.topic_alias = 3;
    CHECK(p.s->publish(m, p.now).error() == client::errc::topic_alias_invalid);
    m.props.topic_alias = 2;
    CHECK(p.s->publish(m, p.now));
    (void)p.sent();

    // Inbound: we announced 4; the broker sets alias 1, then uses it with an empty topic.
    publish_packet in;
    in.topic = "long/topic";
    in.payload = "1";
    in.props.topic_alias = 1;
    p.feed(in);
    in.topic.clear();
    in.payload = "2";
    p.feed(in);
    std::vector<std::string> topics;
    for (auto& e : p.s->take_events())
        if (auto* me = std::get_if<client::message_event>(&e)) topics.push_back(me->message.topic);
    CHECK(topics == std::vector<std::string>{"long/topic", "long/topic"});
    in.props.topic_alias = 5;  // above what we announced
    p.feed(in);
    CHECK(p.s->closed());
    auto out = p.sent();
    REQUIRE(out.size() == 1);
    CHECK(std::get<disconnect_packet>(out[0]).code == reason_code::topic_alias_invalid);

    peer q;
    q.s->start(q.now);
    (void)q.sent();
    q.feed(connack_packet{});
    properties props;
    props.user_properties.emplace_back("why", "done");
    q.s->disconnect(reason_code::success, props);
    out = q.sent();
    REQUIRE(out.size() == 1);
    CHECK(std::get<disconnect_packet>(out[0]).props.user_properties == props.user_properties);
}

TEST_CASE("backoff: doubling ceiling, equal jitter, cap, reset") {
    client::backoff b(100ms, 1000ms);
    CHECK(b.next(0.0) == 50ms);
    CHECK(b.next(0.999) >= 199ms);
    CHECK(b.next(0.0) == 200ms);
    CHECK(b.next(0.0) == 400ms);
    CHECK(b.next(1.0) == 1000ms);
    CHECK(b.next(0.0) == 500ms);  // capped
    b.reset();
    CHECK(b.next(0.0) == 50ms);
}

TEST_CASE("-D properties: names, packets, ranges, user properties") {
    format::property_set set;
    using V = std::vector<std::string>;
    CHECK_FALSE(format::add_property_arg(set, V{"publish", "message-expiry-interval", "60"}));
    CHECK(set.publish.message_expiry_interval == 60u);
    CHECK_FALSE(format::add_property_arg(set, V{"publish", "user-property", "k", "v"}));
    CHECK_FALSE(format::add_property_arg(set, V{"publish", "user_property", "k", "w"}));
    CHECK(set.publish.user_properties.size() == 2);
    CHECK_FALSE(format::add_property_arg(set, V{"connect", "receive-maximum", "10"}));
    CHECK_FALSE(format::add_property_arg(set, V{"will", "will-delay-interval", "5"}));
    CHECK_FALSE(format::add_property_arg(set, V{"subscribe", "subscription-identifier", "9"}));
    CHECK(set.subscribe.subscription_identifiers == std::vector<std::uint32_t>{9});
    CHECK_FALSE(format::add_property_arg(set, V{"publish", "correlation-data", "\xff"}));

    CHECK(format::add_property_arg(set, V{"publish", "message-expiry-interval", "61"}));  // twice
    CHECK(format::add_property_arg(set, V{"connect", "receive-maximum", "0"}));
    CHECK(format::add_property_arg(set, V{"connect", "topic-alias-maximum", "65536"}));
    CHECK(format::add_property_arg(set, V{"publish", "payload-format-indicator", "2"}));
    CHECK(format::add_property_arg(set, V{"publish", "subscription-identifier", "1"}));
    CHECK(format::add_property_arg(set, V{"subscribe", "subscription-identifier", "268435456"}));
    CHECK(format::add_property_arg(set, V{"will", "topic-alias", "1"}));
    CHECK(format::add_property_arg(set, V{"unsubscribe", "reason-string", "x"}));
    CHECK(format::add_property_arg(set, V{"publish", "content-type", "\xff"}));
    CHECK(format::add_property_arg(set, V{"publish", "response-topic", "a/#"}));
    CHECK(format::add_property_arg(set, V{"publish", "user-property", "k"}));
    CHECK(format::add_property_arg(set, V{"publish", "content-type"}));
    CHECK(format::add_property_arg(set, V{"auth", "reason-string", "x"}));
    auto auth = format::add_property_arg(set, V{"connect", "authentication-method", "x"});
    REQUIRE(auth);
    CHECK(auth->not_implemented);
}

TEST_CASE("--json-in lines: fields, defaults, tern-sub's own output, errors") {
    format::json_in_defaults d{"default/t", qos::at_least_once, true};
    auto r = format::parse_message_json(R"({"payload":"x"})", d);
    REQUIRE(r.error.empty());
    CHECK(r.message.topic == "default/t");
    CHECK(r.message.qos_level == qos::at_least_once);
    CHECK(r.message.retain);

    r = format::parse_message_json(
        R"({"topic":"a","payload_base64":"AP8=","qos":2,"retain":false,"properties":)"
        R"({"user_property":[["k","v"],["k","w"]],"correlation_data":{"base64":"/w=="},)"
        R"("message_expiry_interval":9,"payload_format_indicator":0}})",
        {});
    REQUIRE(r.error.empty());
    CHECK(r.message.payload == std::string("\x00\xff", 2));
    CHECK(r.message.qos_level == qos::exactly_once);
    CHECK(r.message.props.user_properties.size() == 2);
    CHECK(r.message.props.correlation_data == std::string("\xff"));
    CHECK(r.message.props.message_expiry_interval == 9u);

    // What tern-sub --json prints goes back in.
    publish_packet m;
    m.topic = "round/trip";
    m.payload = std::string("\x01\xfe", 2);
    m.qos_level = qos::at_least_once;
    m.packet_id = 5;
    m.props.subscription_identifiers = {4};
    m.props.content_type = "bin";
    std::string line;
    format::append_message_json(line, m, protocol_version::v5, std::chrono::system_clock::now());
    r = format::parse_message_json(line, {});
    REQUIRE(r.error.empty());
    CHECK(r.message.topic == m.topic);
    CHECK(r.message.payload == m.payload);
    CHECK(r.message.props.content_type == "bin");
    CHECK(r.message.props.subscription_identifiers.empty());

    for (const char* bad :
         {"", "[]", "{", R"({"topic":"a"})", R"({"payload":"x"})", R"({"topic":1,"payload":"x"})",
          R"({"topic":"a/+","payload":"x"})", R"({"topic":"a","payload":"x","qos":-1})",
          R"({"topic":"a","payload":"x","retain":1})", R"({"topic":"a","payload":"x","x":1})",
          R"({"topic":"a","payload_base64":"A"})",
          R"({"topic":"a","payload":"x","payload_base64":""})",
          R"({"topic":"a","payload":"x","properties":{"content_type":5}})",
          R"({"topic":"a","payload":"x","properties":{"user_property":[["k"]]}})",
          R"({"topic":"a","payload":"x","properties":{"session_expiry_interval":5}})"}) {
        CAPTURE(std::string(bad));
        CHECK_FALSE(format::parse_message_json(bad, {}).error.empty());
    }
    CHECK(format::base64_decode("") == std::string{});
    CHECK(format::base64_decode("YQ==") == std::string("a"));
    CHECK(format::base64_decode("YWI=") == std::string("ab"));
    CHECK_FALSE(format::base64_decode("Y=Q="));
    CHECK_FALSE(format::base64_decode("YQ==YQ=="));
}

TEST_CASE("-F format strings: sequences, flags, width, precision, escapes, checks") {
    publish_packet m;
    m.topic = "a/b";
    m.payload = std::string("h\x00\xff", 3);
    m.qos_level = qos::at_least_once;
    m.packet_id = 42;
    m.retain = true;
    m.props.user_properties = {{"k", "v"}, {"k", "w"}};
    m.props.subscription_identifiers = {3, 9};
    const auto t = std::chrono::system_clock::time_point{} + 1'700'000'000s + 123456789ns;
    std::string out;
    REQUIRE(format::append_formatted(out, "%t %l %q %r %m %x %X %P %S %C.%U", m, t));
    CHECK(out == "a/b 3 1 1 42 6800ff 6800FF k:v k:w 3,9 .1700000000.123456789");
    out.clear();
    REQUIRE(format::append_formatted(out, "[%6t|%-6t|%.1t|%04l|%-3q]\\n\\t\\0@@", m, t));
    CHECK(out == std::string("[   a/b|a/b   |a|0003|1]\n\t\0@", 28));
    out.clear();
    CHECK_FALSE(format::append_formatted(out, "%J", m, t));  // not a JSON payload
    m.payload = "[1]";
    REQUIRE(format::append_formatted(out, "%J", m, t));
    CHECK(out.find(R"("payload":[1])") != std::string::npos);
    CHECK(out.find(R"("mid":42)") != std::string::npos);

    CHECK(format::check_format_string("%t %p @Y \\n").empty());
    CHECK_FALSE(format::check_format_string("%").empty());
    CHECK_FALSE(format::check_format_string("%-5").empty());
    CHECK_FALSE(format::check_format_string("%Z").empty());
    CHECK_FALSE(format::check_format_string("@").empty());
    CHECK_FALSE(format::check_format_string("\\q").empty());
}

// Writing a JSON value back recurses: a payload of 100,000 '[' overflowed the stack of
// tern-sub --payload-format json and -F %J (any publisher could stop a subscriber's tern-sub).
TEST_CASE("JSON payloads nested deeper than max_json_depth are not read as JSON") {
    const auto nested = [](std::size_t depth) {
        return std::string(depth, '[') + std::string(depth, ']');
    };
    publish_packet m;
    m.topic = "a/b";
    m.payload = nested(100'000);
    const auto t = std::chrono::system_clock::time_point{};
    std::string out;
    CHECK_FALSE(format::append_formatted(out, "%J", m, t));
    format::json_options as_json;
    as_json.payload_as_json = true;
    out.clear();
    format::append_message_json(out, m, protocol_version::v5, t, as_json);
    CHECK(out.find(R"("payload":"[[[)") != std::string::npos);  // as text
    CHECK(out.find("payload_json") == std::string::npos);

    m.payload = nested(format::max_json_depth);  // at the limit: still JSON
    out.clear();
    CHECK(format::append_formatted(out, "%J", m, t));
    out.clear();
    format::append_message_json(out, m, protocol_version::v5, t, as_json);
    CHECK(out.find(R"("payload_json":[[[)") != std::string::npos);

    const auto deep_line = R"({"topic":"a","payload":"x","properties":)" + nested(100'000) + "}";
    CHECK(format::parse_message_json(deep_line, {}).error == "nested deeper than 1000 levels");
}

TEST_CASE("tern-pub --json lines: exact fields, mid only at QoS 1 and 2, the reason in words") {
    using mqtt::format::append_publish_result_json;
    using mqtt::protocol::qos;
    using mqtt::protocol::reason_code;
    std::string out;
    append_publish_result_json(out, {1, "a/\"b\"", qos::at_most_once, true, 0, 5,
                                     reason_code::success});
    CHECK(out ==
          R"({"seq":1,"topic":"a/\"b\"","qos":0,"retain":true,"bytes":5,"reason_code":0,)"
          R"("reason":"success"})");
    out.clear();
    append_publish_result_json(out, {42, "t", qos::at_least_once, false, 65535, 0,
                                     reason_code::not_authorized});
    CHECK(out == R"({"seq":42,"topic":"t","qos":1,"retain":false,"mid":65535,"bytes":0,)"
                 R"("reason_code":135,"reason":"not_authorized"})");
}
