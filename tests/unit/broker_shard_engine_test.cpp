// The engine's part of threads > 1 (docs/broker.md, "Threading"), two engines in one thread
// with a recording router in place of shard_runtime: what a shard publishes goes to its
// router once, routed on another shard it reaches that shard's subscribers without touching
// its retained messages; retained changes apply to a replica; assigned ids belong to the
// shard; the memory meters are shared; shared subscriptions are granted; a congested
// subscriber holds up the shard its messages come from until it drains or goes.

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <variant>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "shard_test_support.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::message_ptr;
using namespace std::chrono_literals;

using shard_test::recording_router;
using shard_test::two_shards;

TEST_CASE("shard engine: shard_of is FNV-1a 64 of the client id, mixed, modulo the shards") {
    using mqtt::broker::shard_of;
    CHECK(shard_of("anything", 1) == 0);
    CHECK(shard_of("anything", 0) == 0);
    // FNV-1a 64 of "" is 0xcbf29ce484222325, of "a" 0xaf63dc4c8601ec8c; MurmurHash3's
    // finalizer makes them 0xefd01f60ba992926 and 0x82a2a958a9bece5b.
    CHECK(shard_of("", 2) == 0);
    CHECK(shard_of("a", 2) == 1);
    CHECK(shard_of("a", 7) == 0x82a2a958a9bece5bull % 7);
    CHECK(shard_of("sub1", 2) == 1);
    CHECK(shard_of("pub1", 2) == 0);
    // Ids that differ by one odd character are not put apart every time (FNV-1a alone: its
    // lowest bit is the parity of the odd bytes, so "x-j" and "x-1j" always were).
    std::size_t same = 0;
    for (int j = 0; j < 100; ++j) {
        same += shard_of("tb-0-" + std::to_string(j), 2) ==
                shard_of("tb-0-" + std::to_string(100 + j), 2);
    }
    CHECK(same > 30);
    CHECK(same < 70);
}

TEST_CASE_FIXTURE(two_shards,
                  "shard engine: publish, route_from_shard, apply_retained, assigned ids, meters") {
    CHECK(e1.shard_index() == 1);
    CHECK(e1.shard_count() == 2);

    test_client sub{e1, protocol_version::v5, now};
    sub.connect("subscriber");
    sub.subscribe("t/#", qos::at_least_once);
    test_client pub{e0, protocol_version::v5, now};
    pub.connect("publisher");

    pub.publish("t/1", "hello", qos::at_least_once);
    (void)pub.received();  // PUBACK
    REQUIRE(r0.published.size() == 1);
    CHECK(r0.published[0]->payload == "hello");
    CHECK(r0.retained_changes.empty());
    CHECK(sub.received().empty());  // not on shard 1 until routed there
    // Charged on shard 0, on the meter both share.
    CHECK(e0.held_bytes() > 0);
    CHECK(e1.held_bytes() == e0.held_bytes());

    CHECK_FALSE(e1.route_from_shard(r0.published[0], 0, now));  // delivered, nothing held up
    auto in = sub.received();
    REQUIRE(in.size() == 1);
    CHECK(as<publish_packet>(in[0]).payload == "hello");
    CHECK(r1.published.empty());  // routed here: not sent on again

    SUBCASE("a retained publish goes to the router as a retained change too") {
        pub.publish("t/r", "kept", qos::at_most_once, true);
        REQUIRE(r0.retained_changes.size() == 1);
        CHECK(e0.retained().size() == 1);
        // Routed to shard 1, it is delivered but does not change shard 1's replica ...
        e1.route_from_shard(r0.published.back(), 0, now);
        CHECK(e1.retained().size() == 0);
        // ... the retained change does.
        e1.apply_retained(r0.retained_changes[0]);
        CHECK(e1.retained().size() == 1);
        CHECK(r1.retained_changes.empty());
    }
    SUBCASE("a congested shard pauses the publisher until shards_resumed()") {
        r0.congested = true;
        pub.publish("t/2", "more", qos::at_least_once);
        CHECK(pub.session().input_paused());
        CHECK(e0.paused_for_shards() == 1);
        pub.publish("t/3", "again", qos::at_least_once);  // already paused: listed once
        CHECK(e0.paused_for_shards() == 1);
        r0.congested = false;
        e0.shards_resumed();
        CHECK_FALSE(pub.session().input_paused());
        CHECK(e0.paused_for_shards() == 0);
        CHECK(r0.published.size() == 3);  // paused, not dropped
    }
    SUBCASE("a paused publisher that goes away is forgotten") {
        r0.congested = true;
        {
            test_client gone{e0, protocol_version::v3_1_1, now};
            gone.connect("gone");
            gone.publish("t/4", "x");
            CHECK(e0.paused_for_shards() == 1);
        }
        CHECK(e0.paused_for_shards() == 0);
        e0.shards_resumed();
    }
    SUBCASE("assigned client ids belong to their shard") {
        for (int i = 0; i < 20; ++i) {
            CHECK(mqtt::broker::shard_of(e1.assign_client_id(), 2) == 1);
            CHECK(mqtt::broker::shard_of(e0.assign_client_id(), 2) == 0);
        }
    }
    SUBCASE("a shared subscription is granted; a group homed elsewhere is noted to its home") {
        // "$share/g/t" is homed on shard 1 (FNV-1a), "$share/h/t" on shard 0.
        REQUIRE(mqtt::broker::shard_of("$share/g/t", 2) == 1);
        REQUIRE(mqtt::broker::shard_of("$share/h/t", 2) == 0);
        CHECK(sub.subscribe("$share/g/t", qos::at_least_once, 2) ==
              std::vector{reason_code::granted_qos_1});
        CHECK(r1.shares.empty());  // homed here: a local member
        CHECK(e1.share_group_count() == 1);
        test_client old{e0, protocol_version::v3_1_1, now};
        old.connect("old-client");
        CHECK(old.subscribe("$share/g/t", qos::at_least_once) ==
              std::vector{reason_code::granted_qos_1});
        CHECK(r0.shares == std::vector{mqtt::broker::share_op::join});
        CHECK(e0.share_group_count() == 0);
    }
}

