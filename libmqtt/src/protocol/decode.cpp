#include <string_view>
#include <type_traits>

#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/utf8.hpp"
#include "properties_codec.hpp"
#include "wire.hpp"

namespace mqtt::protocol {
namespace {

using detail::reader;

using detail::has_wildcard;

// Payload Format Indicator 1 asks for well-formed UTF-8 (RFC 3629), which U+0000 is: only
// UTF-8 Encoded Strings exclude it (MQTT-1.5.4-2). So check the pieces between the NULs.
bool is_utf8_payload(std::string_view s) noexcept {
    for (;;) {
        const auto nul = s.find('\0');
        if (validate_utf8(s.substr(0, nul))) return false;
        if (nul == std::string_view::npos) return true;
        s.remove_prefix(nul + 1);
    }
}

bool read_packet_id(reader& r, std::uint16_t& id) {
    if (!r.u16(id)) return false;
    return id != 0 || r.fail(errc::zero_packet_identifier);  // MQTT-2.3.1-1
}

bool read_reason(reader& r, packet_type type, reason_code& out) {
    std::uint8_t b;
    if (!r.u8(b)) return false;
    out = static_cast<reason_code>(b);
    return is_allowed_in(out, type) || r.fail(errc::invalid_reason_code);
}

// Protocol Name and Level (§3.1.2.1, §3.1.2.2). A 3.1/3.1.1 level with its top bit set (0x83,
// 0x84) is the bridge extension: a broker's bridge announcing itself (`bridge`).
bool read_protocol(reader& r, protocol_version& version, bool& bridge) {
    std::string name;
    std::uint8_t level;
    if (!r.utf8(name) || !r.u8(level)) return false;
    bridge = (level & 0x80) != 0;
    level &= 0x7F;
    if (name == "MQTT") {
        if (level == 4 || level == 5) {
            version = static_cast<protocol_version>(level);
            // 0x85 is accepted as 5.0 (as Mosquitto does), without the flag: a 5.0 bridge
            // asks for No Local itself, and the encoder writes the bit before 5.0 only.
            if (level == 5) bridge = false;
            return true;
        }
        return r.fail(errc::unsupported_protocol_version);
    }
    if (name == "MQIsdp") {
        if (level == 3) {
            version = protocol_version::v3_1;
            return true;
        }
        return r.fail(errc::unsupported_protocol_version);
    }
    return r.fail(errc::invalid_protocol_name);
}

bool read_will_topic(reader& r, std::string& topic) {
    if (!r.utf8(topic)) return false;
    if (topic.empty()) return r.fail(errc::empty_topic_name);
    return !has_wildcard(topic) || r.fail(errc::topic_name_has_wildcard);
}

std::error_code decode_connect(reader& r, connect_packet& p) {
    std::uint8_t flags;
    if (!read_protocol(r, p.version, p.bridge) || !r.u8(flags) || !r.u16(p.keep_alive)) return r.error();
    const bool v5 = is_v5(p.version);
    const bool has_user = flags & 0x80, has_password = flags & 0x40, will_retain = flags & 0x20;
    const auto will_qos = static_cast<std::uint8_t>((flags >> 3) & 0x03);
    const bool has_will = flags & 0x04;
    p.clean_start = flags & 0x02;
    if (flags & 0x01) return errc::reserved_connect_flag;                            // 3.1.2-3
    if (!has_will && (will_qos != 0 || will_retain)) return errc::will_flags_without_will;
    if (will_qos == 3) return errc::invalid_qos;
    if (!v5 && has_password && !has_user) return errc::password_without_username;  // 3.1.2-22
    if (v5 && !detail::read_properties(r, property_context::connect, p.props)) return r.error();
    if (p.props.authentication_data && !p.props.authentication_method)  // §3.1.2.11.10
        return errc::missing_authentication_method;
    if (!r.utf8(p.client_id)) return r.error();
    if (has_will) {
        will_message w;
        w.qos_level = static_cast<qos>(will_qos);
        w.retain = will_retain;
        if (v5 && !detail::read_properties(r, property_context::will, w.props)) return r.error();
        if (!read_will_topic(r, w.topic) || !r.binary(w.payload)) return r.error();
        if (w.props.payload_format_indicator == 1 && !is_utf8_payload(w.payload))
            return errc::payload_format_invalid;
        p.will = std::move(w);
    }
    if (has_user && !r.utf8(p.username.emplace())) return r.error();
    if (has_password && !r.binary(p.password.emplace())) return r.error();
    if (!r.expect_end()) return r.error();
    return {};
}

std::error_code decode_connack(reader& r, protocol_version v, connack_packet& p) {
    std::uint8_t flags, code;
    if (!r.u8(flags) || !r.u8(code)) return r.error();
    if (flags & 0xFE) return errc::invalid_connack_flags;
    p.session_present = flags & 0x01;
    if (is_v5(v)) {
        p.code = static_cast<reason_code>(code);
        if (!is_allowed_in(p.code, packet_type::connack)) return errc::invalid_reason_code;
        if (!detail::read_properties(r, property_context::connack, p.props)) return r.error();
        if (p.props.authentication_data && !p.props.authentication_method)  // §3.2.2.3.18
            return errc::missing_authentication_method;
    } else {
        if (code > 5) return errc::invalid_reason_code;
        p.code = to_reason_code(static_cast<connect_return_code>(code));
    }
    // A refused connection has no session (MQTT-3.2.2-4 in 3.1.1, MQTT-3.2.2-6 in 5.0).
    if (p.session_present && p.code != reason_code::success) return errc::invalid_connack_flags;
    if (!r.expect_end()) return r.error();
    return {};
}

// Into a publish_packet (topic and payload copied) or a publish_view (both viewed).
template <class Publish>
std::error_code decode_publish(reader& r, std::uint8_t flags, protocol_version v, Publish& p) {
    p.dup = flags & 0x08;
    p.retain = flags & 0x01;
    const auto q = static_cast<std::uint8_t>((flags >> 1) & 0x03);
    if (q == 3) return errc::invalid_qos;                   // MQTT-3.3.1-4
    if (q == 0 && p.dup) return errc::dup_with_qos0;       // MQTT-3.3.1-2
    p.qos_level = static_cast<qos>(q);
    if (!r.utf8(p.topic)) return r.error();
    if (q != 0 && !read_packet_id(r, p.packet_id)) return r.error();
    if (is_v5(v)) {
        if constexpr (std::is_same_v<Publish, publish_view>) {
            p.has_props = true;  // until read: a failed read may have left some behind
            const std::uint8_t* block = r.position();
            if (!detail::read_properties(r, property_context::publish, p.props)) return r.error();
            p.props_block = {block, r.position()};
            p.has_props = p.props_block.size() > 1;  // more than Property Length 0
        } else if (!detail::read_properties(r, property_context::publish, p.props)) {
            return r.error();
        }
    }
    if (has_wildcard(p.topic)) return errc::topic_name_has_wildcard;  // MQTT-3.3.2-2
    if (p.topic.empty()) {
        if (!is_v5(v)) return errc::empty_topic_name;  // MQTT-4.7.3-1
        if (!p.props.topic_alias) return errc::topic_name_and_alias_missing;
    }
    r.rest(p.payload);
    if (p.props.payload_format_indicator == 1 && !is_utf8_payload(p.payload))
        return errc::payload_format_invalid;
    return {};
}

// PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4 to §3.7): in 5.0 the reason code and the
// properties may be left out when they are Success and empty.
template <class Ack>
std::error_code decode_ack(reader& r, packet_type type, protocol_version v, Ack& p) {
    if (!read_packet_id(r, p.packet_id)) return r.error();
    if (is_v5(v) && !r.at_end()) {
        if (!read_reason(r, type, p.code)) return r.error();
        if (!r.at_end() && !detail::read_properties(r, context_of(type), p.props))
            return r.error();
    }
    if (!r.expect_end()) return r.error();
    return {};
}

bool read_subscription_options(reader& r, protocol_version v, subscription& s) {
    std::uint8_t b;
    if (!r.u8(b)) return false;
    const std::uint8_t reserved = is_v5(v) ? 0xC0 : 0xFC;  // MQTT-3.8.3-5 / 3.1.1 MQTT-3.8.3-4
    if (b & reserved) return r.fail(errc::reserved_subscription_option_bits);
    if ((b & 0x03) == 3) return r.fail(errc::invalid_qos);
    s.options.max_qos = static_cast<qos>(b & 0x03);
    if (!is_v5(v)) return true;
    s.options.no_local = b & 0x04;
    s.options.retain_as_published = b & 0x08;
    const auto rh = static_cast<std::uint8_t>((b >> 4) & 0x03);
    if (rh == 3) return r.fail(errc::invalid_retain_handling);
    s.options.retain = static_cast<retain_handling>(rh);
    // No Local on a shared subscription is a Protocol Error (MQTT-3.8.3-4 in 5.0).
    if (s.options.no_local && s.filter.starts_with("$share/"))
        return r.fail(errc::no_local_on_shared_subscription);
    return true;
}

std::error_code decode_subscribe(reader& r, protocol_version v, subscribe_packet& p) {
    if (!read_packet_id(r, p.packet_id)) return r.error();
    if (is_v5(v) && !detail::read_properties(r, property_context::subscribe, p.props))
        return r.error();
    while (!r.at_end()) {
        subscription s;
        if (!r.utf8(s.filter) || !read_subscription_options(r, v, s)) return r.error();
        p.subscriptions.push_back(std::move(s));
    }
    if (p.subscriptions.empty()) return errc::empty_subscription_list;  // MQTT-3.8.3-3
    return {};
}

bool is_v3_suback_code(reason_code c) noexcept {
    return c == reason_code::success || c == reason_code::granted_qos_1 ||
           c == reason_code::granted_qos_2 || c == reason_code::unspecified_error;
}

template <class Ack>
std::error_code decode_sub_ack(reader& r, packet_type type, protocol_version v, Ack& p) {
    if (!read_packet_id(r, p.packet_id)) return r.error();
    if (is_v5(v) && !detail::read_properties(r, context_of(type), p.props)) return r.error();
    if (!is_v5(v) && type == packet_type::unsuback) {  // no payload before 5.0
        if (!r.expect_end()) return r.error();
        return {};
    }
    while (!r.at_end()) {
        reason_code c;
        if (is_v5(v)) {
            if (!read_reason(r, type, c)) return r.error();
        } else {
            std::uint8_t b;
            if (!r.u8(b)) return r.error();
            c = static_cast<reason_code>(b);
            if (!is_v3_suback_code(c)) return errc::invalid_reason_code;
        }
        p.codes.push_back(c);
    }
    if (p.codes.empty()) return errc::empty_subscription_list;
    return {};
}

std::error_code decode_unsubscribe(reader& r, protocol_version v, unsubscribe_packet& p) {
    if (!read_packet_id(r, p.packet_id)) return r.error();
    if (is_v5(v) && !detail::read_properties(r, property_context::unsubscribe, p.props))
        return r.error();
    while (!r.at_end()) {
        if (!r.utf8(p.filters.emplace_back())) return r.error();
    }
    if (p.filters.empty()) return errc::empty_subscription_list;  // MQTT-3.10.3-2
    return {};
}

// DISCONNECT and AUTH (5.0): reason code and properties may be left out. DISCONNECT may
// also stop right after its Reason Code (§3.14.2.2.1); AUTH may not: only the Success form
// without properties is shortened, and then to nothing (§3.15.2.1).
template <class P>
std::error_code decode_reason_only(reader& r, packet_type type, protocol_version v, P& p) {
    if (is_v5(v) && !r.at_end()) {
        if (!read_reason(r, type, p.code)) return r.error();
        if ((!r.at_end() || type == packet_type::auth) &&
            !detail::read_properties(r, context_of(type), p.props))
            return r.error();
        // An AUTH that is not the empty Success form names its method (§3.15.2.2.2).
        if (type == packet_type::auth && !p.props.authentication_method)
            return errc::missing_authentication_method;
    }
    if (!r.expect_end()) return r.error();
    return {};
}

std::error_code decode_empty(reader& r) {
    r.expect_end();
    return r.error();
}

// The alternative T of `out`, reset to its defaults. When `out` already holds a T its
// strings keep their capacity, so a connection that decodes into one packet object
// reuses the memory of the last one.
template <class T>
void reset(T& p) {
    p = T{};
}

// PUBLISH is the hot path: clear field by field instead of building a new struct.
void reset(publish_packet& p) {
    p.topic.clear();
    p.payload.clear();
    p.qos_level = qos::at_most_once;
    p.retain = p.dup = false;
    p.packet_id = 0;
    p.props.clear();
}

template <class T>
T& reset_as(packet& out) {
    if (auto* p = std::get_if<T>(&out)) {
        reset(*p);
        return *p;
    }
    return out.emplace<T>();
}

// The fixed flags every type but PUBLISH must carry (MQTT-2.2.2-1, MQTT-2.2.2-2).
constexpr std::uint8_t required_flags(packet_type t) noexcept {
    return t == packet_type::pubrel || t == packet_type::subscribe ||
                   t == packet_type::unsubscribe
               ? 0x02
               : 0x00;
}

}  // namespace

std::error_code decode_into(std::uint8_t first_byte, std::span<const std::uint8_t> body,
                            protocol_version v, packet& out) {
    const auto type = static_cast<packet_type>(first_byte >> 4);
    const auto flags = static_cast<std::uint8_t>(first_byte & 0x0F);
    if (first_byte >> 4 == 0 || (type == packet_type::auth && !is_v5(v)))
        return errc::reserved_packet_type;
    if (type != packet_type::publish && flags != required_flags(type))
        return errc::invalid_fixed_header_flags;
    reader r(body);
    switch (type) {
        case packet_type::connect: return decode_connect(r, reset_as<connect_packet>(out));
        case packet_type::connack: return decode_connack(r, v, reset_as<connack_packet>(out));
        case packet_type::publish:
            return decode_publish(r, flags, v, reset_as<publish_packet>(out));
        case packet_type::puback: return decode_ack(r, type, v, reset_as<puback_packet>(out));
        case packet_type::pubrec: return decode_ack(r, type, v, reset_as<pubrec_packet>(out));
        case packet_type::pubrel: return decode_ack(r, type, v, reset_as<pubrel_packet>(out));
        case packet_type::pubcomp: return decode_ack(r, type, v, reset_as<pubcomp_packet>(out));
        case packet_type::subscribe: return decode_subscribe(r, v, reset_as<subscribe_packet>(out));
        case packet_type::suback: return decode_sub_ack(r, type, v, reset_as<suback_packet>(out));
        case packet_type::unsubscribe:
            return decode_unsubscribe(r, v, reset_as<unsubscribe_packet>(out));
        case packet_type::unsuback:
            return decode_sub_ack(r, type, v, reset_as<unsuback_packet>(out));
        case packet_type::pingreq: reset_as<pingreq_packet>(out); return decode_empty(r);
        case packet_type::pingresp: reset_as<pingresp_packet>(out); return decode_empty(r);
        case packet_type::disconnect:
            return decode_reason_only(r, type, v, reset_as<disconnect_packet>(out));
        case packet_type::auth: return decode_reason_only(r, type, v, reset_as<auth_packet>(out));
    }
    return errc::reserved_packet_type;
}

namespace {

// A result holding an empty packet of the type the first byte names, built in place: a
// packet is large, and building the default alternative first and then replacing it
// costs a fifth of a small PUBLISH's decode.
result<packet> empty_packet(std::uint8_t first_byte) {
    auto make = []<class T>(std::in_place_type_t<T> t) { return result<packet>(std::in_place, t); };
    switch (static_cast<packet_type>(first_byte >> 4)) {
        case packet_type::publish: return make(std::in_place_type<publish_packet>);
        case packet_type::puback: return make(std::in_place_type<puback_packet>);
        case packet_type::pubrec: return make(std::in_place_type<pubrec_packet>);
        case packet_type::pubrel: return make(std::in_place_type<pubrel_packet>);
        case packet_type::pubcomp: return make(std::in_place_type<pubcomp_packet>);
        case packet_type::pingreq: return make(std::in_place_type<pingreq_packet>);
        default: return make(std::in_place_type<connect_packet>);
    }
}

}  // namespace

result<packet> decode(std::uint8_t first_byte, std::span<const std::uint8_t> body,
                      protocol_version v) {
    result<packet> out = empty_packet(first_byte);
    if (auto ec = decode_into(first_byte, body, v, *out)) out.set_error(ec);
    return out;  // one named return value: no move of the packet
}

std::error_code decode_publish_view(std::uint8_t first_byte, std::span<const std::uint8_t> body,
                                    protocol_version v, publish_view& out) {
    if (first_byte >> 4 != static_cast<std::uint8_t>(packet_type::publish))
        return errc::reserved_packet_type;
    if (out.has_props) {
        out.props.clear();
        out.has_props = false;
    }
    out.packet_id = 0;
    out.props_block = {};
    reader r(body);
    return decode_publish(r, static_cast<std::uint8_t>(first_byte & 0x0F), v, out);
}

result<packet> decode_packet(std::span<const std::uint8_t> bytes, protocol_version v) {
    reader r(bytes);
    std::uint8_t first;
    std::uint32_t length;
    if (!r.u8(first) || !r.varint(length, errc::remaining_length_too_long)) return r.error();
    if (r.remaining() < length) return errc::truncated_packet;
    if (r.remaining() > length) return errc::trailing_bytes;
    return decode(first, bytes.subspan(bytes.size() - length), v);
}

result<protocol_version> peek_connect_version(std::span<const std::uint8_t> body) {
    reader r(body);
    protocol_version v{};
    bool bridge = false;
    if (!read_protocol(r, v, bridge)) return r.error();
    return v;
}

}  // namespace mqtt::protocol
