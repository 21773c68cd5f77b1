// tern-bench merge and --baseline, on hand-made results: what adds up, what must match, and
// the regression verdicts.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mqtt/bench/merge.hpp"
#include "mqtt/bench/report.hpp"

using namespace mqtt::bench;

namespace {

// A fanin run at QoS 1 whose subscriber saw `n` deliveries with latencies first, first+step...
run_results run_of(std::uint64_t n, std::uint64_t first_ns, std::uint64_t step_ns,
                   double seconds) {
    run_results r;
    r.config.scenario = scenario::fanin;
    r.config.publishers = 2;
    r.config.subscribers = 1;
    r.config.qos = mqtt::protocol::qos::at_least_once;
    r.config.size = 64;
    r.connect_attempted = r.connect_succeeded = 3;
    r.connect_seconds = 0.01;
    r.connect_latency.record(1'000'000, 3);
    r.published = r.acked = r.expected = r.received = r.unique = n;
    r.measured_published = r.measured_acked = r.measured_received = n;
    r.publish_seconds = r.ack_seconds = r.receive_seconds = seconds;
    r.wall_seconds = seconds + 0.5;
    for (std::uint64_t i = 0; i < n; ++i) {
        r.latency.record(first_ns + i * step_ns);
        r.ack_latency.record(first_ns / 2 + i * step_ns);
    }
    r.per_publisher = {{0, n / 2, n / 2, n / 2, n / 2, 0, 0, 0},
                       {1, n - n / 2, n - n / 2, n - n / 2, n - n / 2, 0, 0, 0}};
    r.cpu_user_seconds = 0.25;
    return r;
}

nlohmann::json report_of(const run_results& r) {
    // Through text, as the files are read.
    return nlohmann::json::parse(to_json(r, {}, {}).dump());
}

}  // namespace

TEST_CASE("bench merge: counts and rates add up, percentiles come from the summed histograms") {
    const auto a = run_of(1000, 1'000, 1'000, 0.5);     // 2000/s, 1 us .. 1 ms
    const auto b = run_of(3000, 500'000, 1'000, 1.0);  // 3000/s, 0.5 ms .. 3.5 ms
    std::string why;
    const auto m = merge_reports({{"a.json", report_of(a)}, {"b.json", report_of(b)}}, why);
    REQUIRE(why.empty());
    CHECK(m["merged"]["runs"] == 2);
    CHECK(m["merged"]["files"] == nlohmann::json({"a.json", "b.json"}));
    CHECK(m["parameters"]["publishers"] == 4);
    CHECK(m["parameters"]["subscribers"] == 2);
    CHECK(m["messages"]["received"] == 4000);
    CHECK(m["messages"]["expected"] == 4000);
    CHECK(m["connections"]["succeeded"] == 6);
    CHECK(m["rates"]["headline"].get<double>() == doctest::Approx(5000));
    CHECK(m["rates"]["received_bytes_s"].get<double>() == doctest::Approx(5000.0 * 64));
    CHECK(m["seconds"]["wall"].get<double>() == doctest::Approx(1.5));  // the longest run
    CHECK(m["cpu"]["user_s"].get<double>() == doctest::Approx(0.5));
    CHECK(m["per_publisher"].size() == 4);
    CHECK(m["per_publisher"][3]["run"] == 1);

    histogram all = a.latency;
    all.merge(b.latency);
    CHECK(m["latency_ns"]["count"] == 4000);
    CHECK(m["latency_ns"]["p50"] == all.percentile(50));
    CHECK(m["latency_ns"]["p99"] == all.percentile(99));
    CHECK(m["latency_ns"]["max"] == 3'499'000);
    // Not the mean of the two runs' p50s (0.5 ms and 2 ms): 2000 of 4000 samples are at or
    // below 1.5 ms.
    CHECK(m["latency_ns"]["p50"].get<double>() == doctest::Approx(1'499'000).epsilon(0.001));
    CHECK(m["connections"]["latency_ns"]["count"] == 6);

    std::string bad;
    const auto figures = headline_of(m, bad);
    CHECK(bad.empty());
    CHECK(figures.rate == doctest::Approx(5000));
    CHECK(figures.latency.count() == 4000);
}

