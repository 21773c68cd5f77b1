#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "mqtt/protocol/packet.hpp"
#include "mqtt/result.hpp"

namespace mqtt::protocol {

class framer;

// Decoding. `version` is the one negotiated on the connection; CONNECT carries its own
// and ignores it. Every rule the specifications call malformed or a protocol error is
// checked here and reported as a distinct mqtt::errc; to_reason_code() gives the code to
// send back. Nothing here throws on peer input.

// One packet from its first byte and its body (the Remaining Length bytes after the
// fixed header), as a framer yields them.
result<packet> decode(std::uint8_t first_byte, std::span<const std::uint8_t> body,
                      protocol_version version);

// The same into an existing packet object, reusing its memory when it already holds a
// packet of the same type: the allocation-free path for a connection's read loop. On
// error `out` holds a partly decoded packet and must not be used.
std::error_code decode_into(std::uint8_t first_byte, std::span<const std::uint8_t> body,
                            protocol_version version, packet& out);

// A PUBLISH decoded without copying its topic and payload: both view the body given to
// decode_publish_view() and are valid only as long as it is. A server's read loop routes
// the message from it and copies the bytes once, into what it keeps.
struct publish_view {
    std::string_view topic;
    std::string_view payload;
    qos qos_level = qos::at_most_once;
    bool retain = false;
    bool dup = false;
    std::uint16_t packet_id = 0;  // present on the wire only for QoS 1 and 2
    properties props;
    // Whether the last decode into this view read a non-empty Properties block: `props` is
    // cleared before the next decode only then, as most PUBLISH packets carry none. A caller
    // that sets a property itself must clear it.
    bool has_props = false;
    // That block as received, Property Length included (empty in 3.1.1): a server passes
    // it on as it is when it has nothing to take out.
    std::span<const std::uint8_t> props_block;
    // The framer whose buffer holds the bytes viewed, for a receiver that may keep a large
    // payload in that buffer (framer::take_buffer) rather than copy it. Set by the caller
    // (from frame::source), not by the decoder; null: none.
    framer* source = nullptr;
};

// A PUBLISH (first_byte's type must be PUBLISH) with every check decode() makes, into a
// reused view. On error `out` holds a partly decoded packet and must not be used.
std::error_code decode_publish_view(std::uint8_t first_byte, std::span<const std::uint8_t> body,
                                    protocol_version version, publish_view& out);

// One packet from its complete bytes, fixed header included; extra bytes are an error.
result<packet> decode_packet(std::span<const std::uint8_t> bytes, protocol_version version);

// The version a CONNECT asks for, read from its variable header, so a server can answer
// an unsupported one in the right dialect before decoding the rest.
result<protocol_version> peek_connect_version(std::span<const std::uint8_t> body);

// Encoding: the exact size first, then one write pass. encoded_size() also checks that
// the packet can be encoded for `version` (string lengths, property placement, values);
// encode_into() then writes exactly that many bytes and cannot fail.
result<std::size_t> encoded_size(const packet& p, protocol_version version);
void encode_into(const packet& p, protocol_version version, std::span<std::uint8_t> out);

// Convenience: size, then write into a new vector or the end of an existing one.
result<std::vector<std::uint8_t>> encode(const packet& p, protocol_version version);
std::error_code encode_append(const packet& p, protocol_version version,
                              std::vector<std::uint8_t>& out);

// Variable Byte Integer helpers (§1.5.5), also used by framing.
constexpr std::size_t variable_int_size(std::uint32_t v) noexcept {
    return v < 128u ? 1 : v < 16'384u ? 2 : v < 2'097'152u ? 3 : 4;
}

}  // namespace mqtt::protocol
