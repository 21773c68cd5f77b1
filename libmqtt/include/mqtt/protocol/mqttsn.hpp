#pragma once

// MQTT-SN 1.2: messages as plain structs, the codec (exact size, then one write; decoding
// from a datagram with a bounds-checked reader) and its errors. Sans-I/O like the MQTT
// core: one datagram in, one message out, nothing thrown on peer input.
//
// A datagram is exactly one message: Length (1 octet, or 0x01 and 2 octets), MsgType,
// then the fields of the type. The Length counts the whole message, header included, and
// must equal the datagram's size. The forwarder encapsulation (0xFE) wraps one message.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "mqtt/result.hpp"

namespace mqtt::protocol::mqttsn {

enum class msg_type : std::uint8_t {
    advertise = 0x00,
    searchgw = 0x01,
    gwinfo = 0x02,
    connect = 0x04,
    connack = 0x05,
    willtopicreq = 0x06,
    willtopic = 0x07,
    willmsgreq = 0x08,
    willmsg = 0x09,
    register_ = 0x0A,
    regack = 0x0B,
    publish = 0x0C,
    puback = 0x0D,
    pubcomp = 0x0E,
    pubrec = 0x0F,
    pubrel = 0x10,
    subscribe = 0x12,
    suback = 0x13,
    unsubscribe = 0x14,
    unsuback = 0x15,
    pingreq = 0x16,
    pingresp = 0x17,
    disconnect = 0x18,
    willtopicupd = 0x1A,
    willtopicresp = 0x1B,
    willmsgupd = 0x1C,
    willmsgresp = 0x1D,
    encapsulated = 0xFE,
};

// QoS of the Flags field (bits 6-5). minus_one (0b11) is "QoS -1": a PUBLISH from a
// client without a connection, to a predefined topic id or a short topic name.
enum class qos : std::uint8_t { at_most_once = 0, at_least_once = 1, exactly_once = 2, minus_one = 3 };

// TopicIdType of the Flags field (bits 1-0); 0b11 is reserved. In SUBSCRIBE and
// UNSUBSCRIBE, `normal` means the message carries a topic name (or filter).
enum class topic_id_type : std::uint8_t { normal = 0, predefined = 1, short_name = 2 };

enum class return_code : std::uint8_t {
    accepted = 0x00,
    congestion = 0x01,
    invalid_topic_id = 0x02,
    not_supported = 0x03,
};

// The Flags byte, bit by bit. Each message keeps the fields it uses; these are the
// encoding helpers, public for tests and for tools that print flags.
struct flags {
    bool dup = false;
    mqttsn::qos qos = qos::at_most_once;
    bool retain = false;
    bool will = false;
    bool clean_session = false;
    topic_id_type topic_type = topic_id_type::normal;
    bool operator==(const flags&) const = default;
};
std::uint8_t encode_flags(const flags& f) noexcept;
// Fails (errc::reserved_topic_id_type) only for TopicIdType 0b11; callers that do not use
// the TopicIdType bits ignore that.
result<flags> decode_flags(std::uint8_t byte) noexcept;

// A short topic name is two characters carried in the TopicId field.
constexpr std::uint16_t short_topic_id(char a, char b) noexcept {
    return static_cast<std::uint16_t>((static_cast<std::uint8_t>(a) << 8) | static_cast<std::uint8_t>(b));
}
std::string short_topic_name(std::uint16_t id);

struct advertise {
    std::uint8_t gw_id = 0;
    std::uint16_t duration = 0;  // seconds until the next ADVERTISE
    bool operator==(const advertise&) const = default;
};
struct searchgw {
    std::uint8_t radius = 0;
    bool operator==(const searchgw&) const = default;
};
struct gwinfo {
    std::uint8_t gw_id = 0;
    std::string gw_address;  // bytes; present only when a client answers for a gateway
    bool operator==(const gwinfo&) const = default;
};
struct connect {
    bool will = false;
    bool clean_session = true;
    std::uint16_t duration = 0;  // keep-alive, seconds
    std::string client_id;
    bool operator==(const connect&) const = default;
};
struct connack {
    return_code code = return_code::accepted;
    bool operator==(const connack&) const = default;
};
struct willtopicreq {
    bool operator==(const willtopicreq&) const = default;
};
// WILLTOPIC and WILLTOPICUPD. An empty topic is the two-octet form without Flags, which
// deletes the will.
struct willtopic {
    mqttsn::qos qos = qos::at_most_once;
    bool retain = false;
    std::string topic;
    bool operator==(const willtopic&) const = default;
};
struct willmsgreq {
    bool operator==(const willmsgreq&) const = default;
};
struct willmsg {
    std::string message;  // bytes
    bool operator==(const willmsg&) const = default;
};
// REGISTER ("register" is a keyword). A client sends topic_id 0.
struct register_ {
    std::uint16_t topic_id = 0;
    std::uint16_t msg_id = 0;
    std::string topic_name;
    bool operator==(const register_&) const = default;
};
struct regack {
    std::uint16_t topic_id = 0;
    std::uint16_t msg_id = 0;
    return_code code = return_code::accepted;
    bool operator==(const regack&) const = default;
};
struct publish {
    bool dup = false;
    mqttsn::qos qos = qos::at_most_once;
    bool retain = false;
    topic_id_type topic_type = topic_id_type::normal;
    std::uint16_t topic_id = 0;  // or the two characters of a short topic name
    std::uint16_t msg_id = 0;    // 0 for QoS 0 and -1
    std::string data;
    bool operator==(const publish&) const = default;
};
struct puback {
    std::uint16_t topic_id = 0;
    std::uint16_t msg_id = 0;
    return_code code = return_code::accepted;
    bool operator==(const puback&) const = default;
};
struct pubrec {
    std::uint16_t msg_id = 0;
    bool operator==(const pubrec&) const = default;
};
struct pubrel {
    std::uint16_t msg_id = 0;
    bool operator==(const pubrel&) const = default;
};
struct pubcomp {
    std::uint16_t msg_id = 0;
    bool operator==(const pubcomp&) const = default;
};
// SUBSCRIBE: topic_type normal carries topic_name (a filter, wildcards allowed);
// predefined and short_name carry topic_id.
struct subscribe {
    bool dup = false;
    mqttsn::qos qos = qos::at_most_once;
    topic_id_type topic_type = topic_id_type::normal;
    std::uint16_t msg_id = 0;
    std::string topic_name;
    std::uint16_t topic_id = 0;
    bool operator==(const subscribe&) const = default;
};
struct suback {
    mqttsn::qos qos = qos::at_most_once;  // granted
    std::uint16_t topic_id = 0;
    std::uint16_t msg_id = 0;
    return_code code = return_code::accepted;
    bool operator==(const suback&) const = default;
};
struct unsubscribe {
    topic_id_type topic_type = topic_id_type::normal;
    std::uint16_t msg_id = 0;
    std::string topic_name;
    std::uint16_t topic_id = 0;
    bool operator==(const unsubscribe&) const = default;
};
struct unsuback {
    std::uint16_t msg_id = 0;
    bool operator==(const unsuback&) const = default;
};
struct pingreq {
    std::string client_id;  // empty: absent (an awake client says nothing)
    bool operator==(const pingreq&) const = default;
};
struct pingresp {
    bool operator==(const pingresp&) const = default;
};
struct disconnect {
    std::optional<std::uint16_t> duration;  // present: the client goes to sleep
    bool operator==(const disconnect&) const = default;
};
struct willtopicupd {
    mqttsn::qos qos = qos::at_most_once;
    bool retain = false;
    std::string topic;  // empty: delete the will
    bool operator==(const willtopicupd&) const = default;
};
struct willtopicresp {
    return_code code = return_code::accepted;
    bool operator==(const willtopicresp&) const = default;
};
struct willmsgupd {
    std::string message;
    bool operator==(const willmsgupd&) const = default;
};
struct willmsgresp {
    return_code code = return_code::accepted;
    bool operator==(const willmsgresp&) const = default;
};
// A message relayed by a forwarder: the Ctrl octet's radius (bits 1-0), the wireless
// node's id (bytes), and the encapsulated message's datagram, which the decoder has
// checked decodes (decode() it again to use it). Encapsulations do not nest.
struct encapsulated {
    std::uint8_t radius = 0;
    std::string wireless_node_id;
    std::vector<std::uint8_t> inner;
    bool operator==(const encapsulated&) const = default;
};

using message = std::variant<advertise, searchgw, gwinfo, connect, connack, willtopicreq, willtopic,
                             willmsgreq, willmsg, register_, regack, publish, puback, pubrec, pubrel,
                             pubcomp, subscribe, suback, unsubscribe, unsuback, pingreq, pingresp,
                             disconnect, willtopicupd, willtopicresp, willmsgupd, willmsgresp,
                             encapsulated>;

msg_type type_of(const message& m) noexcept;
std::string_view to_string(msg_type t) noexcept;
std::string_view to_string(return_code c) noexcept;

// The largest message: the 3-octet Length field holds at most 65,535.
inline constexpr std::size_t max_message_size = 65535;

// One message from one datagram. Fails for anything malformed; never reads past the span.
result<message> decode(std::span<const std::uint8_t> datagram);

// Encoding: the exact size (fails with message_too_large past 65,535 octets, or for a
// field out of range), then one write of exactly that many octets.
result<std::size_t> encoded_size(const message& m);
void encode_into(const message& m, std::span<std::uint8_t> out);
result<std::vector<std::uint8_t>> encode(const message& m);

// Local failures of the MQTT-SN codec, in the "mqttsn" category.
enum class errc {
    datagram_too_short = 1,     // fewer octets than a Length and a MsgType
    invalid_length,             // a Length below the header's own size
    length_mismatch,            // Length differs from the datagram's size
    unknown_message_type,       // a reserved MsgType
    truncated_message,          // a field runs past the Length
    trailing_bytes,             // octets after the last field of a fixed-size message
    invalid_protocol_id,        // CONNECT ProtocolId other than 0x01
    reserved_topic_id_type,     // TopicIdType 0b11 where the type is used
    invalid_return_code,        // a reserved ReturnCode (0x04..0xFF)
    invalid_topic_name,         // empty, a wildcard, U+0000 or ill-formed UTF-8
    invalid_topic_filter,       // SUBSCRIBE / UNSUBSCRIBE topic name that is no filter
    will_flags_without_topic,   // WILLTOPIC(UPD) with Flags but no topic
    nested_encapsulation,       // an encapsulated message that is itself encapsulated
    message_too_large,          // encoding: more than 65,535 octets
    invalid_field,              // encoding: a value its field cannot carry
};
const std::error_category& mqttsn_category() noexcept;
std::string_view to_string(errc e) noexcept;
inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), mqttsn_category()};
}

}  // namespace mqtt::protocol::mqttsn

template <>
struct std::is_error_code_enum<mqtt::protocol::mqttsn::errc> : std::true_type {};
