// Shared subscriptions ($share/<name>/<filter>, MQTT 5.0 §4.8.2) and Subscription
// Identifiers (§3.8.2.1.2, §3.3.4), driven by packets (no sockets).

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/message.hpp"

using namespace tern_test;
using mqtt::broker::engine;

namespace {

std::vector<publish_packet> publishes(const std::vector<packet>& in) {
    std::vector<publish_packet> out;
    for (const auto& p : in) {
        if (const auto* pub = std::get_if<publish_packet>(&p)) out.push_back(*pub);
    }
    return out;
}

std::vector<std::string> payloads(const std::vector<packet>& in) {
    std::vector<std::string> out;
    for (const auto& p : publishes(in)) out.push_back(p.payload);
    return out;
}

std::vector<reason_code> subscribe_with_id(test_client& c, std::string filter, qos q,
                                           std::uint32_t id, std::uint16_t packet_id = 1) {
    subscribe_packet s;
    s.packet_id = packet_id;
    s.subscriptions.push_back({std::move(filter), {q}});
    if (id != 0) s.props.subscription_identifiers.push_back(id);
    c.send(s);
    auto in = c.received();
    REQUIRE(!in.empty());
    return as<suback_packet>(in[0]).codes;
}

std::vector<std::uint32_t> sorted(std::vector<std::uint32_t> v) {
    std::sort(v.begin(), v.end());
    return v;
}

}  // namespace

TEST_CASE("shared subscriptions: each message goes to one member, in turn") {
    auto now = test_epoch();
    engine e;
    std::vector<std::unique_ptr<test_client>> members;
    for (int i = 0; i < 3; ++i) {
        members.push_back(std::make_unique<test_client>(e, protocol_version::v5, now));
        members.back()->connect("m" + std::to_string(i));
        CHECK(members.back()->subscribe("$share/workers/jobs/+", qos::at_least_once) ==
              std::vector{reason_code::granted_qos_1});
    }
    test_client watcher{e, protocol_version::v5, now};  // an ordinary subscription
    watcher.connect("watcher");
    watcher.subscribe("jobs/#", qos::at_most_once);
    CHECK(e.share_group_count() == 1);
    CHECK(e.subscription_count() == 4);

    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    for (int i = 0; i < 6; ++i) pub.publish("jobs/a", std::to_string(i));

    std::vector<std::string> all;
    for (auto& m : members) {
        const auto got = payloads(m->received());
        CHECK(got.size() == 2);  // round robin: an even share
        all.insert(all.end(), got.begin(), got.end());
    }
    std::sort(all.begin(), all.end());
    CHECK(all == std::vector<std::string>{"0", "1", "2", "3", "4", "5"});  // each once
    CHECK(payloads(watcher.received()).size() == 6);  // the ordinary one gets them all

    SUBCASE("a member that leaves is skipped, the others go on in turn") {
        unsubscribe_packet u;
        u.packet_id = 9;
        u.filters = {"$share/workers/jobs/+"};
        members[1]->send(u);
        CHECK(as<unsuback_packet>(members[1]->received().at(0)).codes ==
              std::vector{reason_code::success});
        for (int i = 0; i < 4; ++i) pub.publish("jobs/b", "x");
        CHECK(payloads(members[0]->received()).size() == 2);
        CHECK(payloads(members[1]->received()).empty());
        CHECK(payloads(members[2]->received()).size() == 2);
    }
    SUBCASE("the group goes when its last member's session ends") {
        members.clear();
        CHECK(e.share_group_count() == 0);
        CHECK(e.subscription_count() == 1);
        pub.publish("jobs/c", "y");
        CHECK(payloads(watcher.received()) == std::vector<std::string>{"y"});
    }
}

TEST_CASE("shared subscriptions: groups are separate, and so is an ordinary subscription") {
    auto now = test_epoch();
    engine e;
    test_client a{e, protocol_version::v5, now};
    a.connect("a");
    a.subscribe("$share/g1/t", qos::at_most_once);
    test_client b{e, protocol_version::v5, now};
    b.connect("b");
    b.subscribe("$share/g2/t", qos::at_most_once);
    // A session with a shared and an ordinary subscription gets a copy for each (§4.8.2).
    b.subscribe("t", qos::at_most_once, 2);
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    pub.publish("t", "m");
    CHECK(payloads(a.received()) == std::vector<std::string>{"m"});
    CHECK(payloads(b.received()) == std::vector<std::string>{"m", "m"});
}

