// The broker's message flows, driven by packets (no sockets): SUBSCRIBE / UNSUBSCRIBE,
// PUBLISH at QoS 0/1/2 both ways, retained messages, wildcards and $ topics, bounds.

#include <doctest/doctest.h>

#include "broker_test_client.hpp"
#include "mqtt/broker/acks.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/message.hpp"

using namespace tern_test;
using mqtt::broker::engine;

namespace {

const publish_packet& only_publish(const std::vector<packet>& in) {
    REQUIRE(in.size() == 1);
    return as<publish_packet>(in[0]);
}

}  // namespace

TEST_CASE("broker: delivered QoS is min(published, granted), with the acknowledgements") {
    auto now = test_epoch();
    engine e;
    for (const auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(static_cast<int>(v));
        for (int granted = 0; granted <= 2; ++granted) {
            for (int published = 0; published <= 2; ++published) {
                test_client sub{e, v, now};
                sub.connect("sub");
                const auto codes = sub.subscribe("a/+", static_cast<qos>(granted));
                CHECK(codes == std::vector{static_cast<reason_code>(granted)});
                test_client pub{e, v, now};
                pub.connect("pub");
                pub.publish("a/b", "m", static_cast<qos>(published), false, 7);
                const auto acks = pub.received();
                if (published == 0) CHECK(acks.empty());
                if (published == 1) CHECK(as<puback_packet>(acks.at(0)).packet_id == 7);
                if (published == 2) CHECK(as<pubrec_packet>(acks.at(0)).packet_id == 7);
                const auto got = only_publish(sub.received());
                CHECK(static_cast<int>(got.qos_level) == std::min(granted, published));
                CHECK(got.payload == "m");
                CHECK_FALSE(got.retain);
            }
        }
    }
}

TEST_CASE("broker: inbound QoS 2 is routed once, PUBREL answered with PUBCOMP") {
    auto now = test_epoch();
    engine e;
    test_client sub{e, protocol_version::v3_1_1, now};
    sub.connect("s");
    sub.subscribe("t", qos::exactly_once);
    test_client pub{e, protocol_version::v5, now};
    pub.connect("p");
    pub.publish("t", "once", qos::exactly_once, false, 42);
    CHECK(as<pubrec_packet>(pub.received().at(0)).packet_id == 42);
    publish_packet again;  // the same message resent with DUP before PUBREL
    again.topic = "t";
    again.payload = "once";
    again.qos_level = qos::exactly_once;
    again.dup = true;
    again.packet_id = 42;
    pub.send(again);
    CHECK(as<pubrec_packet>(pub.received().at(0)).packet_id == 42);
    CHECK(sub.received().size() == 1);  // one delivery only
    pub.send(pubrel_packet{42, reason_code::success, {}});
    const auto comp = as<pubcomp_packet>(pub.received().at(0));
    CHECK(comp.packet_id == 42);
    CHECK(comp.code == reason_code::success);
    // The id is free again: a new message with it is a new message.
    pub.publish("t", "twice", qos::exactly_once, false, 42);
    CHECK(sub.received().size() == 1);
    // PUBREL for an id we do not hold: 0x92 in 5.0.
    pub.received();
    pub.send(pubrel_packet{9, reason_code::success, {}});
    CHECK(as<pubcomp_packet>(pub.received().at(0)).code ==
          reason_code::packet_identifier_not_found);
}

TEST_CASE("broker: outbound QoS 1 and 2 flows free their packet ids") {
    auto now = test_epoch();
    engine e;
    test_client sub{e, protocol_version::v5, now};
    sub.connect("s");
    sub.subscribe("t", qos::exactly_once);
    test_client pub{e, protocol_version::v5, now};
    pub.connect("p");

    pub.publish("t", "q1", qos::at_least_once);
    const auto p1 = only_publish(sub.received());
    CHECK(p1.packet_id != 0);
    CHECK(sub.session().inflight() == 1);
    sub.send(puback_packet{p1.packet_id, reason_code::success, {}});
    CHECK(sub.session().inflight() == 0);

    pub.publish("t", "q2", qos::exactly_once);
    const auto p2 = only_publish(sub.received());
    CHECK(p2.packet_id != p1.packet_id);
    sub.send(pubrec_packet{p2.packet_id, reason_code::success, {}});
    CHECK(as<pubrel_packet>(sub.received().at(0)).packet_id == p2.packet_id);
    CHECK(sub.session().inflight() == 1);
    sub.send(pubcomp_packet{p2.packet_id, reason_code::success, {}});
    CHECK(sub.session().inflight() == 0);
}

