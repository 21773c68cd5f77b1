// Scenario defaults, the threshold verdicts and the JSON report, on hand-made results.

#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/report.hpp"

using namespace mqtt::bench;

TEST_CASE("bench config: scenario defaults and combinations that cannot run") {
    bench_config c;
    c.scenario = scenario::fanin;
    CHECK(apply_scenario_defaults(c).empty());
    CHECK(c.publishers == 4);
    CHECK(c.subscribers == 1);
    CHECK(c.count == 10'000);
    CHECK(c.topic == "tern-bench/fanin/%i");
    CHECK(c.time_limit == 300);

    bench_config pairs;
    pairs.scenario = scenario::pairs;
    pairs.clients = 3;
    pairs.duration = 10;
    CHECK(apply_scenario_defaults(pairs).empty());
    CHECK(pairs.publishers == 3);
    CHECK(pairs.subscribers == 3);
    CHECK(pairs.count == 0);
    CHECK(pairs.time_limit == 10 + 5 + 120);

    bench_config bad;
    bad.scenario = scenario::pub;
    bad.subscribers = 2;
    CHECK_FALSE(apply_scenario_defaults(bad).empty());
    bench_config sub;
    sub.scenario = scenario::sub;
    CHECK(apply_scenario_defaults(sub).find("--count or --duration") != std::string::npos);
    bench_config tiny;
    tiny.scenario = scenario::pub;
    tiny.size = 15;
    CHECK(apply_scenario_defaults(tiny).find("--size") != std::string::npos);
    tiny.size = 16;  // the compact header: runs, without latency
    CHECK(apply_scenario_defaults(tiny).empty());
    tiny.duration = 2;
    tiny.count = 0;
    tiny.warmup = 1;  // nothing to leave out by send time
    CHECK(apply_scenario_defaults(tiny).find("--warmup") != std::string::npos);
    tiny.size = 28;
    CHECK(apply_scenario_defaults(tiny).empty());
    bench_config rr_small;
    rr_small.scenario = scenario::reqresp;
    rr_small.size = 20;
    CHECK(apply_scenario_defaults(rr_small).find("reqresp") != std::string::npos);

    CHECK(expand_template("a/%i/b/%i%", 12) == "a/12/b/12%");
    CHECK(expand_template("d/%c/%i", 3, "tb-1") == "d/tb-1/3");
    CHECK(expand_template("%%c", 0, "x") == "%x");

    bench_config rr;
    rr.scenario = scenario::reqresp;
    CHECK(apply_scenario_defaults(rr).empty());
    CHECK(rr.publishers == 4);
    CHECK(rr.subscribers == 1);
    CHECK(rr.filter == "tern-bench/req/#");
    bench_config rr311;
    rr311.scenario = scenario::reqresp;
    rr311.connect.version = mqtt::protocol::protocol_version::v3_1_1;
    CHECK(apply_scenario_defaults(rr311).find("MQTT 5.0") != std::string::npos);

    bench_config shared;
    shared.scenario = scenario::shared;
    CHECK(apply_scenario_defaults(shared).empty());
    CHECK(shared.publishers == 1);
    CHECK(shared.subscribers == 4);
    CHECK(shared.filter == "tern-bench/shared/#");
    CHECK(shared_filter(shared, shared.filter) == "$share/tern-bench/tern-bench/shared/#");

    // A --topic without --filter: the subscribers follow it.
    bench_config own;
    own.scenario = scenario::fanin;
    own.topic = "site/x%i/t";
    CHECK(apply_scenario_defaults(own).empty());
    CHECK(own.filter == "site/+/t");
    bench_config own_pairs;
    own_pairs.scenario = scenario::pairs;
    own_pairs.topic = "m1/%i";
    CHECK(apply_scenario_defaults(own_pairs).empty());
    CHECK(own_pairs.filter == "m1/%i");
    bench_config own_fanout;
    own_fanout.scenario = scenario::fanout;
    own_fanout.topic = "news";
    CHECK(apply_scenario_defaults(own_fanout).empty());
    CHECK(own_fanout.filter == "news");
    // Over MQTT-SN: no shared subscriptions, no MQTT 5.0 properties.
    for (auto sc : {scenario::shared, scenario::reqresp}) {
        bench_config sn;
        sn.scenario = sc;
        sn.mqttsn = true;
        CHECK(apply_scenario_defaults(sn).find("not supported over MQTT-SN") != std::string::npos);
    }
    for (auto sc :
         {scenario::pub, scenario::fanin, scenario::fanout, scenario::pairs, scenario::conn}) {
        bench_config sn;
        sn.scenario = sc;
        sn.mqttsn = true;
        CHECK(apply_scenario_defaults(sn).empty());
    }
    scenario s{};
    CHECK(parse_scenario("conn", s));
    CHECK(s == scenario::conn);
    CHECK_FALSE(parse_scenario("pubsub", s));
}

namespace {

run_results fanin_results() {
    run_results r;
    r.config.scenario = scenario::fanin;
    r.config.publishers = 2;
    r.config.subscribers = 1;
    r.config.qos = mqtt::protocol::qos::at_least_once;
    r.expected = 1000;
    r.unique = 1000;
    r.measured_received = 1000;
    r.receive_seconds = 0.5;                                               // 2000/s
    for (std::uint64_t v = 1; v <= 1000; ++v) r.latency.record(v * 1000);  // p99 = 0.99 ms
    return r;
}

}  // namespace

TEST_CASE("bench thresholds: each limit fails on its own figure") {
    auto r = fanin_results();
    CHECK(headline_rate(r) == doctest::Approx(2000));
    CHECK(check(r, {}).empty());

    thresholds t;
    t.min_rate = 2001;
    auto v = check(r, t);
    REQUIRE(v.size() == 1);
    CHECK(v[0].name == "min-rate");
    t.min_rate = 1999;
    CHECK(check(r, t).empty());

    t.max_p99_ms = 0.98;
    v = check(r, t);
    REQUIRE(v.size() == 1);
    CHECK(v[0].name == "max-p99");
    t.max_p99_ms = 0.991;  // the p99 is reported as 990207 ns, its bucket's highest value
    CHECK(check(r, t).empty());

    r.lost = 10;  // 1 %
    t.max_loss_percent = 2;
    v = check(r, t);
    REQUIRE(v.size() == 1);
    CHECK(v[0].name == "qos-loss");  // QoS 1 promises none, whatever --max-loss says
    r.config.qos = mqtt::protocol::qos::at_most_once;
    CHECK(check(r, t).empty());
    t.max_loss_percent = 0.5;
    v = check(r, t);
    REQUIRE(v.size() == 1);
    CHECK(v[0].name == "max-loss");

    r.config.qos = mqtt::protocol::qos::exactly_once;
    r.lost = 0;
    r.duplicates = 1;
    v = check(r, {});
    REQUIRE(v.size() == 1);
    CHECK(v[0].name == "qos-duplicates");
}

TEST_CASE("bench thresholds: pub and conn use their own rate and latency") {
    run_results pub;
    pub.config.scenario = scenario::pub;
    pub.config.publishers = 1;
    pub.config.qos = mqtt::protocol::qos::at_least_once;
    pub.measured_acked = 300;
    pub.ack_seconds = 3;
    pub.ack_latency.record(5'000'000);
    CHECK(headline_rate(pub) == doctest::Approx(100));
    CHECK(&headline_latency(pub) == &pub.ack_latency);
    thresholds t;
    t.max_p99_ms = 4;
    CHECK(check(pub, t).size() == 1);

    run_results conn;
    conn.config.scenario = scenario::conn;
    conn.connect_succeeded = 50;
    conn.connect_seconds = 0.5;
    CHECK(headline_rate(conn) == doctest::Approx(100));
    // Nothing measured: a latency limit cannot pass.
    CHECK(check(conn, t).size() == 1);
}

TEST_CASE("bench report: conn's summary puts the rate asked beside the rate got") {
    run_results conn;
    conn.config.scenario = scenario::conn;
    conn.config.clients = 100;
    conn.connect_attempted = conn.connect_succeeded = 100;
    conn.connect_seconds = 0.5;
    std::ostringstream unpaced;
    print_summary(unpaced, conn, {});
    CHECK(unpaced.str().find("in 0.500 s (200/s)  connect") != std::string::npos);
    conn.config.connect_rate = 10'000;
    std::ostringstream paced;
    print_summary(paced, conn, {});
    CHECK(paced.str().find("in 0.500 s (200/s of 10000/s asked)  connect") != std::string::npos);
}

TEST_CASE("bench config: --source takes IP addresses only") {
    bench_config c;
    c.scenario = scenario::conn;
    c.sources = {"127.0.0.1", "127.0.0.2", "::1"};
    CHECK(apply_scenario_defaults(c).empty());
    c.sources = {"127.0.0.1", "localhost"};
    CHECK(apply_scenario_defaults(c) == "--source localhost: not an IP address");
}

TEST_CASE("bench report: JSON carries the schema, status and the histogram") {
    auto r = fanin_results();
    thresholds t;
    t.min_rate = 1e12;
    const auto failed = check(r, t);
    const auto j = to_json(r, t, failed);
    CHECK(j["schema"] == "tern-bench/1");
    CHECK(j["status"] == "threshold");
    CHECK(j["thresholds"]["violations"][0]["name"] == "min-rate");
    CHECK(j["thresholds"]["limits"]["min_rate"] == 1e12);
    CHECK(j["latency_ns"]["p99"] == 990'207);  // 990000 ns, 512-ns bucket
    CHECK(j["rates"]["received_bytes_s"] == doctest::Approx(2000.0 * 64));
    auto h = histogram::from_json(j["histograms"]["latency"]);
    REQUIRE(h);
    CHECK(h->count() == 1000);
    r.errors.push_back("publisher 0: connection lost");
    CHECK(to_json(r, t, failed)["status"] == "error");
    CHECK(to_json(fanin_results(), {}, {})["status"] == "ok");
}

TEST_CASE("bench report: percentile distribution in HdrHistogram's text layout") {
    histogram h;
    for (std::uint64_t v = 1; v <= 1000; ++v) h.record(v * 1000);  // 1 us .. 1 ms
    std::ostringstream out;
    write_percentile_distribution(out, h);
    const auto text = out.str();
    std::istringstream in(text);
    std::string line;
    std::getline(in, line);
    CHECK(line.find("Percentile") != std::string::npos);
    std::getline(in, line);                       // blank
    std::vector<std::pair<double, double>> rows;  // value ms, percentile
    while (std::getline(in, line) && line.rfind("#[", 0) != 0) {
        std::istringstream fields(line);
        double value = 0, percentile = 0;
        fields >> value >> percentile;
        rows.emplace_back(value, percentile);
    }
    REQUIRE(rows.size() > 10);
    CHECK(rows.front().first == doctest::Approx(0.001));  // min
    CHECK(rows.front().second == 0.0);
    CHECK(rows.back().first == doctest::Approx(1.0));  // max
    CHECK(rows.back().second == 1.0);
    for (std::size_t i = 1; i < rows.size(); ++i) {
        CHECK(rows[i].first >= rows[i - 1].first);
        CHECK(rows[i].second > rows[i - 1].second);
    }
    // 50 % sits at the 500th value, 0.5 ms; the tail steps get finer: 0.75, 0.775, ...
    const auto half =
        std::find_if(rows.begin(), rows.end(), [](auto& r) { return r.second == 0.5; });
    REQUIRE(half != rows.end());
    CHECK(half->first == doctest::Approx(0.5).epsilon(0.002));
    CHECK(text.find("#[Max     =        1.000, Total count    =         1000]") !=
          std::string::npos);
    CHECK(h.stddev() == doctest::Approx(288'675).epsilon(0.01));  // uniform 1..1000 us
}