TEST_CASE("shared subscriptions: no retained messages on subscribe") {
    auto now = test_epoch();
    engine e;
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    pub.publish("r/1", "kept", qos::at_most_once, true);
    test_client c{e, protocol_version::v5, now};
    c.connect("c");
    c.subscribe("$share/g/r/#", qos::at_least_once);
    CHECK(c.after_suback().empty());
    c.subscribe("r/#", qos::at_least_once, 2);
    CHECK(payloads(c.after_suback()) == std::vector<std::string>{"kept"});
}

TEST_CASE("shared subscriptions: offline members are passed over while one is online") {
    auto now = test_epoch();
    engine e;
    test_client away{e, protocol_version::v5, now};
    away.connect_persistent("away");
    away.subscribe("$share/g/q", qos::at_least_once);
    test_client here{e, protocol_version::v5, now};
    here.connect_persistent("here");
    here.subscribe("$share/g/q", qos::at_least_once);
    away.lose_connection();

    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    for (int i = 0; i < 4; ++i) pub.publish("q", std::to_string(i), qos::at_least_once);
    const auto got = publishes(here.received());
    CHECK(got.size() == 4);
    CHECK(e.find_session("away")->queue.empty());

    SUBCASE("with every member offline the message waits in one session's queue") {
        here.lose_connection();
        pub.publish("q", "later", qos::at_least_once);
        const std::size_t queued =
            e.find_session("away")->queue.size() + e.find_session("here")->queue.size();
        CHECK(queued == 1);
    }
}

TEST_CASE("shared subscriptions: a member at its Receive Maximum is passed over while another can send") {
    // MQTT 5.0 §4.8.2: a message is not given to a member that cannot send it now (its
    // Receive Maximum reached) while another member can.
    auto now = test_epoch();
    engine e;
    test_client slow{e, protocol_version::v5, now};
    connect_packet c;
    c.client_id = "slow";
    c.props.receive_maximum = 1;
    REQUIRE(slow.connect_with(c).code == reason_code::success);
    slow.subscribe("$share/g/q", qos::at_least_once);
    test_client fast{e, protocol_version::v5, now};
    fast.connect("fast");
    fast.subscribe("$share/g/q", qos::at_least_once);
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");

    // slow takes the first and never acknowledges it: the rest go to fast, in order.
    for (int i = 0; i < 6; ++i) pub.publish("q", std::to_string(i), qos::at_least_once);
    const auto to_slow = publishes(slow.received());
    REQUIRE(to_slow.size() == 1);
    CHECK(to_slow[0].payload == "0");
    std::vector<std::string> to_fast;
    for (const auto& p : publishes(fast.received())) {
        to_fast.push_back(p.payload);
        fast.send(puback_packet{p.packet_id, reason_code::success, {}});
    }
    CHECK(to_fast == std::vector<std::string>{"1", "2", "3", "4", "5"});
    CHECK(e.find_session("slow")->queue.empty());

    SUBCASE("once it acknowledges it is in turn again") {
        slow.send(puback_packet{to_slow[0].packet_id, reason_code::success, {}});
        for (int i = 6; i < 10; ++i) pub.publish("q", std::to_string(i), qos::at_least_once);
        CHECK(publishes(slow.received()).size() == 1);  // at its maximum again after one
        CHECK(publishes(fast.received()).size() == 3);
    }
    SUBCASE("QoS 0: the output bound, not the in-flight window, decides") {
        pub.publish("q", "a");
        pub.publish("q", "b");
        CHECK(payloads(slow.received()).size() == 1);
        CHECK(payloads(fast.received()).size() == 1);
    }
}

