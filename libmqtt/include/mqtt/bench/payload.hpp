#pragma once

// The payload every bench publisher sends: who sent it, which message it is and when it was
// (meant to be) sent, padded to the requested size. Receivers turn it into end-to-end
// latency and per-publisher loss, duplicate and ordering counts. Little endian, 28 bytes:
//   magic "TBN1" | run id u32 | publisher u32 | sequence u64 | send time u64 (steady ns)
// Payloads of 16 to 27 bytes carry a compact header without the send time (loss,
// duplicates and order are counted, latency is not), 16 bytes:
//   magic "Tb" | run id, low 16 bits, u16 | publisher u32 | sequence u64

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mqtt::bench {

struct payload_header {
    std::uint32_t run_id = 0;  // tells this run's messages from another bench's
    std::uint32_t publisher = 0;
    std::uint64_t sequence = 0;
    std::uint64_t sent_ns = 0;  // steady clock, nanoseconds since its epoch
    bool timed = true;          // false: the compact header (no sent_ns; run_id has 16 bits)
};

constexpr std::size_t payload_header_size = 28;
constexpr std::size_t compact_header_size = 16;  // the smallest payload the bench sends

// Writes the header into the first bytes of `out` and pads it with 'x' to `size` bytes:
// the full header from payload_header_size bytes on, the compact one below that (at least
// compact_header_size bytes). Reuses out's storage.
void encode_payload(const payload_header& h, std::size_t size, std::string& out);
// std::nullopt for anything shorter than a header or without the magic.
// The run id as a header of that kind carries it (compact: the low 16 bits).
constexpr std::uint32_t run_id_in(const payload_header& h, std::uint32_t run_id) noexcept {
    return h.timed ? run_id : (run_id & 0xFFFFu);
}
std::optional<payload_header> decode_payload(std::string_view bytes) noexcept;

}  // namespace mqtt::bench
