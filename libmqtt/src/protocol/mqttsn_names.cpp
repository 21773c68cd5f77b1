// MQTT-SN names: message types, return codes and the codec's errors.

#include <string>

#include "mqtt/protocol/mqttsn.hpp"

namespace mqtt::protocol::mqttsn {
namespace {

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::datagram_too_short: return "datagram shorter than an MQTT-SN header";
        case errc::invalid_length: return "MQTT-SN Length smaller than its header";
        case errc::length_mismatch: return "MQTT-SN Length differs from the datagram size";
        case errc::unknown_message_type: return "reserved MQTT-SN message type";
        case errc::truncated_message: return "MQTT-SN field runs past the message";
        case errc::trailing_bytes: return "unexpected octets after the last MQTT-SN field";
        case errc::invalid_protocol_id: return "CONNECT ProtocolId is not 0x01";
        case errc::reserved_topic_id_type: return "reserved TopicIdType 0b11";
        case errc::invalid_return_code: return "reserved MQTT-SN ReturnCode";
        case errc::invalid_topic_name: return "invalid MQTT-SN topic name";
        case errc::invalid_topic_filter: return "invalid MQTT-SN topic filter";
        case errc::will_flags_without_topic: return "will Flags without a will topic";
        case errc::nested_encapsulation: return "encapsulated message encapsulated again";
        case errc::message_too_large: return "MQTT-SN message longer than 65535 octets";
        case errc::invalid_field: return "MQTT-SN field value out of range";
    }
    return "unknown mqttsn error";
}

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "mqttsn"; }
    std::string message(int ev) const override { return describe(static_cast<errc>(ev)); }
};

}  // namespace

const std::error_category& mqttsn_category() noexcept {
    static const category instance;
    return instance;
}

std::string_view to_string(errc e) noexcept {
    switch (e) {
        case errc::datagram_too_short: return "datagram_too_short";
        case errc::invalid_length: return "invalid_length";
        case errc::length_mismatch: return "length_mismatch";
        case errc::unknown_message_type: return "unknown_message_type";
        case errc::truncated_message: return "truncated_message";
        case errc::trailing_bytes: return "trailing_bytes";
        case errc::invalid_protocol_id: return "invalid_protocol_id";
        case errc::reserved_topic_id_type: return "reserved_topic_id_type";
        case errc::invalid_return_code: return "invalid_return_code";
        case errc::invalid_topic_name: return "invalid_topic_name";
        case errc::invalid_topic_filter: return "invalid_topic_filter";
        case errc::will_flags_without_topic: return "will_flags_without_topic";
        case errc::nested_encapsulation: return "nested_encapsulation";
        case errc::message_too_large: return "message_too_large";
        case errc::invalid_field: return "invalid_field";
    }
    return "unknown";
}

std::string_view to_string(msg_type t) noexcept {
    switch (t) {
        case msg_type::advertise: return "advertise";
        case msg_type::searchgw: return "searchgw";
        case msg_type::gwinfo: return "gwinfo";
        case msg_type::connect: return "connect";
        case msg_type::connack: return "connack";
        case msg_type::willtopicreq: return "willtopicreq";
        case msg_type::willtopic: return "willtopic";
        case msg_type::willmsgreq: return "willmsgreq";
        case msg_type::willmsg: return "willmsg";
        case msg_type::register_: return "register";
        case msg_type::regack: return "regack";
        case msg_type::publish: return "publish";
        case msg_type::puback: return "puback";
        case msg_type::pubcomp: return "pubcomp";
        case msg_type::pubrec: return "pubrec";
        case msg_type::pubrel: return "pubrel";
        case msg_type::subscribe: return "subscribe";
        case msg_type::suback: return "suback";
        case msg_type::unsubscribe: return "unsubscribe";
        case msg_type::unsuback: return "unsuback";
        case msg_type::pingreq: return "pingreq";
        case msg_type::pingresp: return "pingresp";
        case msg_type::disconnect: return "disconnect";
        case msg_type::willtopicupd: return "willtopicupd";
        case msg_type::willtopicresp: return "willtopicresp";
        case msg_type::willmsgupd: return "willmsgupd";
        case msg_type::willmsgresp: return "willmsgresp";
        case msg_type::encapsulated: return "encapsulated";
    }
    return "unknown";
}

std::string_view to_string(return_code c) noexcept {
    switch (c) {
        case return_code::accepted: return "accepted";
        case return_code::congestion: return "congestion";
        case return_code::invalid_topic_id: return "invalid_topic_id";
        case return_code::not_supported: return "not_supported";
    }
    return "reserved";
}

msg_type type_of(const message& m) noexcept {
    // The variant's alternatives are in this order.
    static constexpr msg_type types[] = {
        msg_type::advertise,    msg_type::searchgw,      msg_type::gwinfo,     msg_type::connect,
        msg_type::connack,      msg_type::willtopicreq,  msg_type::willtopic,  msg_type::willmsgreq,
        msg_type::willmsg,      msg_type::register_,     msg_type::regack,     msg_type::publish,
        msg_type::puback,       msg_type::pubrec,        msg_type::pubrel,     msg_type::pubcomp,
        msg_type::subscribe,    msg_type::suback,        msg_type::unsubscribe, msg_type::unsuback,
        msg_type::pingreq,      msg_type::pingresp,      msg_type::disconnect, msg_type::willtopicupd,
        msg_type::willtopicresp, msg_type::willmsgupd,   msg_type::willmsgresp, msg_type::encapsulated,
    };
    static_assert(std::size(types) == std::variant_size_v<message>);
    return types[m.index()];
}

}  // namespace mqtt::protocol::mqttsn
