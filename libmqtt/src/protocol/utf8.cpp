#include "mqtt/protocol/utf8.hpp"

#include <cstdint>
#include <cstring>

#include "mqtt/error.hpp"

namespace mqtt::protocol {

std::error_code validate_utf8(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* end = p + s.size();
    while (p < end) {
        // ASCII fast path, eight bytes at a time.
        if (end - p >= 8) {
            std::uint64_t chunk;
            std::memcpy(&chunk, p, 8);
            if ((chunk & 0x8080808080808080ull) == 0) {
                // A zero byte in the chunk is U+0000 (MQTT-1.5.4-2).
                if (((chunk - 0x0101010101010101ull) & ~chunk & 0x8080808080808080ull) != 0)
                    return errc::utf8_null_character;
                p += 8;
                continue;
            }
        }
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
