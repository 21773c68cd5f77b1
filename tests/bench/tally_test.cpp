// --threads: what each event loop measured, added up once after the run, and the thread count
// a run gets from its configuration and reports.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/merge.hpp"
#include "mqtt/bench/report.hpp"
#include "mqtt/bench/sequence.hpp"
#include "mqtt/bench/tally.hpp"

using namespace mqtt::bench;

TEST_CASE("bench sequence: two receivers' views merge into the group's") {
    sequence_tracker a, b;
    for (std::uint64_t s : {0, 1, 2, 5, 1}) a.record(s);  // 1 twice
    for (std::uint64_t s : {2, 3, 7, 4}) b.record(s);     // 4 after 7; 2 also in a
    b.record(sequence_tracker::max_sequence);             // invalid
    a.merge(b);
    CHECK(a.unique() == 7);      // 0 1 2 3 4 5 7
    CHECK(a.duplicates() == 2);  // 1 within a, 2 across
    CHECK(a.out_of_order() == 1);
    CHECK(a.invalid() == 1);
    CHECK(a.end() == 8);
    CHECK(a.lost(8) == 1);  // 6
    // Merging a longer view into a shorter one grows it.
    sequence_tracker small, big;
    small.record(3);
    big.record(1000);
    small.merge(big);
    CHECK(small.unique() == 2);
    CHECK(small.end() == 1001);
    CHECK(small.lost(1001) == 999);
    CHECK(small.duplicates() == 0);
}

TEST_CASE("bench tally: loops' figures add up to what one loop would have counted") {
    loop_tally a, b, one;
    for (std::uint64_t v = 1; v <= 1000; ++v) {
        a.latency.record(v * 1000);
        one.latency.record(v * 1000);
    }
    for (std::uint64_t v = 1; v <= 3000; ++v) {
        b.latency.record(v * 777);
        one.latency.record(v * 777);
    }
    a.ack_latency.record(5);
    b.ack_latency.record(7, 2);
    b.connect_latency.record(100'000);
    a.measured_published = 10;
    b.measured_published = 20;
    a.measured_acked = 1;
    b.measured_acked = 2;
    a.measured_received = 1000;
    b.measured_received = 3000;
    const auto t = clock::time_point{} + std::chrono::seconds(100);
    a.last_publish = t + std::chrono::seconds(5);
    b.last_publish = t + std::chrono::seconds(6);
    a.last_ack = t + std::chrono::seconds(7);
    a.last_receive = t + std::chrono::seconds(3);
    b.last_receive = t + std::chrono::seconds(4);
    b.first_receive = t + std::chrono::seconds(1);  // a received nothing first
    a.last_connack = t;
    b.last_connack = t - std::chrono::seconds(1);
    a.group_seen[0].record(0);
    a.group_seen[0].record(1);
    b.group_seen[0].record(1);  // the group got message 1 twice, on different loops
    b.group_seen[3].record(0);

    a.merge(b);
    CHECK(a.latency.count() == 4000);
    CHECK(a.latency.min() == one.latency.min());
    CHECK(a.latency.max() == one.latency.max());
    for (double p : {50.0, 90.0, 99.0, 99.9, 99.99})
        CHECK(a.latency.percentile(p) == one.latency.percentile(p));
    CHECK(a.ack_latency.count() == 3);
    CHECK(a.ack_latency.max() == 7);
    CHECK(a.connect_latency.count() == 1);
    CHECK(a.measured_published == 30);
    CHECK(a.measured_acked == 3);
    CHECK(a.measured_received == 4000);
    CHECK(a.last_publish == t + std::chrono::seconds(6));
    CHECK(a.last_ack == t + std::chrono::seconds(7));
    CHECK(a.last_receive == t + std::chrono::seconds(4));
    CHECK(a.first_receive == t + std::chrono::seconds(1));
    CHECK(a.last_connack == t);
    CHECK(a.group_seen[0].unique() == 2);
    CHECK(a.group_seen[0].duplicates() == 1);
    CHECK(a.group_seen[3].unique() == 1);

    // The earlier first delivery wins, whichever loop had it.
    loop_tally c;
    c.first_receive = t;
    a.merge(c);
    CHECK(a.first_receive == t);
}

TEST_CASE("bench tally: errors by text with their counts, the first loop's first, 20 at most") {
    loop_tally a, b;
    a.error("x");
    a.error("x");
    a.error("y");
    b.error("z");
    b.error("y");
    b.error("y");
    a.merge(b);
    REQUIRE(a.errors.size() == 3);
    CHECK(a.errors[0] == std::pair<std::string, std::uint64_t>{"x", 2});
    CHECK(a.errors[1] == std::pair<std::string, std::uint64_t>{"y", 3});
    CHECK(a.errors[2] == std::pair<std::string, std::uint64_t>{"z", 1});
    loop_tally many, more;
    for (int i = 0; i < 15; ++i) many.error("m" + std::to_string(i));
    for (int i = 10; i < 30; ++i) more.error("m" + std::to_string(i));
    many.merge(more);
    CHECK(many.errors.size() == loop_tally::max_errors);
    CHECK(many.errors[10].second == 2);  // m10 on both
    CHECK(many.errors.back().first == "m19");
}

TEST_CASE("bench config: --threads 0 is one per core, never more loops than connections") {
    const auto cores = std::max(1u, std::thread::hardware_concurrency());
    bench_config fanout;
    fanout.scenario = scenario::fanout;  // 1 + 10 connections
    fanout.threads = 0;
    REQUIRE(apply_scenario_defaults(fanout).empty());
    CHECK(fanout.threads == std::min(cores, 11u));
    bench_config pairs;
    pairs.scenario = scenario::pairs;
    pairs.clients = 1;  // two connections
    pairs.threads = 4;
    REQUIRE(apply_scenario_defaults(pairs).empty());
    CHECK(pairs.threads == 2);
    bench_config conn;
    conn.scenario = scenario::conn;
    conn.clients = 3;
    conn.threads = 8;
    REQUIRE(apply_scenario_defaults(conn).empty());
    CHECK(conn.threads == 3);
    bench_config pub;
    pub.scenario = scenario::pub;
    pub.threads = 2;  // one publisher
    REQUIRE(apply_scenario_defaults(pub).empty());
    CHECK(pub.threads == 1);
    bench_config def;
    REQUIRE(apply_scenario_defaults(def).empty());
    CHECK(def.threads == 1);
}

TEST_CASE("bench report: parameters.threads, summed by merge (1 for reports without it)") {
    run_results r;
    r.config.scenario = scenario::pairs;
    r.config.publishers = r.config.subscribers = r.config.clients = 2;
    r.config.qos = mqtt::protocol::qos::at_least_once;
    r.config.threads = 2;
    const auto j = nlohmann::json::parse(to_json(r, {}, {}).dump());
    CHECK(j["parameters"]["threads"] == 2);
    auto old = j;
    old["parameters"].erase("threads");
    std::string why;
    const auto m = merge_reports({{"a", j}, {"b", j}, {"old", old}}, why);
    REQUIRE(why.empty());
    CHECK(m["parameters"]["threads"] == 5);
}
