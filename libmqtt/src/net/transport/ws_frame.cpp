#include "net/transport/ws_frame.hpp"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "mqtt/protocol/utf8.hpp"

namespace mqtt::net::ws {
namespace {

// A close frame's reason is UTF-8 (RFC 6455 5.5.1), where U+0000 is a character like any
// other: checked a NUL-free run at a time, since validate_utf8 refuses U+0000 (MQTT's rule).
bool valid_close_reason(std::string_view reason) noexcept {
    while (!reason.empty()) {
        const auto nul = reason.find('\0');
        if (protocol::validate_utf8(reason.substr(0, nul))) return false;
        if (nul == std::string_view::npos) break;
        reason.remove_prefix(nul + 1);
    }
    return true;
}

bool is_control(opcode op) noexcept {
    return (static_cast<std::uint8_t>(op) & 0x8) != 0;
}

// RFC 6455 7.4: the codes a peer may send in a close frame.
bool valid_close_code(std::uint16_t c) noexcept {
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
}

}  // namespace

decoder::result decoder::decode(std::span<const std::uint8_t> in, std::uint8_t* out) noexcept {
    result r;
    const std::uint8_t* p = in.data();
    const std::size_t n = in.size();
    std::size_t i = 0;
    while (i < n && !done()) {
        if (stage_ == stage::header) {
            while (have_ < need_ && i < n) hdr_[have_++] = p[i++];
            if (have_ < need_) break;
            if (have_ == 2) {
                need_ = static_cast<std::uint8_t>(check_start());
                if (done() || have_ < need_) continue;
            }
            header_done();
            continue;
        }
        const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, n - i));
        std::uint8_t* to = is_control(op_) ? control_.data() + control_size_ : out + r.payload;
        unmask(p + i, to, take);
        if (is_control(op_)) {
            control_size_ = static_cast<std::uint8_t>(control_size_ + take);
        } else {
            r.payload += take;
        }
        i += take;
        left_ -= take;
        if (left_ == 0) frame_done();
    }
    r.consumed = i;
    return r;
}

// Eight bytes at a time: `to` is at or before `from`, and each word is read before it is
// written, so in place works.
void decoder::unmask(const std::uint8_t* from, std::uint8_t* to, std::size_t n) noexcept {
    std::array<std::uint8_t, 8> k{};
    for (std::size_t j = 0; j < k.size(); ++j) k[j] = mask_[(mask_at_ + j) & 3];
    std::uint64_t k64 = 0;
    std::memcpy(&k64, k.data(), sizeof k64);
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        std::uint64_t w = 0;
        std::memcpy(&w, from + j, sizeof w);
        w ^= k64;
        std::memcpy(to + j, &w, sizeof w);
    }
    for (; j < n; ++j) to[j] = static_cast<std::uint8_t>(from[j] ^ k[j & 7]);
    mask_at_ = static_cast<std::uint8_t>((mask_at_ + n) & 3);
}

std::size_t decoder::check_start() noexcept {
    const std::uint8_t b0 = hdr_[0];
    const std::uint8_t b1 = hdr_[1];
    fin_ = (b0 & 0x80) != 0;
    op_ = static_cast<opcode>(b0 & 0x0F);
    const std::uint8_t len7 = b1 & 0x7F;
    if ((b0 & 0x70) != 0) {
        fail(close_protocol_error, "a frame with reserved bits set");
    } else if (op_ == opcode::text) {
        // MQTT 5.0 6.0.0-1: MQTT travels in binary messages only.
        fail(close_unsupported_data, "a text frame (MQTT travels in binary frames only)");
    } else if (op_ == opcode::continuation && !in_message_) {
        fail(close_protocol_error, "a continuation frame outside a fragmented message");
    } else if (op_ == opcode::binary && in_message_) {
        fail(close_protocol_error, "a new message inside a fragmented one");
    } else if (is_control(op_) && op_ != opcode::close && op_ != opcode::ping &&
               op_ != opcode::pong) {
        fail(close_protocol_error, "a frame with a reserved opcode");
    } else if (!is_control(op_) && op_ != opcode::continuation && op_ != opcode::binary) {
        fail(close_protocol_error, "a frame with a reserved opcode");
    } else if (is_control(op_) && !fin_) {
        fail(close_protocol_error, "a fragmented control frame");
    } else if (is_control(op_) && len7 > 125) {
        fail(close_protocol_error, "a control frame over 125 bytes");
    } else if ((b1 & 0x80) == 0) {
        fail(close_protocol_error, "an unmasked frame from the client");
    }
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
}