// MQTT-3.8.3-3 across shards: one client id may have a session on two shards (a bridge's or
// MQTT-SN client's session lives on shard 0 whatever its id's shard, next to a TCP client's
// session on the id's shard). A message one of them publishes reaches the other's shard
// with its publisher's client id, and the No Local subscriptions of that id's session there
// do not get it. Before, it was routed there without its publisher and they did.
TEST_CASE_FIXTURE(two_shards,
                  "shard engine: No Local by client id for a message from another shard") {
    const auto subscribe_no_local = [](test_client& c, const std::string& filter) {
        subscribe_packet s;
        s.packet_id = 7;
        subscription_options o;
        o.max_qos = qos::at_least_once;
        o.no_local = true;
        s.subscriptions.push_back({filter, o});
        c.send(s);
        auto in = c.received();
        REQUIRE(!in.empty());
        CHECK(as<suback_packet>(in[0]).codes == std::vector{reason_code::granted_qos_1});
    };
    const auto payloads = [](test_client& c) {
        std::vector<std::string> out;
        for (const auto& p : c.received()) {
            if (const auto* m = std::get_if<publish_packet>(&p)) {
                out.push_back(m->payload);
                if (m->qos_level == qos::at_least_once) {
                    c.send(puback_packet{m->packet_id, reason_code::success, {}});
                }
            }
        }
        return out;
    };
    // "x" on both shards (on shard 0 as a bridge's or MQTT-SN client's session would be),
    // each with a No Local subscription; "y" on shard 1 without.
    test_client x0{e0, protocol_version::v5, now};
    test_client x1{e1, protocol_version::v5, now};
    test_client y1{e1, protocol_version::v5, now};
    x0.connect("x");
    x1.connect("x");
    y1.connect("y");
    subscribe_no_local(x0, "t/#");
    subscribe_no_local(x1, "t/#");
    CHECK(y1.subscribe("t/#", qos::at_least_once) == std::vector{reason_code::granted_qos_1});

    // From shard 0 to shard 1.
    x0.publish("t/a", "from-x0", qos::at_least_once);
    (void)x0.received();  // PUBACK; nothing else: its own No Local subscription
    REQUIRE(r0.published.size() == 1);
    CHECK(r0.publishers.back() == "x");
    CHECK_FALSE(e1.route_from_shard(r0.published.back(), 0, now, r0.publishers.back()));
    CHECK(payloads(x1).empty());
    CHECK(payloads(y1) == std::vector<std::string>{"from-x0"});

    // From shard 1 to shard 0.
    x1.publish("t/b", "from-x1", qos::at_least_once);
    CHECK(payloads(x1).empty());  // PUBACK only
    CHECK(payloads(y1) == std::vector<std::string>{"from-x1"});
    REQUIRE(r1.published.size() == 1);
    CHECK(r1.publishers.back() == "x");
    e0.route_from_shard(r1.published.back(), 1, now, r1.publishers.back());
    CHECK(payloads(x0).empty());

    SUBCASE("another client's message still reaches them") {
        y1.publish("t/c", "from-y", qos::at_least_once);
        (void)y1.received();
        CHECK(payloads(x1) == std::vector<std::string>{"from-y"});
        REQUIRE(r1.published.size() == 2);
        CHECK(r1.publishers.back() == "y");
        e0.route_from_shard(r1.published.back(), 1, now, r1.publishers.back());
        CHECK(payloads(x0) == std::vector<std::string>{"from-y"});
    }
    SUBCASE("a subscription without No Local of the same session still gets it") {
        CHECK(x1.subscribe("t/a", qos::at_least_once, 8) ==
              std::vector{reason_code::granted_qos_1});
        x0.publish("t/a", "again", qos::at_least_once);
        (void)x0.received();
        e1.route_from_shard(r0.published.back(), 0, now, r0.publishers.back());
        CHECK(payloads(x1) == std::vector<std::string>{"again"});  // once
    }
    SUBCASE("a message without a publisher (a Will, $SYS) reaches every subscription") {
        test_client w{e0, protocol_version::v5, now};
        w.connect("x-will", 60, will_message{"t/will", "gone", qos::at_least_once, false, {}});
        w.lose_connection();
        REQUIRE(r0.published.size() == 2);
        CHECK(r0.publishers.back().empty());
        e1.route_from_shard(r0.published.back(), 0, now, r0.publishers.back());
        CHECK(payloads(x1) == std::vector<std::string>{"gone"});
        CHECK(payloads(x0) == std::vector<std::string>{"gone"});
    }
}

