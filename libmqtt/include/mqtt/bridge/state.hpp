#pragma once

// What a running bridge reports about itself (the /metrics of tern-broker and tern-bridge). Plain
// data, so the broker's metrics code needs nothing of the bridge runner.

#include <cstdint>
#include <string>

namespace mqtt::bridge {

// One bridge's state and counters since it started.
struct bridge_state {
    std::string name;
    bool local_connected = false;
    bool remote_connected = false;
    std::uint64_t forwarded_out = 0;  // local -> remote
    std::uint64_t forwarded_in = 0;   // remote -> local
    std::uint64_t dropped_loop = 0;
    std::uint64_t dropped_no_route = 0;
    std::uint64_t dropped_refused = 0;
    std::uint64_t dropped_offline = 0;
    std::uint64_t dropped_queue_full = 0;
    std::uint64_t queued_out = 0;  // waiting for the remote side or not yet acknowledged by it
    std::uint64_t queued_in = 0;
    std::uint64_t queued_bytes_out = 0;  // on disk (queue_dir)
    std::uint64_t queued_bytes_in = 0;
    std::uint64_t remote_connects = 0;  // CONNACKs from the remote broker
    std::uint64_t local_connects = 0;   // CONNACKs from the local broker
};

}  // namespace mqtt::bridge
