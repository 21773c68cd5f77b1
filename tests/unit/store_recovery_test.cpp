// The engine with a store recorder: what the recorder writes, replayed into a new engine,
// gives back retained messages, persistent sessions with their subscriptions, queued
// messages, outbound in-flight state and the inbound QoS 2 "awaiting PUBREL" state; and the
// recorder's mirror equals the replay of what it wrote (so compaction writes the same state).

#include <doctest/doctest.h>

#include <chrono>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/store_file.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::store::clock_pair;
using mqtt::store::recorder;
using namespace std::chrono_literals;

namespace {

// A broker run: an engine with a recorder whose records are kept in `log`.
struct run {
    clock::time_point& now;
    engine e;
    recorder rec;
    std::vector<std::uint8_t> log;

    run(clock::time_point& n, mqtt::store::state initial) : now(n), rec(std::move(initial)) {
        rec.set_clock([this] { return clock_pair{now, 1'700'000'000'000 + ms(now)}; });
        e.set_store(&rec);
    }
    static long long ms(clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    }
    // Everything recorded so far, appended to the log.
    void flush() {
        std::vector<std::uint8_t> b;
        rec.take_pending(b);
        log.insert(log.end(), b.begin(), b.end());
    }
};

// What a restart gives: the log replayed, restored into a new engine of `next`.
mqtt::store::state replay(const std::vector<std::uint8_t>& log) {
    auto l = mqtt::store::load_bytes(log);
    CHECK(l.report.clean());
    return std::move(l.st);
}

std::vector<std::uint8_t> snapshot(const mqtt::store::state& st) {
    std::vector<std::uint8_t> out;
    for (const auto& r : st.snapshot(0)) mqtt::store::append_record(out, r);
    return out;
}

}  // namespace

TEST_CASE("store recovery: retained, sessions, subscriptions and queued messages survive") {
    for (const auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(v);
        auto now = test_epoch();
        std::vector<std::uint8_t> log;
        {
            run r1{now, {}};
            test_client sub{r1.e, v, now};
            sub.connect_persistent("sub", false, 3600);
            sub.subscribe("q/#", qos::at_least_once);
            sub.send(disconnect_packet{});
            test_client pub{r1.e, v, now};
            pub.connect("pub");
            pub.publish("keep", "retained", qos::at_least_once, true);
            for (int i = 0; i < 5; ++i)
                pub.publish("q/" + std::to_string(i), "m" + std::to_string(i), qos::at_least_once);
            pub.publish("keep/cleared", "x", qos::at_most_once, true);
            pub.publish("keep/cleared", "", qos::at_most_once, true);
            r1.flush();
            // The mirror is what the log says.
            CHECK(snapshot(r1.rec.mirror()) == snapshot(replay(r1.log)));
            log = r1.log;
            // The broker dies here: no shutdown, nothing more written.
        }
        now += 10s;
        auto st = replay(log);
        CHECK(st.sessions().size() == 1);  // "pub" had a clean session
        CHECK(st.queued_count() == 5);
        run r2{now, {}};
        mqtt::store::restore(r2.e, st, clock_pair{now, 1'700'000'000'000 + run::ms(now)});
        CHECK(r2.e.stored_session_count() == 1);
        CHECK(r2.e.retained().size() == 1);
        test_client sub{r2.e, v, now};
        CHECK(sub.connect_persistent("sub", false, 3600).session_present);
        auto in = sub.rest_after_connack();
        REQUIRE(in.size() == 5);
        for (int i = 0; i < 5; ++i) {
            const auto& p = as<publish_packet>(in[static_cast<std::size_t>(i)]);
            CHECK(p.topic == "q/" + std::to_string(i));
            CHECK(p.payload == "m" + std::to_string(i));
            CHECK(p.qos_level == qos::at_least_once);
        }
        // The subscription came back too: a new message is routed to it.
        test_client pub{r2.e, v, now};
        pub.connect("pub2");
        pub.publish("q/new", "n", qos::at_least_once);
        const auto routed = sub.received();
        REQUIRE(routed.size() == 1);
        CHECK(as<publish_packet>(routed[0]).topic == "q/new");
        test_client other{r2.e, v, now};
        other.connect("o");
        other.subscribe("keep", qos::at_most_once);
        const auto retained = other.after_suback();
        REQUIRE(retained.size() == 1);
        CHECK(as<publish_packet>(retained[0]).payload == "retained");
    }
}

