#include "mqtt/bench/payload.hpp"

#include <algorithm>
#include <cstring>

namespace mqtt::bench {
namespace {

constexpr char magic[4] = {'T', 'B', 'N', '1'};
constexpr char compact_magic[2] = {'T', 'b'};

template <class T>
void put(char* at, T v) noexcept {
    for (std::size_t i = 0; i < sizeof(T); ++i) at[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

template <class T>
T get(const char* at) noexcept {
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
        v |= static_cast<T>(static_cast<unsigned char>(at[i])) << (8 * i);
    return v;
}

}  // namespace

void encode_payload(const payload_header& h, std::size_t size, std::string& out) {
    size = std::max(size, compact_header_size);
    if (out.size() != size) out.assign(size, 'x');
    char* p = out.data();
    if (size < payload_header_size) {
        std::memcpy(p, compact_magic, sizeof compact_magic);
        put(p + 2, static_cast<std::uint16_t>(h.run_id & 0xFFFFu));
        put(p + 4, h.publisher);
        put(p + 8, h.sequence);
        return;
    }
    std::memcpy(p, magic, sizeof magic);
    put(p + 4, h.run_id);
    put(p + 8, h.publisher);
    put(p + 12, h.sequence);
    put(p + 20, h.sent_ns);
}

std::optional<payload_header> decode_payload(std::string_view b) noexcept {
    if (b.size() >= compact_header_size && b.size() < payload_header_size &&
        std::memcmp(b.data(), compact_magic, sizeof compact_magic) == 0) {
        payload_header h;
        h.timed = false;
        h.run_id = get<std::uint16_t>(b.data() + 2);
        h.publisher = get<std::uint32_t>(b.data() + 4);
        h.sequence = get<std::uint64_t>(b.data() + 8);
        return h;
    }
    if (b.size() < payload_header_size || std::memcmp(b.data(), magic, sizeof magic) != 0)
        return std::nullopt;
    payload_header h;
    h.run_id = get<std::uint32_t>(b.data() + 4);
    h.publisher = get<std::uint32_t>(b.data() + 8);
    h.sequence = get<std::uint64_t>(b.data() + 12);
    h.sent_ns = get<std::uint64_t>(b.data() + 20);
    return h;
}

}  // namespace mqtt::bench
