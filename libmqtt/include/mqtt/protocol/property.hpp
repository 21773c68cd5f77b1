#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mqtt/protocol/types.hpp"

namespace mqtt::protocol {

// MQTT 5.0 property identifiers (§2.2.2.2).
enum class property_id : std::uint8_t {
    payload_format_indicator = 0x01,
    message_expiry_interval = 0x02,
    content_type = 0x03,
    response_topic = 0x08,
    correlation_data = 0x09,
    subscription_identifier = 0x0B,
    session_expiry_interval = 0x11,
    assigned_client_identifier = 0x12,
    server_keep_alive = 0x13,
    authentication_method = 0x15,
    authentication_data = 0x16,
    request_problem_information = 0x17,
    will_delay_interval = 0x18,
    request_response_information = 0x19,
    response_information = 0x1A,
    server_reference = 0x1C,
    reason_string = 0x1F,
    receive_maximum = 0x21,
    topic_alias_maximum = 0x22,
    topic_alias = 0x23,
    maximum_qos = 0x24,
    retain_available = 0x25,
    user_property = 0x26,
    maximum_packet_size = 0x27,
    wildcard_subscription_available = 0x28,
    subscription_identifier_available = 0x29,
    shared_subscription_available = 0x2A,
};

enum class property_type : std::uint8_t {
    byte,
    two_byte_int,
    four_byte_int,
    variable_int,
    utf8_string,
    binary_data,
    utf8_string_pair,
};

// Where a property may appear: the packet types, plus the Will Properties of CONNECT,
// which have their own set (§3.1.3.2).
enum class property_context : std::uint8_t {
    connect = 1,
    connack,
    publish,
    puback,
    pubrec,
    pubrel,
    pubcomp,
    subscribe,
    suback,
    unsubscribe,
    unsuback,
    disconnect = 14,
    auth = 15,
    will = 16,
};

constexpr property_context context_of(packet_type t) noexcept {
    return static_cast<property_context>(static_cast<std::uint8_t>(t));
}

struct property_info {
    property_id id;
    property_type type;
    std::string_view name;   // snake case, as in JSON output
    std::uint32_t contexts;  // bit (1 << property_context)
    bool repeatable;         // User Property; Subscription Identifier in PUBLISH
};

// The table of §2.2.2.2; nullptr for an identifier MQTT 5.0 does not define.
const property_info* find_property(std::uint8_t id) noexcept;
const property_info* find_property(std::string_view name) noexcept;
bool is_allowed_in(property_id id, property_context ctx) noexcept;

using user_property = std::pair<std::string, std::string>;

// The properties of one packet, as named fields: absent is std::nullopt. Binary Data
// is held in std::string as bytes. One struct serves every packet type; the codec
// rejects (decode) or refuses (encode) properties the packet type may not carry.
struct properties {
    std::optional<std::uint8_t> payload_format_indicator;
    std::optional<std::uint32_t> message_expiry_interval;
    std::optional<std::string> content_type;
    std::optional<std::string> response_topic;
    std::optional<std::string> correlation_data;
    // Several only in PUBLISH sent to a client (one per matching subscription).
    std::vector<std::uint32_t> subscription_identifiers;
    std::optional<std::uint32_t> session_expiry_interval;
    std::optional<std::string> assigned_client_identifier;
    std::optional<std::uint16_t> server_keep_alive;
    std::optional<std::string> authentication_method;
    std::optional<std::string> authentication_data;
    std::optional<std::uint8_t> request_problem_information;
    std::optional<std::uint32_t> will_delay_interval;
    std::optional<std::uint8_t> request_response_information;
    std::optional<std::string> response_information;
    std::optional<std::string> server_reference;
    std::optional<std::string> reason_string;
    std::optional<std::uint16_t> receive_maximum;
    std::optional<std::uint16_t> topic_alias_maximum;
    std::optional<std::uint16_t> topic_alias;
    std::optional<std::uint8_t> maximum_qos;
    std::optional<std::uint8_t> retain_available;
    std::vector<user_property> user_properties;  // order is significant (§3.3.2.3.7)
    std::optional<std::uint32_t> maximum_packet_size;
    std::optional<std::uint8_t> wildcard_subscription_available;
    std::optional<std::uint8_t> subscription_identifier_available;
    std::optional<std::uint8_t> shared_subscription_available;

    bool empty() const noexcept;
    // Back to no properties, keeping the vectors' memory.
    void clear() noexcept;
    bool operator==(const properties&) const = default;
};

}  // namespace mqtt::protocol
