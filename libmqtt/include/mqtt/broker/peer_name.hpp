#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace mqtt::broker {

// Where a connection comes from, as the logs show it ("127.0.0.1:40123"). Every connection
// holds one, so it is one word: an IPv4 address and port written the way the server writes
// them (no leading zeros) are packed into it and formatted when asked for; any other text (an
// IPv6 address, an MQTT-SN node behind a forwarder, "?") is kept as a heap copy. str() gives
// back exactly the text it was made from.
class peer_name {
  public:
    peer_name() noexcept = default;
    explicit peer_name(std::string_view text);
    peer_name(peer_name&& o) noexcept : bits_(std::exchange(o.bits_, 0)) {}
    peer_name& operator=(peer_name&& o) noexcept {
        if (this != &o) {
            reset();
            bits_ = std::exchange(o.bits_, 0);
        }
        return *this;
    }
    peer_name(const peer_name&) = delete;
    peer_name& operator=(const peer_name&) = delete;
    ~peer_name() { reset(); }

    std::string str() const;
    bool empty() const noexcept { return bits_ == 0; }
    // The text is packed in the word (no heap copy).
    bool packed() const noexcept { return (bits_ & 1u) != 0; }

  private:
    void reset() noexcept;

    // 0: empty. Low bit set: packed, the port in bits 8-23, the address in bits 24-55.
    // Otherwise a pointer to the heap copy (its length, then the characters).
    std::uint64_t bits_ = 0;
};

}  // namespace mqtt::broker
