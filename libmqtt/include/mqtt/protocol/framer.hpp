#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "mqtt/error.hpp"
#include "mqtt/protocol/types.hpp"
#include "mqtt/result.hpp"

namespace mqtt::protocol {

class framer;

// One whole packet as bytes: the first byte of the fixed header and the body. The body
// points into the framer's buffer and stays valid until the framer is next fed.
struct frame {
    std::uint8_t first_byte = 0;
    std::span<const std::uint8_t> body;
    // The framer whose buffer holds `body` (set by framer::next(); null for a frame made
    // elsewhere): its holder may take that buffer instead of copying out of it.
    framer* source = nullptr;

    packet_type type() const noexcept { return static_cast<packet_type>(first_byte >> 4); }
    std::uint8_t flags() const noexcept { return first_byte & 0x0F; }
    std::size_t size() const noexcept;  // whole packet, fixed header included
};

// Incremental framing: bytes go in in any chunking, whole packets come out. The
// Remaining Length is rejected past 4 bytes, and a packet larger than the maximum is
// rejected as soon as its fixed header is seen, before its body is buffered. After an
// error the framer stays failed: the connection is to be closed.
class framer {
public:
    explicit framer(std::uint32_t max_packet_size = protocol::max_packet_size) noexcept
        : max_packet_size_(max_packet_size) {}

    void set_max_packet_size(std::uint32_t n) noexcept { max_packet_size_ = n; }
    std::uint32_t max_packet_size() const noexcept { return max_packet_size_; }

    // Zero-copy input: read into prepare(n), then commit what was read.
    std::span<std::uint8_t> prepare(std::size_t n);
    void commit(std::size_t n);
    // Copying input.
    void feed(std::span<const std::uint8_t> bytes);

    // The next whole packet; std::nullopt when more bytes are needed.
    result<std::optional<frame>> next();

    std::size_t buffered() const noexcept { return end_ - begin_; }
    // The first byte (packet type and flags) of the next packet, 0 while nothing is
    // buffered (0 is no packet's: type 0 is reserved). Lets a reader hold a packet back
    // before taking it.
    std::uint8_t peek_first_byte() const noexcept { return end_ != begin_ ? buf_[begin_] : 0; }
    // The bytes still to come of a packet whose fixed header is in but not all of its body
    // (0 otherwise): a reader can prepare() room for all of it and read it in one go.
    std::size_t missing() const noexcept;
    // Frees the buffer when nothing is buffered (an idle connection); prepare() allocates
    // again.
    void release() noexcept;
    // The buffer, handed over, when all it holds is the last packet next() returned (nothing
    // buffered after it) and it is at most `most` bytes: a receiver keeps a large packet's
    // bytes where they were read instead of copying them. The frame's views stay valid (the
    // memory now belongs to the caller); the framer allocates anew on the next prepare().
    // Null otherwise, and the framer is unchanged.
    struct taken_buffer {
        std::unique_ptr<std::uint8_t[]> bytes;
        std::size_t size = 0;
    };
    taken_buffer take_buffer(std::size_t most) noexcept;
    std::error_code error() const noexcept {
        return failed() ? make_error_code(error_) : std::error_code{};
    }

private:
    void check_pending_header() noexcept;
    void fail(std::error_code ec) noexcept;
    bool failed() const noexcept { return error_ != mqtt::errc{}; }
    void compact();

    // Allocated without zero-filling: pages are touched only as bytes are read into them,
    // so an idle connection's buffer costs the memory of what it received, not its size.
    // Offsets are 32 bits (a broker holds a framer per connection): the buffer holds at most
    // a packet (under 256 MiB) and a read, and prepare() refuses to grow it past 4 GiB.
    std::unique_ptr<std::uint8_t[]> buf_;
    std::uint32_t size_ = 0;   // allocated bytes
    std::uint32_t begin_ = 0;  // first unconsumed byte
    std::uint32_t end_ = 0;    // one past the last committed byte
    std::uint32_t max_packet_size_;
    // Every framing error is an mqtt::errc (none is 0): 4 bytes, not an error_code's 16.
    mqtt::errc error_{};
};

}  // namespace mqtt::protocol