TEST_CASE("shared subscriptions: with every member at its Receive Maximum the queues take turns") {
    auto now = test_epoch();
    engine e;
    std::vector<std::unique_ptr<test_client>> m;
    for (const char* id : {"a", "b"}) {
        m.push_back(std::make_unique<test_client>(e, protocol_version::v5, now));
        connect_packet c;
        c.client_id = id;
        c.props.receive_maximum = 1;
        REQUIRE(m.back()->connect_with(c).code == reason_code::success);
        m.back()->subscribe("$share/g/q", qos::at_least_once);
    }
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    for (int i = 0; i < 6; ++i) pub.publish("q", std::to_string(i), qos::at_least_once);
    CHECK(payloads(m[0]->received()) == std::vector<std::string>{"0"});
    CHECK(payloads(m[1]->received()) == std::vector<std::string>{"1"});
    CHECK(e.find_session("a")->queue.size() == 2);
    CHECK(e.find_session("b")->queue.size() == 2);
}

TEST_CASE("shared subscriptions: 3.1.1 clients may use them too") {
    auto now = test_epoch();
    engine e;
    test_client a{e, protocol_version::v3_1_1, now};
    a.connect("a");
    CHECK(a.subscribe("$share/g/t", qos::at_most_once) == std::vector{reason_code::success});
    CHECK(a.subscribe("$share/g", qos::at_most_once, 2) ==
          std::vector{reason_code::unspecified_error});
    test_client b{e, protocol_version::v3_1_1, now};
    b.connect("b");
    b.subscribe("$share/g/t", qos::at_most_once);
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("pub");
    pub.publish("t", "1");
    pub.publish("t", "2");
    CHECK(payloads(a.received()).size() == 1);
    CHECK(payloads(b.received()).size() == 1);
}

TEST_CASE("subscription identifiers: carried by every delivery of the subscription") {
    auto now = test_epoch();
    engine e;
    test_client sub{e, protocol_version::v5, now};
    sub.connect_persistent("sub");
    CHECK(subscribe_with_id(sub, "a/+", qos::at_least_once, 5) ==
          std::vector{reason_code::granted_qos_1});
    CHECK(subscribe_with_id(sub, "a/#", qos::at_most_once, 268'435'455, 2) ==
          std::vector{reason_code::success});
    subscribe_with_id(sub, "b", qos::at_most_once, 0, 3);  // none

    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    SUBCASE("overlapping subscriptions: one PUBLISH with both identifiers (MQTT-3.3.4-3)") {
        pub.publish("a/x", "m", qos::at_least_once);
        const auto got = publishes(sub.received());
        REQUIRE(got.size() == 1);
        CHECK(got[0].qos_level == qos::at_least_once);
        CHECK(sorted(got[0].props.subscription_identifiers) ==
              std::vector<std::uint32_t>{5, 268'435'455});
    }
    SUBCASE("a subscription without one: none") {
        pub.publish("b", "m");
        const auto got = publishes(sub.received());
        REQUIRE(got.size() == 1);
        CHECK(got[0].props.subscription_identifiers.empty());
    }
    SUBCASE("queued while offline, and sent again after a lost acknowledgement") {
        sub.lose_connection();
        pub.publish("a/y", "queued", qos::at_least_once);
        sub.new_connection();
        sub.connect_persistent("sub");
        auto got = publishes(sub.rest_after_connack());
        REQUIRE(got.size() == 1);
        CHECK(sorted(got[0].props.subscription_identifiers) ==
              std::vector<std::uint32_t>{5, 268'435'455});
        sub.lose_connection();  // never acknowledged: resent with DUP on the next connection
        sub.new_connection();
        sub.connect_persistent("sub");
        got = publishes(sub.rest_after_connack());
        REQUIRE(got.size() == 1);
        CHECK(got[0].dup);
        CHECK(sorted(got[0].props.subscription_identifiers) ==
              std::vector<std::uint32_t>{5, 268'435'455});
    }
    SUBCASE("a new SUBSCRIBE to the same filter replaces the identifier") {
        subscribe_with_id(sub, "b", qos::at_most_once, 77, 4);
        pub.publish("b", "m");
        const auto got = publishes(sub.received());
        REQUIRE(got.size() == 1);
        CHECK(got[0].props.subscription_identifiers == std::vector<std::uint32_t>{77});
    }
}