TEST_CASE("broker: the inflight window and the queue are bounded") {
    auto now = test_epoch();
    mqtt::broker::limits l;
    l.max_inflight = 2;
    l.max_queued_messages = 3;
    engine e{l};
    test_client sub{e, protocol_version::v3_1_1, now};
    sub.connect("s");
    sub.subscribe("t", qos::at_least_once);
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("p");
    for (int i = 0; i < 6; ++i) pub.publish("t", std::to_string(i), qos::at_least_once);
    auto first = sub.received();
    CHECK(first.size() == 2);
    CHECK(sub.session().queued() == 3);
    CHECK(e.stats().dropped_queue_full == 1);
    sub.send(puback_packet{as<publish_packet>(first[0]).packet_id, reason_code::success, {}});
    const auto next = only_publish(sub.received());
    CHECK(next.payload == "2");  // in order
}

TEST_CASE("broker: QoS 0 is dropped, and input paused, past the outbound byte limit") {
    auto now = test_epoch();
    mqtt::broker::limits l;
    l.max_outbound_bytes = 64;
    engine e{l};
    test_client sub{e, protocol_version::v3_1_1, now};
    sub.connect("s");
    sub.subscribe("t", qos::at_most_once);
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("p");
    for (int i = 0; i < 10; ++i) pub.publish("t", std::string(20, 'x'));
    CHECK(sub.session().input_paused());
    CHECK(e.stats().dropped_qos0_slow > 0);
    CHECK(sub.received().size() == 10 - e.stats().dropped_qos0_slow);
    CHECK_FALSE(sub.session().input_paused());
}

TEST_CASE("broker: 5.0 Maximum Packet Size of the client is respected") {
    auto now = test_epoch();
    engine e;
    test_client sub{e, protocol_version::v5, now};
    connect_packet c;
    c.client_id = "small";
    c.props.maximum_packet_size = 32;
    sub.send(c);
    sub.received();
    sub.subscribe("t", qos::at_most_once);
    test_client pub{e, protocol_version::v5, now};
    pub.connect("p");
    pub.publish("t", std::string(100, 'x'));
    pub.publish("t", "fits");
    CHECK(only_publish(sub.received()).payload == "fits");
    CHECK(e.stats().dropped_too_large == 1);
}

TEST_CASE("broker: SUBSCRIBE refuses bad filters per filter") {
    auto now = test_epoch();
    engine e;
    SUBCASE("3.1.1: 0x80") {
        test_client c{e, protocol_version::v3_1_1, now};
        c.connect("c");
        subscribe_packet s;
        s.packet_id = 3;
        s.subscriptions = {{"a/#/b", {}}, {"ok/+", {qos::at_least_once}}, {"x+", {}}};
        c.send(s);
        CHECK(as<suback_packet>(c.received().at(0)).codes ==
              std::vector{reason_code::unspecified_error, reason_code::granted_qos_1,
                          reason_code::unspecified_error});
        CHECK(e.subscription_count() == 1);
    }
    SUBCASE("5.0: 0x8F, also for a malformed shared subscription") {
        test_client c{e, protocol_version::v5, now};
        c.connect("c");
        subscribe_packet s;
        s.packet_id = 3;
        s.subscriptions = {{"a/#/b", {}},     {"$share/g/t", {}}, {"$share/g", {}},
                           {"$share/g+/t", {}}, {"$share//t", {}},  {"ok", {}}};
        c.send(s);
        CHECK(as<suback_packet>(c.received().at(0)).codes ==
              std::vector{reason_code::topic_filter_invalid, reason_code::success,
                          reason_code::topic_filter_invalid, reason_code::topic_filter_invalid,
                          reason_code::topic_filter_invalid, reason_code::success});
        CHECK(e.subscription_count() == 2);
        CHECK(e.share_group_count() == 1);
    }
    CHECK(e.subscription_count() == 0);  // gone with the connection
    CHECK(e.share_group_count() == 0);
}

TEST_CASE("broker: UNSUBSCRIBE") {
    auto now = test_epoch();
    engine e;
    test_client c{e, protocol_version::v5, now};
    c.connect("c");
    c.subscribe("a/#", qos::at_most_once);
    unsubscribe_packet u;
    u.packet_id = 9;
    u.filters = {"a/#", "never", "bad/#/x"};
    c.send(u);
    const auto ack = as<unsuback_packet>(c.received().at(0));
    CHECK(ack.packet_id == 9);
    CHECK(ack.codes == std::vector{reason_code::success, reason_code::no_subscription_existed,
                                   reason_code::topic_filter_invalid});
    CHECK(c.session().subscription_count() == 0);
    c.publish("a/b", "x");
    CHECK(c.received().empty());
}

