#include "mqtt/client/error.hpp"

#include <string>

namespace mqtt::client {
namespace {

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::not_connected:
            return "not connected";
        case errc::connect_timeout:
            return "no CONNACK from the broker in time";
        case errc::connection_refused:
            return "the broker refused the connection";
        case errc::keep_alive_timeout:
            return "no PINGRESP from the broker within the keep-alive";
        case errc::connection_closed:
            return "the broker closed the connection";
        case errc::disconnected_by_server:
            return "the broker sent DISCONNECT";
        case errc::protocol_violation:
            return "the broker sent an unexpected packet";
        case errc::no_packet_id_available:
            return "no free packet identifier";
        case errc::invalid_topic_name:
            return "invalid topic name";
        case errc::invalid_topic_filter:
            return "invalid topic filter";
        case errc::qos_not_supported:
            return "QoS above the broker's maximum QoS";
        case errc::retain_not_supported:
            return "the broker does not support retained messages";
        case errc::packet_too_large:
            return "packet larger than the broker's maximum packet size";
        case errc::topic_alias_invalid:
            return "topic alias 0 or above the broker's topic alias maximum";
        case errc::tls_failed:
            return "TLS failed";
        case errc::websocket_failed:
            return "WebSocket handshake failed";
        case errc::invalid_property:
            return "a property that is not well-formed UTF-8";
    }
    return "unknown client error";
}

class category final : public std::error_category {
  public:
    const char* name() const noexcept override { return "mqtt.client"; }
    std::string message(int ev) const override { return describe(static_cast<errc>(ev)); }
};

}  // namespace

const std::error_category& client_category() noexcept {
    static const category c;
    return c;
}

}  // namespace mqtt::client