// Two shards: a QoS 1 subscriber on shard 1 (2 in flight, congested above 4 queued, drained
// at 2) and a publisher on shard 0.
struct congested_pair : two_shards {
    static mqtt::broker::limits small_queue() {
        mqtt::broker::limits l;
        l.max_inflight = 2;
        l.max_queued_messages = 8;
        return l;
    }
    test_client sub{e1, protocol_version::v5, now};
    test_client pub{e0, protocol_version::v5, now};
    congested_pair() : two_shards(small_queue()) {
        sub.connect("subscriber");
        sub.subscribe("t/#", qos::at_least_once);
        pub.connect("publisher");
    }
};

TEST_CASE_FIXTURE(
    congested_pair,
    "shard engine: a congested subscriber holds up the sending shard until it drains") {
    // 2 in flight, then queued: the 5th queued (7th message) makes the subscriber congested.
    for (int i = 0; i < 7; ++i) {
        pub.publish("t/" + std::to_string(i), "m", qos::at_least_once);
        REQUIRE(r0.published.size() == static_cast<std::size_t>(i + 1));
        CHECK(e1.route_from_shard(r0.published.back(), 0, now) == (i == 6));
    }
    CHECK(e1.holding_shard(0) == 1);
    CHECK(sub.session().shards_held() == 1);
    CHECK(e1.stats().dropped_queue_full == 0);
    CHECK(r1.resumed.empty());
    // A second message while held: taken (the caller stops before it), held once.
    pub.publish("t/7", "m", qos::at_least_once);
    CHECK(e1.route_from_shard(r0.published.back(), 0, now));
    CHECK(e1.holding_shard(0) == 1);
    // Paused for shards itself, a congested session goes on reading its acknowledgements.
    sub.session().pause_for_shards();
    CHECK_FALSE(sub.session().input_paused());

    SUBCASE("acknowledged down to a quarter of the bounds, it lets the shard go") {
        std::size_t acked = 0;
        for (int round = 0; round < 10 && e1.holding_shard(0) != 0; ++round) {
            for (const auto& p : sub.received()) {
                if (const auto* m = std::get_if<publish_packet>(&p)) {
                    sub.send(puback_packet{m->packet_id, reason_code::success, {}});
                    ++acked;
                }
            }
        }
        CHECK(e1.holding_shard(0) == 0);
        CHECK(sub.session().shards_held() == 0);
        CHECK(r1.resumed == std::vector<std::size_t>{0});
        CHECK(acked >= 4);                    // from 6 queued down to 2
        CHECK(sub.session().input_paused());  // no longer congested: the shard pause applies
        sub.session().resume_from_shards();
    }
    SUBCASE("a subscriber that acknowledges nothing for backpressure_timeout lets it go") {
        CHECK(sub.session().deadline() == now + 10s);  // the default, before the keep-alive
        CHECK(sub.deadline_told() == now + 10s);       // the driver was told
        now += 10s;
        sub.session().on_timer(now);
        CHECK(e1.holding_shard(0) == 0);
        CHECK(sub.session().shards_held() == 0);
        CHECK(r1.resumed == std::vector<std::size_t>{0});
        CHECK(e1.stats().backpressure_timeouts == 1);
        CHECK_FALSE(sub.session().closing());
        // Until it drains nothing is held for it: its queue fills to 8, the rest is dropped.
        for (int i = 9; i < 13; ++i) {
            pub.publish("t/" + std::to_string(i), "m", qos::at_least_once);
            CHECK_FALSE(e1.route_from_shard(r0.published.back(), 0, now));
        }
        CHECK(sub.session().queued() == 8);
        CHECK(e1.stats().dropped_queue_full == 2);
    }
    SUBCASE("a subscriber that goes away lets the shard go") {
        sub.lose_connection();
        CHECK(e1.holding_shard(0) == 0);
        CHECK(r1.resumed == std::vector<std::size_t>{0});
        // Its session is offline now: routed messages queue (or drop) there, nothing held.
        pub.publish("t/8", "m", qos::at_least_once);
        CHECK_FALSE(e1.route_from_shard(r0.published.back(), 0, now));
    }
}

