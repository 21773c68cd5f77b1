// libFuzzer target: arbitrary bytes through framing and decoding, for every protocol
// version. Whatever decodes must re-encode, and the re-encoding must decode to the same
// packet. The first input byte picks the version and the chunk size, so the fuzzer
// also explores how packets are split across reads.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"

using namespace mqtt::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const protocol_version versions[] = {protocol_version::v3_1, protocol_version::v3_1_1,
                                         protocol_version::v5};
    const auto version = versions[data[0] % 3];
    const std::size_t chunk = 1 + (data[0] >> 2);
    std::span<const std::uint8_t> in(data + 1, size - 1);

    framer f(64 * 1024);
    for (std::size_t at = 0; at < in.size(); at += chunk) {
        f.feed(in.subspan(at, std::min(chunk, in.size() - at)));
        for (;;) {
            auto fr = f.next();
            if (!fr || !*fr) break;
            auto p = decode((*fr)->first_byte, (*fr)->body, version);
            if (!p) continue;
            auto bytes = encode(*p, version);
            if (!bytes) std::abort();  // decoded but cannot be encoded: a codec bug
            auto again = decode_packet(*bytes, version);
            if (!again || !(*again == *p)) std::abort();
        }
        if (f.error()) break;
    }
    return 0;
}
