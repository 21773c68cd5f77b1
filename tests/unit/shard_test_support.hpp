#pragma once

// For the shard tests: messages that count their own destruction (a deleter that counts), so
// a test sees every message_ptr released, and carry (producer, sequence) to check order; a
// shard_router that records what an engine sends to the other shards.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mqtt/broker/engine.hpp"
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

// A shard_router that records what an engine sends to the other shards; `congested` is what
// publish() answers (a congested channel).
struct recording_router final : mqtt::broker::shard_router {
    std::vector<mqtt::broker::message_ptr> published;
    std::vector<mqtt::broker::message_ptr> retained_changes;
    bool congested = false;
    // published: what went to at least one shard, with the shards (published_to) and the
    // publisher's client id (publishers, "" for none); every publish() is counted in
    // publish_calls, also one to no shard.
    std::vector<std::vector<std::size_t>> published_to;
    std::vector<std::string> publishers;
    std::size_t publish_calls = 0;
    bool publish(const mqtt::broker::message_ptr& m, std::span<const std::size_t> to,
                 const mqtt::broker::client_id_ptr& publisher) override {
        ++publish_calls;
        if (to.empty()) return congested;
        published.push_back(m);
        published_to.emplace_back(to.begin(), to.end());
        publishers.push_back(publisher ? *publisher : std::string{});
        return congested;
    }
    void retained(const mqtt::broker::message_ptr& m) override { retained_changes.push_back(m); }
    // What retained_ticket() answers (0: the replica is current).
    std::uint64_t ticket = 0;
    std::uint64_t retained_ticket() override { return ticket; }
    std::vector<std::size_t> resumed;
    void resume_from(std::size_t from) override { resumed.push_back(from); }
    std::vector<mqtt::broker::share_op> shares;
    void share(std::size_t, mqtt::broker::share_op op, const mqtt::broker::share_ref_ptr&,
               const mqtt::broker::message_ptr&) override {
        shares.push_back(op);
    }
};

}  // namespace shard_test
