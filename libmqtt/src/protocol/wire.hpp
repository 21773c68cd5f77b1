#pragma once

// Bounds-checked reading and unchecked writing of the MQTT data representations (§1.5).
// Private to the protocol core.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "mqtt/error.hpp"
#include "mqtt/protocol/utf8.hpp"
#include "swar.hpp"

namespace mqtt::protocol::detail {

// Whether a topic contains '+' or '#', eight bytes at a time (find_first_of calls memchr
// once per character): a byte equal to c is a zero byte of chunk ^ broadcast(c). The tail
// is the last eight bytes of the topic, or, shorter than eight, the topic padded by load8.
inline bool has_wildcard(std::string_view s) noexcept {
    auto any = [](const char* at, std::size_t n) noexcept {
        const std::uint64_t chunk = load8(at, n);
        return has_zero_byte(chunk ^ broadcast('+')) || has_zero_byte(chunk ^ broadcast('#'));
    };
    const std::size_t n = s.size();
    if (n < 8) return any(s.data(), n);
    for (std::size_t i = 0; i + 8 <= n; i += 8)
        if (any(s.data() + i, 8)) return true;
    return n % 8 != 0 && any(s.data() + n - 8, 8);
}

// Reads fields from a byte span. Every read checks the bounds first; the first failure
// is kept (error()) and later reads fail too, so a decoder can read a run of fields and
// test once.
class reader {
public:
    explicit reader(std::span<const std::uint8_t> bytes) noexcept
        : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}

    std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
    const std::uint8_t* position() const noexcept { return p_; }
    bool at_end() const noexcept { return p_ == end_; }
    bool ok() const noexcept { return !ec_; }
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
    bool u32(std::uint32_t& v) noexcept {
        if (!need(4)) return false;
        v = (std::uint32_t{p_[0]} << 24) | (std::uint32_t{p_[1]} << 16) |
            (std::uint32_t{p_[2]} << 8) | std::uint32_t{p_[3]};
        p_ += 4;
        return true;
    }
    // Variable Byte Integer: at most 4 bytes, shortest form only (MQTT-1.5.5-1).
    bool varint(std::uint32_t& v, errc too_long = errc::variable_int_too_long) noexcept {
        std::uint32_t value = 0;
        for (int i = 0; i < 4; ++i) {
            std::uint8_t b;
            if (!u8(b)) return false;
            value |= std::uint32_t{b & 0x7Fu} << (7 * i);
            if ((b & 0x80) == 0) {
                if (b == 0 && i > 0) return fail(errc::non_minimal_variable_int);
                v = value;
                return true;
            }
        }
        return fail(too_long);
    }
    // Binary Data: two-byte length, then that many bytes.
    bool binary(std::string& out) {
        std::uint16_t n;
        if (!u16(n) || !need(n)) return false;
        out.assign(reinterpret_cast<const char*>(p_), n);
        p_ += n;
        return true;
    }
    // The same as a view of the bytes read (valid as long as they are).
    bool binary(std::string_view& out) noexcept {
        std::uint16_t n;
        if (!u16(n) || !need(n)) return false;
        out = {reinterpret_cast<const char*>(p_), n};
        p_ += n;
        return true;
    }
    // UTF-8 Encoded String: Binary Data that must be well-formed MQTT UTF-8.
    bool utf8(std::string_view& out) noexcept {
        if (!binary(out)) return false;
        if (auto e = validate_utf8(out)) {
            ec_ = e;
            return false;
        }
        return true;
    }
    bool utf8(std::string& out) {
        if (!binary(out)) return false;
        if (auto e = validate_utf8(out)) {
            ec_ = e;
            return false;
        }
        return true;
    }
    // All that is left (a PUBLISH payload).
    void rest(std::string& out) {
        out.assign(reinterpret_cast<const char*>(p_), remaining());
        p_ = end_;
    }
    void rest(std::string_view& out) noexcept {
        out = {reinterpret_cast<const char*>(p_), remaining()};
        p_ = end_;
    }
    // A sub-reader over the next n bytes (a property block).
    bool take(std::size_t n, reader& sub) noexcept {
        if (!need(n)) return false;
        sub = reader({p_, n});
        p_ += n;
        return true;
    }
    bool expect_end() noexcept { return at_end() || fail(errc::trailing_bytes); }

private:
    bool need(std::size_t n) noexcept {
        if (ec_) return false;
        if (remaining() < n) return fail(errc::truncated_packet);
        return true;
    }

    const std::uint8_t* p_;
    const std::uint8_t* end_;
    std::error_code ec_;
};

// Writes fields into memory already sized by the size pass.
class writer {
public:
    explicit writer(std::uint8_t* p) noexcept : p_(p) {}
    std::uint8_t* position() const noexcept { return p_; }

    void u8(std::uint8_t v) noexcept { *p_++ = v; }
    void u16(std::uint16_t v) noexcept {
        p_[0] = static_cast<std::uint8_t>(v >> 8);
        p_[1] = static_cast<std::uint8_t>(v);
        p_ += 2;
    }
    void u32(std::uint32_t v) noexcept {
        p_[0] = static_cast<std::uint8_t>(v >> 24);
        p_[1] = static_cast<std::uint8_t>(v >> 16);
        p_[2] = static_cast<std::uint8_t>(v >> 8);
        p_[3] = static_cast<std::uint8_t>(v);
        p_ += 4;
    }
    void varint(std::uint32_t v) noexcept {
        do {
            std::uint8_t b = v & 0x7F;
            v >>= 7;
            if (v) b |= 0x80;
            *p_++ = b;
        } while (v);
    }
    void raw(std::string_view s) noexcept {
        if (!s.empty()) std::memcpy(p_, s.data(), s.size());
        p_ += s.size();
    }
    void string(std::string_view s) noexcept {  // UTF-8 string or Binary Data
        u16(static_cast<std::uint16_t>(s.size()));
        raw(s);
    }

private:
    std::uint8_t* p_;
};

}  // namespace mqtt::protocol::detail
