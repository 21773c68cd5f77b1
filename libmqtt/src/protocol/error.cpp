#include "mqtt/error.hpp"

#include <string>

#include "mqtt/protocol/errors.hpp"

namespace mqtt {
namespace {

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::remaining_length_too_long: return "remaining length longer than 4 bytes";
        case errc::non_minimal_variable_int: return "variable byte integer not in shortest form";
        case errc::variable_int_too_long: return "variable byte integer longer than 4 bytes";
        case errc::packet_too_large: return "packet too large";
        case errc::reserved_packet_type: return "reserved packet type";
        case errc::invalid_fixed_header_flags: return "invalid fixed header flags";
        case errc::unexpected_packet_type: return "unexpected packet type";
        case errc::truncated_packet: return "packet shorter than its fields";
        case errc::trailing_bytes: return "unexpected bytes after the last field";
        case errc::invalid_utf8: return "ill-formed UTF-8 string";
        case errc::utf8_null_character: return "UTF-8 string contains U+0000";
        case errc::invalid_qos: return "QoS 3 is not a valid QoS";
        case errc::dup_with_qos0: return "DUP flag set on a QoS 0 PUBLISH";
        case errc::zero_packet_identifier: return "packet identifier 0";
        case errc::invalid_protocol_name: return "unknown protocol name";
        case errc::unsupported_protocol_version: return "unsupported protocol version";
        case errc::reserved_connect_flag: return "reserved connect flag set";
        case errc::will_flags_without_will: return "will QoS or will retain set without a will";
        case errc::password_without_username: return "password flag set without user name flag";
        case errc::invalid_connack_flags: return "invalid CONNACK flags";
        case errc::topic_name_has_wildcard: return "wildcard in a topic name";
        case errc::empty_topic_name: return "empty topic name";
        case errc::topic_name_and_alias_missing: return "empty topic name and no topic alias";
        case errc::topic_alias_zero: return "topic alias 0";
        case errc::empty_subscription_list: return "no topic filter in the packet";
        case errc::reserved_subscription_option_bits: return "reserved subscription option bits set";
        case errc::invalid_retain_handling: return "retain handling 3";
        case errc::no_local_on_shared_subscription: return "no local on a shared subscription";
        case errc::unknown_property: return "unknown property identifier";
        case errc::property_not_allowed: return "property not allowed in this packet";
        case errc::duplicate_property: return "property included more than once";
        case errc::invalid_property_value: return "invalid property value";
        case errc::invalid_reason_code: return "reason code not allowed in this packet";
        case errc::missing_authentication_method: return "authentication without a method";
        case errc::payload_format_invalid: return "payload is not UTF-8 as its format says";
        case errc::string_too_long: return "string longer than 65535 bytes";
    }
    return "unknown mqtt error";
}

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "mqtt"; }
    std::string message(int ev) const override { return describe(static_cast<errc>(ev)); }
};

}  // namespace

std::string_view to_string(errc e) noexcept {
    switch (e) {
        case errc::remaining_length_too_long: return "remaining_length_too_long";
        case errc::non_minimal_variable_int: return "non_minimal_variable_int";
        case errc::variable_int_too_long: return "variable_int_too_long";
        case errc::packet_too_large: return "packet_too_large";
        case errc::reserved_packet_type: return "reserved_packet_type";
        case errc::invalid_fixed_header_flags: return "invalid_fixed_header_flags";
        case errc::unexpected_packet_type: return "unexpected_packet_type";
        case errc::truncated_packet: return "truncated_packet";
        case errc::trailing_bytes: return "trailing_bytes";
        case errc::invalid_utf8: return "invalid_utf8";
        case errc::utf8_null_character: return "utf8_null_character";
        case errc::invalid_qos: return "invalid_qos";
        case errc::dup_with_qos0: return "dup_with_qos0";
        case errc::zero_packet_identifier: return "zero_packet_identifier";
        case errc::invalid_protocol_name: return "invalid_protocol_name";
        case errc::unsupported_protocol_version: return "unsupported_protocol_version";
        case errc::reserved_connect_flag: return "reserved_connect_flag";
        case errc::will_flags_without_will: return "will_flags_without_will";
        case errc::password_without_username: return "password_without_username";
        case errc::invalid_connack_flags: return "invalid_connack_flags";
        case errc::topic_name_has_wildcard: return "topic_name_has_wildcard";
        case errc::empty_topic_name: return "empty_topic_name";
        case errc::topic_name_and_alias_missing: return "topic_name_and_alias_missing";
        case errc::topic_alias_zero: return "topic_alias_zero";
        case errc::empty_subscription_list: return "empty_subscription_list";
        case errc::reserved_subscription_option_bits: return "reserved_subscription_option_bits";
        case errc::invalid_retain_handling: return "invalid_retain_handling";
        case errc::no_local_on_shared_subscription: return "no_local_on_shared_subscription";
        case errc::unknown_property: return "unknown_property";
        case errc::property_not_allowed: return "property_not_allowed";
        case errc::duplicate_property: return "duplicate_property";
        case errc::invalid_property_value: return "invalid_property_value";
        case errc::invalid_reason_code: return "invalid_reason_code";
        case errc::missing_authentication_method: return "missing_authentication_method";
        case errc::payload_format_invalid: return "payload_format_invalid";
        case errc::string_too_long: return "string_too_long";
    }
    return "unknown";
}

const std::error_category& mqtt_category() noexcept {
    static const category instance;
    return instance;
}

namespace protocol {

reason_code to_reason_code(std::error_code ec) noexcept {
    if (!ec) return reason_code::success;
    if (ec.category() != mqtt_category()) return reason_code::unspecified_error;
    switch (static_cast<errc>(ec.value())) {
        case errc::packet_too_large: return reason_code::packet_too_large;
        case errc::unsupported_protocol_version: return reason_code::unsupported_protocol_version;
        case errc::topic_name_has_wildcard:
        case errc::empty_topic_name: return reason_code::topic_name_invalid;
        case errc::topic_alias_zero: return reason_code::topic_alias_invalid;
        case errc::payload_format_invalid: return reason_code::payload_format_invalid;
        case errc::invalid_protocol_name:
        case errc::zero_packet_identifier:
        case errc::topic_name_and_alias_missing:
        case errc::empty_subscription_list:
        case errc::invalid_retain_handling:
        case errc::no_local_on_shared_subscription:
        case errc::property_not_allowed:
        case errc::duplicate_property:
        case errc::invalid_property_value:
        case errc::invalid_reason_code:
        case errc::missing_authentication_method:
        case errc::unexpected_packet_type: return reason_code::protocol_error;
        default: return reason_code::malformed_packet;
    }
}

}  // namespace protocol
}  // namespace mqtt
