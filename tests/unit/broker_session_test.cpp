// MQTT sessions that outlive a connection, driven packet by packet with a hand-set clock:
// Clean Session / Clean Start, Session Present, resume with DUP and PUBREL resend, offline
// queueing, exactly-once across reconnects, takeover, Session Expiry, Will Delay, message
// expiry of queued messages. Each rule for 3.1.1 and 5.0.

#include <doctest/doctest.h>

#include <chrono>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::limits;
using namespace std::chrono_literals;

namespace {

const protocol_version both[] = {protocol_version::v3_1_1, protocol_version::v5};

// Lets a subscriber take one message in flight at a time: later ones queue.
limits window_of_one() {
    limits l;
    l.max_inflight = 1;
    return l;
}

}  // namespace

TEST_CASE("session: Session Present in CONNACK (MQTT-3.2.2-1..3, 5.0 3.2.2.1.1)") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        engine e;
        test_client c{e, v, now};
        // First time, no session: 0 (MQTT-3.2.2-3).
        CHECK_FALSE(c.connect_persistent("p").session_present);
        c.subscribe("t", qos::at_least_once);
        c.lose_connection();
        CHECK(e.find_session("p") != nullptr);
        CHECK(e.find("p") == nullptr);
        CHECK(e.subscription_count() == 1);  // kept while offline

        // Resumed: exactly 20 .. 01 00 (MQTT-3.2.2-2).
        c.new_connection();
        connect_packet resume;
        resume.version = v;
        resume.client_id = "p";
        resume.clean_start = false;
        if (is_v5(v)) resume.props.session_expiry_interval = 0xFFFFFFFF;
        c.send(resume);
        const auto out = c.received_bytes();
        REQUIRE(out.size() >= 4);
        CHECK(out[0] == 0x20);
        CHECK(out[2] == 0x01);  // Session Present
        CHECK(out[3] == 0x00);
        if (!is_v5(v)) CHECK(out == bytes{0x20, 0x02, 0x01, 0x00});
        CHECK(e.stats().sessions_resumed == 1);

        // Clean Session / Clean Start 1 discards it: 0 (MQTT-3.2.2-1, MQTT-3.1.2-4).
        c.lose_connection();
        c.new_connection();
        CHECK_FALSE(c.connect_persistent("p", true).session_present);
        CHECK(e.subscription_count() == 0);
        c.publish("t", "x", qos::at_least_once);
        CHECK(c.received().size() == 1);  // the PUBACK only: no subscription left
    }
}

TEST_CASE("session: 3.1.1 Clean Session 1 and 5.0 Session Expiry 0 end with the connection") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        engine e;
        test_client c{e, v, now};
        if (is_v5(v)) {
            c.connect_persistent("s", false, 0);  // Clean Start 0, expiry 0
        } else {
            c.connect("s");  // Clean Session 1
        }
        c.subscribe("t", qos::at_least_once);
        c.lose_connection();
        CHECK(e.find_session("s") == nullptr);
        CHECK(e.subscription_count() == 0);
        c.new_connection();
        CHECK_FALSE(c.connect_persistent("s").session_present);
    }
}

TEST_CASE("session: messages for an offline session are queued and sent on resume") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        engine e;
        test_client sub{e, v, now};
        sub.connect_persistent("sub");
        sub.subscribe("t", qos::exactly_once);
        sub.lose_connection();

        test_client pub{e, protocol_version::v5, now};
        pub.connect("pub");
        pub.publish("t", "q0", qos::at_most_once);
        pub.publish("t", "q1", qos::at_least_once);
        pub.publish("t", "q2", qos::exactly_once);
        CHECK(e.find_session("sub")->queue.size() == 2);  // QoS 0 is not queued by default
        CHECK(e.stats().dropped_qos0_offline == 1);

        sub.new_connection();
        CHECK(sub.connect_persistent("sub").session_present);
        const auto in = sub.rest_after_connack();
        REQUIRE(in.size() == 2);
        CHECK(as<publish_packet>(in[0]).payload == "q1");
        CHECK(as<publish_packet>(in[0]).qos_level == qos::at_least_once);
        CHECK_FALSE(as<publish_packet>(in[0]).dup);  // first delivery, not a resend
        CHECK(as<publish_packet>(in[1]).payload == "q2");
        CHECK(as<publish_packet>(in[1]).qos_level == qos::exactly_once);
        CHECK(sub.session().inflight() == 2);
    }
}

