#pragma once

// Messages for the shard tests that count their own destruction (a deleter that counts), so
// a test sees every message_ptr released, and carry (producer, sequence) to check order.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "mqtt/broker/message.hpp"

namespace shard_test {

struct message_counts {
    std::atomic<std::uint64_t> made{0};
    std::atomic<std::uint64_t> freed{0};
    std::uint64_t live() const { return made.load() - freed.load(); }
};

// topic: the producer's number, payload: the sequence number.
inline mqtt::broker::message_ptr counted_message(message_counts& counts, std::size_t producer,
                                                 std::uint64_t seq) {
    auto* m = new mqtt::broker::message{};
    m->topic = std::to_string(producer);
    m->payload = std::to_string(seq);
    counts.made.fetch_add(1, std::memory_order_relaxed);
    return mqtt::broker::message_ptr(m, [&counts](const mqtt::broker::message* p) {
        delete p;
        counts.freed.fetch_add(1, std::memory_order_relaxed);
    });
}

inline std::size_t producer_of(const mqtt::broker::message& m) {
    return std::stoul(m.topic);
}
inline std::uint64_t seq_of(const mqtt::broker::message& m) {
    return std::stoull(m.payload);
}

}  // namespace shard_test