TEST_CASE("store recovery: Subscription Identifiers of subscriptions and queued messages") {
    auto now = test_epoch();
    run r1{now, {}};
    test_client sub{r1.e, protocol_version::v5, now};
    sub.connect_persistent("sub", false, 600);
    subscribe_packet sp;
    sp.packet_id = 1;
    sp.subscriptions.push_back({"t", {qos::at_least_once}});
    sp.props.subscription_identifiers.push_back(77);
    sub.send(sp);
    (void)sub.received();
    sub.send(disconnect_packet{});
    test_client pub{r1.e, protocol_version::v5, now};
    pub.connect("pub");
    pub.publish("t", "queued", qos::at_least_once);
    r1.flush();
    auto st = replay(r1.log);
    CHECK(st.sessions().at("sub").subscriptions.at("t").id == 77);
    run r2{now, {}};
    mqtt::store::restore(r2.e, st, clock_pair{now, 1'700'000'000'000 + run::ms(now)});
    test_client again{r2.e, protocol_version::v5, now};
    CHECK(again.connect_persistent("sub", false, 600).session_present);
    auto in = again.rest_after_connack();
    REQUIRE(in.size() == 1);
    CHECK(as<publish_packet>(in[0]).props.subscription_identifiers ==
          std::vector<std::uint32_t>{77});
    // The restored subscription still carries its identifier for new messages.
    test_client pub2{r2.e, protocol_version::v5, now};
    pub2.connect("pub2");
    pub2.publish("t", "live", qos::at_least_once);
    in = again.received();
    REQUIRE(in.size() == 1);
    CHECK(as<publish_packet>(in[0]).props.subscription_identifiers ==
          std::vector<std::uint32_t>{77});
}

TEST_CASE("store recovery: messages loaded with the run's clock are shared, not copied") {
    auto now = test_epoch();
    run r1{now, {}};
    test_client pub{r1.e, protocol_version::v5, now};
    pub.connect("pub");
    pub.publish("r", "kept", qos::at_least_once, true);
    r1.flush();
    const clock_pair times{now + 5s, 1'700'000'000'000 + run::ms(now + 5s)};
    auto l = mqtt::store::load_bytes(r1.log, &times);
    REQUIRE(l.st.messages().size() == 1);
    const auto& [id, stored] = *l.st.messages().begin();
    CHECK(stored.msg->store_id == id);
    CHECK(stored.msg->received == now);  // the time it was received, on the new clock
    run r2{now, {}};
    mqtt::store::restore(r2.e, l.st, times);
    const mqtt::broker::message* in_engine = nullptr;
    r2.e.retained().match("r", [&](const mqtt::broker::message_ptr& m) {
        in_engine = m.get();
        return true;
    });
    CHECK(in_engine == l.st.messages().begin()->second.msg.get());
}

TEST_CASE("store recovery: the clock is read once per group, and again for the next group") {
    auto now = test_epoch();
    run r1{now, {}};
    int reads = 0;
    long long wall_offset = 1'700'000'000'000;
    r1.rec.set_clock([&] {
        ++reads;
        return clock_pair{now, wall_offset + run::ms(now)};
    });
    test_client pub{r1.e, protocol_version::v5, now};
    pub.connect("pub");
    r1.flush();
    reads = 0;
    for (int i = 0; i < 3; ++i) {
        now += 10ms;
        pub.publish("r/" + std::to_string(i), "kept", qos::at_least_once, true);
    }
    CHECK(reads == 1);  // three message records, one group
    // Each message's own receive time, through the pair read for the group.
    std::int64_t expected = wall_offset + run::ms(now) - 20;
    for (const auto& [id, m] : r1.rec.mirror().messages()) {
        CHECK(m.received_ms == expected);
        expected += 10;
    }
    r1.flush();
    wall_offset += 3'600'000;  // the wall clock set an hour ahead between two groups
    now += 10ms;
    pub.publish("r/late", "kept", qos::at_least_once, true);
    CHECK(reads == 2);
    CHECK(r1.rec.mirror().messages().rbegin()->second.received_ms == wall_offset + run::ms(now));
}

TEST_CASE("store recovery: outbound in-flight messages are resent with DUP after a restart") {
    auto now = test_epoch();
    run r1{now, {}};
    test_client sub{r1.e, protocol_version::v5, now};
    sub.connect_persistent("sub", false, 600);
    sub.subscribe("t", qos::exactly_once);
    test_client pub{r1.e, protocol_version::v5, now};
    pub.connect("pub");
    pub.publish("t", "a", qos::at_least_once);
    pub.publish("t", "b", qos::exactly_once);
    auto in = sub.received();
    REQUIRE(in.size() == 2);
    const auto id_b = as<publish_packet>(in[1]).packet_id;
    // "b" is acknowledged with PUBREC: only PUBREL is left for it.
    sub.send(pubrec_packet{id_b, reason_code::success, {}});
    CHECK(sub.received().size() == 1);  // PUBREL
    r1.flush();
    auto st = replay(r1.log);
    run r2{now, {}};
    mqtt::store::restore(r2.e, st, clock_pair{now, 1'700'000'000'000 + run::ms(now)});
    test_client again{r2.e, protocol_version::v5, now};
    CHECK(again.connect_persistent("sub", false, 600).session_present);
    const auto resent = again.rest_after_connack();
    REQUIRE(resent.size() == 2);
    const auto& p = as<publish_packet>(resent[0]);
    CHECK(p.payload == "a");
    CHECK(p.dup);
    CHECK(p.packet_id == as<publish_packet>(in[0]).packet_id);
    CHECK(as<pubrel_packet>(resent[1]).packet_id == id_b);
}