TEST_CASE("session: queue_qos0_messages queues QoS 0 for offline sessions") {
    auto now = test_epoch();
    limits l;
    l.queue_qos0_messages = true;
    engine e{l};
    test_client sub{e, protocol_version::v3_1_1, now};
    sub.connect_persistent("sub");
    sub.subscribe("t", qos::at_most_once);
    sub.lose_connection();
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("pub");
    pub.publish("t", "zero");
    sub.new_connection();
    sub.connect_persistent("sub");
    const auto in = sub.rest_after_connack();
    REQUIRE(in.size() == 1);
    CHECK(as<publish_packet>(in[0]).payload == "zero");
    CHECK(as<publish_packet>(in[0]).qos_level == qos::at_most_once);
}

TEST_CASE("session: the offline queue is bounded and drops are counted") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        limits l;
        l.max_queued_messages = 2;
        engine e{l};
        test_client sub{e, v, now};
        sub.connect_persistent("sub");
        sub.subscribe("t", qos::at_least_once);
        sub.lose_connection();
        test_client pub{e, v, now};
        pub.connect("pub");
        for (const char* m : {"1", "2", "3", "4"}) pub.publish("t", m, qos::at_least_once);
        CHECK(e.stats().dropped_queue_full == 2);
        sub.new_connection();
        sub.connect_persistent("sub");
        const auto in = sub.rest_after_connack();
        REQUIRE(in.size() == 2);
        CHECK(as<publish_packet>(in[0]).payload == "1");
        CHECK(as<publish_packet>(in[1]).payload == "2");
    }
    SUBCASE("by bytes") {
        auto now = test_epoch();
        limits l;
        l.max_queued_bytes = 10;  // topic + payload
        engine e{l};
        test_client sub{e, protocol_version::v5, now};
        sub.connect_persistent("sub");
        sub.subscribe("t", qos::at_least_once);
        sub.lose_connection();
        test_client pub{e, protocol_version::v5, now};
        pub.connect("pub");
        pub.publish("t", "12345678", qos::at_least_once);  // 9 bytes: kept
        pub.publish("t", "12", qos::at_least_once);        // 12 in all: dropped
        CHECK(e.find_session("sub")->queue.size() == 1);
        CHECK(e.stats().dropped_queue_full == 1);
    }
}

TEST_CASE("session: unacknowledged messages are resent with DUP, PUBREL after PUBREC, in order") {
    // MQTT-4.4.0-1 (3.1.1) / 5.0 §4.4 and MQTT-3.3.1-1: same packet ids, DUP set.
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        engine e;
        test_client sub{e, v, now};
        sub.connect_persistent("sub");
        sub.subscribe("t", qos::exactly_once);
        test_client pub{e, v, now};
        pub.connect("pub");
        pub.publish("t", "a", qos::exactly_once);   // id 1: PUBREC'd below
        pub.publish("t", "b", qos::at_least_once);  // id 2: not acknowledged
        pub.publish("t", "c", qos::exactly_once);   // id 3: not acknowledged
        const auto first = sub.received();
        REQUIRE(first.size() == 3);
        CHECK(as<publish_packet>(first[0]).packet_id == 1);
        sub.send(pubrec_packet{1, reason_code::success, {}});
        CHECK(as<pubrel_packet>(sub.received().at(0)).packet_id == 1);
        sub.lose_connection();

        sub.new_connection();
        connect_packet c;
        c.version = v;
        c.client_id = "sub";
        c.clean_start = false;
        if (is_v5(v)) c.props.session_expiry_interval = 0xFFFFFFFF;
        sub.send(c);
        auto out = sub.received_bytes();
        REQUIRE(out.size() > 4);
        const std::size_t connack_len = 2 + out[1];
        const bytes resent(out.begin() + static_cast<std::ptrdiff_t>(connack_len), out.end());
        if (is_v5(v)) {
            CHECK(resent ==
                  bytes{0x62, 0x02, 0x00, 0x01,                                // PUBREL 1
                        0x3A, 0x07, 0x00, 0x01, 't', 0x00, 0x02, 0x00, 'b',    // DUP QoS 1
                        0x3C, 0x07, 0x00, 0x01, 't', 0x00, 0x03, 0x00, 'c'});  // DUP QoS 2
        } else {
            CHECK(resent == bytes{0x62, 0x02, 0x00, 0x01,                          // PUBREL 1
                                  0x3A, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'b',    // DUP QoS 1
                                  0x3C, 0x06, 0x00, 0x01, 't', 0x00, 0x03, 'c'});  // DUP QoS 2
        }
        // The flows complete on the new connection.
        sub.send(pubcomp_packet{1, reason_code::success, {}});
        sub.send(puback_packet{2, reason_code::success, {}});
        sub.send(pubrec_packet{3, reason_code::success, {}});
        CHECK(as<pubrel_packet>(sub.received().at(0)).packet_id == 3);
        sub.send(pubcomp_packet{3, reason_code::success, {}});
        CHECK(sub.session().inflight() == 0);
    }
}

