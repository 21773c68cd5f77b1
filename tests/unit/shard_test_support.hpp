#pragma once

// For the shard tests: messages that count their own destruction (a deleter that counts), so
// a test sees every message_ptr released, and carry (producer, sequence) to check order; a
// shard_router that records what an engine sends to the other shards; two engines linked as
// shards 0 and 1 in one thread, with recording routers or a test's own.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/message.hpp"
#include "mqtt/broker/shard_interest.hpp"

namespace shard_test {

struct message_counts {
    std::atomic<std::uint64_t> made{0};
    std::atomic<std::uint64_t> freed{0};
    std::uint64_t live() const { return made.load() - freed.load(); }
};

// topic: the producer's number, payload: the sequence number.
inline mqtt::broker::message_ptr counted_message(message_counts& counts, std::size_t producer,
                                                 std::uint64_t seq) {
    mqtt::broker::message_ptr m = mqtt::broker::make_message(
        {.topic = std::to_string(producer), .payload = std::to_string(seq)});
    counts.made.fetch_add(1, std::memory_order_relaxed);
    // The same message, counted when its last holder lets go (the deleter owns `m`).
    const auto* raw = m.get();
    return mqtt::broker::message_ptr(raw, [&counts, m](const mqtt::broker::message*) mutable {
        m.reset();
        counts.freed.fetch_add(1, std::memory_order_relaxed);
    });
}

inline std::size_t producer_of(const mqtt::broker::message& m) {
    return std::stoul(std::string{m.topic});
}
inline std::uint64_t seq_of(const mqtt::broker::message& m) {
    return std::stoull(std::string{m.payload});
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

// Engines e0 and e1 as shards 0 and 1 of 2, as the server links them (shard 1 shares shard
// 0's meters) but in one thread, and `now` for the clients on them. link() gives each a router
// in place of shard_runtime; a test with routers of its own derives from this and calls it.
struct two_engines {
    mqtt::broker::clock::time_point now = tern_test::test_epoch();
    // Before the engines, which keep pointers to them.
    mqtt::broker::shard_interest i0;
    mqtt::broker::shard_interest i1;
    mqtt::broker::engine e0;
    mqtt::broker::engine e1;

    explicit two_engines(const mqtt::broker::limits& l = {}) : e0{l}, e1{l} {}
    void link(mqtt::broker::shard_router& r0, mqtt::broker::shard_router& r1) {
        e0.set_shard(0, 2, &r0, nullptr);
        e1.set_shard(1, 2, &r1, &e0);
    }
    // As the server does: a message goes only to the shards where a filter may match it.
    // Without, every message goes to the other shard.
    void share_interests() {
        e0.set_interests({&i0, &i1});
        e1.set_interests({&i0, &i1});
    }
};

// two_engines linked through recording routers r0 and r1.
struct two_shards : two_engines {
    recording_router r0;
    recording_router r1;
    explicit two_shards(const mqtt::broker::limits& l = {}) : two_engines(l) { link(r0, r1); }
};

}  // namespace shard_test
