// What writing one stored QoS 1 publish costs the store before any I/O: the message record and
// the queue record of an offline session encoded into the group's buffer (store::append_record),
// and the same two records applied to the mirror (store::state::apply), which is what
// persistence adds per message on a shard (docs/persistence.md, "Numbers").
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/store/record.hpp"
#include "mqtt/store/state.hpp"

namespace {

using namespace mqtt::store;

mqtt::broker::message_ptr sample_message() {
    return mqtt::broker::make_message({.topic = "tern-bench/3/temperature",
                                       .payload = std::string(64, 'p'),
                                       .qos_level = mqtt::protocol::qos::at_least_once});
}

// A group of 1,024 publishes encoded into a buffer that is reused, as the recorder's is.
void BM_store_encode_publish(benchmark::State& state) {
    const auto msg = sample_message();
    std::vector<std::uint8_t> out;
    std::uint64_t id = 1;
    for (auto _ : state) {
        out.clear();
        for (int i = 0; i < 1024; ++i, ++id) {
            append_record(out, message_record{id, 1'700'000'000'000, msg});
            append_record(out, queue_push_record{"keeper", id, mqtt::protocol::qos::at_least_once,
                                                 false, {}});
        }
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * 1024);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(out.size()));
}
BENCHMARK(BM_store_encode_publish);

// The mirror: a message record and a queue push applied, then popped again in groups of
// 1,024 so the state stays small and the measurement bounded.
void BM_store_mirror_publish(benchmark::State& state) {
    const auto msg = sample_message();
    mqtt::store::state st;
    st.apply(session_record{"keeper", 3600});
    std::uint64_t id = 1;
    for (auto _ : state) {
        for (int i = 0; i < 1024; ++i, ++id) {
            st.apply(message_record{id, 1'700'000'000'000, msg});
            st.apply(queue_push_record{"keeper", id, mqtt::protocol::qos::at_least_once, false, {}});
        }
        for (int i = 0; i < 1024; ++i) st.apply(queue_pop_record{"keeper"});
    }
    state.SetItemsProcessed(state.iterations() * 1024);
}
BENCHMARK(BM_store_mirror_publish);

}  // namespace
