// What $SYS and /metrics report with threads > 1 (broker::figures): two engines set up as
// shards 0 and 1 (a recording router in place of shard_runtime), each read with figures_of
// and summed with add_shard: the counts of both shards, the retained messages and the
// memory meters once, the most clients connected at once over both shards; the sum
// rendered as metrics and published as $SYS topics from shard 0, through its router.

#include <doctest/doctest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/figures.hpp"
#include "mqtt/broker/metrics.hpp"
#include "mqtt/broker/sys_topics.hpp"
#include "shard_test_support.hpp"

using namespace tern_test;
using namespace std::chrono_literals;
using mqtt::broker::add_shard;
using mqtt::broker::engine;
using mqtt::broker::figures;
using mqtt::broker::figures_of;
using mqtt::broker::message_ptr;
using shard_test::two_shards;

namespace {

std::string retained_payload(const engine& e, const std::string& topic) {
    std::string out = "<none>";
    e.retained().match(topic, [&](const message_ptr& m) {
        out = m->payload;
        return true;
    });
    return out;
}

// Shards 0 and 1 with clients on both: on shard 0 a publisher and a subscriber, on shard 1
// two subscribers and a persistent session gone offline; 2 QoS 1 publishes on shard 0
// (routed to shard 1 by hand, as shard_runtime would), 3 QoS 0 ones on shard 1, and one
// retained message set on shard 1 and applied to shard 0's replica.
struct busy_shards : two_shards {
    test_client pub0{e0, protocol_version::v5, now};
    test_client sub0{e0, protocol_version::v3_1_1, now};
    test_client pub1{e1, protocol_version::v5, now};
    test_client sub1{e1, protocol_version::v5, now};
    test_client off1{e1, protocol_version::v3_1_1, now};

    busy_shards() {
        sub0.connect("sub0");
        sub0.subscribe("t/#", qos::at_most_once);
        sub1.connect("sub1");
        sub1.subscribe("t/#", qos::at_most_once);
        sub1.subscribe("u/#", qos::at_most_once, 2);
        off1.connect_persistent("off1");
        off1.subscribe("never", qos::at_least_once);
        off1.lose_connection();
        pub0.connect("pub0");
        pub1.connect("pub1");
        pub0.publish("t/a", "12", qos::at_least_once);
        pub0.publish("t/b", "34", qos::at_least_once);
        for (const auto& m : r0.published) e1.route_from_shard(m, 0, now);
        for (int i = 0; i < 3; ++i) pub1.publish("t/c", "five5", qos::at_most_once);
        pub1.publish("r/kept", "kept", qos::at_most_once, true);
        for (const auto& m : r1.published) e0.route_from_shard(m, 1, now);
        for (const auto& m : r1.retained_changes) e0.apply_retained(m);
        (void)pub0.received();
        (void)sub0.received();
        (void)sub1.received();
    }
    figures sum() const {
        auto f = figures_of(e0);
        add_shard(f, figures_of(e1));
        return f;
    }
};

}  // namespace

TEST_CASE("figures: two shards are summed, the broker-wide figures taken once") {
    busy_shards s;
    const auto f0 = figures_of(s.e0);
    const auto f1 = figures_of(s.e1);
    REQUIRE(f0.connected == 2);
    REQUIRE(f1.connected == 2);
    const auto f = s.sum();
    CHECK(f.connected == 4);
    CHECK(f.connections == f0.connections + f1.connections);
    CHECK(f.stored_sessions == 5);
    CHECK(f.offline_sessions == 1);
    CHECK(f.subscriptions == 4);
    CHECK(f.stats.messages_received == 2 + 4);
    CHECK(f.stats.received_by_qos[1] == 2);
    CHECK(f.stats.received_by_qos[0] == 4);
    CHECK(f.stats.payload_bytes_received_by_qos[0] == 3 * 5 + 4);
    // Each of the 5 messages to both t/# subscribers, one on each shard.
    CHECK(f.stats.messages_sent == 5 * 2);
    CHECK(f.stats.connects_accepted == 5);
    CHECK(f.stats.connects_accepted == f0.stats.connects_accepted + f1.stats.connects_accepted);
    CHECK(f.stats.bytes_received == f0.stats.bytes_received + f1.stats.bytes_received);
    // One retained message, in both replicas: counted once.
    CHECK(f0.retained_count == 1);
    CHECK(f1.retained_count == 1);
    CHECK(f.retained_count == 1);
    CHECK(f.retained_bytes == f0.retained_bytes);
    // The meters are shared: the same on both, taken once.
    CHECK(f1.held_bytes == f0.held_bytes);
    CHECK(f.held_bytes == f0.held_bytes);
    CHECK(f.output_bytes == f0.output_bytes);
    // Each shard has a store file of its own (set by the server): summed.
    auto g0 = f0;
    auto g1 = f1;
    g0.store_file_bytes = 4096;
    g1.store_file_bytes = 1000;
    add_shard(g0, g1);
    CHECK(g0.store_file_bytes == 5096);
}

