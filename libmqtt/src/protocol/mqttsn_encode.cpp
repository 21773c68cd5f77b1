// MQTT-SN 1.2 encoding: the body size of each message, the Length form that fits it, then
// one write pass into memory of exactly that size.

#include <cstring>

#include "mqtt/protocol/mqttsn.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::protocol::mqttsn {
namespace {

template <class... F>
struct overloaded : F... {
    using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

class writer {
public:
    explicit writer(std::uint8_t* p) noexcept : p_(p) {}
    void u8(std::uint8_t v) noexcept { *p_++ = v; }
    void u16(std::uint16_t v) noexcept {
        p_[0] = static_cast<std::uint8_t>(v >> 8);
        p_[1] = static_cast<std::uint8_t>(v);
        p_ += 2;
    }
    void raw(const void* s, std::size_t n) noexcept {
        if (n) std::memcpy(p_, s, n);
        p_ += n;
    }
    void raw(std::string_view s) noexcept { raw(s.data(), s.size()); }

private:
    std::uint8_t* p_;
};

bool valid_name(std::string_view s) { return !validate_utf8(s) && is_valid_topic_name(s); }
bool valid_filter(std::string_view s) { return !validate_utf8(s) && is_valid_topic_filter(s); }
bool valid_code(return_code c) { return static_cast<std::uint8_t>(c) <= 3; }
bool valid_qos(qos q) { return static_cast<std::uint8_t>(q) <= 3; }
bool valid_type(topic_id_type t) { return static_cast<std::uint8_t>(t) <= 2; }

template <class Will>
result<std::size_t> will_size(const Will& w) {
    if (!valid_qos(w.qos)) return errc::invalid_field;
    if (w.topic.empty()) {
        if (w.qos != qos::at_most_once || w.retain) return errc::will_flags_without_topic;
        return std::size_t{0};
    }
    if (!valid_name(w.topic)) return errc::invalid_topic_name;
    return 1 + w.topic.size();
}

template <class Sub>
result<std::size_t> sub_size(const Sub& s) {
    if (!valid_type(s.topic_type)) return errc::reserved_topic_id_type;
    if (s.topic_type == topic_id_type::normal) {
        if (s.topic_id != 0) return errc::invalid_field;
        if (!valid_filter(s.topic_name)) return errc::invalid_topic_filter;
        return 3 + s.topic_name.size();
    }
    if (!s.topic_name.empty()) return errc::invalid_field;
    return std::size_t{5};
}

// The size of everything after MsgType, or why the message cannot be encoded.
result<std::size_t> body_size(const message& m) {
    return std::visit(
        overloaded{
            [](const advertise&) -> result<std::size_t> { return std::size_t{3}; },
            [](const searchgw&) -> result<std::size_t> { return std::size_t{1}; },
            [](const gwinfo& g) -> result<std::size_t> { return 1 + g.gw_address.size(); },
            [](const connect& c) -> result<std::size_t> { return 4 + c.client_id.size(); },
            [](const connack& c) -> result<std::size_t> {
                if (!valid_code(c.code)) return errc::invalid_return_code;
                return std::size_t{1};
            },
            [](const willtopicreq&) -> result<std::size_t> { return std::size_t{0}; },
            [](const willtopic& w) { return will_size(w); },
            [](const willmsgreq&) -> result<std::size_t> { return std::size_t{0}; },
            [](const willmsg& w) -> result<std::size_t> { return w.message.size(); },
            [](const register_& r) -> result<std::size_t> {
                if (!valid_name(r.topic_name)) return errc::invalid_topic_name;
                return 4 + r.topic_name.size();
            },
            [](const regack& r) -> result<std::size_t> {
                if (!valid_code(r.code)) return errc::invalid_return_code;
                return std::size_t{5};
            },
            [](const publish& p) -> result<std::size_t> {
                if (!valid_qos(p.qos)) return errc::invalid_field;
                if (!valid_type(p.topic_type)) return errc::reserved_topic_id_type;
                return 5 + p.data.size();
            },
            [](const puback& p) -> result<std::size_t> {
                if (!valid_code(p.code)) return errc::invalid_return_code;
                return std::size_t{5};
            },
            [](const pubrec&) -> result<std::size_t> { return std::size_t{2}; },
            [](const pubrel&) -> result<std::size_t> { return std::size_t{2}; },
            [](const pubcomp&) -> result<std::size_t> { return std::size_t{2}; },
            [](const subscribe& s) -> result<std::size_t> {
                if (!valid_qos(s.qos)) return errc::invalid_field;
                return sub_size(s);
            },
            [](const suback& s) -> result<std::size_t> {
                if (!valid_qos(s.qos)) return errc::invalid_field;
                if (!valid_code(s.code)) return errc::invalid_return_code;
                return std::size_t{6};
            },
            [](const unsubscribe& u) { return sub_size(u); },
            [](const unsuback&) -> result<std::size_t> { return std::size_t{2}; },
            [](const pingreq& p) -> result<std::size_t> { return p.client_id.size(); },
            [](const pingresp&) -> result<std::size_t> { return std::size_t{0}; },
            [](const disconnect& d) -> result<std::size_t> {
                return std::size_t{d.duration ? 2u : 0u};
            },
            [](const willtopicupd& w) { return will_size(w); },
            [](const willtopicresp& w) -> result<std::size_t> {
                if (!valid_code(w.code)) return errc::invalid_return_code;
                return std::size_t{1};
            },
            [](const willmsgupd& w) -> result<std::size_t> { return w.message.size(); },
            [](const willmsgresp& w) -> result<std::size_t> {
                if (!valid_code(w.code)) return errc::invalid_return_code;
                return std::size_t{1};
            },
            [](const encapsulated& e) -> result<std::size_t> {
                if (e.radius > 3) return errc::invalid_field;
                return 1 + e.wireless_node_id.size();
            },
        },
        m);
}

// Octets of the Length field for a message whose body (after MsgType) has `body` octets.
std::size_t header_size(std::size_t body) noexcept { return body + 2 <= 255 ? 2 : 4; }

template <class Will>
void write_will(writer& w, const Will& m) {
    if (m.topic.empty()) return;
    flags f;
    f.qos = m.qos;
    f.retain = m.retain;
    w.u8(encode_flags(f));
    w.raw(m.topic);
}

template <class Sub>
void write_sub_topic(writer& w, const Sub& s) {
    if (s.topic_type == topic_id_type::normal)
        w.raw(s.topic_name);
    else
        w.u16(s.topic_id);
}

void write_body(writer& w, const message& m) {
    std::visit(
        overloaded{
            [&](const advertise& a) {
                w.u8(a.gw_id);
                w.u16(a.duration);
            },
            [&](const searchgw& s) { w.u8(s.radius); },
            [&](const gwinfo& g) {
                w.u8(g.gw_id);
                w.raw(g.gw_address);
            },
            [&](const connect& c) {
                flags f;
                f.will = c.will;
                f.clean_session = c.clean_session;
                w.u8(encode_flags(f));
                w.u8(0x01);  // ProtocolId
                w.u16(c.duration);
                w.raw(c.client_id);
            },
            [&](const connack& c) { w.u8(static_cast<std::uint8_t>(c.code)); },
            [&](const willtopicreq&) {},
            [&](const willtopic& t) { write_will(w, t); },
            [&](const willmsgreq&) {},
            [&](const willmsg& m) { w.raw(m.message); },
            [&](const register_& r) {
                w.u16(r.topic_id);
                w.u16(r.msg_id);
                w.raw(r.topic_name);
            },
            [&](const regack& r) {
                w.u16(r.topic_id);
                w.u16(r.msg_id);
                w.u8(static_cast<std::uint8_t>(r.code));
            },
            [&](const publish& p) {
                flags f;
                f.dup = p.dup;
                f.qos = p.qos;
                f.retain = p.retain;
                f.topic_type = p.topic_type;
                w.u8(encode_flags(f));
                w.u16(p.topic_id);
                w.u16(p.msg_id);
                w.raw(p.data);
            },
            [&](const puback& p) {
                w.u16(p.topic_id);
                w.u16(p.msg_id);
                w.u8(static_cast<std::uint8_t>(p.code));
            },
            [&](const pubrec& p) { w.u16(p.msg_id); },
            [&](const pubrel& p) { w.u16(p.msg_id); },
            [&](const pubcomp& p) { w.u16(p.msg_id); },
            [&](const subscribe& s) {
                flags f;
                f.dup = s.dup;
                f.qos = s.qos;
                f.topic_type = s.topic_type;
                w.u8(encode_flags(f));
                w.u16(s.msg_id);
                write_sub_topic(w, s);
            },
            [&](const suback& s) {
                flags f;
                f.qos = s.qos;
                w.u8(encode_flags(f));
                w.u16(s.topic_id);
                w.u16(s.msg_id);
                w.u8(static_cast<std::uint8_t>(s.code));
            },
            [&](const unsubscribe& u) {
                flags f;
                f.topic_type = u.topic_type;
                w.u8(encode_flags(f));
                w.u16(u.msg_id);
                write_sub_topic(w, u);
            },
            [&](const unsuback& u) { w.u16(u.msg_id); },
            [&](const pingreq& p) { w.raw(p.client_id); },
            [&](const pingresp&) {},
            [&](const disconnect& d) {
                if (d.duration) w.u16(*d.duration);
            },
            [&](const willtopicupd& t) { write_will(w, t); },
            [&](const willtopicresp& r) { w.u8(static_cast<std::uint8_t>(r.code)); },
            [&](const willmsgupd& m) { w.raw(m.message); },
            [&](const willmsgresp& r) { w.u8(static_cast<std::uint8_t>(r.code)); },
            [&](const encapsulated& e) {
                w.u8(e.radius);
                w.raw(e.wireless_node_id);
                w.raw(e.inner.data(), e.inner.size());
            },
        },
        m);
}

}  // namespace

std::uint8_t encode_flags(const flags& f) noexcept {
    return static_cast<std::uint8_t>((f.dup ? 0x80 : 0) | (static_cast<unsigned>(f.qos) & 3u) << 5 |
                                     (f.retain ? 0x10 : 0) | (f.will ? 0x08 : 0) |
                                     (f.clean_session ? 0x04 : 0) |
                                     (static_cast<unsigned>(f.topic_type) & 3u));
}

result<std::size_t> encoded_size(const message& m) {
    auto body = body_size(m);
    if (!body) return body.error();
    // An encapsulation's Length covers its own header; the wrapped message follows.
    std::size_t total = header_size(*body) + *body;
    if (total > max_message_size) return errc::message_too_large;
    if (auto* e = std::get_if<encapsulated>(&m)) {
        // The wrapped message must be one the decoder accepts, and not wrapped again.
        auto inner = decode(e->inner);
        if (!inner || std::holds_alternative<encapsulated>(*inner)) return errc::invalid_field;
        total += e->inner.size();
    }
    return total;
}

void encode_into(const message& m, std::span<std::uint8_t> out) {
    const std::size_t total = out.size();
    const std::size_t inner = std::holds_alternative<encapsulated>(m)
                                  ? std::get<encapsulated>(m).inner.size()
                                  : 0;
    const std::size_t length = total - inner;  // what the Length field counts
    writer w(out.data());
    if (length <= 255) {
        w.u8(static_cast<std::uint8_t>(length));
    } else {
        w.u8(0x01);
        w.u16(static_cast<std::uint16_t>(length));
    }
    w.u8(static_cast<std::uint8_t>(type_of(m)));
    write_body(w, m);
}

result<std::vector<std::uint8_t>> encode(const message& m) {
    auto size = encoded_size(m);
    if (!size) return size.error();
    std::vector<std::uint8_t> out(*size);
    encode_into(m, out);
    return out;
}

}  // namespace mqtt::protocol::mqttsn