// A message can wait in a stalled channel for a long while before its shard routes it (the
// sender acknowledged it at once). The hold it starts counts backpressure_timeout from when
// it is routed: counted from its publication, a subscriber that is slow but acknowledging
// would be let go at once and the messages past its queue bounds dropped.
TEST_CASE_FIXTURE(
    congested_pair,
    "shard engine: backpressure_timeout counts from the routing, not the publication") {
    for (int i = 0; i < 7; ++i) pub.publish("t/" + std::to_string(i), "m", qos::at_least_once);
    REQUIRE(r0.published.size() == 7);
    const auto routed = now + 20s;  // published at `now`, routed 20 s later
    for (std::size_t i = 0; i < 7; ++i) {
        CHECK(e1.route_from_shard(r0.published[i], 0, routed) == (i == 6));
    }
    CHECK(e1.holding_shard(0) == 1);
    CHECK(sub.session().deadline() == routed + 10s);
    sub.session().on_timer(routed + 1s);
    CHECK(e1.holding_shard(0) == 1);
    CHECK(e1.stats().backpressure_timeouts == 0);
    sub.session().on_timer(routed + 10s);
    CHECK(e1.holding_shard(0) == 0);
    CHECK(e1.stats().backpressure_timeouts == 1);
}

// PUBACK 0x10 (No matching subscribers) is a MAY for when the server knows nobody matched: a
// shard sees only its own subscribers, so with several shards it says 0x00.
TEST_CASE_FIXTURE(two_shards,
                  "shard engine: no 0x10 PUBACK when another shard may have the subscribers") {
    engine solo;
    test_client p{solo, protocol_version::v5, now};
    p.connect("alone");
    p.publish("nobody/here", "m", qos::at_least_once);
    CHECK(as<puback_packet>(p.received().at(0)).code == reason_code::no_matching_subscribers);
    test_client sub{e1, protocol_version::v5, now};
    sub.connect("far");
    sub.subscribe("t/#", qos::at_least_once);
    test_client pub{e0, protocol_version::v5, now};
    pub.connect("near");
    pub.publish("t/x", "m", qos::at_least_once);
    CHECK(as<puback_packet>(pub.received().at(0)).code == reason_code::success);
    CHECK(r0.published.size() == 1);  // on its way to shard 1, which has the subscriber
}

