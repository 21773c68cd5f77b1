// libFuzzer target: arbitrary bytes as one MQTT-SN datagram. Whatever decodes must encode,
// and the encoding must decode to the same message (and be no longer than the input, which
// may have used the 3-octet Length form where one octet would do).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "mqtt/protocol/mqttsn.hpp"

namespace sn = mqtt::protocol::mqttsn;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto m = sn::decode(std::span<const std::uint8_t>(data, size));
    if (!m) return 0;
    auto bytes = sn::encode(*m);
    if (!bytes) std::abort();  // decoded but cannot be encoded: a codec bug
    if (bytes->size() > size) std::abort();
    auto again = sn::decode(*bytes);
    if (!again || !(*again == *m)) std::abort();
    return 0;
}
