#pragma once

#include <cstdint>
#include <string_view>

#include "mqtt/protocol/types.hpp"

namespace mqtt::protocol {

// Wire reason codes of MQTT 5.0 (§2.4). Kept apart from local errors (mqtt::errc):
// these are values a peer sends or receives.
enum class reason_code : std::uint8_t {
    success = 0x00,  // also: normal disconnection, granted QoS 0
    granted_qos_1 = 0x01,
    granted_qos_2 = 0x02,
    disconnect_with_will_message = 0x04,
    no_matching_subscribers = 0x10,
    no_subscription_existed = 0x11,
    continue_authentication = 0x18,
    re_authenticate = 0x19,
    unspecified_error = 0x80,
    malformed_packet = 0x81,
    protocol_error = 0x82,
    implementation_specific_error = 0x83,
    unsupported_protocol_version = 0x84,
    client_identifier_not_valid = 0x85,
    bad_user_name_or_password = 0x86,
    not_authorized = 0x87,
    server_unavailable = 0x88,
    server_busy = 0x89,
    banned = 0x8A,
    server_shutting_down = 0x8B,
    bad_authentication_method = 0x8C,
    keep_alive_timeout = 0x8D,
    session_taken_over = 0x8E,
    topic_filter_invalid = 0x8F,
    topic_name_invalid = 0x90,
    packet_identifier_in_use = 0x91,
    packet_identifier_not_found = 0x92,
    receive_maximum_exceeded = 0x93,
    topic_alias_invalid = 0x94,
    packet_too_large = 0x95,
    message_rate_too_high = 0x96,
    quota_exceeded = 0x97,
    administrative_action = 0x98,
    payload_format_invalid = 0x99,
    retain_not_supported = 0x9A,
    qos_not_supported = 0x9B,
    use_another_server = 0x9C,
    server_moved = 0x9D,
    shared_subscriptions_not_supported = 0x9E,
    connection_rate_exceeded = 0x9F,
    maximum_connect_time = 0xA0,
    subscription_identifiers_not_supported = 0xA1,
    wildcard_subscriptions_not_supported = 0xA2,
};

// CONNACK return codes of MQTT 3.1 and 3.1.1 (§3.2.2.3).
enum class connect_return_code : std::uint8_t {
    accepted = 0,
    unacceptable_protocol_version = 1,
    identifier_rejected = 2,
    server_unavailable = 3,
    bad_user_name_or_password = 4,
    not_authorized = 5,
};

constexpr bool is_error(reason_code rc) noexcept { return static_cast<std::uint8_t>(rc) >= 0x80; }

// The name the specification gives the code, in snake case ("malformed_packet").
std::string_view to_string(reason_code rc) noexcept;

// Whether the specification allows this reason code in this packet type (v5 table, §2.4).
bool is_allowed_in(reason_code rc, packet_type type) noexcept;
// The code itself where it is allowed in that packet type, else 0x80 Unspecified error.
inline reason_code allowed_or_unspecified(reason_code rc, packet_type type) noexcept {
    return is_allowed_in(rc, type) ? rc : reason_code::unspecified_error;
}

// CONNACK codes across versions: 3.1.1 return codes have fewer values (§3.2.2.3 vs §3.2.2.2).
connect_return_code to_connect_return_code(reason_code rc) noexcept;
reason_code to_reason_code(connect_return_code rc) noexcept;

}  // namespace mqtt::protocol