TEST_CASE_FIXTURE(two_shards, "figures: the most clients connected at once over every shard") {
    REQUIRE(e0.connected_clients() != nullptr);
    CHECK(e1.connected_clients() == e0.connected_clients());
    {
        test_client a{e0, protocol_version::v5, now};
        test_client b{e0, protocol_version::v5, now};
        a.connect("a");
        b.connect("b");
        b.lose_connection();
        a.lose_connection();
    }
    test_client c{e1, protocol_version::v5, now};
    test_client d{e1, protocol_version::v5, now};
    c.connect("c");
    d.connect("d");
    test_client g{e0, protocol_version::v5, now};
    g.connect("g");
    // Each shard's own maximum is 2 (their sum 4); at once there were 3 at most.
    CHECK(e0.stats().connected_maximum == 2);
    CHECK(e1.stats().connected_maximum == 2);
    auto f = figures_of(e0);
    add_shard(f, figures_of(e1));
    CHECK(f.stats.connected_maximum == 3);
    CHECK(f.connected == 3);

    // One engine (threads 1): no shared counter, the engine's own maximum.
    engine one;
    CHECK(one.connected_clients() == nullptr);
    test_client x{one, protocol_version::v5, now};
    x.connect("x");
    CHECK(figures_of(one).stats.connected_maximum == 1);
}

TEST_CASE("figures: add_stats sums every counter") {
    mqtt::broker::stats a;
    mqtt::broker::stats b;
    a.dropped_queue_full = 1;
    b.dropped_queue_full = 2;
    a.dropped_store_failing = 3;
    b.dropped_store_failing = 4;
    b.payload_bytes_sent_by_qos[2] = 7;
    a.mqttsn_clients_lost = 5;
    b.mqttsn_clients_lost = 6;
    b.bytes_sent = 9;
    a.backpressure_timeouts = 1;
    b.backpressure_timeouts = 1;
    mqtt::broker::add_stats(a, b);
    CHECK(a.dropped_queue_full == 3);
    CHECK(a.dropped_store_failing == 7);
    CHECK(a.payload_bytes_sent_by_qos[2] == 7);
    CHECK(a.mqttsn_clients_lost == 11);
    CHECK(a.bytes_sent == 9);
    CHECK(a.backpressure_timeouts == 2);
}

TEST_CASE("figures: /metrics and $SYS say the sum, $SYS goes out through shard 0 to the others") {
    busy_shards s;
    const auto f = s.sum();

    mqtt::broker::metrics_context c;
    c.version = "9.9";
    const auto text = mqtt::broker::render_metrics(f, c);
    CHECK(sample(text, "tern_clients_connected") == 4);
    CHECK(sample(text, "tern_sessions_offline") == 1);
    CHECK(sample(text, "tern_subscriptions") == 4);
    CHECK(sample(text, "tern_messages_received_total{qos=\"0\"}") == 4);
    CHECK(sample(text, "tern_messages_received_total{qos=\"1\"}") == 2);
    CHECK(sample(text, "tern_retained_messages") == 1);
    // One engine's rendering is that of its own figures.
    CHECK(sample(mqtt::broker::render_metrics(s.e1, c), "tern_clients_connected") == 2);

    s.r0.published.clear();
    s.r0.retained_changes.clear();
    mqtt::broker::sys_topics sys{s.e0, 10s, s.now, "v"};
    CHECK(sys.on_timer(s.now, f) > 0);
    CHECK(retained_payload(s.e0, "$SYS/broker/clients/connected") == "4");
    CHECK(retained_payload(s.e0, "$SYS/broker/clients/total") == "5");
    CHECK(retained_payload(s.e0, "$SYS/broker/messages/received") == "6");
    CHECK(retained_payload(s.e0, "$SYS/broker/subscriptions/count") == "4");
    // Shard 0's replica: its one retained message and the $SYS ones, this one included.
    CHECK(retained_payload(s.e0, "$SYS/broker/retained messages/count") ==
          std::to_string(s.e0.retained().size()));
    // Every $SYS message went to the router for the other shards, as a retained change too.
    bool routed = false;
    for (const auto& m : s.r0.published) {
        if (m->topic == "$SYS/broker/clients/connected" && m->payload == "4") routed = true;
    }
    CHECK(routed);
    CHECK(s.r0.retained_changes.size() == s.r0.published.size());
    // Applied on shard 1 (as shard_runtime does), a subscriber there gets them.
    test_client watcher{s.e1, protocol_version::v5, s.now};
    watcher.connect("watcher");
    watcher.subscribe("$SYS/broker/clients/connected", qos::at_most_once);
    CHECK(watcher.received().empty());  // not there before shard 0's changes arrive
    for (const auto& m : s.r0.retained_changes) s.e1.apply_retained(m);
    CHECK(retained_payload(s.e1, "$SYS/broker/clients/connected") == "4");
}
