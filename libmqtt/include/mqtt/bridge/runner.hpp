#pragma once

// Runs bridges: for each, a connection to the local and one to the remote broker on one
// io_context, messages forwarded by the topic rules, a QoS 1/2 message acknowledged to its
// source only once the destination has acknowledged it. Returns when SIGINT or SIGTERM
// arrives. The header stays free of Asio; runner.cpp holds it all.

#include <chrono>
#include <cstddef>
#include <ostream>
#include <vector>

#include "mqtt/bridge/config.hpp"

namespace mqtt::bridge {

struct run_options {
    bool json = false;  // one JSON event per line on `out`; otherwise text lines on `log`
    int verbosity = 0;  // -1 errors only, 0 connects and disconnects, 1 and more: statistics
    std::chrono::milliseconds stats_interval{5'000};
    // Messages waiting for one destination (offline queue and unacknowledged) before the
    // bridge stops reading from the source broker, which then keeps them in its session.
    std::size_t max_pending = 10'000;
    std::chrono::milliseconds connect_timeout{10'000};
};

// Loads the TLS files of every side of `b` that uses TLS, as a connection would: empty when
// they are fine, else what is wrong ("remote: cafile /x: cannot read: No such file or
// directory"), so a front end can refuse a bad configuration at once.
std::string check_tls(const bridge_config& b);

// Exit status: 0 after a signal.
int run(std::vector<bridge_config> bridges, const run_options& opts, std::ostream& out,
        std::ostream& log);

}  // namespace mqtt::bridge
