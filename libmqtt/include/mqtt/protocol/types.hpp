#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace mqtt::protocol {

// The protocol level byte of CONNECT: one set of packet structs serves all three.
enum class protocol_version : std::uint8_t {
    v3_1 = 3,    // MQTT 3.1, protocol name "MQIsdp"
    v3_1_1 = 4,  // MQTT 3.1.1
    v5 = 5,      // MQTT 5.0
};

enum class qos : std::uint8_t { at_most_once = 0, at_least_once = 1, exactly_once = 2 };

enum class packet_type : std::uint8_t {
    connect = 1,
    connack = 2,
    publish = 3,
    puback = 4,
    pubrec = 5,
    pubrel = 6,
    pubcomp = 7,
    subscribe = 8,
    suback = 9,
    unsubscribe = 10,
    unsuback = 11,
    pingreq = 12,
    pingresp = 13,
    disconnect = 14,
    auth = 15,  // MQTT 5.0 only; reserved in 3.1.1
};

// Largest value of a Variable Byte Integer, hence of a Remaining Length (§1.5.5).
inline constexpr std::uint32_t max_variable_int = 268'435'455;
// Largest packet that can exist on the wire: 1 header byte + 4 length bytes + payload.
inline constexpr std::uint32_t max_packet_size = max_variable_int + 5;

std::string_view to_string(packet_type t) noexcept;
std::string_view to_string(protocol_version v) noexcept;
std::optional<protocol_version> to_protocol_version(std::uint8_t level) noexcept;

constexpr bool is_v5(protocol_version v) noexcept { return v == protocol_version::v5; }

}  // namespace mqtt::protocol