TEST_CASE("subscription identifiers: retained messages sent on subscribe carry it") {
    auto now = test_epoch();
    engine e;
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    pub.publish("r", "kept", qos::at_most_once, true);
    test_client sub{e, protocol_version::v5, now};
    sub.connect("sub");
    subscribe_packet s;
    s.packet_id = 1;
    s.subscriptions.push_back({"r", {qos::at_most_once}});
    s.props.subscription_identifiers.push_back(42);
    sub.send(s);
    const auto in = sub.received();
    REQUIRE(in.size() == 2);
    const auto& got = as<publish_packet>(in[1]);
    CHECK(got.retain);
    CHECK(got.props.subscription_identifiers == std::vector<std::uint32_t>{42});
}

TEST_CASE("subscription identifiers: the exact bytes, and none for 3.1.1") {
    publish_packet p;
    p.topic = "t";
    p.payload = "x";
    p.props.content_type = "c";
    const auto m = mqtt::broker::make_message(publish_packet{p}, test_epoch());
    const std::vector<std::uint32_t> ids{1, 300};
    bytes out;
    mqtt::broker::append_publish(out, *m, protocol_version::v5, qos::at_least_once, 7, false,
                                 false, ids);
    // 0x32, Remaining Length 16: topic (00 01 74), packet id (00 07), Property Length 9:
    // 0B 01 and 0B AC 02 (300 as a Variable Byte Integer), then Content Type 03 00 01 63;
    // then the payload.
    CHECK(out == bytes{0x32, 0x10, 0x00, 0x01, 0x74, 0x00, 0x07, 0x09, 0x0B, 0x01, 0x0B, 0xAC,
                       0x02, 0x03, 0x00, 0x01, 0x63, 0x78});
    CHECK(mqtt::broker::publish_size(*m, protocol_version::v5, qos::at_least_once, ids) ==
          out.size());
    // The codec reads back what was written.
    const auto back = decode(out[0], bytes(out.begin() + 2, out.end()), protocol_version::v5);
    REQUIRE(back.has_value());
    const auto& pub = as<publish_packet>(*back);
    CHECK(pub.props.subscription_identifiers == ids);
    CHECK(pub.props.content_type == "c");
    CHECK(pub.payload == "x");

    bytes v311;
    mqtt::broker::append_publish(v311, *m, protocol_version::v3_1_1, qos::at_most_once, 0, false,
                                 false, ids);
    CHECK(v311 == bytes{0x30, 0x04, 0x00, 0x01, 0x74, 0x78});

    // A message without properties: the Property Length counts only the identifiers.
    p.props.content_type.reset();
    const auto none = mqtt::broker::make_message(publish_packet{p}, test_epoch());
    CHECK(none->props_v5.empty());
    bytes plain;
    mqtt::broker::append_publish(plain, *none, protocol_version::v5, qos::at_least_once, 7, false,
                                 false, ids);
    CHECK(plain == bytes{0x32, 0x0C, 0x00, 0x01, 0x74, 0x00, 0x07, 0x05, 0x0B, 0x01, 0x0B, 0xAC,
                         0x02, 0x78});
    CHECK(mqtt::broker::publish_size(*none, protocol_version::v5, qos::at_least_once, ids) ==
          plain.size());
    bytes no_ids;
    mqtt::broker::append_publish(no_ids, *none, protocol_version::v5, qos::at_most_once, 0, false);
    CHECK(no_ids == bytes{0x30, 0x05, 0x00, 0x01, 0x74, 0x00, 0x78});
}

