// The cross-shard batch channel (net/shard_channel.hpp): items per second through one pair
// channel and the cost per item. An item is what routing to another shard costs per message:
// a message_ptr copy (one reference count increment) into the open batch, released on the
// consumer's side. 4,096 distinct messages are cycled so the counts are spread over as many
// control blocks, as with real traffic.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <span>
#include <thread>
#include <vector>

#include "mqtt/net/shard_channel.hpp"
#include "mqtt/net/shard_runtime.hpp"

namespace {

using mqtt::net::shard_item;
using mqtt::net::shard_item_channel;
using publish_result = shard_item_channel::publish_result;

const std::vector<mqtt::broker::message_ptr>& messages() {
    static const std::vector<mqtt::broker::message_ptr> all = [] {
        std::vector<mqtt::broker::message_ptr> v;
        for (int i = 0; i < 4096; ++i) {
            const std::string topic =
                "site/" + std::to_string(i % 100) + "/device/" + std::to_string(i) + "/temp";
            v.push_back(mqtt::broker::make_message({.topic = topic, .payload = "21.5"}));
        }
        return v;
    }();
    return all;
}

void set_counters(benchmark::State& state, std::uint64_t items) {
    state.SetItemsProcessed(static_cast<std::int64_t>(items));
    // Seconds per item (printed with an SI prefix: 56.8n is 56.8 ns).
    state.counters["time_per_item"] = benchmark::Counter(
        static_cast<double>(items), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Producer and consumer on one thread: push a batch, publish, drain. The channel's own cost
// per item, without cross-core traffic.
void BM_shard_channel_one_thread(benchmark::State& state) {
    const auto batch = static_cast<std::size_t>(state.range(0));
    const auto& msgs = messages();
    shard_item_channel ch;
    std::size_t next = 0, sink = 0;
    std::uint64_t items = 0;
    for (auto _ : state) {
        for (std::size_t i = 0; i < batch; ++i) {
            ch.try_push({shard_item::kind::publish, msgs[next++ & 4095]});
        }
        ch.publish();
        ch.drain([&](std::span<shard_item> b) {
            for (auto& it : b) sink += it.msg->payload.size();
        });
        items += batch;
    }
    benchmark::DoNotOptimize(sink);
    set_counters(state, items);
}
BENCHMARK(BM_shard_channel_one_thread)->ArgName("batch")->Arg(1)->Arg(16)->Arg(256);

// The benchmark's thread produces, a second thread consumes; the consumer drains only after a
// wake-up (an atomic counter standing in for the post to its io_context) and yields in
// between; the producer yields when every slot is taken. On an otherwise idle 2-core machine
// this is the channel's throughput between two cores; on a loaded one it also measures the
// scheduler. Counters: batches
// and wake-ups per batch (a busy consumer needs few); publishes that found every slot taken.
void BM_shard_channel_two_threads(benchmark::State& state) {
    const auto batch = static_cast<std::size_t>(state.range(0));
    const auto& msgs = messages();
    shard_item_channel ch;
    std::atomic<std::uint64_t> posts{0};
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> drained{0};
    std::thread consumer([&] {
        std::uint64_t handled = 0, sink = 0, n = 0;
        while (!stop.load(std::memory_order_acquire)) {
            if (posts.load(std::memory_order_acquire) == handled) {
                std::this_thread::yield();  // 2 shared cores: let the producer run
                continue;
            }
            ++handled;
            const auto r = ch.drain([&](std::span<shard_item> b) {
                for (auto& it : b) sink += it.msg->payload.size();
            });
            n += r.items;
            drained.store(n, std::memory_order_release);
            if (r.again) posts.fetch_add(1, std::memory_order_release);
        }
        benchmark::DoNotOptimize(sink);
    });
    std::size_t next = 0;
    std::uint64_t items = 0;
    auto publish = [&] {
        for (;;) {
            const auto p = ch.publish();
            if (p == publish_result::wake) posts.fetch_add(1, std::memory_order_release);
            if (p != publish_result::full) return;
            std::this_thread::yield();  // every slot taken: let the consumer run
        }
    };
    for (auto _ : state) {
        for (std::size_t i = 0; i < batch;) {
            if (ch.try_push({shard_item::kind::publish, msgs[next & 4095]})) {
                ++next;
                ++i;
            } else {
                publish();  // max_items in flight: hand over what is open first
            }
        }
        publish();
        items += batch;
    }
    while (drained.load(std::memory_order_acquire) < items) {
        std::this_thread::yield();  // the last batches count once the consumer has them
    }
    stop.store(true, std::memory_order_release);
    consumer.join();
    set_counters(state, items);
    const auto& p = ch.producer_counters();
    state.counters["batches"] = static_cast<double>(p.batches);
    state.counters["wakeups_per_batch"] =
        p.batches == 0 ? 0.0 : static_cast<double>(p.wakeups) / static_cast<double>(p.batches);
    state.counters["full"] = static_cast<double>(p.full);
}
BENCHMARK(BM_shard_channel_two_threads)->ArgName("batch")->Arg(1)->Arg(16)->Arg(256)->UseRealTime();

}  // namespace
