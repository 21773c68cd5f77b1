#include "mqtt/bench/tally.hpp"

#include <algorithm>

namespace mqtt::bench {

void loop_tally::error(std::string message, std::uint64_t times) {
    for (auto& [text, n] : errors)
        if (text == message) {
            n += times;
            return;
        }
    if (errors.size() < max_errors) errors.emplace_back(std::move(message), times);
}

void loop_tally::merge(const loop_tally& other) {
    latency.merge(other.latency);
    ack_latency.merge(other.ack_latency);
    connect_latency.merge(other.connect_latency);
    measured_published += other.measured_published;
    measured_acked += other.measured_acked;
    measured_received += other.measured_received;
    last_publish = std::max(last_publish, other.last_publish);
    last_ack = std::max(last_ack, other.last_ack);
    last_receive = std::max(last_receive, other.last_receive);
    last_connack = std::max(last_connack, other.last_connack);
    if (other.first_receive != clock::time_point{} &&
        (first_receive == clock::time_point{} || other.first_receive < first_receive))
        first_receive = other.first_receive;
    for (const auto& [text, n] : other.errors) error(text, n);
    for (const auto& [publisher, seen] : other.group_seen) group_seen[publisher].merge(seen);
}

}  // namespace mqtt::bench
