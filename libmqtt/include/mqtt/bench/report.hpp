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

struct thresholds {
    std::optional<double> min_rate;          // headline rate, messages (conn: connections) per s
    std::optional<double> max_p99_ms;        // headline latency p99, milliseconds
    std::optional<double> max_loss_percent;  // lost / expected deliveries
};

struct violation {
    std::string name;  // "min-rate", "max-p99", "max-loss", "qos-loss", "qos-duplicates"
    std::string message;
};

// The figure --min-rate checks: deliveries per second, or for pub acknowledgements (QoS 1/2)
// or publications (QoS 0) per second, or for conn connections per second.
double headline_rate(const run_results& r);
// The latency --max-p99 checks: end to end, or for pub publish-to-ack, or for conn connect.
const histogram& headline_latency(const run_results& r);

// The thresholds that failed, and loss or duplicates where the QoS promises none.
std::vector<violation> check(const run_results& r, const thresholds& t);

nlohmann::json to_json(const run_results& r, const thresholds& t,
                       const std::vector<violation>& failed);
void print_summary(std::ostream& out, const run_results& r, const std::vector<violation>& failed);

// The full percentile distribution of `h` in HdrHistogram's text (.hgrm) layout, values in
// milliseconds, five percentile steps per halving of the distance to 100 %, so that the
// usual HdrHistogram plotting tools read it: the file --histogram writes.
void write_percentile_distribution(std::ostream& out, const histogram& h);

}  // namespace mqtt::bench
