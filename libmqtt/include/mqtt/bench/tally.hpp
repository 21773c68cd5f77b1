#pragma once

// What one event loop of a run measured besides its clients' own counters: the latency
// histograms, the counts of the measured window, the first and last moments, the distinct
// runtime errors and the shared-subscription group's view. A run on N threads keeps N of
// them, each touched only by its own loop's thread while the run goes, and adds them up once,
// after the threads are joined, with merge().

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mqtt/bench/histogram.hpp"
#include "mqtt/bench/rate.hpp"
#include "mqtt/bench/sequence.hpp"

namespace mqtt::bench {

struct loop_tally {
    static constexpr std::size_t max_errors = 20;  // distinct texts kept

    histogram latency;          // end to end: send stamp to delivery, ns
    histogram ack_latency;      // send stamp to PUBACK/PUBCOMP, ns
    histogram connect_latency;  // TCP connect to CONNACK, ns
    std::uint64_t measured_published = 0;
    std::uint64_t measured_acked = 0;
    std::uint64_t measured_received = 0;
    clock::time_point last_publish{};
    clock::time_point last_ack{};
    clock::time_point first_receive{};
    clock::time_point last_receive{};
    clock::time_point last_connack{};
    // Distinct runtime errors in the order they first happened, with how often.
    std::vector<std::pair<std::string, std::uint64_t>> errors;
    // shared: what the group's members on this loop received of each publisher (by index).
    std::unordered_map<std::uint32_t, sequence_tracker> group_seen;

    // Thousands of connections failing the same way make one entry with a count.
    void error(std::string message, std::uint64_t times = 1);
    // Adds `other` in: histograms bucket by bucket, counts summed, the earliest first and the
    // latest last moments, errors by text (this one's first), group views united.
    void merge(const loop_tally& other);
};

}  // namespace mqtt::bench