void decoder::header_done() noexcept {
    const std::uint8_t len7 = hdr_[1] & 0x7F;
    std::uint64_t size = len7;
    if (len7 == 126) {
        size = (std::uint64_t{hdr_[2]} << 8) | hdr_[3];
        if (size < 126)
            return fail(close_protocol_error, "a frame length not in its shortest form");
    } else if (len7 == 127) {
        size = 0;
        for (int k = 2; k < 10; ++k) size = (size << 8) | hdr_[k];
        if ((size >> 63) != 0) return fail(close_protocol_error, "a 64-bit frame length over 2^63");
        if (size < 65536)
            return fail(close_protocol_error, "a frame length not in its shortest form");
    }
    std::copy_n(hdr_.begin() + (need_ - 4), 4, mask_.begin());
    if (is_control(op_)) {
        control_size_ = 0;
    } else {
        if (size > max_message_ - message_) {
            return fail(close_too_big, "a message over the size limit (max_packet_size)");
        }
        message_ += size;
    }
    left_ = size;
    mask_at_ = 0;
    have_ = 0;
    need_ = 2;
    stage_ = stage::payload;
    if (left_ == 0) frame_done();
}

void decoder::frame_done() noexcept {
    stage_ = stage::header;
    if (is_control(op_)) return control_done();
    in_message_ = !fin_;
    if (fin_) message_ = 0;
}

void decoder::control_done() noexcept {
    if (op_ == opcode::ping) {
        std::copy_n(control_.begin(), control_size_, ping_.begin());
        ping_size_ = control_size_;
        ping_pending_ = true;
        return;
    }
    if (op_ != opcode::close) return;  // a pong: nothing to do
    if (control_size_ == 1) return fail(close_protocol_error, "a close frame with a 1-byte body");
    std::uint16_t code = 0;
    if (control_size_ >= 2) {
        code = static_cast<std::uint16_t>((control_[0] << 8) | control_[1]);
        if (!valid_close_code(code)) {
            return fail(close_protocol_error, "a close frame with an invalid code");
        }
        const std::string_view reason{reinterpret_cast<const char*>(control_.data()) + 2,
                                      static_cast<std::size_t>(control_size_ - 2)};
        if (!valid_close_reason(reason)) {
            return fail(close_invalid_data, "a close frame whose reason is not UTF-8");
        }
    }
    closed_ = true;
    peer_code_ = code;
}

std::size_t encode_header(opcode op, std::uint64_t size,
                          std::array<std::uint8_t, max_header>& out) noexcept {
    out[0] = static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(op));
    if (size < 126) {
        out[1] = static_cast<std::uint8_t>(size);
        return 2;
    }
    if (size <= 0xFFFF) {
        out[1] = 126;
        out[2] = static_cast<std::uint8_t>(size >> 8);
        out[3] = static_cast<std::uint8_t>(size);
        return 4;
    }
    out[1] = 127;
    for (int k = 0; k < 8; ++k) out[2 + k] = static_cast<std::uint8_t>(size >> (8 * (7 - k)));
    return 10;
}

std::size_t encode_close(std::uint16_t code, std::array<std::uint8_t, 4>& out) noexcept {
    out[0] = 0x88;
    if (code == 0) {
        out[1] = 0;
        return 2;
    }
    out[1] = 2;
    out[2] = static_cast<std::uint8_t>(code >> 8);
    out[3] = static_cast<std::uint8_t>(code);
    return 4;
}

}  // namespace mqtt::net::ws
