#pragma once

#include <string_view>
#include <system_error>

namespace mqtt::protocol {

// Checks an MQTT UTF-8 Encoded String (§1.5.4): well-formed UTF-8 (RFC 3629: no overlong
// forms, no surrogates U+D800..U+DFFF, nothing above U+10FFFF) and no U+0000.
// Returns errc::invalid_utf8, errc::utf8_null_character, or no error.
std::error_code validate_utf8(std::string_view s) noexcept;

}  // namespace mqtt::protocol
