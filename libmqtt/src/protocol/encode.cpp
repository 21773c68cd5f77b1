#include <algorithm>
#include <string_view>

#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/publish_codec.hpp"
#include "properties_codec.hpp"
#include "wire.hpp"

namespace mqtt::protocol {
namespace {

using detail::properties_block_size;
using detail::writer;

// What the size pass learns and the write pass reuses.
struct plan {
    std::uint32_t remaining = 0;
    std::uint32_t props = 0;       // Property Length of the packet
    std::uint32_t will_props = 0;  // Property Length of the Will Properties (CONNECT)
    bool omit_reason = false;      // 5.0 acks, DISCONNECT, AUTH: shortest form
    bool omit_props = false;
};

// Accumulates field sizes and remembers the first error.
struct sizer {
    std::size_t n = 0;
    std::error_code ec;

    void fail(errc e) {
        if (!ec) ec = e;
    }
    void string(std::string_view s) {
        if (s.size() > 0xFFFF) fail(errc::string_too_long);
        n += 2 + s.size();
    }
    std::uint32_t props(const properties& p, property_context ctx) {
        auto len = detail::properties_length(p, ctx);
        if (!len) {
            if (!ec) ec = len.error();
            return 0;
        }
        n += properties_block_size(*len);
        return *len;
    }
};

using detail::has_wildcard;

std::string_view protocol_name(protocol_version v) noexcept {
    return v == protocol_version::v3_1 ? "MQIsdp" : "MQTT";
}

void size_of(sizer& s, plan& pl, const connect_packet& p, protocol_version) {
    const bool v5 = is_v5(p.version);
    s.string(protocol_name(p.version));
    s.n += 1 + 1 + 2;  // level, flags, keep alive
    if (v5) pl.props = s.props(p.props, property_context::connect);
    if (v5 && p.props.authentication_data && !p.props.authentication_method)
        s.fail(errc::missing_authentication_method);
    s.string(p.client_id);
    if (p.will) {
        if (v5) pl.will_props = s.props(p.will->props, property_context::will);
        if (p.will->topic.empty()) s.fail(errc::empty_topic_name);
        if (has_wildcard(p.will->topic)) s.fail(errc::topic_name_has_wildcard);
        if (p.will->qos_level > qos::exactly_once) s.fail(errc::invalid_qos);
        s.string(p.will->topic);
        s.string(p.will->payload);
    }
    if (p.username) s.string(*p.username);
    if (p.password) {
        if (!v5 && !p.username) s.fail(errc::password_without_username);
        s.string(*p.password);
    }
}

void size_of(sizer& s, plan& pl, const connack_packet& p, protocol_version v) {
    s.n += 2;
    if (is_v5(v)) {
        if (!is_allowed_in(p.code, packet_type::connack)) s.fail(errc::invalid_reason_code);
        pl.props = s.props(p.props, property_context::connack);
        if (p.props.authentication_data && !p.props.authentication_method)
            s.fail(errc::missing_authentication_method);
    }
}

void size_of(sizer& s, plan& pl, const publish_packet& p, protocol_version v) {
    if (p.qos_level > qos::exactly_once) s.fail(errc::invalid_qos);
    if (has_wildcard(p.topic)) s.fail(errc::topic_name_has_wildcard);
    if (p.topic.empty() && !(is_v5(v) && p.props.topic_alias)) s.fail(errc::empty_topic_name);
    s.string(p.topic);
    if (p.qos_level != qos::at_most_once) {
        if (p.packet_id == 0) s.fail(errc::zero_packet_identifier);
        s.n += 2;
    } else if (p.dup) {
        s.fail(errc::dup_with_qos0);
    }
    if (is_v5(v)) pl.props = s.props(p.props, property_context::publish);
    s.n += p.payload.size();
}

template <class Ack>
void size_of_ack(sizer& s, plan& pl, const Ack& p, packet_type type, protocol_version v) {
    if (p.packet_id == 0) s.fail(errc::zero_packet_identifier);
    s.n += 2;
    if (!is_v5(v)) return;
    if (!is_allowed_in(p.code, type)) s.fail(errc::invalid_reason_code);
    pl.omit_props = p.props.empty();
    pl.omit_reason = pl.omit_props && p.code == reason_code::success;
    if (!pl.omit_reason) s.n += 1;
    if (!pl.omit_props) pl.props = s.props(p.props, context_of(type));
}

void size_of(sizer& s, plan& pl, const subscribe_packet& p, protocol_version v) {
    if (p.packet_id == 0) s.fail(errc::zero_packet_identifier);
    if (p.subscriptions.empty()) s.fail(errc::empty_subscription_list);
    s.n += 2;
    if (is_v5(v)) pl.props = s.props(p.props, property_context::subscribe);
    for (const auto& sub : p.subscriptions) {
        if (sub.options.max_qos > qos::exactly_once) s.fail(errc::invalid_qos);
        if (sub.options.retain > retain_handling::do_not_send) s.fail(errc::invalid_retain_handling);
        s.string(sub.filter);
        s.n += 1;
    }
}

template <class Ack>
void size_of_sub_ack(sizer& s, plan& pl, const Ack& p, packet_type type, protocol_version v) {
    if (p.packet_id == 0) s.fail(errc::zero_packet_identifier);
    s.n += 2;
    if (is_v5(v)) {
        pl.props = s.props(p.props, context_of(type));
        for (auto c : p.codes)
            if (!is_allowed_in(c, type)) s.fail(errc::invalid_reason_code);
    }
    if (is_v5(v) || type == packet_type::suback) {
        if (p.codes.empty()) s.fail(errc::empty_subscription_list);
        s.n += p.codes.size();
    }
}

void size_of(sizer& s, plan& pl, const unsubscribe_packet& p, protocol_version v) {
    if (p.packet_id == 0) s.fail(errc::zero_packet_identifier);
    if (p.filters.empty()) s.fail(errc::empty_subscription_list);
    s.n += 2;
    if (is_v5(v)) pl.props = s.props(p.props, property_context::unsubscribe);
    for (const auto& f : p.filters) s.string(f);
}

template <class P>
void size_of_reason_only(sizer& s, plan& pl, const P& p, packet_type type, protocol_version v) {
    if (!is_v5(v)) {
        if (type == packet_type::auth) s.fail(errc::reserved_packet_type);
        return;
    }
    if (!is_allowed_in(p.code, type)) s.fail(errc::invalid_reason_code);
    pl.omit_props = p.props.empty();
    pl.omit_reason = pl.omit_props && p.code == reason_code::success;
    // AUTH has no form with a Reason Code and no Property Length (§3.15.2.1), and names
    // its method unless it is the empty Success form (§3.15.2.2.2).
    if (type == packet_type::auth) {
        pl.omit_props = pl.omit_reason;
        if (!pl.omit_reason && !p.props.authentication_method)
            s.fail(errc::missing_authentication_method);
    }
    if (!pl.omit_reason) s.n += 1;
    if (!pl.omit_props) pl.props = s.props(p.props, context_of(type));
}

result<plan> finish_plan(const sizer& s, plan& pl) {
    if (s.ec) return s.ec;
    if (s.n > max_variable_int) return errc::packet_too_large;
    pl.remaining = static_cast<std::uint32_t>(s.n);
    return pl;
}

result<plan> make_plan(const packet& pk, protocol_version v) {
    sizer s;
    plan pl;
    std::visit(
        [&](const auto& p) {
            using P = std::remove_cvref_t<decltype(p)>;
            const auto type = type_of(pk);
            if constexpr (std::is_same_v<P, puback_packet> || std::is_same_v<P, pubrec_packet> ||
                          std::is_same_v<P, pubrel_packet> || std::is_same_v<P, pubcomp_packet>)
                size_of_ack(s, pl, p, type, v);
            else if constexpr (std::is_same_v<P, suback_packet> ||
                               std::is_same_v<P, unsuback_packet>)
                size_of_sub_ack(s, pl, p, type, v);
            else if constexpr (std::is_same_v<P, disconnect_packet> ||
                               std::is_same_v<P, auth_packet>)
                size_of_reason_only(s, pl, p, type, v);
            else if constexpr (std::is_same_v<P, pingreq_packet> ||
                               std::is_same_v<P, pingresp_packet>)
                (void)p;
            else
                size_of(s, pl, p, v);
        },
        pk);
    return finish_plan(s, pl);
}

result<plan> make_plan(const publish_packet& p, protocol_version v) {
    sizer s;
    plan pl;
    size_of(s, pl, p, v);
    return finish_plan(s, pl);
}

std::size_t total_size(const plan& pl) noexcept {
    return 1 + variable_int_size(pl.remaining) + pl.remaining;
}

// ---- write pass ----

void write_body(writer& w, const plan& pl, const connect_packet& p, protocol_version) {
    const bool v5 = is_v5(p.version);
    w.string(protocol_name(p.version));
    const auto level = static_cast<std::uint8_t>(p.version);
    w.u8(p.bridge && !v5 ? static_cast<std::uint8_t>(level | 0x80) : level);
    std::uint8_t flags = p.clean_start ? 0x02 : 0x00;
    if (p.will) {
        flags |= 0x04 | static_cast<std::uint8_t>(static_cast<unsigned>(p.will->qos_level) << 3);
        if (p.will->retain) flags |= 0x20;
    }
    if (p.password) flags |= 0x40;
    if (p.username) flags |= 0x80;
    w.u8(flags);
    w.u16(p.keep_alive);
    if (v5) detail::write_properties(w, p.props, pl.props);
    w.string(p.client_id);
    if (p.will) {
        if (v5) detail::write_properties(w, p.will->props, pl.will_props);
        w.string(p.will->topic);
        w.string(p.will->payload);
    }
    if (p.username) w.string(*p.username);
    if (p.password) w.string(*p.password);
}

void write_body(writer& w, const plan& pl, const connack_packet& p, protocol_version v) {
    w.u8(p.session_present ? 1 : 0);
    if (is_v5(v)) {
        w.u8(static_cast<std::uint8_t>(p.code));
        detail::write_properties(w, p.props, pl.props);
    } else {
        w.u8(static_cast<std::uint8_t>(to_connect_return_code(p.code)));
    }
}

// The variable header of a PUBLISH: everything before its payload.
void write_publish_head(writer& w, const plan& pl, const publish_packet& p, protocol_version v) {
    w.string(p.topic);
    if (p.qos_level != qos::at_most_once) w.u16(p.packet_id);
    if (is_v5(v)) detail::write_properties(w, p.props, pl.props);
}

void write_body(writer& w, const plan& pl, const publish_packet& p, protocol_version v) {
    write_publish_head(w, pl, p, v);
    w.raw(p.payload);
}

template <class Ack>
void write_ack(writer& w, const plan& pl, const Ack& p, protocol_version v) {
    w.u16(p.packet_id);
    if (!is_v5(v)) return;
    if (!pl.omit_reason) w.u8(static_cast<std::uint8_t>(p.code));
    if (!pl.omit_props) detail::write_properties(w, p.props, pl.props);
}

void write_body(writer& w, const plan& pl, const subscribe_packet& p, protocol_version v) {
    w.u16(p.packet_id);
    if (is_v5(v)) detail::write_properties(w, p.props, pl.props);
    for (const auto& s : p.subscriptions) {
        w.string(s.filter);
        auto b = static_cast<std::uint8_t>(s.options.max_qos);
        if (is_v5(v)) {
            if (s.options.no_local) b |= 0x04;
            if (s.options.retain_as_published) b |= 0x08;
            b |= static_cast<std::uint8_t>(static_cast<unsigned>(s.options.retain) << 4);
        }
        w.u8(b);
    }
}

template <class Ack>
void write_sub_ack(writer& w, const plan& pl, const Ack& p, packet_type type, protocol_version v) {
    w.u16(p.packet_id);
    if (is_v5(v)) detail::write_properties(w, p.props, pl.props);
    if (!is_v5(v) && type == packet_type::unsuback) return;
    for (auto c : p.codes) {
        // Before 5.0 a SUBACK says only the granted QoS or 0x80 (failure).
        if (!is_v5(v) && is_error(c)) c = reason_code::unspecified_error;
        w.u8(static_cast<std::uint8_t>(c));
    }
}

void write_body(writer& w, const plan& pl, const unsubscribe_packet& p, protocol_version v) {
    w.u16(p.packet_id);
    if (is_v5(v)) detail::write_properties(w, p.props, pl.props);
    for (const auto& f : p.filters) w.string(f);
}

template <class P>
void write_reason_only(writer& w, const plan& pl, const P& p, protocol_version v) {
    if (!is_v5(v)) return;
    if (!pl.omit_reason) w.u8(static_cast<std::uint8_t>(p.code));
    if (!pl.omit_props) detail::write_properties(w, p.props, pl.props);
}

std::uint8_t first_byte(const publish_packet& p) noexcept {
    auto b = static_cast<std::uint8_t>(0x30 | static_cast<unsigned>(p.qos_level) << 1);
    if (p.dup) b |= 0x08;
    if (p.retain) b |= 0x01;
    return b;
}

std::uint8_t first_byte(const packet& pk) noexcept {
    const auto type = static_cast<std::uint8_t>(type_of(pk));
    std::uint8_t flags = 0;
    if (const auto* p = std::get_if<publish_packet>(&pk)) {
        return first_byte(*p);
    } else if (type == 6 || type == 8 || type == 10) {
        flags = 0x02;  // PUBREL, SUBSCRIBE, UNSUBSCRIBE (MQTT-3.6.1-1, 3.8.1-1, 3.10.1-1)
    }
    return static_cast<std::uint8_t>(type << 4 | flags);
}

void write_packet(const packet& pk, const plan& pl, protocol_version v, std::uint8_t* out) {
    writer w(out);
    w.u8(first_byte(pk));
    w.varint(pl.remaining);
    std::visit(
        [&](const auto& p) {
            using P = std::remove_cvref_t<decltype(p)>;
            const auto type = type_of(pk);
            if constexpr (std::is_same_v<P, puback_packet> || std::is_same_v<P, pubrec_packet> ||
                          std::is_same_v<P, pubrel_packet> || std::is_same_v<P, pubcomp_packet>)
                write_ack(w, pl, p, v);
            else if constexpr (std::is_same_v<P, suback_packet> ||
                               std::is_same_v<P, unsuback_packet>)
                write_sub_ack(w, pl, p, type, v);
            else if constexpr (std::is_same_v<P, disconnect_packet> ||
                               std::is_same_v<P, auth_packet>)
                write_reason_only(w, pl, p, v);
            else if constexpr (std::is_same_v<P, pingreq_packet> ||
                               std::is_same_v<P, pingresp_packet>)
                (void)p;
            else
                write_body(w, pl, p, v);
        },
        pk);
}

}  // namespace

result<std::size_t> encoded_size(const packet& p, protocol_version v) {
    auto pl = make_plan(p, v);
    if (!pl) return pl.error();
    return total_size(*pl);
}

void encode_into(const packet& p, protocol_version v, std::span<std::uint8_t> out) {
    auto pl = make_plan(p, v);
    if (!pl || out.size() < total_size(*pl)) return;  // precondition: encoded_size() succeeded
    write_packet(p, *pl, v, out.data());
}

std::error_code encode_append(const packet& p, protocol_version v,
                              std::vector<std::uint8_t>& out) {
    auto pl = make_plan(p, v);
    if (!pl) return pl.error();
    const auto at = out.size();
    out.resize(at + total_size(*pl));
    write_packet(p, *pl, v, out.data() + at);
    return {};
}

result<std::size_t> encoded_size(const publish_packet& p, protocol_version v) {
    auto pl = make_plan(p, v);
    if (!pl) return pl.error();
    return total_size(*pl);
}

std::error_code encode_append(const publish_packet& p, protocol_version v,
                              std::vector<std::uint8_t>& out) {
    auto pl = make_plan(p, v);
    if (!pl) return pl.error();
    // The payload is appended, not copied over zeros: resize() to the whole packet would
    // first fill the payload's room with zeros (a memset of every payload byte). The room
    // grows geometrically, as resize() would, so appending packet after packet stays linear.
    const auto at = out.size();
    const auto total = total_size(*pl);
    const auto head = total - p.payload.size();
    if (out.capacity() < at + total) out.reserve(std::max(at + total, 2 * out.capacity()));
    out.resize(at + head);
    writer w(out.data() + at);
    w.u8(first_byte(p));
    w.varint(pl->remaining);
    write_publish_head(w, *pl, p, v);
    // As bytes: a range of char into a vector of uint8_t would be copied element by element.
    const auto* payload = reinterpret_cast<const std::uint8_t*>(p.payload.data());
    out.insert(out.end(), payload, payload + p.payload.size());
    return {};
}

result<std::vector<std::uint8_t>> encode(const packet& p, protocol_version v) {
    std::vector<std::uint8_t> out;
    if (auto ec = encode_append(p, v, out)) return ec;
    return out;
}

}  // namespace mqtt::protocol