TEST_CASE("session: resend first, then the queue, within the in-flight window") {
    auto now = test_epoch();
    engine e{window_of_one()};
    test_client sub{e, protocol_version::v3_1_1, now};
    sub.connect_persistent("sub");
    sub.subscribe("t", qos::at_least_once);
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("pub");
    pub.publish("t", "1", qos::at_least_once);
    pub.publish("t", "2", qos::at_least_once);  // waits for the slot
    CHECK(sub.received().size() == 1);
    sub.lose_connection();
    pub.publish("t", "3", qos::at_least_once);
    sub.new_connection();
    sub.connect_persistent("sub");
    auto in = sub.rest_after_connack();
    REQUIRE(in.size() == 1);
    CHECK(as<publish_packet>(in[0]).payload == "1");
    CHECK(as<publish_packet>(in[0]).dup);
    sub.send(puback_packet{as<publish_packet>(in[0]).packet_id, reason_code::success, {}});
    in = sub.received();
    REQUIRE(in.size() == 1);
    CHECK(as<publish_packet>(in[0]).payload == "2");
    sub.send(puback_packet{as<publish_packet>(in[0]).packet_id, reason_code::success, {}});
    in = sub.received();
    REQUIRE(in.size() == 1);
    CHECK(as<publish_packet>(in[0]).payload == "3");
}

TEST_CASE("session: inbound QoS 2 is routed once across a reconnect (exactly once)") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        engine e;
        test_client sub{e, v, now};
        sub.connect("sub");
        sub.subscribe("t", qos::exactly_once);
        test_client pub{e, v, now};
        pub.connect_persistent("pub");
        pub.publish("t", "once", qos::exactly_once, false, 7);
        CHECK(as<pubrec_packet>(pub.received().at(0)).packet_id == 7);
        CHECK(sub.received().size() == 1);
        pub.lose_connection();  // before sending PUBREL

        pub.new_connection();
        CHECK(pub.connect_persistent("pub").session_present);
        publish_packet again;
        again.topic = "t";
        again.payload = "once";
        again.qos_level = qos::exactly_once;
        again.packet_id = 7;
        again.dup = true;
        pub.send(again);
        CHECK(as<pubrec_packet>(pub.received().at(0)).packet_id == 7);
        CHECK(sub.received().empty());  // not routed twice
        pub.send(pubrel_packet{7, reason_code::success, {}});
        const auto comp = pub.received();
        CHECK(as<pubcomp_packet>(comp.at(0)).code == reason_code::success);
        CHECK(e.stats().messages_received == 1);
    }
}

