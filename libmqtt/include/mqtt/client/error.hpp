#pragma once

#include <string_view>
#include <system_error>

namespace mqtt::client {

// Local failures of a client connection, in the "mqtt.client" category. What the broker
// said (a CONNACK or DISCONNECT reason code) travels next to it as a protocol::reason_code.
enum class errc {
    not_connected = 1,       // publish/subscribe before CONNACK or after the end
    connect_timeout,         // no CONNACK in time
    connection_refused,      // CONNACK with an error code: see the reason code
    keep_alive_timeout,      // no PINGRESP within the keep-alive after a PINGREQ
    connection_closed,       // the broker closed the connection without DISCONNECT
    disconnected_by_server,  // DISCONNECT from the broker (MQTT 5.0): see the reason code
    protocol_violation,      // a packet the broker may not send in this state
    no_packet_id_available,  // 65535 packet identifiers in use
    invalid_topic_name,
    invalid_topic_filter,
    qos_not_supported,     // above the broker's Maximum QoS
    retain_not_supported,  // the broker said Retain Available 0
    packet_too_large,      // above the broker's Maximum Packet Size
    topic_alias_invalid,   // 0 or above the broker's Topic Alias Maximum
    tls_failed,            // TLS set-up or handshake: see connection::transport_error()
    websocket_failed,      // WebSocket (and wss: TLS) handshake: see transport_error()
    invalid_property,      // a string property that is not well-formed UTF-8 (MQTT-1.5.4-1)
};

const std::error_category& client_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), client_category()};
}

}  // namespace mqtt::client

template <>
struct std::is_error_code_enum<mqtt::client::errc> : std::true_type {};