TEST_CASE("store recovery: restored in-flight messages count toward max_inflight_bytes") {
    // Two 1000-byte QoS 1 messages and a QoS 2 one past PUBREC in flight, two more queued; after
    // a restart with max_inflight_bytes 2500 the two are resent and hold 2000 bytes (the QoS 2
    // one none: only PUBREL is left), so the queued ones go one at a time as PUBACKs come.
    auto now = test_epoch();
    run r1{now, {}};
    test_client sub{r1.e, protocol_version::v5, now};
    sub.connect_persistent("sub", false, 600);
    sub.subscribe("t", qos::exactly_once);
    test_client pub{r1.e, protocol_version::v5, now};
    pub.connect("pub");
    pub.publish("t", "r", qos::exactly_once);
    pub.publish("t", std::string(1000, 'a'), qos::at_least_once);
    pub.publish("t", std::string(1000, 'b'), qos::at_least_once);
    auto in = sub.received();
    REQUIRE(in.size() == 3);
    sub.send(pubrec_packet{as<publish_packet>(in[0]).packet_id, reason_code::success, {}});
    CHECK(sub.received().size() == 1);  // PUBREL
    sub.lose_connection();
    pub.publish("t", std::string(1000, 'c'), qos::at_least_once);
    pub.publish("t", std::string(1000, 'd'), qos::at_least_once);
    r1.flush();
    auto st = replay(r1.log);
    run r2{now, {}};
    mqtt::broker::limits l;
    l.max_inflight_bytes = 2500;
    r2.e.reload_limits(l);
    mqtt::store::restore(r2.e, st, clock_pair{now, 1'700'000'000'000 + run::ms(now)});
    const auto* ds = r2.e.find_session("sub");
    REQUIRE(ds != nullptr);
    CHECK(ds->inflight.size() == 3);
    CHECK(ds->inflight_bytes == 2000);
    test_client again{r2.e, protocol_version::v5, now};
    CHECK(again.connect_persistent("sub", false, 600).session_present);
    const auto resent = again.rest_after_connack();
    REQUIRE(resent.size() == 3);  // PUBREL, "a", "b"; "c" does not fit in the 500 bytes left
    CHECK(std::holds_alternative<pubrel_packet>(resent[0]));
    CHECK(as<publish_packet>(resent[1]).payload[0] == 'a');
    CHECK(as<publish_packet>(resent[2]).payload[0] == 'b');
    CHECK(again.session().queued() == 2);
    again.send(puback_packet{as<publish_packet>(resent[1]).packet_id, reason_code::success, {}});
    const auto next = again.received();
    REQUIRE(next.size() == 1);
    CHECK(as<publish_packet>(next[0]).payload[0] == 'c');
    CHECK(again.session().queued() == 1);
}

TEST_CASE("store recovery: an inbound QoS 2 message is not routed twice across a restart") {
    auto now = test_epoch();
    run r1{now, {}};
    test_client sub{r1.e, protocol_version::v3_1_1, now};
    sub.connect_persistent("sub");
    sub.subscribe("t", qos::exactly_once);
    sub.send(disconnect_packet{});
    test_client pub{r1.e, protocol_version::v3_1_1, now};
    pub.connect_persistent("pub");
    pub.publish("t", "once", qos::exactly_once, false, 7);
    const auto ack = pub.received();
    REQUIRE(ack.size() == 1);
    CHECK(as<pubrec_packet>(ack[0]).packet_id == 7);
    r1.flush();
    // Restart between PUBREC and PUBREL: the publisher sends the PUBLISH again (DUP).
    auto st = replay(r1.log);
    CHECK(st.sessions().at("pub").qos2_in == std::vector<std::uint16_t>{7});
    run r2{now, {}};
    mqtt::store::restore(r2.e, st, clock_pair{now, 1'700'000'000'000 + run::ms(now)});
    test_client pub2{r2.e, protocol_version::v3_1_1, now};
    CHECK(pub2.connect_persistent("pub").session_present);
    publish_packet again;
    again.topic = "t";
    again.payload = "once";
    again.qos_level = qos::exactly_once;
    again.packet_id = 7;
    again.dup = true;
    pub2.send(again);
    CHECK(as<pubrec_packet>(pub2.received().at(0)).packet_id == 7);
    pub2.send(pubrel_packet{7, reason_code::success, {}});
    CHECK(as<pubcomp_packet>(pub2.received().at(0)).packet_id == 7);
    test_client sub2{r2.e, protocol_version::v3_1_1, now};
    CHECK(sub2.connect_persistent("sub").session_present);
    const auto got = sub2.rest_after_connack();
    REQUIRE(got.size() == 1);  // once, not twice
    CHECK(as<publish_packet>(got[0]).payload == "once");
    r2.flush();
    CHECK(r2.rec.mirror().sessions().at("pub").qos2_in.empty());
}

