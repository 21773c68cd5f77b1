#include "mqtt/protocol/utf8.hpp"

#include <cstddef>
#include <cstdint>

#include "mqtt/error.hpp"
#include "swar.hpp"

namespace mqtt::protocol {

std::error_code validate_utf8(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* end = p + s.size();
    // Eight bytes from `at` (fewer at the end of a short string, the rest filled with 'a'):
    // all ASCII and none zero.
    auto plain_ascii = [](const unsigned char* at, std::size_t n) noexcept {
        const std::uint64_t chunk = detail::load8(at, n);
        return detail::all_ascii(chunk) && !detail::has_zero_byte(chunk);
    };
    while (p < end) {
        // ASCII fast path, eight bytes at a time; the last few bytes as the eight that end
        // the string (those before p were checked already) or, in a short string, padded.
        const auto left = static_cast<std::size_t>(end - p);
        if (left >= 8) {
            if (plain_ascii(p, 8)) {
                p += 8;
                continue;
            }
        } else if (s.size() >= 8 ? plain_ascii(end - 8, 8) : plain_ascii(p, left)) {
            return {};
        }
        // Byte by byte: a zero byte is U+0000 (MQTT-1.5.4-2).
        const unsigned c = *p;
        if (c < 0x80) {
            if (c == 0) return errc::utf8_null_character;
            ++p;
            continue;
        }
        // Lead byte ranges and the allowed range of the second byte (RFC 3629 §4), which
        // excludes overlong forms, surrogates and code points above U+10FFFF.
        int n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;  // U+D800..U+DFFF (MQTT-1.5.4-1)
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return errc::invalid_utf8;
        }
        if (end - p <= n) return errc::invalid_utf8;
        if (p[1] < lo || p[1] > hi) return errc::invalid_utf8;
        for (int i = 2; i <= n; ++i)
            if ((p[i] & 0xC0) != 0x80) return errc::invalid_utf8;
        p += n + 1;
    }
    return {};
}

}  // namespace mqtt::protocol