TEST_CASE("broker: wildcards, overlapping subscriptions and $ topics") {
    auto now = test_epoch();
    engine e;
    test_client c{e, protocol_version::v3_1_1, now};
    c.connect("c");
    c.subscribe("#", qos::at_most_once, 1);
    c.subscribe("+/b", qos::at_least_once, 2);
    c.subscribe("$SYS/#", qos::at_most_once, 3);
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("p");
    pub.publish("a/b", "x", qos::at_least_once);
    // One delivery at the highest granted QoS.
    CHECK(only_publish(c.received()).qos_level == qos::at_least_once);
    pub.publish("$internal/x", "y");  // `#` does not match `$` topics
    CHECK(c.received().empty());
    pub.publish("$SYS/x", "z");  // clients may not publish under $SYS
    CHECK(c.received().empty());
    CHECK(e.stats().dropped_sys_publish == 1);
}

TEST_CASE("broker: 5.0 options: No Local, Retain As Published, no matching subscribers") {
    auto now = test_epoch();
    engine e;
    test_client c{e, protocol_version::v5, now};
    c.connect("c");
    subscribe_packet s;
    s.packet_id = 1;
    s.subscriptions.push_back({"own", {qos::at_most_once, true, false, {}}});
    s.subscriptions.push_back({"rap", {qos::at_most_once, false, true, {}}});
    c.send(s);
    c.received();
    c.publish("own", "mine");
    CHECK(c.received().empty());
    c.publish("rap", "r", qos::at_most_once, true);
    CHECK(only_publish(c.received()).retain);
    c.publish("nobody", "x", qos::at_least_once, false, 5);
    CHECK(as<puback_packet>(c.received().at(0)).code == reason_code::no_matching_subscribers);
}

TEST_CASE("broker: retained messages") {
    auto now = test_epoch();
    engine e;
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("p");
    pub.publish("r/1", "first", qos::at_least_once, true);
    pub.publish("r/1", "second", qos::at_most_once, true);  // replaces
    pub.publish("r/2", "two", qos::exactly_once, true);
    pub.publish("r/3", "three", qos::at_most_once, true);
    pub.publish("r/3", "", qos::at_most_once, true);  // clears
    CHECK(e.retained().size() == 2);

    for (const auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        test_client sub{e, v, now};
        sub.connect("s");
        sub.subscribe("r/#", qos::at_least_once);
        auto got = sub.after_suback();
        REQUIRE(got.size() == 2);
        std::sort(got.begin(), got.end(), [](const packet& a, const packet& b) {
            return as<publish_packet>(a).topic < as<publish_packet>(b).topic;
        });
        CHECK(as<publish_packet>(got[0]).payload == "second");
        CHECK(as<publish_packet>(got[0]).qos_level == qos::at_most_once);
        CHECK(as<publish_packet>(got[0]).retain);  // sent because of a new subscription
        CHECK(as<publish_packet>(got[1]).qos_level == qos::at_least_once);  // min(2, 1)
        // An established subscription gets RETAIN 0.
        pub.publish("r/4", "live", qos::at_most_once, true);
        CHECK_FALSE(only_publish(sub.received()).retain);
        pub.publish("r/4", "", qos::at_most_once, true);
        sub.received();
    }
}

TEST_CASE("broker: 5.0 Retain Handling") {
    auto now = test_epoch();
    engine e;
    test_client pub{e, protocol_version::v5, now};
    pub.connect("p");
    pub.publish("r", "kept", qos::at_most_once, true);
    test_client c{e, protocol_version::v5, now};
    c.connect("c");
    auto sub_with = [&](retain_handling rh) {
        subscribe_packet s;
        s.packet_id = 1;
        s.subscriptions.push_back({"r", {qos::at_most_once, false, false, rh}});
        c.send(s);
        return c.received().size() - 1;  // minus the SUBACK
    };
    CHECK(sub_with(retain_handling::send_if_new_subscription) == 1);
    CHECK(sub_with(retain_handling::send_if_new_subscription) == 0);  // not new
    CHECK(sub_with(retain_handling::send_on_subscribe) == 1);
    CHECK(sub_with(retain_handling::do_not_send) == 0);
}