TEST_CASE("shard engine: one engine or two, shared subscriptions are available") {
    auto now = test_epoch();
    engine e;
    CHECK(e.shard_count() == 1);
    test_client c{e, protocol_version::v5, now};
    const auto ack = c.connect("solo");
    CHECK_FALSE(ack.props.shared_subscription_available.has_value());
    engine e1;
    recording_router r;
    e1.set_shard(1, 2, &r, &e);
    test_client c1{e1, protocol_version::v5, now};
    const auto ack1 = c1.connect("duo");
    CHECK_FALSE(ack1.props.shared_subscription_available.has_value());
}

TEST_CASE("shard engine: memory_full_settled leaves out what is still in the channels") {
    mqtt::broker::limits l;
    l.memory_limit = 8 * 1024;
    two_shards s{l};
    const auto m =
        mqtt::broker::make_message({.topic = "t", .payload = std::string(10 * 1024, 'x')});
    s.e0.charge(*m);  // the publishing shard's charge, on the meter both share
    CHECK(s.e1.memory_full());
    CHECK(s.e1.memory_full_settled());
    {
        mqtt::broker::output_charge transit;
        s.e0.charge_transit(transit, *m);  // on its way to shard 1
        CHECK(s.e1.transit_bytes() == mqtt::broker::held_cost(*m));
        CHECK(s.e1.memory_full());                // the publishers are refused ...
        CHECK_FALSE(s.e1.memory_full_settled());  // ... but shard 1 may take it
        transit.set(0);                           // taken by shard 1
        CHECK(s.e1.memory_full_settled());
        s.e0.charge_transit(transit, *m);
    }
    CHECK(s.e0.transit_bytes() == 0);  // an item destroyed untaken gives its charge back
}

TEST_CASE_FIXTURE(two_shards,
                  "shard engine: a SUBSCRIBE waits for the retained replica to catch up") {
    // Shard 0 clears a retained message that shard 1's replica still has.
    test_client pub{e0, protocol_version::v5, now};
    pub.connect("publisher");
    pub.publish("t/r", "old", qos::at_most_once, true);
    e1.apply_retained(r0.retained_changes.back());
    pub.publish("t/r", "", qos::at_most_once, true);
    REQUIRE(r0.retained_changes.size() == 2);

    test_client sub{e1, protocol_version::v5, now};
    sub.connect("subscriber");
    auto& s = sub.session();

    SUBCASE("replica current: no wait") {
        r1.ticket = 0;
        CHECK_FALSE(s.hold_subscribe());
        CHECK_FALSE(s.input_paused());
        CHECK(e1.holding_for_retained() == 0);
    }
    SUBCASE("behind: held until its ticket is reached, then let through once") {
        r1.ticket = 7;
        CHECK(s.hold_subscribe());
        CHECK(s.input_paused());
        CHECK(s.hold_subscribe());  // asked again while waiting: still held
        CHECK(e1.holding_for_retained() == 1);
        const int wakes = sub.wakes();
        e1.retained_reached(6);  // an earlier ticket: not yet
        CHECK(s.input_paused());
        CHECK(sub.wakes() == wakes);
        e1.apply_retained(r0.retained_changes.back());  // the clear arrives
        e1.retained_reached(7);
        CHECK(e1.holding_for_retained() == 0);
        CHECK_FALSE(s.input_paused());
        CHECK(sub.wakes() > wakes);
        // The held SUBSCRIBE goes through even though the router would still say behind
        // (other changes may keep coming): it waited for what was made before it.
        CHECK_FALSE(s.hold_subscribe());
        sub.subscribe("t/#", qos::at_least_once);
        for (const auto& p : sub.received()) CHECK_FALSE(std::holds_alternative<publish_packet>(p));
        // The next SUBSCRIBE asks again.
        CHECK(s.hold_subscribe());
        e1.retained_reached(7);
    }
    SUBCASE("a session that goes while it waits leaves the list") {
        r1.ticket = 3;
        CHECK(s.hold_subscribe());
        sub.drop();
        CHECK(e1.holding_for_retained() == 0);
        e1.retained_reached(3);  // nothing to wake
    }
    SUBCASE("one engine (no router): never waits") {
        engine solo;
        test_client c{solo, protocol_version::v5, now};
        c.connect("solo");
        CHECK_FALSE(c.session().hold_subscribe());
    }
}
