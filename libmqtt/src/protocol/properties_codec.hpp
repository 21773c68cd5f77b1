#pragma once

// Reading and writing a Properties block (§2.2.2). Private to the protocol core.

#include <cstddef>
#include <cstdint>

#include "mqtt/protocol/property.hpp"
#include "mqtt/result.hpp"
#include "wire.hpp"

namespace mqtt::protocol::detail {

// Reads Property Length and the properties after it into `out`, checking each one is
// known, allowed in `ctx`, not repeated unless it may be, and has a legal value.
bool read_properties(reader& r, property_context ctx, properties& out);

// The length of the properties' encoding, Property Length itself excluded; an error if
// one may not appear in `ctx` or cannot be encoded.
result<std::uint32_t> properties_length(const properties& p, property_context ctx);

// Writes Property Length and the properties; `length` comes from properties_length().
void write_properties(writer& w, const properties& p, std::uint32_t length);

// The size of a Properties block on the wire, Property Length included.
inline std::size_t properties_block_size(std::uint32_t length) noexcept {
    return (length < 128u ? 1 : length < 16'384u ? 2 : length < 2'097'152u ? 3 : 4) + length;
}

}  // namespace mqtt::protocol::detail