TEST_CASE("broker: retained message expiry (5.0)") {
    auto now = test_epoch();
    engine e;
    test_client pub{e, protocol_version::v5, now};
    pub.connect("p");
    publish_packet p;
    p.topic = "x";
    p.payload = "soon gone";
    p.retain = true;
    p.props.message_expiry_interval = 10;
    pub.send(p);
    now += std::chrono::seconds{4};
    test_client a{e, protocol_version::v5, now};
    a.connect("a");
    a.subscribe("x", qos::at_most_once);
    const auto got = a.after_suback();
    REQUIRE(got.size() == 1);
    CHECK(as<publish_packet>(got[0]).props.message_expiry_interval == 6u);
    now += std::chrono::seconds{6};
    test_client b{e, protocol_version::v5, now};
    b.connect("b");
    b.subscribe("x", qos::at_most_once);
    CHECK(b.after_suback().empty());
    CHECK(e.retained().size() == 0);
}

TEST_CASE("broker: a message is serialized to the same bytes as the codec's") {
    publish_packet p;
    p.topic = "some/topic";
    p.payload = std::string(300, 'p');  // two-byte Remaining Length
    p.qos_level = qos::exactly_once;
    p.retain = true;
    SUBCASE("with properties") {
        p.props.user_properties = {{"k", "v"}};
        p.props.content_type = "text/plain";
    }
    SUBCASE("without properties (held as none, written as Property Length 0)") {}
    p.props.topic_alias = 3;  // stripped: aliases belong to one connection
    const auto m = mqtt::broker::make_message(publish_packet{p}, test_epoch());
    CHECK(m->props_v5.empty() == p.props.user_properties.empty());
    for (const auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        for (const auto q : {qos::at_most_once, qos::at_least_once, qos::exactly_once}) {
            publish_packet expect = p;
            expect.props.topic_alias.reset();
            expect.qos_level = q;
            expect.packet_id = q == qos::at_most_once ? 0 : 513;
            expect.retain = false;
            expect.dup = q != qos::at_most_once;
            bytes out{0xAA};  // appends after what is there
            mqtt::broker::append_publish(out, *m, v, q, 513, false, expect.dup);
            const auto want = encode(expect, v);
            REQUIRE(want.has_value());
            CHECK(bytes(out.begin() + 1, out.end()) == *want);
            CHECK(mqtt::broker::publish_size(*m, v, q) == want->size());
        }
    }
}

TEST_CASE("broker: a success acknowledgement is written as the codec writes it") {
    using mqtt::protocol::packet_type;
    for (const auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        for (const std::uint16_t id : {1, 0x1234, 0xFFFF}) {
            const auto check = [&](packet_type t, const mqtt::protocol::packet& p) {
                bytes out{0xAA};  // appends after what is there
                mqtt::broker::append_success_ack(out, t, id);
                const auto want = encode(p, v);
                REQUIRE(want.has_value());
                CHECK(bytes(out.begin() + 1, out.end()) == *want);
            };
            check(packet_type::puback, puback_packet{id, reason_code::success, {}});
            check(packet_type::pubrec, pubrec_packet{id, reason_code::success, {}});
            check(packet_type::pubrel, pubrel_packet{id, reason_code::success, {}});
            check(packet_type::pubcomp, pubcomp_packet{id, reason_code::success, {}});
        }
    }
}

TEST_CASE("broker: one message object is shared by every delivery") {
    auto now = test_epoch();
    mqtt::broker::limits l;
    l.max_inflight = 1;  // so the second message waits in each subscriber's queue
    engine e{l};
    std::vector<std::unique_ptr<test_client>> subs;
    for (int i = 0; i < 5; ++i) {
        subs.push_back(std::make_unique<test_client>(e, protocol_version::v5, now));
        subs.back()->connect("s" + std::to_string(i));
        subs.back()->subscribe("t", qos::at_least_once);
    }
    auto first = mqtt::broker::make_message(
        publish_packet{"t", "1", qos::at_least_once, false, false, 0, {}}, now);
    auto m = mqtt::broker::make_message(
        publish_packet{"t", "2", qos::at_least_once, false, false, 0, {}}, now);
    CHECK(e.publish(nullptr, first) == 5);
    CHECK(e.publish(nullptr, m) == 5);
    CHECK(m.use_count() == 1 + 5);  // five queued deliveries, one message
    for (auto& s : subs) {
        const auto id = as<publish_packet>(s->received().at(0)).packet_id;
        s->send(puback_packet{id, reason_code::success, {}});
        const auto second = only_publish(s->received());
        CHECK(second.payload == "2");
        s->send(puback_packet{second.packet_id, reason_code::success, {}});
    }
    // In flight, the session keeps the message to resend it with DUP after a reconnect;
    // acknowledged, it is released.
    CHECK(m.use_count() == 1);
}