TEST_CASE("bench merge: reports that are not the same measurement are refused") {
    const auto a = run_of(10, 1000, 10, 1);
    auto other_qos = a;
    other_qos.config.qos = mqtt::protocol::qos::exactly_once;
    auto other_scenario = a;
    other_scenario.config.scenario = scenario::pairs;
    auto other_size = a;
    other_size.config.size = 128;
    std::string why;
    CHECK(merge_reports({{"a", report_of(a)}, {"b", report_of(other_qos)}}, why).is_null());
    CHECK(why == "b: parameters.qos 2 differs from 1 in a");
    CHECK(merge_reports({{"a", report_of(a)}, {"c", report_of(other_scenario)}}, why).is_null());
    CHECK(why.find("scenario pairs is not fanin") != std::string::npos);
    CHECK(merge_reports({{"a", report_of(a)}, {"d", report_of(other_size)}}, why).is_null());
    CHECK(why.find("parameters.size") != std::string::npos);
    auto broken = report_of(a);
    broken["histograms"]["latency"]["buckets"] = "x";
    CHECK(merge_reports({{"a", report_of(a)}, {"e", broken}}, why).is_null());
    CHECK(why.rfind("e: ", 0) == 0);
    CHECK(merge_reports({{"f", nlohmann::json{{"schema", "other/1"}}}}, why).is_null());
    CHECK(why == "f: not a tern-bench/1 report");
    CHECK(merge_reports({}, why).is_null());
}

TEST_CASE("bench merge: a run's errors carry over with the file they came from") {
    auto a = run_of(10, 1000, 10, 1);
    a.errors.push_back("publisher 1: connection lost");
    std::string why;
    auto m = merge_reports({{"a", report_of(run_of(10, 1000, 10, 1))}, {"b", report_of(a)}}, why);
    REQUIRE(why.empty());
    set_verdict(m, {}, {});
    CHECK(m["status"] == "error");
    CHECK(m["errors"] == nlohmann::json({"b: publisher 1: connection lost"}));
}

TEST_CASE("bench baseline: a lower rate or a higher p99 beyond the allowance fails") {
    const auto base = run_of(1000, 1'000, 1'000, 0.5);  // 2000/s, p99 ~0.99 ms
    std::string why;
    thresholds t;
    t.baseline = baseline{"base.json", headline_of(report_of(base), why), 10};
    REQUIRE(why.empty());
    CHECK(t.baseline->figures.rate == doctest::Approx(2000));

    CHECK(check(base, t).empty());                          // itself
    CHECK(check(run_of(1000, 1'000, 1'000, 0.55), t).empty());  // 1818/s: 9.1 % slower
    auto v = check(run_of(1000, 1'000, 1'000, 0.6), t);         // 1667/s: 16.7 % slower
    REQUIRE(v.size() == 1);
    CHECK(v[0].name == "regression-rate");
    CHECK(v[0].message.find("base.json") != std::string::npos);
    v = check(run_of(1000, 1'000, 1'200, 0.5), t);  // p99 ~1.19 ms: 20 % higher
    REQUIRE(v.size() == 1);
    CHECK(v[0].name == "regression-p99");
    CHECK(check(run_of(1000, 1'000, 1'050, 0.5), t).empty());  // 5 % higher
    // Faster and quicker than the baseline is never a regression.
    CHECK(check(run_of(1000, 1'000, 500, 0.25), t).empty());

    CHECK(baseline_mismatch(*t.baseline, scenario::fanin, mqtt::protocol::qos::at_least_once)
              .empty());
    CHECK(baseline_mismatch(*t.baseline, scenario::pairs, mqtt::protocol::qos::at_least_once) ==
          "base.json is a fanin run at QoS 1, this is pairs at QoS 1");

    auto j = to_json(base, t, check(run_of(1000, 1'000, 1'000, 0.6), t));
    CHECK(j["status"] == "threshold");
    CHECK(j["thresholds"]["limits"]["baseline"]["file"] == "base.json");
    CHECK(j["thresholds"]["limits"]["max_regression_percent"] == 10.0);
}