TEST_CASE("session: takeover keeps the session for the new connection") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        engine e;
        test_client old{e, v, now};
        old.connect_persistent("x");
        old.subscribe("t", qos::at_least_once);
        test_client pub{e, v, now};
        pub.connect("pub");
        pub.publish("t", "m", qos::at_least_once);
        CHECK(old.received().size() == 1);  // in flight, not acknowledged

        test_client fresh{e, v, now};
        CHECK(fresh.connect_persistent("x").session_present);
        CHECK(old.session().closing());
        const auto gone = old.received();
        if (is_v5(v)) {
            REQUIRE(gone.size() == 1);
            CHECK(as<disconnect_packet>(gone[0]).code == reason_code::session_taken_over);
        } else {
            CHECK(gone.empty());
        }
        const auto in = fresh.rest_after_connack();
        REQUIRE(in.size() == 1);
        CHECK(as<publish_packet>(in[0]).dup);
        CHECK(e.find("x") == &fresh.session());
        CHECK(e.stats().takeovers == 1);
        pub.publish("t", "n", qos::at_least_once);
        CHECK(as<publish_packet>(fresh.received().at(0)).payload == "n");
        old.drop();  // the old connection object going away changes nothing
        CHECK(e.find("x") == &fresh.session());
    }
}

TEST_CASE("session: 5.0 Session Expiry Interval") {
    auto now = test_epoch();
    engine e;
    int hooks = 0;
    e.set_expiry_hook([&] { ++hooks; });
    test_client c{e, protocol_version::v5, now};
    CHECK(e.next_expiry() == clock::time_point::max());

    SUBCASE("kept until the interval passes, then removed") {
        c.connect_persistent("s", false, 10);
        c.subscribe("t", qos::at_least_once);
        c.lose_connection();
        CHECK(e.next_expiry() == now + 10s);
        CHECK(hooks == 1);
        e.on_timer(now + 9s);
        CHECK(e.find_session("s") != nullptr);
        e.on_timer(now + 10s);
        CHECK(e.find_session("s") == nullptr);
        CHECK(e.subscription_count() == 0);
        CHECK(e.stats().sessions_expired == 1);
        CHECK(e.next_expiry() == clock::time_point::max());
    }
    SUBCASE("reconnecting in time stops the clock") {
        c.connect_persistent("s", false, 10);
        c.lose_connection();
        now += 5s;
        c.new_connection();
        CHECK(c.connect_persistent("s", false, 10).session_present);
        CHECK(e.next_expiry() == clock::time_point::max());
        e.on_timer(now + 60s);
        CHECK(e.find_session("s") != nullptr);
    }
    SUBCASE("0xFFFFFFFF never expires") {
        c.connect_persistent("s", false, 0xFFFFFFFF);
        c.lose_connection();
        CHECK(e.next_expiry() == clock::time_point::max());
        CHECK(e.find_session("s") != nullptr);
    }
    SUBCASE("DISCONNECT may change it (not from 0)") {
        c.connect_persistent("s", false, 10);
        disconnect_packet d;
        d.props.session_expiry_interval = 100;
        c.send(d);
        CHECK(e.next_expiry() == now + 100s);
        c.new_connection();
        c.connect_persistent("s", false, 10);
        d.props.session_expiry_interval = 0;  // ends it at this close
        c.send(d);
        CHECK(e.find_session("s") == nullptr);
    }
    SUBCASE("CONNACK no longer overrides the requested expiry") {
        const auto ack = c.connect_persistent("s", false, 30);
        CHECK_FALSE(ack.props.session_expiry_interval.has_value());
    }
}

TEST_CASE("session: 3.1.1 persistent_client_expiration") {
    auto now = test_epoch();
    SUBCASE("0: kept for ever") {
        engine e;
        test_client c{e, protocol_version::v3_1_1, now};
        c.connect_persistent("s");
        c.lose_connection();
        CHECK(e.next_expiry() == clock::time_point::max());
    }
    SUBCASE("an hour") {
        limits l;
        l.persistent_client_expiration = 3600s;
        engine e{l};
        test_client c{e, protocol_version::v3_1_1, now};
        c.connect_persistent("s");
        c.send(disconnect_packet{});
        CHECK(e.next_expiry() == now + 3600s);
        e.on_timer(now + 3600s);
        CHECK(e.find_session("s") == nullptr);
    }
}

