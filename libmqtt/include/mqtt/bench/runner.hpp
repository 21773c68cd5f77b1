#pragma once

// Runs one bench scenario to completion on a single io_context: connects the clients,
// subscribes, publishes (paced or as fast as the windows allow), drains, disconnects, and
// returns what it measured. Network trouble does not throw: it ends up in results.errors.
// Every run stops by itself: after its count or duration, the drain time, and at the latest
// at config.time_limit.

#include <ostream>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/results.hpp"

namespace mqtt::bench {

// `config` must have been through apply_scenario_defaults(). `progress`, when not null,
// gets a live status line about once a second (the front end passes stderr on a terminal);
// `log`, when not null, a line per phase (connected, subscribed, publishing, draining).
run_results run(const bench_config& config, std::ostream* progress, std::ostream* log = nullptr);

}  // namespace mqtt::bench
