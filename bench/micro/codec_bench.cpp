// Encode and decode of a 64-byte QoS 0 PUBLISH, the broker's most common packet.
// Target (issue: foundation): 10 million packets per second or more on one core.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"

using namespace mqtt::protocol;

namespace {

publish_packet sample_publish() {
    publish_packet p;
    p.topic = "site/7/device/42/temp";
    p.payload = std::string(64, 'x');
    return p;
}

void encode_publish(benchmark::State& state, protocol_version v) {
    const packet p = sample_publish();
    std::vector<std::uint8_t> out;
    out.reserve(256);
    for (auto _ : state) {
        out.clear();
        auto ec = encode_append(p, v, out);
        benchmark::DoNotOptimize(ec);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(out.size()));
}

// Runs decode_one(first_byte, body) on the sample PUBLISH encoded in `v`, once per
// iteration.
template <class Decode>
void decode_loop(benchmark::State& state, protocol_version v, Decode decode_one) {
    const auto bytes = *encode(sample_publish(), v);
    const auto header = variable_int_size(static_cast<std::uint32_t>(bytes.size() - 2)) + 1;
    const std::span<const std::uint8_t> body(bytes.data() + header, bytes.size() - header);
    for (auto _ : state) decode_one(bytes[0], body);
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}

void decode_publish(benchmark::State& state, protocol_version v) {
    decode_loop(state, v, [v](std::uint8_t first, std::span<const std::uint8_t> body) {
        auto p = decode(first, body, v);
        benchmark::DoNotOptimize(p);
    });
}

// The read loop's path: decoding into one packet object that is reused, so the topic and
// payload strings keep their memory between packets.
void decode_publish_reused(benchmark::State& state, protocol_version v) {
    packet p;
    decode_loop(state, v, [v, &p](std::uint8_t first, std::span<const std::uint8_t> body) {
        auto ec = decode_into(first, body, v, p);
        benchmark::DoNotOptimize(ec);
        benchmark::DoNotOptimize(p);
    });
}

// The broker's read loop: the PUBLISH as views of its bytes, into one reused view.
void decode_publish_as_view(benchmark::State& state, protocol_version v) {
    publish_view p;
    decode_loop(state, v, [v, &p](std::uint8_t first, std::span<const std::uint8_t> body) {
        auto ec = mqtt::protocol::decode_publish_view(first, body, v, p);
        benchmark::DoNotOptimize(ec);
        benchmark::DoNotOptimize(p);
    });
}

// Framing plus decoding of a 64 KiB read full of such packets, as a connection sees them.
void frame_and_decode_stream(benchmark::State& state) {
    std::vector<std::uint8_t> stream;
    const packet p = sample_publish();
    std::size_t count = 0;
    while (stream.size() < 64 * 1024) {
        (void)encode_append(p, protocol_version::v5, stream);
        ++count;
    }
    framer f;
    packet d;
    for (auto _ : state) {
        f.feed(stream);
        while (true) {
            auto fr = f.next();
            if (!fr || !*fr) break;
            auto ec = decode_into((*fr)->first_byte, (*fr)->body, protocol_version::v5, d);
            benchmark::DoNotOptimize(ec);
        }
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(count));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(stream.size()));
}

}  // namespace

BENCHMARK_CAPTURE(encode_publish, v3_1_1, protocol_version::v3_1_1);
BENCHMARK_CAPTURE(encode_publish, v5, protocol_version::v5);
BENCHMARK_CAPTURE(decode_publish, v3_1_1, protocol_version::v3_1_1);
BENCHMARK_CAPTURE(decode_publish, v5, protocol_version::v5);
BENCHMARK_CAPTURE(decode_publish_reused, v3_1_1, protocol_version::v3_1_1);
BENCHMARK_CAPTURE(decode_publish_reused, v5, protocol_version::v5);
BENCHMARK_CAPTURE(decode_publish_as_view, v3_1_1, protocol_version::v3_1_1);
BENCHMARK_CAPTURE(decode_publish_as_view, v5, protocol_version::v5);
BENCHMARK(frame_and_decode_stream);
