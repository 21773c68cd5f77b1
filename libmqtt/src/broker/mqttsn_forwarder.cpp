// The forwarder encapsulation (MQTT-SN 1.2, 5.5) at the gateway: unwrapping what a
// forwarder relays and wrapping what goes back (see mqttsn_gateway.hpp).

#include "mqtt/broker/mqttsn_gateway.hpp"

namespace mqtt::broker {
namespace sn = protocol::mqttsn;

std::optional<mqttsn_envelope> mqttsn_open(std::span<const std::uint8_t> datagram) {
    // The MsgType follows a 1- or 3-octet Length; anything but 0xFE is the message itself
    // (the client's decoder judges it).
    const std::size_t header = !datagram.empty() && datagram[0] == 0x01 ? 4 : 2;
    const auto wrapped = static_cast<std::uint8_t>(sn::msg_type::encapsulated);
    if (datagram.size() < header || datagram[header - 1] != wrapped)
        return mqttsn_envelope{std::nullopt, datagram};
    auto m = sn::decode(datagram);  // checks the header and the wrapped message
    if (!m) return std::nullopt;
    auto* e = std::get_if<sn::encapsulated>(&*m);
    if (e == nullptr) return std::nullopt;
    // The Length covers the encapsulation header; the message follows it.
    const std::size_t length = header == 2 ? datagram[0] : (datagram[1] << 8) | datagram[2];
    return mqttsn_envelope{std::move(e->wireless_node_id), datagram.subspan(length)};
}

std::vector<std::uint8_t> mqttsn_wrap(const std::string& node,
                                      std::span<const std::uint8_t> message) {
    sn::encapsulated e;
    e.wireless_node_id = node;
    e.inner.assign(message.begin(), message.end());
    auto bytes = sn::encode(sn::message{std::move(e)});
    return bytes ? std::move(*bytes) : std::vector<std::uint8_t>{};
}

}  // namespace mqtt::broker
