#pragma once

// What $SYS (sys_topics) and /metrics (render_metrics) report, as one value read from an
// engine. With threads > 1 every shard's engine is read on its own loop (no lock, no
// atomics on the message path) and shard 0 sums what the shards sent it (add_shard).

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/limits.hpp"

namespace mqtt::broker {

struct figures {
    broker::stats stats;
    std::size_t connections = 0;       // network connections, MQTT-connected or not yet
    std::size_t connected = 0;         // clients connected (CONNECT accepted)
    std::size_t stored_sessions = 0;   // connected or offline
    std::size_t offline_sessions = 0;  // without a connection
    std::size_t subscriptions = 0;     // shared ones included
    std::size_t share_groups = 0;
    engine::queue_totals queues;
    // The broker's, not a shard's: every shard holds a replica of the retained messages
    // that converges to shard 0's, and the memory_limit meters are shared; so these are
    // the figures of the shard they were read from (shard 0's in the sum), never summed.
    std::size_t retained_count = 0;
    std::size_t retained_bytes = 0;
    std::size_t held_bytes = 0;
    std::size_t output_bytes = 0;
    std::size_t memory_limit = 0;  // the limit those two are held to (config, not counted)
    // Set by the server, not figures_of(): the records in the shard's persistence store
    // file (summed: every shard has a file of its own).
    std::uint64_t store_file_bytes = 0;
};

// e's figures; on e's thread. With shards, stats.connected_maximum is the broker's (the
// most clients connected at once over every shard, from the shared connected_meter).
figures figures_of(const engine& e);

// Adds another shard's figures to `total`: the counters and gauges summed, the broker-wide
// ones (retained messages, memory meters, connected_maximum) kept as they are in `total`.
void add_shard(figures& total, const figures& shard);

// Every counter of `from` added to `to`; connected_maximum and the gauge mqttsn_clients are
// summed too (as separate brokers' would be): add_shard keeps the broker-wide maximum.
void add_stats(stats& to, const stats& from) noexcept;

// The clients connected over every shard and the most there were at once (threads > 1):
// shared by the shards' engines like the memory meters, touched at CONNECT and at the end
// of a connection (never per message).
class connected_meter {
  public:
    void up() noexcept {
        const std::uint64_t n = now_.fetch_add(1, std::memory_order_relaxed) + 1;
        std::uint64_t m = max_.load(std::memory_order_relaxed);
        while (n > m && !max_.compare_exchange_weak(m, n, std::memory_order_relaxed)) {
        }
    }
    void down() noexcept { now_.fetch_sub(1, std::memory_order_relaxed); }
    std::uint64_t maximum() const noexcept { return max_.load(std::memory_order_relaxed); }
    std::uint64_t now() const noexcept { return now_.load(std::memory_order_relaxed); }

  private:
    std::atomic<std::uint64_t> now_{0};
    std::atomic<std::uint64_t> max_{0};
};

}  // namespace mqtt::broker
