#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mqtt/protocol/property.hpp"
#include "mqtt/protocol/reason_code.hpp"
#include "mqtt/protocol/types.hpp"

namespace mqtt::protocol {

// One struct per control packet, shared by MQTT 3.1, 3.1.1 and 5.0. Fields a version
// lacks (properties, reason codes before 5.0) are ignored when encoding for it and left
// at their defaults when decoding. Binary fields (payloads, passwords) are bytes in
// std::string.

struct will_message {
    std::string topic;
    std::string payload;
    qos qos_level = qos::at_most_once;
    bool retain = false;
    properties props;  // Will Properties (5.0)
    bool operator==(const will_message&) const = default;
};

struct connect_packet {
    protocol_version version = protocol_version::v5;
    bool clean_start = true;  // Clean Session in 3.1 / 3.1.1
    std::uint16_t keep_alive = 60;
    std::string client_id;
    std::optional<std::string> username;
    std::optional<std::string> password;
    std::optional<will_message> will;
    properties props;
    // MQTT 3.1/3.1.1 only: the top bit of the protocol level (0x83, 0x84), by which a
    // broker's bridge announces itself (Mosquitto's try_private option). 0x85 decodes as 5.0
    // without it (a 5.0 bridge asks for No Local itself).
    bool bridge = false;
    bool operator==(const connect_packet&) const = default;
};

struct connack_packet {
    bool session_present = false;
    // 5.0 Reason Code; before 5.0 the return code, through to_connect_return_code.
    reason_code code = reason_code::success;
    properties props;
    bool operator==(const connack_packet&) const = default;
};

struct publish_packet {
    std::string topic;
    std::string payload;
    qos qos_level = qos::at_most_once;
    bool retain = false;
    bool dup = false;
    std::uint16_t packet_id = 0;  // present on the wire only for QoS 1 and 2
    properties props;
    bool operator==(const publish_packet&) const = default;
};

// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape (§3.4 to §3.7).
struct puback_packet {
    std::uint16_t packet_id = 0;
    reason_code code = reason_code::success;
    properties props;
    bool operator==(const puback_packet&) const = default;
};
struct pubrec_packet {
    std::uint16_t packet_id = 0;
    reason_code code = reason_code::success;
    properties props;
    bool operator==(const pubrec_packet&) const = default;
};
struct pubrel_packet {
    std::uint16_t packet_id = 0;
    reason_code code = reason_code::success;
    properties props;
    bool operator==(const pubrel_packet&) const = default;
};
struct pubcomp_packet {
    std::uint16_t packet_id = 0;
    reason_code code = reason_code::success;
    properties props;
    bool operator==(const pubcomp_packet&) const = default;
};

enum class retain_handling : std::uint8_t {
    send_on_subscribe = 0,
    send_if_new_subscription = 1,
    do_not_send = 2,
};

// The Subscription Options byte (§3.8.3.1); before 5.0 only the QoS bits exist.
struct subscription_options {
    qos max_qos = qos::at_most_once;
    bool no_local = false;
    bool retain_as_published = false;
    retain_handling retain = retain_handling::send_on_subscribe;
    bool operator==(const subscription_options&) const = default;
};

struct subscription {
    std::string filter;
    subscription_options options;
    bool operator==(const subscription&) const = default;
};

struct subscribe_packet {
    std::uint16_t packet_id = 0;
    std::vector<subscription> subscriptions;
    properties props;
    bool operator==(const subscribe_packet&) const = default;
};

struct suback_packet {
    std::uint16_t packet_id = 0;
    // One per filter. Before 5.0: granted_qos_0..2 (success..granted_qos_2) or
    // unspecified_error, which is the 3.1.1 failure code 0x80.
    std::vector<reason_code> codes;
    properties props;
    bool operator==(const suback_packet&) const = default;
};

struct unsubscribe_packet {
    std::uint16_t packet_id = 0;
    std::vector<std::string> filters;
    properties props;
    bool operator==(const unsubscribe_packet&) const = default;
};

struct unsuback_packet {
    std::uint16_t packet_id = 0;
    std::vector<reason_code> codes;  // 5.0 only; empty before
    properties props;
    bool operator==(const unsuback_packet&) const = default;
};

struct pingreq_packet {
    bool operator==(const pingreq_packet&) const = default;
};
struct pingresp_packet {
    bool operator==(const pingresp_packet&) const = default;
};

struct disconnect_packet {
    reason_code code = reason_code::success;  // 5.0 only
    properties props;
    bool operator==(const disconnect_packet&) const = default;
};

struct auth_packet {  // 5.0 only
    reason_code code = reason_code::success;
    properties props;
    bool operator==(const auth_packet&) const = default;
};

// Alternatives are in packet type order, so index() + 1 is the packet type value.
using packet = std::variant<connect_packet, connack_packet, publish_packet, puback_packet,
                            pubrec_packet, pubrel_packet, pubcomp_packet, subscribe_packet,
                            suback_packet, unsubscribe_packet, unsuback_packet, pingreq_packet,
                            pingresp_packet, disconnect_packet, auth_packet>;

constexpr packet_type type_of(const packet& p) noexcept {
    return static_cast<packet_type>(p.index() + 1);
}

}  // namespace mqtt::protocol
