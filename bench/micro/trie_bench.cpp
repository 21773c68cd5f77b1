// Subscription index micro-benchmarks. The broker matches every PUBLISH against the trie,
// so the figure that matters is one match on a realistic index: 100,000 subscriptions,
// mostly literal five-level device filters, some `+` and `#`.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mqtt/protocol/subscription_trie.hpp"
#include "mqtt/protocol/topic.hpp"

namespace {

using mqtt::protocol::subscription_trie;

struct sub_value {
    std::uint8_t qos = 0;
    std::uint32_t subscription_id = 0;
};

using trie_t = subscription_trie<std::uint32_t, sub_value>;

constexpr int subscription_count = 100'000;

// 95% `site/<i%100>/device/<i>/temp`, 3% `site/<i%100>/device/+/temp`,
// 1% `site/<i%100>/device/<i>/#`, 1% `site/+/device/<i>/+`; a handful of `#`-style
// monitoring filters on top. Keys are subscriber ids.
std::vector<std::string> make_filters() {
    std::vector<std::string> filters;
    filters.reserve(subscription_count);
    for (int i = 0; i < subscription_count; ++i) {
        const std::string site = std::to_string(i % 100);
        const std::string dev = std::to_string(i);
        switch ((i / 100) % 100) {  // independent of the site, so every site gets a mix
            case 0:
            case 1:
            case 2:
                filters.push_back("site/" + site + "/device/+/temp");
                break;
            case 3:
                filters.push_back("site/" + site + "/device/" + dev + "/#");
                break;
            case 4:
                filters.push_back("site/+/device/" + dev + "/+");
                break;
            default:
                filters.push_back("site/" + site + "/device/" + dev + "/temp");
        }
    }
    filters.push_back("#");
    filters.push_back("site/#");
    filters.push_back("+/+/device/+/temp");
    return filters;
}

const trie_t& shared_trie() {
    static const trie_t trie = [] {
        trie_t t;
        std::uint32_t key = 0;
        for (const auto& f : make_filters()) t.insert_or_assign(f, key++, sub_value{1, key});
        return t;
    }();
    return trie;
}

// A device topic that hits its own literal filter, the site's `+` filters and the
// monitoring filters: the common case.
void BM_match_hit(benchmark::State& state) {
    const auto& trie = shared_trie();
    const std::string topic = "site/42/device/4242/temp";
    std::size_t matched = 0;
    for (auto _ : state) {
        trie.match(topic, [&](std::string_view, const std::uint32_t&, const sub_value& v) {
            matched += v.qos;
        });
        benchmark::DoNotOptimize(matched);
    }
    state.counters["matches/op"] =
        benchmark::Counter(static_cast<double>(matched) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_match_hit);

// Rotating over many device topics, so the walk is not always the same cached path.
void BM_match_rotating(benchmark::State& state) {
    const auto& trie = shared_trie();
    std::vector<std::string> topics;
    for (int i = 0; i < 4096; ++i) {
        const int dev = (i * 7919) % subscription_count;
        topics.push_back("site/" + std::to_string(dev % 100) + "/device/" + std::to_string(dev) +
                         "/temp");
    }
    std::size_t i = 0;
    std::size_t matched = 0;
    for (auto _ : state) {
        trie.match(topics[i++ & 4095],
                   [&](std::string_view, const std::uint32_t&, const sub_value&) { ++matched; });
        benchmark::DoNotOptimize(matched);
    }
    state.counters["matches/op"] =
        benchmark::Counter(static_cast<double>(matched) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_match_rotating);

// A topic nobody subscribed to below the first level (only `#` and `site/#`-style hits).
void BM_match_miss(benchmark::State& state) {
    const auto& trie = shared_trie();
    const std::string topic = "site/42/gateway/7/status";
    std::size_t matched = 0;
    for (auto _ : state) {
        trie.match(topic,
                   [&](std::string_view, const std::uint32_t&, const sub_value&) { ++matched; });
        benchmark::DoNotOptimize(matched);
    }
}
BENCHMARK(BM_match_miss);

// Subscribe then unsubscribe one filter on the full index: the churn path, pruning included.
void BM_insert_erase(benchmark::State& state) {
    trie_t trie;
    std::uint32_t key = 0;
    for (const auto& f : make_filters()) trie.insert_or_assign(f, key++, sub_value{});
    const std::string filter = "site/42/device/new-device/temp";
    for (auto _ : state) {
        trie.insert_or_assign(filter, 1'000'000, sub_value{});
        benchmark::DoNotOptimize(trie.erase(filter, 1'000'000));
    }
}
BENCHMARK(BM_insert_erase);

// The linear matcher, for scale: what one filter check costs without the index.
void BM_topic_matches(benchmark::State& state) {
    const std::string filter = "site/+/device/4242/#";
    const std::string topic = "site/42/device/4242/temp";
    for (auto _ : state) {
        benchmark::DoNotOptimize(mqtt::protocol::topic_matches(filter, topic));
    }
}
BENCHMARK(BM_topic_matches);

}  // namespace