TEST_CASE("session: 5.0 Will Delay Interval (MQTT-3.1.3-9)") {
    auto now = test_epoch();
    engine e;
    test_client watcher{e, protocol_version::v5, now};
    watcher.connect("w");
    watcher.subscribe("will", qos::at_most_once);
    test_client c{e, protocol_version::v5, now};
    auto connect_with_will = [&](std::uint32_t expiry, std::uint32_t delay) {
        connect_packet p;
        p.client_id = "c";
        p.clean_start = false;
        p.props.session_expiry_interval = expiry;
        will_message w{"will", "late", qos::at_most_once, false, {}};
        w.props.will_delay_interval = delay;
        p.will = w;
        return c.connect_with(p);
    };

    SUBCASE("published after the delay") {
        connect_with_will(60, 5);
        c.lose_connection();
        CHECK(watcher.received().empty());
        CHECK(e.next_expiry() == now + 5s);
        e.on_timer(now + 5s);
        CHECK(as<publish_packet>(watcher.received().at(0)).payload == "late");
        CHECK(e.find_session("c") != nullptr);  // the session lives on
        CHECK(e.next_expiry() == now + 60s);
    }
    SUBCASE("cancelled when the client comes back in time") {
        connect_with_will(60, 5);
        c.lose_connection();
        now += 3s;
        c.new_connection();
        CHECK(c.connect_persistent("c", false, 60).session_present);
        e.on_timer(now + 10s);
        CHECK(watcher.received().empty());
        CHECK(e.stats().wills_published == 0);
    }
    SUBCASE("published when the session ends first") {
        connect_with_will(2, 5);
        c.lose_connection();
        CHECK(e.next_expiry() == now + 2s);
        e.on_timer(now + 2s);
        CHECK(watcher.received().size() == 1);
        CHECK(e.find_session("c") == nullptr);
    }
    SUBCASE("published at once when the session ends at the close") {
        connect_with_will(0, 5);
        c.lose_connection();
        CHECK(watcher.received().size() == 1);
    }
    SUBCASE("a takeover that resumes the session cancels a delayed Will") {
        connect_with_will(60, 5);
        test_client fresh{e, protocol_version::v5, now};
        CHECK(fresh.connect_persistent("c", false, 60).session_present);
        e.on_timer(now + 10s);
        CHECK(watcher.received().empty());
    }
    SUBCASE("a takeover with Clean Start ends the session: the Will goes") {
        connect_with_will(60, 5);
        test_client fresh{e, protocol_version::v5, now};
        CHECK_FALSE(fresh.connect_persistent("c", true, 60).session_present);
        CHECK(watcher.received().size() == 1);
    }
}

TEST_CASE("session: 3.1.1 Will of a persistent session goes out at the close") {
    auto now = test_epoch();
    engine e;
    test_client watcher{e, protocol_version::v3_1_1, now};
    watcher.connect("w");
    watcher.subscribe("will", qos::at_most_once);
    test_client c{e, protocol_version::v3_1_1, now};
    connect_packet p;
    p.client_id = "c";
    p.clean_start = false;
    p.will = will_message{"will", "bye", qos::at_most_once, false, {}};
    c.connect_with(p);
    c.lose_connection();
    CHECK(watcher.received().size() == 1);
    CHECK(e.find_session("c") != nullptr);
}

TEST_CASE("session: queued messages expire (5.0 Message Expiry Interval)") {
    auto now = test_epoch();
    engine e;
    test_client sub{e, protocol_version::v5, now};
    sub.connect_persistent("sub");
    sub.subscribe("t", qos::at_least_once);
    sub.lose_connection();
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    publish_packet p;
    p.topic = "t";
    p.qos_level = qos::at_least_once;
    p.packet_id = 1;
    p.payload = "short";
    p.props.message_expiry_interval = 3;
    pub.send(p);
    p.packet_id = 2;
    p.payload = "long";
    p.props.message_expiry_interval = 10;
    pub.send(p);
    now += 4s;
    sub.new_connection();
    sub.connect_persistent("sub");
    const auto in = sub.rest_after_connack();
    REQUIRE(in.size() == 1);
    CHECK(as<publish_packet>(in[0]).payload == "long");
    CHECK(as<publish_packet>(in[0]).props.message_expiry_interval == 6u);  // what is left
    CHECK(e.stats().dropped_expired == 1);
}

