#pragma once

#include <system_error>

#include "mqtt/error.hpp"
#include "mqtt/protocol/reason_code.hpp"

namespace mqtt::protocol {

// The reason code a receiver sends (in CONNACK or DISCONNECT) when it detects this
// error in a packet from its peer: malformed_packet, protocol_error, packet_too_large,
// topic_name_invalid, ... (§4.13). Errors of other categories map to unspecified_error.
reason_code to_reason_code(std::error_code ec) noexcept;

}  // namespace mqtt::protocol
