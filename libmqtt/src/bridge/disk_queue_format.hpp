// The on-disk layout of the bridge's queue and the small I/O helpers its two source files
// share (disk_queue.cpp: appending, reading, acknowledging; disk_queue_recovery.cpp: opening
// a directory and rebuilding the queue from it). Internal to libmqtt.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace mqtt::bridge::queue_format {

// A record: u32 body length | u32 CRC-32C of the rest | u64 sequence | u16 source packet id |
// body; little endian.
constexpr std::size_t header_size = 18;
constexpr std::size_t crc_from = 8;
// Larger than the largest MQTT packet, smaller than a random length is likely to be.
constexpr std::uint32_t max_body = (1u << 28) + 64;
// The state, in two slots written in turn (state.0, state.1): "TBQ2" | u32 CRC-32C of the
// bytes after it up to the last entry | u64 generation | u64 acked_through | u64 sent_end |
// u32 count | count x (u64 sequence, u8 phase). Bytes after the last entry (left from a
// longer state before) are ignored.
constexpr char state_magic[4] = {'T', 'B', 'Q', '2'};
constexpr std::size_t state_fixed = 36;
constexpr std::size_t state_entry = 9;
constexpr std::uint32_t max_state_entries = 1u << 20;
constexpr std::uint8_t phase_done = 1;
constexpr std::uint8_t phase_received = 2;
// Segment names: seg-<16 hex digits>.q; sequences stay far from overflowing.
constexpr std::uint64_t max_first_seq = std::uint64_t{1} << 62;

inline void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
inline void put64(std::vector<std::uint8_t>& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
inline std::uint32_t get32(const std::uint8_t* p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
inline std::uint64_t get64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

inline std::string errno_text() {
    return std::error_code(errno, std::generic_category()).message();
}

inline bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

// Reads exactly n bytes at `off`: false at a short read or an error.
inline bool read_exact(int fd, std::uint8_t* p, std::size_t n, std::uint64_t off) {
    while (n > 0) {
        const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= static_cast<std::size_t>(r);
        off += static_cast<std::uint64_t>(r);
    }
    return true;
}

inline bool sync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

inline std::optional<std::uint64_t> parse_segment_name(const char* name) {
    const std::string_view n(name);
    if (n.size() != 22 || !n.starts_with("seg-") || !n.ends_with(".q")) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : n.substr(4, 16)) {
        int d = 0;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return std::nullopt;
        v = (v << 4) | static_cast<std::uint64_t>(d);
    }
    return v;
}

}  // namespace mqtt::bridge::queue_format
