#pragma once

// Eight bytes at a time in one 64-bit word, for the byte scans of the protocol core
// (validate_utf8, has_wildcard). Private to the protocol core.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mqtt::protocol::detail {

// c in every byte.
constexpr std::uint64_t broadcast(char c) noexcept {
    return 0x0101010101010101ull * static_cast<unsigned char>(c);
}

// n bytes (at most 8) from p, the rest of the word filled with 'a': an ASCII byte that is
// neither zero nor a wildcard, so a padded word passes the tests a short string would.
inline std::uint64_t load8(const void* p, std::size_t n) noexcept {
    std::uint64_t x = broadcast('a');
    std::memcpy(&x, p, n);
    return x;
}

// Whether every byte of x is below 0x80.
constexpr bool all_ascii(std::uint64_t x) noexcept {
    return (x & broadcast('\x80')) == 0;
}

// Whether x has a zero byte: (x - 0x01..01) & ~x & 0x80..80 is non-zero exactly then (the
// lowest zero byte always sets its high bit; borrows can only flag bytes above it).
constexpr bool has_zero_byte(std::uint64_t x) noexcept {
    return ((x - broadcast('\x01')) & ~x & broadcast('\x80')) != 0;
}

}  // namespace mqtt::protocol::detail