TEST_CASE("output_batch: large payloads are shared, not copied, flattened they are the same bytes") {
    using mqtt::broker::output_batch;
    publish_packet small;
    small.topic = "s";
    small.payload = std::string(100, 'a');
    publish_packet large;
    large.topic = "l/t";
    large.payload = std::string(output_batch::share_threshold + 5, 'b');
    large.props.content_type = "c";
    const auto ms = mqtt::broker::make_message(publish_packet{small}, test_epoch());
    const auto ml = mqtt::broker::make_message(publish_packet{large}, test_epoch());
    const std::vector<std::uint32_t> ids{9};

    output_batch batch;
    batch.append_publish(ms, protocol_version::v5, qos::at_most_once, 0, false);
    batch.append_publish(ml, protocol_version::v5, qos::at_least_once, 3, true, true, ids);
    batch.append_publish(ms, protocol_version::v3_1_1, qos::at_least_once, 4, false);
    batch.append_publish(ml, protocol_version::v3_1_1, qos::exactly_once, 5, false);
    REQUIRE(batch.payloads().size() == 2);
    CHECK(batch.payloads()[0].msg == ml);  // the message itself, not a copy
    CHECK(batch.payload_bytes() == 2 * ml->payload.size());
    CHECK(batch.bytes.size() + batch.payload_bytes() == batch.size());

    bytes expected;
    mqtt::broker::append_publish(expected, *ms, protocol_version::v5, qos::at_most_once, 0, false);
    mqtt::broker::append_publish(expected, *ml, protocol_version::v5, qos::at_least_once, 3, true,
                                 true, ids);
    mqtt::broker::append_publish(expected, *ms, protocol_version::v3_1_1, qos::at_least_once, 4,
                                 false);
    mqtt::broker::append_publish(expected, *ml, protocol_version::v3_1_1, qos::exactly_once, 5,
                                 false);
    CHECK(batch.size() == expected.size());
    bytes flat;
    batch.flatten_into(flat);
    CHECK(flat == expected);
    // The head alone is the packet minus its payload.
    bytes head;
    const auto n = mqtt::broker::append_publish_head(head, *ml, protocol_version::v5,
                                                     qos::at_least_once, 3, true, true, ids);
    CHECK(n == head.size());
    CHECK(n + ml->payload.size() ==
          mqtt::broker::publish_size(*ml, protocol_version::v5, qos::at_least_once, ids));

    batch.release_payloads();
    CHECK(batch.payloads().empty());
    CHECK(ml.use_count() == 1);  // the batch no longer holds the message
}

// Every session holds a batch: the references to large payloads are behind one pointer
// (GCC 12 / libstdc++ on x86-64: 56 bytes, was 80).
TEST_CASE("output_batch: 56 bytes, the payload references only while there are some") {
    using mqtt::broker::output_batch;
    static_assert(sizeof(output_batch) <= 56);
    publish_packet large;
    large.topic = "l";
    large.payload = std::string(output_batch::share_threshold, 'b');
    const auto ml = mqtt::broker::make_message(publish_packet{large}, test_epoch());
    output_batch batch;
    CHECK(batch.payloads().empty());
    CHECK(batch.payload_bytes() == 0);
    batch.append_publish(ml, protocol_version::v3_1_1, qos::at_most_once, 0, false);
    REQUIRE(batch.payloads().size() == 1);
    CHECK(batch.payloads()[0].at == batch.bytes.size());
    CHECK(batch.payload_bytes() == large.payload.size());
    output_batch moved{std::move(batch)};
    CHECK(moved.payloads().size() == 1);
    CHECK(moved.size() == moved.bytes.size() + large.payload.size());
    moved.clear();
    CHECK(moved.payloads().empty());
    CHECK(moved.size() == 0);
    CHECK(ml.use_count() == 1);
}

TEST_CASE("output_batch: a session hands large payloads over shared with the routed message") {
    using mqtt::broker::output_batch;
    auto now = test_epoch();
    engine e;
    test_client pub(e, protocol_version::v5, now);
    test_client sub(e, protocol_version::v5, now);
    pub.connect("pub");
    sub.connect("sub");
    sub.subscribe("big/#", qos::at_least_once);
    const std::string large(output_batch::share_threshold * 3, 'z');
    pub.publish("big/1", large, qos::at_least_once);
    pub.publish("big/2", "small", qos::at_least_once);
    (void)pub.received();

    output_batch batch;
    sub.session().take_output(batch);
    REQUIRE(batch.payloads().size() == 1);  // the small one is copied in
    CHECK(batch.payloads()[0].msg->payload == large);
    CHECK_FALSE(sub.session().has_output());
    bytes flat;
    batch.flatten_into(flat);
    framer f;
    f.feed(flat);
    std::vector<std::string> got;
    for (;;) {
        auto fr = f.next();
        REQUIRE(fr.has_value());
        if (!*fr) break;
        auto p = decode((*fr)->first_byte, (*fr)->body, protocol_version::v5);
        REQUIRE(p.has_value());
        got.push_back(as<publish_packet>(*p).payload);
    }
    CHECK(got == std::vector<std::string>{large, "small"});
}