TEST_CASE("session: max_offline_sessions bounds the sessions kept without a connection") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        limits l;
        l.max_offline_sessions = 2;
        engine e{l};
        for (const char* id : {"a", "b"}) {
            test_client c{e, v, now};
            c.connect_persistent(id);
            c.lose_connection();
        }
        CHECK(e.offline_session_count() == 2);
        test_client third{e, v, now};
        connect_packet p;
        p.client_id = "c";
        p.clean_start = false;
        if (is_v5(v)) p.props.session_expiry_interval = 60;
        p.version = v;
        third.send(p);
        if (is_v5(v)) {
            const auto ack = third.received();
            CHECK(as<connack_packet>(ack.at(0)).code == reason_code::quota_exceeded);
        } else {
            CHECK(third.received_bytes() == bytes{0x20, 0x02, 0x00, 0x03});
        }
        CHECK(e.stats().sessions_refused == 1);
        CHECK(e.find_session("c") == nullptr);
        // A clean session and a resume still work.
        test_client clean{e, v, now};
        clean.connect("d");
        test_client back{e, v, now};
        CHECK(back.connect_persistent("a").session_present);
    }
}

TEST_CASE("session: a resumed 5.0 client with a lower Receive Maximum gets the resend in turn") {
    auto now = test_epoch();
    engine e;
    test_client sub{e, protocol_version::v5, now};
    sub.connect_persistent("sub");
    sub.subscribe("t", qos::at_least_once);
    test_client pub{e, protocol_version::v5, now};
    pub.connect("pub");
    for (const char* m : {"1", "2", "3"}) pub.publish("t", m, qos::at_least_once);
    CHECK(sub.received().size() == 3);  // none acknowledged
    sub.lose_connection();
    pub.publish("t", "4", qos::at_least_once);  // queued while away

    sub.new_connection();
    connect_packet c;
    c.client_id = "sub";
    c.clean_start = false;
    c.props.session_expiry_interval = 60;
    c.props.receive_maximum = 1;  // MQTT-3.3.4-9: at most one unacknowledged PUBLISH
    CHECK(sub.connect_with(c).session_present);
    std::vector<std::string> got;
    auto in = sub.rest_after_connack();
    for (int round = 0; round < 10 && !in.empty(); ++round) {
        REQUIRE(in.size() == 1);
        const auto& p = as<publish_packet>(in[0]);
        got.push_back(p.payload);
        CHECK(p.dup == (p.payload != "4"));
        sub.send(puback_packet{p.packet_id, reason_code::success, {}});
        in = sub.received();
    }
    CHECK(got == std::vector<std::string>{"1", "2", "3", "4"});
    CHECK(sub.session().inflight() == 0);
}

