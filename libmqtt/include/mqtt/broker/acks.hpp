#pragma once

#include <cstdint>
#include <vector>

#include "mqtt/protocol/types.hpp"

namespace mqtt::broker {

// PUBACK, PUBREC, PUBREL or PUBCOMP with Reason Code Success and no properties, the bytes
// protocol::encode writes for it in every version (5.0 §3.4.2.1 omits the Reason Code and
// Property Length then), appended without building a packet: one per QoS 1/2 message.
inline void append_success_ack(std::vector<std::uint8_t>& out, protocol::packet_type type,
                               std::uint16_t packet_id) {
    const auto t = static_cast<std::uint8_t>(type);
    const std::uint8_t bytes[4] = {
        static_cast<std::uint8_t>(t << 4 | (type == protocol::packet_type::pubrel ? 0x02 : 0)),
        0x02, static_cast<std::uint8_t>(packet_id >> 8), static_cast<std::uint8_t>(packet_id)};
    out.insert(out.end(), bytes, bytes + 4);
}

}  // namespace mqtt::broker
