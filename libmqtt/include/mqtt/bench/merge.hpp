#pragma once

// tern-bench merge: one report from the tern-bench/1 reports of runs made at the same time on
// several machines (a load larger than one machine drives). Counts and rates add up, the
// histograms add bucket by bucket, so the merged percentiles are exact, not averaged.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mqtt::bench {

struct named_report {
    std::string name;  // where it came from (a file name), for messages and errors
    nlohmann::json report;
};

// The merged report, or null with `why` saying which input is not a tern-bench/1 report or
// does not go with the first (another scenario, QoS, payload size or protocol version).
// `status` and `thresholds` of the result are left for set_verdict().
nlohmann::json merge_reports(const std::vector<named_report>& inputs, std::string& why);

}  // namespace mqtt::bench