TEST_CASE("session: packet ids in flight stay unique through rounds of the id counter") {
    // Ids 1 and 3 are never acknowledged while the counter goes round 1..65535 more than
    // once and, after a reconnect, once more: every new id must skip exactly those two
    // (MQTT-2.2.1-3: an id is not reused while its exchange is open), no other.
    auto now = test_epoch();
    limits l;
    l.max_inflight = 10;
    engine e{l};
    test_client sub{e, protocol_version::v5, now};
    sub.connect_persistent("s");
    sub.subscribe("t", qos::at_least_once);
    const auto publish = [&] {
        e.publish(nullptr, mqtt::broker::make_message(
                               publish_packet{"t", "x", qos::at_least_once, false, false, 0, {}},
                               now));
    };
    const auto step = [](std::uint16_t id) {
        return id == 0xFFFF ? std::uint16_t{1} : static_cast<std::uint16_t>(id + 1);
    };
    for (int i = 0; i < 3; ++i) publish();
    auto first = sub.received();
    REQUIRE(first.size() == 3);
    CHECK(as<publish_packet>(first[0]).packet_id == 1);
    CHECK(as<publish_packet>(first[1]).packet_id == 2);
    CHECK(as<publish_packet>(first[2]).packet_id == 3);
    sub.send(puback_packet{2, reason_code::success, {}});
    // The ids the counter should give: the next one round the circle not held by 1 or 3.
    std::uint16_t expect = 3;
    const auto next_expected = [&] {
        do {
            expect = step(expect);
        } while (expect == 1 || expect == 3);
        return expect;
    };
    const auto run = [&](int n) {
        int wrong = 0;
        for (int i = 0; i < n; ++i) {
            publish();
            const auto in = sub.received();
            REQUIRE(in.size() == 1);
            const auto id = as<publish_packet>(in[0]).packet_id;
            if (id != next_expected()) ++wrong;
            sub.send(puback_packet{id, reason_code::success, {}});
        }
        CHECK(wrong == 0);
        CHECK(sub.session().inflight() == 2);
    };
    run(140'000);  // more than two rounds
    // A new connection resends 1 and 3 with their ids and goes on skipping them.
    sub.lose_connection();
    sub.new_connection();
    CHECK(sub.connect_persistent("s").session_present);
    const auto resent = sub.rest_after_connack();
    REQUIRE(resent.size() == 2);
    CHECK(as<publish_packet>(resent[0]).packet_id == 1);
    CHECK(as<publish_packet>(resent[1]).packet_id == 3);
    CHECK(as<publish_packet>(resent[0]).dup);
    run(70'000);
}

TEST_CASE("session: at most half of the packet ids are in flight, whatever the limits allow") {
    // max_inflight_messages 0 and a 5.0 client with Receive Maximum 65535 would let every id
    // be taken; the broker keeps at most 32,768 in flight so that a free id is found without
    // a scan of the window per message. Acknowledging one lets exactly one more go.
    auto now = test_epoch();
    limits l;
    l.max_inflight = 65535;  // what max_inflight_messages 0 becomes
    l.max_queued_messages = 100'000;
    engine e{l};
    test_client sub{e, protocol_version::v5, now};
    sub.connect_persistent("s");  // Receive Maximum absent: 65535
    sub.subscribe("t", qos::at_least_once);
    for (int i = 0; i < 40'000; ++i) {
        e.publish(nullptr, mqtt::broker::make_message(
                               publish_packet{"t", "x", qos::at_least_once, false, false, 0, {}},
                               now));
    }
    const auto first = sub.received();
    REQUIRE(first.size() == 32'768);
    CHECK(sub.session().inflight() == 32'768);
    std::vector<bool> seen(65'536, false);
    for (const auto& p : first) {
        const auto id = as<publish_packet>(p).packet_id;
        CHECK_FALSE(seen[id]);
        seen[id] = true;
    }
    sub.send(puback_packet{as<publish_packet>(first[100]).packet_id, reason_code::success, {}});
    const auto next = sub.received();
    REQUIRE(next.size() == 1);
    CHECK_FALSE(seen[as<publish_packet>(next[0]).packet_id]);
    CHECK(sub.session().inflight() == 32'768);
}

TEST_CASE("a session's queue: empty until used, first in first out, copies are deep") {
    using mqtt::broker::lazy_queue;
    lazy_queue<int> q;
    CHECK(q.empty());
    CHECK(q.size() == 0);
    CHECK(q.begin() == q.end());  // an unused queue iterates as an empty range
    for (int i = 0; i < 1000; ++i) q.push_back(i);
    CHECK(q.size() == 1000);
    CHECK(q.front() == 0);
    CHECK(q.back() == 999);
    lazy_queue<int> copy = q;
    q.pop_front();
    CHECK(q.front() == 1);
    CHECK(copy.front() == 0);
    CHECK(copy.size() == 1000);
    int expected = 1;
    for (int v : q) CHECK(v == expected++);
    CHECK(expected == 1000);
    while (!q.empty()) q.pop_front();
    CHECK(q.begin() == q.end());
    q.push_back(7);  // used again after draining
    CHECK(q.front() == 7);
    lazy_queue<int> moved = std::move(copy);
    CHECK(moved.size() == 1000);
    q.clear();
    CHECK(q.empty());
}