TEST_CASE("store recovery: session expiry and a delayed Will keep counting across a restart") {
    auto now = test_epoch();
    run r1{now, {}};
    test_client watcher{r1.e, protocol_version::v5, now};
    watcher.connect_persistent("watcher", false, 3600);
    watcher.subscribe("will", qos::at_least_once);
    watcher.send(disconnect_packet{});
    test_client c{r1.e, protocol_version::v5, now};
    connect_packet cp;
    cp.client_id = "dying";
    cp.clean_start = false;
    cp.props.session_expiry_interval = 100;
    will_message w;
    w.topic = "will";
    w.payload = "gone";
    w.qos_level = qos::at_least_once;
    w.props.will_delay_interval = 30;
    cp.will = w;
    CHECK(c.connect_with(cp).code == reason_code::success);
    c.lose_connection();  // the Will waits 30 s, the session 100 s
    r1.flush();
    now += 20s;  // down for 20 s
    auto st = replay(r1.log);
    run r2{now, {}};
    mqtt::store::restore(r2.e, st, clock_pair{now, 1'700'000'000'000 + run::ms(now)});
    CHECK(r2.e.next_expiry() == now + 10s);  // the Will's 30 s counted from the close
    now += 10s;
    r2.e.on_timer(now);
    test_client w2{r2.e, protocol_version::v5, now};
    CHECK(w2.connect_persistent("watcher", false, 3600).session_present);
    const auto got = w2.rest_after_connack();
    REQUIRE(got.size() == 1);
    CHECK(as<publish_packet>(got[0]).payload == "gone");
    CHECK(r2.e.find_session("dying") != nullptr);
    now += 70s;
    r2.e.on_timer(now);
    CHECK(r2.e.find_session("dying") == nullptr);  // 100 s after the close
    r2.flush();
    CHECK_FALSE(r2.rec.mirror().sessions().contains("dying"));
}

TEST_CASE("store recovery: a restored session's deliveries are checked with its stored user name") {
    // alice may read a/# only; anonymous clients everything. Before the store kept user
    // names, her restored session was checked with no user name and no block: nothing.
    auto p = std::make_shared<mqtt::broker::security_policy>();
    auto parsed =
        mqtt::broker::acl_file::parse("topic readwrite #\nuser alice\ntopic read a/#\n", "acl");
    REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
    p->acl = std::make_shared<const mqtt::broker::acl_file>(std::move(*parsed.value));
    auto now = test_epoch();
    run r1{now, {}};
    r1.e.set_security(p);
    test_client sub{r1.e, protocol_version::v3_1_1, now};
    connect_packet c;
    c.client_id = "alice-c";
    c.clean_start = false;
    c.username = "alice";
    REQUIRE(sub.connect_with(std::move(c)).code == reason_code::success);
    CHECK(sub.subscribe("#", qos::at_least_once) ==
          std::vector<reason_code>{reason_code::granted_qos_1});
    sub.send(disconnect_packet{});
    r1.flush();
    auto st = replay(r1.log);
    REQUIRE(st.sessions().contains("alice-c"));
    CHECK(st.sessions().at("alice-c").identified);
    CHECK(st.sessions().at("alice-c").username == std::optional<std::string>{"alice"});
    run r2{now, {}};
    r2.e.set_security(p);
    mqtt::store::restore(r2.e, st, clock_pair{now, 1'700'000'000'000 + run::ms(now)});
    test_client pub{r2.e, protocol_version::v3_1_1, now};
    pub.connect("pub");
    pub.publish("a/x", "hers", qos::at_least_once);
    pub.publish("b/x", "not hers", qos::at_least_once);
    const auto* ds = r2.e.find_session("alice-c");
    REQUIRE(ds != nullptr);
    REQUIRE(ds->username() != nullptr);
    CHECK(*ds->username() == "alice");
    REQUIRE(ds->queue.size() == 1);
    CHECK(ds->queue.front().msg->payload == "hers");
}
