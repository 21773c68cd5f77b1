#pragma once

// What a run measured: counters, histograms and timings, per publisher too. The runner fills
// it; report.hpp turns it into the text summary, the JSON object and the threshold verdicts.

#include <cstdint>
#include <string>
#include <vector>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/histogram.hpp"

namespace mqtt::bench {

struct publisher_result {
    unsigned index = 0;
    std::uint64_t published = 0;
    std::uint64_t acked = 0;
    std::uint64_t expected = 0;  // deliveries expected: published x matching subscribers
    std::uint64_t received = 0;  // unique deliveries over every subscriber
    std::uint64_t lost = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t out_of_order = 0;
};

struct run_results {
    bench_config config;
    // Connections.
    std::uint64_t connect_attempted = 0;
    std::uint64_t connect_succeeded = 0;
    std::uint64_t connect_failed = 0;
    double connect_seconds = 0;  // from the first attempt to the last CONNACK or failure
    histogram connect_latency;   // TCP connect to CONNACK, ns
    // Messages, over the whole run (warm-up included).
    std::uint64_t published = 0;
    std::uint64_t acked = 0;
    std::uint64_t refused = 0;   // acknowledged with an error reason code (MQTT 5.0)
    std::uint64_t expected = 0;  // deliveries expected from this run's publishers
    std::uint64_t received = 0;  // every delivery of a bench payload, duplicates included
    std::uint64_t unique = 0;
    std::uint64_t lost = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t out_of_order = 0;
    std::uint64_t foreign = 0;  // deliveries that were not this run's bench payloads
    std::vector<publisher_result> per_publisher;
    // shared: the deliveries each member of the group got (they add up to unique);
    // reqresp: the requests each responder answered.
    std::vector<std::uint64_t> per_subscriber_unique;
    // The measured window (after the warm-up): counts and seconds for the rates.
    std::uint64_t measured_published = 0;
    std::uint64_t measured_acked = 0;
    std::uint64_t measured_received = 0;
    double publish_seconds = 0;  // warm-up end to the last PUBLISH handed to the socket
    double ack_seconds = 0;      // warm-up end to the last acknowledgement
    double receive_seconds = 0;  // warm-up end (sub: first delivery) to the last delivery
    histogram latency;           // end to end: send stamp to delivery, ns
    histogram ack_latency;       // send stamp to PUBACK/PUBCOMP, ns
    // The whole run and the bench process itself.
    double wall_seconds = 0;
    double cpu_user_seconds = 0;
    double cpu_system_seconds = 0;
    bool timed_out = false;           // the hard time limit ended it
    std::vector<std::string> errors;  // runtime failures (connections lost, refused, ...)
};

}  // namespace mqtt::bench
