#include <doctest/doctest.h>

#include <cstddef>
#include <ostream>
#include <string>

#include "mqtt/error.hpp"
#include "mqtt/protocol/errors.hpp"
#include "mqtt/protocol/utf8.hpp"

using mqtt::errc;
using mqtt::protocol::validate_utf8;

TEST_CASE("utf8: well-formed strings are accepted (§1.5.4)") {
    const char* good[] = {
        "",  "a", "sensors/room-1/temp", "é", "€", "😀",
        "\xEF\xBB\xBF",          // U+FEFF is accepted and not stripped (MQTT-1.5.4-3)
        "\xEF\xBF\xBF",          // U+FFFF, a non-character: SHOULD NOT, but not malformed
        "\x01\x1F\x7F",          // control characters: SHOULD NOT, but not malformed
        "\xF4\x8F\xBF\xBF",      // U+10FFFF
        "\xED\x9F\xBF",          // U+D7FF, just below the surrogates
        "\xEE\x80\x80",          // U+E000, just above them
        "long ascii run long ascii run long ascii run 12345678",
    };
    for (const char* s : good) CHECK_MESSAGE(!validate_utf8(s), s);
}

TEST_CASE("utf8: ill-formed strings are malformed (MQTT-1.5.4-1)") {
    const char* bad[] = {
        "\xC0\x80",              // overlong U+0000
        "\xC1\xBF",              // overlong
        "\xE0\x80\x80",          // overlong 3-byte
        "\xE0\x9F\xBF",          // overlong 3-byte, top of range
        "\xF0\x80\x80\x80",      // overlong 4-byte
        "\xED\xA0\x80",          // U+D800 surrogate
        "\xED\xBF\xBF",          // U+DFFF surrogate
        "\xF4\x90\x80\x80",      // U+110000
        "\xF5\x80\x80\x80",      // lead byte past F4
        "\xFF",                  // never valid
        "\x80",                  // stray continuation
        "a\xC3",                 // truncated 2-byte
        "\xE2\x82",              // truncated 3-byte
        "\xE2\x28\xA1",          // bad continuation
        "abcdefgh\xC3",          // truncated after the ASCII fast path
    };
    for (const char* s : bad) CHECK(validate_utf8(s) == errc::invalid_utf8);
}

TEST_CASE("utf8: U+0000 is forbidden (MQTT-1.5.4-2)") {
    CHECK(validate_utf8(std::string("a\0b", 3)) == errc::utf8_null_character);
    CHECK(validate_utf8(std::string("abcdefg\0hijk", 12)) == errc::utf8_null_character);
    CHECK(validate_utf8(std::string(1, '\0')) == errc::utf8_null_character);
}

TEST_CASE("utf8: a bad or zero byte is found wherever it falls in the eight-byte reads") {
    // Strings of 1 to 40 bytes: every position in the chunks read eight bytes at a time, in
    // the last eight bytes read again at the end, and in strings shorter than eight.
    for (std::size_t n = 1; n <= 40; ++n) {
        INFO("length " << n);
        CHECK_FALSE(validate_utf8(std::string(n, 'x')));
        for (std::size_t at = 0; at < n; ++at) {
            INFO("at " << at);
            std::string s(n, 'x');
            s[at] = '\0';
            CHECK(validate_utf8(s) == errc::utf8_null_character);
            s[at] = '\xFF';
            CHECK(validate_utf8(s) == errc::invalid_utf8);
            s[at] = '\x80';  // a continuation byte with no lead
            CHECK(validate_utf8(s) == errc::invalid_utf8);
            s[at] = '\xC3';  // a lead byte followed by 'x' or by nothing
            CHECK(validate_utf8(s) == errc::invalid_utf8);
            if (at + 1 < n) {
                s[at + 1] = '\xA9';  // U+00E9
                CHECK_FALSE(validate_utf8(s));
            }
        }
    }
}

TEST_CASE("errors: each local error maps to the reason code a receiver sends (§4.13)") {
    using mqtt::protocol::reason_code;
    using mqtt::protocol::to_reason_code;
    CHECK(to_reason_code(errc::invalid_utf8) == reason_code::malformed_packet);
    CHECK(to_reason_code(errc::remaining_length_too_long) == reason_code::malformed_packet);
    CHECK(to_reason_code(errc::duplicate_property) == reason_code::protocol_error);
    CHECK(to_reason_code(errc::packet_too_large) == reason_code::packet_too_large);
    CHECK(to_reason_code(errc::topic_name_has_wildcard) == reason_code::topic_name_invalid);
    CHECK(to_reason_code(errc::topic_alias_zero) == reason_code::topic_alias_invalid);
    CHECK(to_reason_code(errc::unsupported_protocol_version) ==
          reason_code::unsupported_protocol_version);
    CHECK(to_reason_code(std::error_code{}) == reason_code::success);
    CHECK(to_reason_code(std::make_error_code(std::errc::io_error)) ==
          reason_code::unspecified_error);
    // Every error has a name and a message.
    for (int e = 1; e <= static_cast<int>(errc::string_too_long); ++e) {
        CHECK(mqtt::to_string(static_cast<errc>(e)) != "unknown");
        CHECK(!make_error_code(static_cast<errc>(e)).message().empty());
    }
}
