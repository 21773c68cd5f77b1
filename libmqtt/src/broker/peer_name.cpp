#include "mqtt/broker/peer_name.hpp"

#include <charconv>
#include <cstring>
#include <optional>

namespace mqtt::broker {
namespace {

// A decimal number from `text` up to `stop` (or its end), no sign, at most `most`.
std::optional<std::uint32_t> number(std::string_view& text, char stop, std::uint32_t most) {
    std::uint32_t v = 0;
    const auto* end = text.data() + text.size();
    const auto r = std::from_chars(text.data(), end, v);
    if (r.ec != std::errc{} || r.ptr == text.data() || v > most) return std::nullopt;
    if (stop != '\0') {
        if (r.ptr == end || *r.ptr != stop) return std::nullopt;
        text.remove_prefix(static_cast<std::size_t>(r.ptr - text.data()) + 1);
    } else {
        if (r.ptr != end) return std::nullopt;
        text = {};
    }
    return v;
}

// "a.b.c.d:port" as (address << 16 | port).
std::optional<std::uint64_t> parse_v4(std::string_view text) {
    std::uint64_t address = 0;
    for (const char stop : {'.', '.', '.', ':'}) {
        const auto octet = number(text, stop, 255);
        if (!octet) return std::nullopt;
        address = address << 8 | *octet;
    }
    const auto port = number(text, '\0', 65535);
    if (!port) return std::nullopt;
    return address << 16 | *port;
}

std::string format_v4(std::uint64_t packed) {
    const auto port = static_cast<std::uint32_t>(packed & 0xFFFF);
    const auto address = static_cast<std::uint32_t>(packed >> 16);
    std::string s;
    s.reserve(21);
    for (int shift = 24; shift >= 0; shift -= 8) {
        s += std::to_string(address >> shift & 0xFF);
        s += shift != 0 ? '.' : ':';
    }
    s += std::to_string(port);
    return s;
}

}  // namespace

peer_name::peer_name(std::string_view text) {
    if (text.empty()) return;
    if (const auto v4 = parse_v4(text); v4 && format_v4(*v4) == text) {
        bits_ = *v4 << 8 | 1u;
        return;
    }
    // A length, then the characters: new[] aligns it for the length (so the low bit is 0).
    const std::size_t n = text.size();
    auto* p = new char[sizeof n + n];
    std::memcpy(p, &n, sizeof n);
    std::memcpy(p + sizeof n, text.data(), n);
    bits_ = reinterpret_cast<std::uintptr_t>(p);
}

std::string peer_name::str() const {
    if (bits_ == 0) return {};
    if (packed()) return format_v4(bits_ >> 8);
    const auto* p = reinterpret_cast<const char*>(static_cast<std::uintptr_t>(bits_));
    std::size_t n = 0;
    std::memcpy(&n, p, sizeof n);
    return std::string(p + sizeof n, n);
}

void peer_name::reset() noexcept {
    if (bits_ != 0 && !packed())
        delete[] reinterpret_cast<char*>(static_cast<std::uintptr_t>(bits_));
    bits_ = 0;
}

}  // namespace mqtt::broker
