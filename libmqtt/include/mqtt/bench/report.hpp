#pragma once

// The bench's one output module: the JSON object (schema "tern-bench/1", documented in
// docs/bench.md), the human summary and the CI thresholds. Field names live here only.

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mqtt/bench/results.hpp"

namespace mqtt::bench {

inline constexpr const char* schema_version = "tern-bench/1";

// The figures thresholds and baselines compare, from a run or from a tern-bench/1 report (a
// baseline file, or several runs merged).
struct headline_figures {
    bench::scenario scenario = scenario::pairs;
    protocol::qos qos = protocol::qos::at_most_once;
    double rate = 0;   // headline_rate()
    histogram latency;  // headline_latency()
    std::uint64_t expected = 0;
    std::uint64_t lost = 0;
    std::uint64_t duplicates = 0;
};

// A previous run to compare with: a regression is a headline rate lower, or a headline p99
// higher, than the baseline's by more than max_regression_percent.
struct baseline {
    std::string file;
    headline_figures figures;
    double max_regression_percent = 0;
};

struct thresholds {
    std::optional<double> min_rate;          // headline rate, messages (conn: connections) per s
    std::optional<double> max_p99_ms;        // headline latency p99, milliseconds
    std::optional<double> max_loss_percent;  // lost / expected deliveries
    std::optional<bench::baseline> baseline;
};

struct violation {
    // "min-rate", "max-p99", "max-loss", "qos-loss", "qos-duplicates", "regression-rate",
    // "regression-p99"
    std::string name;
    std::string message;
};

// The figure --min-rate checks: deliveries per second, or for pub acknowledgements (QoS 1/2)
// or publications (QoS 0) per second, or for conn connections per second.
double headline_rate(const run_results& r);
// The latency --max-p99 checks: end to end, or for pub publish-to-ack, or for conn connect.
const histogram& headline_latency(const run_results& r);

headline_figures headline_of(const run_results& r);
// From a report's JSON; an error message (empty on success) for one that is not tern-bench/1.
headline_figures headline_of(const nlohmann::json& report, std::string& why);

// The thresholds that failed, and loss or duplicates where the QoS promises none.
std::vector<violation> check(const headline_figures& h, const thresholds& t);
std::vector<violation> check(const run_results& r, const thresholds& t);

// Why a baseline cannot be compared with a run of `scenario` at `q` (another scenario or
// QoS), or empty.
std::string baseline_mismatch(const baseline& b, bench::scenario scenario, protocol::qos q);

// Sets `status` and `thresholds` of a report from the verdicts.
void set_verdict(nlohmann::json& report, const thresholds& t, const std::vector<violation>& failed);

nlohmann::json to_json(const run_results& r, const thresholds& t,
                       const std::vector<violation>& failed);
void print_summary(std::ostream& out, const run_results& r, const std::vector<violation>& failed);
// The human summary of a merged report (merge.hpp).
void print_merged_summary(std::ostream& out, const nlohmann::json& merged,
                          const std::vector<violation>& failed);

// The full percentile distribution of `h` in HdrHistogram's text (.hgrm) layout, values in
// milliseconds, five percentile steps per halving of the distance to 100 %, so that the
// usual HdrHistogram plotting tools read it: the file --histogram writes.
void write_percentile_distribution(std::ostream& out, const histogram& h);

}  // namespace mqtt::bench
