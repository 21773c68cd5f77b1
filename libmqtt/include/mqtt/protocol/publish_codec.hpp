#pragma once

// Encoding a PUBLISH straight from its struct. codec.hpp's encoded_size() and encode_append()
// take a packet variant, and a publish_packet passed to them is copied into one first (topic,
// payload and properties): for a client that sends many messages that copy cost more than
// the encoding. These overloads are exact matches, so including this header is enough.

#include <cstddef>
#include <cstdint>
#include <system_error>
#include <vector>

#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/packet.hpp"
#include "mqtt/result.hpp"

namespace mqtt::protocol {

// As the packet overloads: the exact size and the same checks, then the same bytes.
result<std::size_t> encoded_size(const publish_packet& p, protocol_version version);
std::error_code encode_append(const publish_packet& p, protocol_version version,
                              std::vector<std::uint8_t>& out);

}  // namespace mqtt::protocol
