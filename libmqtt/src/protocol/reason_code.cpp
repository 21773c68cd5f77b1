#include "mqtt/protocol/reason_code.hpp"

#include <initializer_list>

namespace mqtt::protocol {
namespace {

using pt = packet_type;

constexpr std::uint16_t in(std::initializer_list<pt> types) {
    std::uint16_t b = 0;
    for (auto t : types) b |= static_cast<std::uint16_t>(1u << static_cast<unsigned>(t));
    return b;
}

struct code_info {
    reason_code code;
    std::string_view name;
    std::uint16_t packets;
};

// §2.4, Table 2-6: each code and the packets that may carry it.
constexpr code_info codes[] = {
    {reason_code::success, "success",
     in({pt::connack, pt::puback, pt::pubrec, pt::pubrel, pt::pubcomp, pt::unsuback, pt::auth,
         pt::disconnect, pt::suback})},
    {reason_code::granted_qos_1, "granted_qos_1", in({pt::suback})},
    {reason_code::granted_qos_2, "granted_qos_2", in({pt::suback})},
    {reason_code::disconnect_with_will_message, "disconnect_with_will_message",
     in({pt::disconnect})},
    {reason_code::no_matching_subscribers, "no_matching_subscribers", in({pt::puback, pt::pubrec})},
    {reason_code::no_subscription_existed, "no_subscription_existed", in({pt::unsuback})},
    {reason_code::continue_authentication, "continue_authentication", in({pt::auth})},
    {reason_code::re_authenticate, "re_authenticate", in({pt::auth})},
    {reason_code::unspecified_error, "unspecified_error",
     in({pt::connack, pt::puback, pt::pubrec, pt::suback, pt::unsuback, pt::disconnect})},
    {reason_code::malformed_packet, "malformed_packet", in({pt::connack, pt::disconnect})},
    {reason_code::protocol_error, "protocol_error", in({pt::connack, pt::disconnect})},
    {reason_code::implementation_specific_error, "implementation_specific_error",
     in({pt::connack, pt::puback, pt::pubrec, pt::suback, pt::unsuback, pt::disconnect})},
    {reason_code::unsupported_protocol_version, "unsupported_protocol_version", in({pt::connack})},
    {reason_code::client_identifier_not_valid, "client_identifier_not_valid", in({pt::connack})},
    {reason_code::bad_user_name_or_password, "bad_user_name_or_password", in({pt::connack})},
    {reason_code::not_authorized, "not_authorized",
     in({pt::connack, pt::puback, pt::pubrec, pt::suback, pt::unsuback, pt::disconnect})},
    {reason_code::server_unavailable, "server_unavailable", in({pt::connack})},
    {reason_code::server_busy, "server_busy", in({pt::connack, pt::disconnect})},
    {reason_code::banned, "banned", in({pt::connack})},
    {reason_code::server_shutting_down, "server_shutting_down", in({pt::disconnect})},
    // Table 2-6 also lists DISCONNECT, but the DISCONNECT table (§3.14.2.1), which
    // MQTT-3.14.2-1 makes normative, does not.
    {reason_code::bad_authentication_method, "bad_authentication_method", in({pt::connack})},
    {reason_code::keep_alive_timeout, "keep_alive_timeout", in({pt::disconnect})},
    {reason_code::session_taken_over, "session_taken_over", in({pt::disconnect})},
    {reason_code::topic_filter_invalid, "topic_filter_invalid",
     in({pt::suback, pt::unsuback, pt::disconnect})},
    {reason_code::topic_name_invalid, "topic_name_invalid",
     in({pt::connack, pt::puback, pt::pubrec, pt::disconnect})},
    {reason_code::packet_identifier_in_use, "packet_identifier_in_use",
     in({pt::puback, pt::pubrec, pt::suback, pt::unsuback})},
    {reason_code::packet_identifier_not_found, "packet_identifier_not_found",
     in({pt::pubrel, pt::pubcomp})},
    {reason_code::receive_maximum_exceeded, "receive_maximum_exceeded", in({pt::disconnect})},
    {reason_code::topic_alias_invalid, "topic_alias_invalid", in({pt::disconnect})},
    {reason_code::packet_too_large, "packet_too_large", in({pt::connack, pt::disconnect})},
    {reason_code::message_rate_too_high, "message_rate_too_high", in({pt::disconnect})},
    {reason_code::quota_exceeded, "quota_exceeded",
     in({pt::connack, pt::puback, pt::pubrec, pt::suback, pt::disconnect})},
    {reason_code::administrative_action, "administrative_action", in({pt::disconnect})},
    {reason_code::payload_format_invalid, "payload_format_invalid",
     in({pt::connack, pt::puback, pt::pubrec, pt::disconnect})},
    {reason_code::retain_not_supported, "retain_not_supported", in({pt::connack, pt::disconnect})},
    {reason_code::qos_not_supported, "qos_not_supported", in({pt::connack, pt::disconnect})},
    {reason_code::use_another_server, "use_another_server", in({pt::connack, pt::disconnect})},
    {reason_code::server_moved, "server_moved", in({pt::connack, pt::disconnect})},
    {reason_code::shared_subscriptions_not_supported, "shared_subscriptions_not_supported",
     in({pt::suback, pt::disconnect})},
    {reason_code::connection_rate_exceeded, "connection_rate_exceeded",
     in({pt::connack, pt::disconnect})},
    {reason_code::maximum_connect_time, "maximum_connect_time", in({pt::disconnect})},
    {reason_code::subscription_identifiers_not_supported, "subscription_identifiers_not_supported",
     in({pt::suback, pt::disconnect})},
    {reason_code::wildcard_subscriptions_not_supported, "wildcard_subscriptions_not_supported",
     in({pt::suback, pt::disconnect})},
};

const code_info* find(reason_code rc) noexcept {
    for (const auto& c : codes)
        if (c.code == rc) return &c;
    return nullptr;
}

}  // namespace

std::string_view to_string(reason_code rc) noexcept {
    const auto* c = find(rc);
    return c ? c->name : "unknown_reason_code";
}

bool is_allowed_in(reason_code rc, packet_type type) noexcept {
    const auto* c = find(rc);
    return c && (c->packets & (1u << static_cast<unsigned>(type))) != 0;
}

connect_return_code to_connect_return_code(reason_code rc) noexcept {
    switch (rc) {
        case reason_code::success: return connect_return_code::accepted;
        case reason_code::unsupported_protocol_version:
            return connect_return_code::unacceptable_protocol_version;
        case reason_code::client_identifier_not_valid:
            return connect_return_code::identifier_rejected;
        case reason_code::bad_user_name_or_password:
        case reason_code::bad_authentication_method:
            return connect_return_code::bad_user_name_or_password;
        case reason_code::not_authorized:
        case reason_code::banned: return connect_return_code::not_authorized;
        default: return connect_return_code::server_unavailable;
    }
}

reason_code to_reason_code(connect_return_code rc) noexcept {
    switch (rc) {
        case connect_return_code::accepted: return reason_code::success;
        case connect_return_code::unacceptable_protocol_version:
            return reason_code::unsupported_protocol_version;
        case connect_return_code::identifier_rejected:
            return reason_code::client_identifier_not_valid;
        case connect_return_code::server_unavailable: return reason_code::server_unavailable;
        case connect_return_code::bad_user_name_or_password:
            return reason_code::bad_user_name_or_password;
        case connect_return_code::not_authorized: return reason_code::not_authorized;
    }
    return reason_code::unspecified_error;
}

}  // namespace mqtt::protocol
