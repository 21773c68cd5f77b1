// MQTT-SN 1.2 decoding: one datagram, one message. Every read is bounds-checked; the
// first failure is kept and returned, so nothing past the datagram is ever read.

#include <cstring>

#include "mqtt/protocol/mqttsn.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::protocol::mqttsn {
namespace {

class reader {
public:
    explicit reader(std::span<const std::uint8_t> b) noexcept : p_(b.data()), end_(b.data() + b.size()) {}
    std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
    std::error_code error() const noexcept { return ec_; }
    bool fail(errc e) noexcept {
        if (!ec_) ec_ = e;
        return false;
    }
    bool u8(std::uint8_t& v) noexcept {
        if (!need(1)) return false;
        v = *p_++;
        return true;
    }
    bool u16(std::uint16_t& v) noexcept {
        if (!need(2)) return false;
        v = static_cast<std::uint16_t>((p_[0] << 8) | p_[1]);
        p_ += 2;
        return true;
    }
    void rest(std::string& out) {
        out.assign(reinterpret_cast<const char*>(p_), remaining());
        p_ = end_;
    }
    bool end() noexcept { return ec_ ? false : (p_ == end_ || fail(errc::trailing_bytes)); }

private:
    bool need(std::size_t n) noexcept {
        if (ec_) return false;
        if (remaining() < n) return fail(errc::truncated_message);
        return true;
    }
    const std::uint8_t* p_;
    const std::uint8_t* end_;
    std::error_code ec_;
};

bool return_code_of(reader& r, return_code& out) {
    std::uint8_t b = 0;
    if (!r.u8(b)) return false;
    if (b > static_cast<std::uint8_t>(return_code::not_supported)) return r.fail(errc::invalid_return_code);
    out = static_cast<return_code>(b);
    return true;
}

// Flags whose TopicIdType is used: 0b11 is reserved.
bool flags_with_topic_type(reader& r, flags& f) {
    std::uint8_t b = 0;
    if (!r.u8(b)) return false;
    auto d = decode_flags(b);
    if (!d) return r.fail(errc::reserved_topic_id_type);
    f = *d;
    return true;
}

// Flags whose TopicIdType bits are not used (CONNECT, WILLTOPIC, SUBACK).
bool flags_any(reader& r, flags& f) {
    std::uint8_t b = 0;
    if (!r.u8(b)) return false;
    auto d = decode_flags(static_cast<std::uint8_t>(b & ~0x03u));
    f = *d;
    return true;
}

bool valid_name(std::string_view s) { return !validate_utf8(s) && is_valid_topic_name(s); }
bool valid_filter(std::string_view s) { return !validate_utf8(s) && is_valid_topic_filter(s); }

template <class Will>
bool will_topic(reader& r, Will& w) {
    if (r.remaining() == 0) return true;  // the empty form: delete the will
    flags f;
    if (!flags_any(r, f)) return false;
    w.qos = f.qos;
    w.retain = f.retain;
    r.rest(w.topic);
    if (w.topic.empty()) return r.fail(errc::will_flags_without_topic);
    return valid_name(w.topic) || r.fail(errc::invalid_topic_name);
}

// SUBSCRIBE and UNSUBSCRIBE: a filter for `normal`, else a two-octet topic id.
template <class Sub>
bool sub_topic(reader& r, Sub& s) {
    if (s.topic_type == topic_id_type::normal) {
        r.rest(s.topic_name);
        return valid_filter(s.topic_name) || r.fail(errc::invalid_topic_filter);
    }
    return r.u16(s.topic_id) && r.end();
}

bool decode_body(msg_type t, reader& r, message& out);

bool decode_encapsulated(reader& hdr, std::span<const std::uint8_t> inner, message& out) {
    encapsulated e;
    std::uint8_t ctrl = 0;
    if (!hdr.u8(ctrl)) return false;
    e.radius = ctrl & 0x03;
    hdr.rest(e.wireless_node_id);
    auto m = decode(inner);
    if (!m) return hdr.fail(m.error() == make_error_code(errc::datagram_too_short)
                                ? errc::truncated_message
                                : static_cast<errc>(m.error().value()));
    if (std::holds_alternative<encapsulated>(*m)) return hdr.fail(errc::nested_encapsulation);
    e.inner.assign(inner.begin(), inner.end());
    out = std::move(e);
    return true;
}

bool decode_body(msg_type t, reader& r, message& out) {
    switch (t) {
        case msg_type::advertise: {
            advertise m;
            if (!r.u8(m.gw_id) || !r.u16(m.duration) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::searchgw: {
            searchgw m;
            if (!r.u8(m.radius) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::gwinfo: {
            gwinfo m;
            if (!r.u8(m.gw_id)) return false;
            r.rest(m.gw_address);
            out = std::move(m);
            return true;
        }
        case msg_type::connect: {
            connect m;
            flags f;
            std::uint8_t protocol_id = 0;
            if (!flags_any(r, f) || !r.u8(protocol_id) || !r.u16(m.duration)) return false;
            if (protocol_id != 0x01) return r.fail(errc::invalid_protocol_id);
            m.will = f.will;
            m.clean_session = f.clean_session;
            r.rest(m.client_id);
            out = std::move(m);
            return true;
        }
        case msg_type::connack: {
            connack m;
            if (!return_code_of(r, m.code) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::willtopicreq:
            if (!r.end()) return false;
            out = willtopicreq{};
            return true;
        case msg_type::willmsgreq:
            if (!r.end()) return false;
            out = willmsgreq{};
            return true;
        case msg_type::pingresp:
            if (!r.end()) return false;
            out = pingresp{};
            return true;
        case msg_type::willtopic: {
            willtopic m;
            if (!will_topic(r, m)) return false;
            out = std::move(m);
            return true;
        }
        case msg_type::willtopicupd: {
            willtopicupd m;
            if (!will_topic(r, m)) return false;
            out = std::move(m);
            return true;
        }
        case msg_type::willmsg: {
            willmsg m;
            r.rest(m.message);
            out = std::move(m);
            return true;
        }
        case msg_type::willmsgupd: {
            willmsgupd m;
            r.rest(m.message);
            out = std::move(m);
            return true;
        }
        case msg_type::register_: {
            register_ m;
            if (!r.u16(m.topic_id) || !r.u16(m.msg_id)) return false;
            r.rest(m.topic_name);
            if (!valid_name(m.topic_name)) return r.fail(errc::invalid_topic_name);
            out = std::move(m);
            return true;
        }
        case msg_type::regack: {
            regack m;
            if (!r.u16(m.topic_id) || !r.u16(m.msg_id) || !return_code_of(r, m.code) || !r.end())
                return false;
            out = m;
            return true;
        }
        case msg_type::publish: {
            publish m;
            flags f;
            if (!flags_with_topic_type(r, f) || !r.u16(m.topic_id) || !r.u16(m.msg_id)) return false;
            m.dup = f.dup;
            m.qos = f.qos;
            m.retain = f.retain;
            m.topic_type = f.topic_type;
            r.rest(m.data);
            out = std::move(m);
            return true;
        }
        case msg_type::puback: {
            puback m;
            if (!r.u16(m.topic_id) || !r.u16(m.msg_id) || !return_code_of(r, m.code) || !r.end())
                return false;
            out = m;
            return true;
        }
        case msg_type::pubrec: {
            pubrec m;
            if (!r.u16(m.msg_id) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::pubrel: {
            pubrel m;
            if (!r.u16(m.msg_id) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::pubcomp: {
            pubcomp m;
            if (!r.u16(m.msg_id) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::subscribe: {
            subscribe m;
            flags f;
            if (!flags_with_topic_type(r, f) || !r.u16(m.msg_id)) return false;
            m.dup = f.dup;
            m.qos = f.qos;
            m.topic_type = f.topic_type;
            if (!sub_topic(r, m)) return false;
            out = std::move(m);
            return true;
        }
        case msg_type::suback: {
            suback m;
            flags f;
            if (!flags_any(r, f) || !r.u16(m.topic_id) || !r.u16(m.msg_id) ||
                !return_code_of(r, m.code) || !r.end())
                return false;
            m.qos = f.qos;
            out = m;
            return true;
        }
        case msg_type::unsubscribe: {
            unsubscribe m;
            flags f;
            if (!flags_with_topic_type(r, f) || !r.u16(m.msg_id)) return false;
            m.topic_type = f.topic_type;
            if (!sub_topic(r, m)) return false;
            out = std::move(m);
            return true;
        }
        case msg_type::unsuback: {
            unsuback m;
            if (!r.u16(m.msg_id) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::pingreq: {
            pingreq m;
            r.rest(m.client_id);
            out = std::move(m);
            return true;
        }
        case msg_type::disconnect: {
            disconnect m;
            if (r.remaining() > 0) {
                std::uint16_t d = 0;
                if (!r.u16(d) || !r.end()) return false;
                m.duration = d;
            }
            out = m;
            return true;
        }
        case msg_type::willtopicresp: {
            willtopicresp m;
            if (!return_code_of(r, m.code) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::willmsgresp: {
            willmsgresp m;
            if (!return_code_of(r, m.code) || !r.end()) return false;
            out = m;
            return true;
        }
        case msg_type::encapsulated: break;  // handled by decode()
    }
    return r.fail(errc::unknown_message_type);
}

bool known_type(std::uint8_t t) noexcept {
    switch (t) {
        case 0x03: case 0x11: case 0x19: return false;
        default: return t <= 0x1D || t == 0xFE;
    }
}

}  // namespace

result<flags> decode_flags(std::uint8_t b) noexcept {
    if ((b & 0x03) == 0x03) return errc::reserved_topic_id_type;
    flags f;
    f.dup = (b & 0x80) != 0;
    f.qos = static_cast<mqttsn::qos>((b >> 5) & 0x03);
    f.retain = (b & 0x10) != 0;
    f.will = (b & 0x08) != 0;
    f.clean_session = (b & 0x04) != 0;
    f.topic_type = static_cast<topic_id_type>(b & 0x03);
    return f;
}

std::string short_topic_name(std::uint16_t id) {
    return std::string{static_cast<char>(id >> 8), static_cast<char>(id & 0xFF)};
}

result<message> decode(std::span<const std::uint8_t> d) {
    if (d.size() < 2) return errc::datagram_too_short;
    std::size_t length = d[0];
    std::size_t header = 2;
    if (d[0] == 0x01) {
        if (d.size() < 4) return errc::datagram_too_short;
        length = static_cast<std::size_t>((d[1] << 8) | d[2]);
        header = 4;
    }
    if (length < header) return errc::invalid_length;
    const std::uint8_t type = d[header - 1];
    if (!known_type(type)) return errc::unknown_message_type;
    message out;
    if (type == static_cast<std::uint8_t>(msg_type::encapsulated)) {
        // The Length covers the encapsulation header only; the message follows it.
        if (length > d.size()) return errc::length_mismatch;
        if (length < header + 1) return errc::truncated_message;
        reader hdr(d.subspan(header, length - header));
        if (!decode_encapsulated(hdr, d.subspan(length), out)) return hdr.error();
        return out;
    }
    if (length != d.size()) return errc::length_mismatch;
    reader r(d.subspan(header));
    if (!decode_body(static_cast<msg_type>(type), r, out)) return r.error();
    return out;
}

}  // namespace mqtt::protocol::mqttsn
