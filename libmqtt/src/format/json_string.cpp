#include "mqtt/format/json_string.hpp"

#include "mqtt/protocol/utf8.hpp"

namespace mqtt::format {

void append_json_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                if (u < 0x20 || u == 0x7F) {
                    out += "\\u00";
                    out += hex[u >> 4];
                    out += hex[u & 15];
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

void append_json_text(std::string& out, std::string_view bytes) {
    if (!protocol::validate_utf8(bytes)) {  // the usual case: one pass to check
        append_json_string(out, bytes);
        return;
    }
    // validate_utf8 also refuses U+0000, which append_json_string escapes: ASCII is always
    // one valid character here.
    std::string clean;
    clean.reserve(bytes.size() + 8);
    for (std::size_t i = 0; i < bytes.size();) {
        std::size_t n = static_cast<unsigned char>(bytes[i]) < 0x80 ? 1 : 0;
        for (std::size_t k = 2; n == 0 && k <= 4 && i + k <= bytes.size(); ++k) {
            if (!protocol::validate_utf8(bytes.substr(i, k))) n = k;
        }
        if (n == 0) {
            clean += "\xEF\xBF\xBD";  // U+FFFD
            ++i;
        } else {
            clean.append(bytes.substr(i, n));
            i += n;
        }
    }
    append_json_string(out, clean);
}

bool json_depth_within(std::string_view text, std::size_t limit) noexcept {
    std::size_t depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;  // the escaped character, a quote perhaps
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return false;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return true;
}

}  // namespace mqtt::format
