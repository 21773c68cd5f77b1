#include "mqtt/protocol/framer.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "mqtt/error.hpp"
#include "mqtt/protocol/codec.hpp"

namespace mqtt::protocol {
namespace {

// The fixed header at p: its length and the Remaining Length, or 0 if not all there yet.
struct header_scan {
    std::size_t header_size = 0;  // 0: incomplete
    std::uint32_t remaining = 0;
    std::error_code ec;
};

header_scan scan_header(const std::uint8_t* p, std::size_t n) noexcept {
    header_scan h;
    std::uint32_t value = 0;
    for (std::size_t i = 1; i < n && i <= 4; ++i) {
        const std::uint8_t b = p[i];
        value |= std::uint32_t{b & 0x7Fu} << (7 * (i - 1));
        if ((b & 0x80) == 0) {
            if (b == 0 && i > 1) h.ec = errc::non_minimal_variable_int;  // MQTT-1.5.5-1
            h.header_size = i + 1;
            h.remaining = value;
            return h;
        }
    }
    if (n > 4 && (p[4] & 0x80)) h.ec = errc::remaining_length_too_long;  // §2.2.3
    return h;
}

}  // namespace

std::size_t frame::size() const noexcept {
    return 1 + variable_int_size(static_cast<std::uint32_t>(body.size())) + body.size();
}

std::span<std::uint8_t> framer::prepare(std::size_t n) {
    compact();
    constexpr std::size_t most = std::numeric_limits<std::uint32_t>::max();
    // The caller's read size, never the peer's: a packet's missing bytes are bounded by
    // max_packet_size (check_pending_header() fails a larger one).
    if (n > most - end_) throw std::length_error("framer: more than 4 GiB buffered");
    if (size_ < end_ + n) {
        // Grows geometrically; the new bytes are left uninitialised (they are read into).
        const std::size_t size =
            std::min(std::max(std::size_t{end_} + n, std::size_t{size_} + size_ / 2), most);
        std::unique_ptr<std::uint8_t[]> bigger(new std::uint8_t[size]);
        if (end_ != 0) std::memcpy(bigger.get(), buf_.get(), end_);
        buf_ = std::move(bigger);
        size_ = static_cast<std::uint32_t>(size);
    }
    return {buf_.get() + end_, n};
}

void framer::commit(std::size_t n) {
    if (failed()) return;
    end_ = static_cast<std::uint32_t>(std::min(std::size_t{end_} + n, std::size_t{size_}));
    check_pending_header();
}

void framer::feed(std::span<const std::uint8_t> bytes) {
    if (failed() || bytes.empty()) return;
    auto room = prepare(bytes.size());
    std::memcpy(room.data(), bytes.data(), bytes.size());
    commit(bytes.size());
}

result<std::optional<frame>> framer::next() {
    // Whole packets before a bad one are still handed out; then the error.
    if (failed() && begin_ == end_) return error();
    const auto h = scan_header(buf_.get() + begin_, buffered());
    if (h.ec) {
        fail(h.ec);
        return error();
    }
    if (h.header_size == 0) return std::optional<frame>{};
    if (h.header_size + h.remaining > max_packet_size_) {
        fail(errc::packet_too_large);
        return error();
    }
    if (buffered() < h.header_size + h.remaining) {
        if (failed()) return error();
        return std::optional<frame>{};
    }
    frame f;
    f.first_byte = buf_[begin_];
    f.body = {buf_.get() + begin_ + h.header_size, h.remaining};
    f.source = this;
    begin_ += static_cast<std::uint32_t>(h.header_size + h.remaining);
    return std::optional<frame>{f};
}

std::size_t framer::missing() const noexcept {
    if (failed() || begin_ == end_) return 0;
    const auto h = scan_header(buf_.get() + begin_, buffered());
    if (h.ec || h.header_size == 0) return 0;
    const std::size_t whole = h.header_size + std::size_t{h.remaining};
    return whole > buffered() ? whole - buffered() : 0;
}

void framer::fail(std::error_code ec) noexcept {
    if (!failed()) error_ = static_cast<errc>(ec.value());  // an errc: see error_
    end_ = begin_;
}

// Rejects an oversized packet as soon as its header is in, and drops what was buffered,
// so a peer cannot make us hold a body we will refuse anyway.
void framer::check_pending_header() noexcept {
    if (failed()) return;
    std::size_t at = begin_;  // bytes before end_: fits 32 bits
    while (at < end_) {
        const auto h = scan_header(buf_.get() + at, end_ - at);
        if (h.ec || (h.header_size && h.header_size + h.remaining > max_packet_size_)) {
            error_ = h.ec ? static_cast<errc>(h.ec.value()) : errc::packet_too_large;
            end_ = static_cast<std::uint32_t>(at);  // keep the whole packets before it, drop the rest
            return;
        }
        if (h.header_size == 0 || end_ - at < h.header_size + h.remaining) return;
        at += h.header_size + h.remaining;
    }
}

void framer::release() noexcept {
    if (begin_ != end_) return;
    begin_ = end_ = 0;
    buf_.reset();
    size_ = 0;
}

framer::taken_buffer framer::take_buffer(std::size_t most) noexcept {
    if (!buf_ || begin_ != end_ || size_ > most || failed()) return {};
    taken_buffer t{std::move(buf_), size_};
    begin_ = end_ = size_ = 0;
    return t;
}

void framer::compact() {
    if (begin_ == 0) return;
    if (begin_ == end_) {
        begin_ = end_ = 0;
        // Give back the memory of one large packet once it has been handled.
        if (size_ > (std::size_t{1} << 20)) release();
        return;
    }
    std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
}

}  // namespace mqtt::protocol
