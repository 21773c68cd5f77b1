#pragma once

#include <string_view>
#include <system_error>

namespace mqtt {

// Local failures, in the "mqtt" error category. One value per distinct violation so that
// tests, logs and the reason code sent back can tell them apart. Wire values are
// mqtt::protocol::reason_code; protocol::to_reason_code(errc) maps one onto the other.
enum class errc {
    // framing
    remaining_length_too_long = 1,  // more than 4 bytes of Remaining Length (§2.2.3)
    non_minimal_variable_int,       // a Variable Byte Integer not in its shortest form
    variable_int_too_long,          // any other Variable Byte Integer past 4 bytes
    packet_too_large,               // larger than the maximum packet size in force
    reserved_packet_type,           // type 0, or 15 (AUTH) before MQTT 5.0
    invalid_fixed_header_flags,     // flag bits other than the ones the type defines
    unexpected_packet_type,         // e.g. CONNECT decoded as something else
    // fields
    truncated_packet,  // a field runs past the Remaining Length
    trailing_bytes,    // bytes left after the last field of a packet of fixed shape
    invalid_utf8,      // ill-formed UTF-8: overlong, surrogate, > U+10FFFF, bad sequence
    utf8_null_character,  // U+0000 in a UTF-8 string
    invalid_qos,          // QoS 3
    dup_with_qos0,        // DUP set on a QoS 0 PUBLISH
    zero_packet_identifier,
    // CONNECT / CONNACK
    invalid_protocol_name,
    unsupported_protocol_version,
    reserved_connect_flag,     // bit 0 of the Connect Flags set
    will_flags_without_will,   // Will QoS or Will Retain set without the Will Flag
    password_without_username, // forbidden in 3.1 / 3.1.1
    invalid_connack_flags,     // reserved bits of the Connect Acknowledge Flags set
    // topics and subscriptions
    topic_name_has_wildcard,
    empty_topic_name,               // zero-length topic before MQTT 5.0
    topic_name_and_alias_missing,   // MQTT 5.0: zero-length topic and no Topic Alias
    topic_alias_zero,
    empty_subscription_list,        // SUBSCRIBE or UNSUBSCRIBE with no topic filter
    reserved_subscription_option_bits,
    invalid_retain_handling,        // Retain Handling 3
    no_local_on_shared_subscription,
    // properties and reason codes (MQTT 5.0)
    unknown_property,
    property_not_allowed,  // a property the packet type may not carry
    duplicate_property,
    invalid_property_value,  // e.g. Receive Maximum 0, a boolean that is not 0 or 1
    invalid_reason_code,     // a reason code this packet type may not carry
    missing_authentication_method,  // AUTH, or Authentication Data, without a method
    payload_format_invalid,  // Payload Format Indicator 1 with a payload that is not UTF-8
    // encoding
    string_too_long,  // a string or binary field over 65,535 bytes
};

const std::error_category& mqtt_category() noexcept;

// The enumerator's name ("invalid_qos"), for JSON output and test vectors.
std::string_view to_string(errc e) noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), mqtt_category()};
}

}  // namespace mqtt

template <>
struct std::is_error_code_enum<mqtt::errc> : std::true_type {};
