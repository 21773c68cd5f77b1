#pragma once

// The server side of RFC 6455 framing, sans I/O: no sockets, no Asio. The decoder takes the
// client's bytes in any chunks and hands on the payload of binary messages as it arrives
// (unmasked, possibly in place: `out` may be the input buffer itself), so nothing but a
// frame header (at most 14 bytes) and a control frame's payload (at most 125) is ever
// buffered whatever a peer announces. Its whole state is this value: a connection moving to
// another loop takes it along. The encoder writes the server's unmasked frames.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace mqtt::net::ws {

// Close codes (RFC 6455 7.4.1).
inline constexpr std::uint16_t close_normal = 1000;
inline constexpr std::uint16_t close_protocol_error = 1002;
inline constexpr std::uint16_t close_unsupported_data = 1003;
inline constexpr std::uint16_t close_invalid_data = 1007;  // e.g. a close reason not UTF-8
inline constexpr std::uint16_t close_too_big = 1009;

enum class opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

class decoder {
  public:
    // The largest message accepted (the sum of its frames' announced lengths), checked from
    // each frame header before any of its payload is taken.
    explicit decoder(std::uint64_t max_message) noexcept : max_message_(max_message) {}

    struct result {
        std::size_t consumed = 0;  // input bytes taken: all of them unless done() now
        std::size_t payload = 0;   // MQTT bytes written to `out`
    };
    // Takes `in` up to the end, a close frame or an error, and writes the binary payload
    // to `out` (room for in.size() bytes; `out` == in.data() is allowed, as is any `out`
    // at or before it, since a byte is written only after it has been read).
    result decode(std::span<const std::uint8_t> in, std::uint8_t* out) noexcept;

    // No more input is taken: the peer sent a close frame, or broke the protocol.
    bool done() const noexcept { return closed_ || error_ != 0; }
    // The peer's close frame: its code (0 when it had none), which the answer echoes.
    bool peer_closed() const noexcept { return closed_; }
    std::uint16_t peer_code() const noexcept { return peer_code_; }
    // The peer broke the protocol: the code to close with (1002, 1003, 1007, 1009) and why.
    std::uint16_t error() const noexcept { return error_; }
    std::string_view why() const noexcept { return why_; }
    // A ping arrived: the payload the pong carries (only the latest ping is answered, as
    // RFC 6455 5.5.3 allows). take_ping() clears it.
    bool ping_pending() const noexcept { return ping_pending_; }
    std::span<const std::uint8_t> ping_payload() const noexcept {
        return {ping_.data(), ping_size_};
    }
    void take_ping() noexcept { ping_pending_ = false; }
    // Between frames (no header or payload half read): nothing to carry but the
    // fragmentation state.
    bool at_frame_boundary() const noexcept { return stage_ == stage::header && have_ == 0; }

  private:
    enum class stage : std::uint8_t { header, payload };
    void fail(std::uint16_t code, const char* why) noexcept {
        error_ = code;
        why_ = why;
    }
    // The first two bytes of a header are in hdr_: its checks; the header's full size.
    std::size_t check_start() noexcept;
    void unmask(const std::uint8_t* from, std::uint8_t* to, std::size_t n) noexcept;
    void header_done() noexcept;
    void frame_done() noexcept;
    void control_done() noexcept;

    std::uint64_t max_message_;
    stage stage_ = stage::header;
    std::array<std::uint8_t, 14> hdr_{};
    std::uint8_t have_ = 0;  // header bytes in hdr_
    std::uint8_t need_ = 2;  // header bytes needed (2 until the first two are known)
    opcode op_ = opcode::binary;
    bool fin_ = false;
    bool in_message_ = false;    // a fragmented binary message is open
    std::uint64_t message_ = 0;  // its bytes so far (announced)
    std::uint64_t left_ = 0;     // payload bytes of the current frame still to come
    std::array<std::uint8_t, 4> mask_{};
    std::uint8_t mask_at_ = 0;  // the payload position modulo 4
    std::array<std::uint8_t, 125> control_{};
    std::uint8_t control_size_ = 0;
    std::array<std::uint8_t, 125> ping_{};
    std::uint8_t ping_size_ = 0;
    bool ping_pending_ = false;
    bool closed_ = false;
    std::uint16_t peer_code_ = 0;
    std::uint16_t error_ = 0;
    const char* why_ = "";
};

// The largest server frame header: 2 bytes, 8 of length, no mask.
inline constexpr std::size_t max_header = 10;

// A final unmasked frame header for `size` payload bytes into `out`; its length.
std::size_t encode_header(opcode op, std::uint64_t size,
                          std::array<std::uint8_t, max_header>& out) noexcept;

// A whole close frame with `code` (0: no code, an empty body) into `out`; its length.
std::size_t encode_close(std::uint16_t code, std::array<std::uint8_t, 4>& out) noexcept;

}  // namespace mqtt::net::ws
