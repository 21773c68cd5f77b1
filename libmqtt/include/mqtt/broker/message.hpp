#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mqtt/broker/limits.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::broker {

// The bytes of messages the broker holds (memory_limit). Shared by the engine and every
// message charged to it, so a message that outlives the engine stays safe to destroy;
// atomic because a message may be released on another thread (the store's).
class memory_meter {
  public:
    std::size_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }
    void add(std::size_t n) noexcept { bytes_.fetch_add(n, std::memory_order_relaxed); }
    void remove(std::size_t n) noexcept { bytes_.fetch_sub(n, std::memory_order_relaxed); }

  private:
    std::atomic<std::size_t> bytes_{0};
};

// A message's charge on a memory_meter, given back when the message is destroyed. A copy
// of a message is a new message and starts uncharged.
class memory_charge {
  public:
    memory_charge() = default;
    memory_charge(const memory_charge&) noexcept {}
    memory_charge& operator=(const memory_charge&) noexcept { return *this; }
    ~memory_charge() {
        if (meter_) meter_->remove(bytes_);
    }
    bool charged() const noexcept { return meter_ != nullptr; }
    void charge(std::shared_ptr<memory_meter> meter, std::size_t bytes) noexcept {
        if (meter_ || !meter) return;
        meter_ = std::move(meter);
        bytes_ = bytes;
        meter_->add(bytes);
    }

  private:
    std::shared_ptr<memory_meter> meter_;
    std::size_t bytes_ = 0;
};

// What an output buffer is charged on a memory_meter: set to the bytes it holds whenever its
// owner settles it, given back when it is emptied or destroyed. Moves with the buffer (so a
// swap of two buffers swaps their charges); a copy starts uncharged.
class output_charge {
  public:
    output_charge() = default;
    output_charge(const output_charge&) noexcept {}
    output_charge& operator=(const output_charge& o) noexcept {
        if (this != &o) set(0);
        return *this;
    }
    output_charge(output_charge&& o) noexcept
        : meter_(std::move(o.meter_)), bytes_(std::exchange(o.bytes_, 0)) {}
    output_charge& operator=(output_charge&& o) noexcept {
        if (this != &o) {
            set(0);
            meter_ = std::move(o.meter_);
            bytes_ = std::exchange(o.bytes_, 0);
        }
        return *this;
    }
    ~output_charge() { set(0); }

    // Charges `bytes` in all (on `meter` if none is held yet).
    void set(const std::shared_ptr<memory_meter>& meter, std::size_t bytes) noexcept {
        if (!meter_) meter_ = meter;
        set(bytes);
    }
    void set(std::size_t bytes) noexcept {
        if (!meter_ || bytes == bytes_) return;
        if (bytes > bytes_) {
            meter_->add(bytes - bytes_);
        } else {
            meter_->remove(bytes_ - bytes);
        }
        bytes_ = bytes;
    }
    std::size_t bytes() const noexcept { return bytes_; }

  private:
    std::shared_ptr<memory_meter> meter_;
    std::size_t bytes_ = 0;
};

struct message_init;

// One published application message, immutable once made and shared by every delivery
// (std::shared_ptr<const message>): the payload is held once however many subscribers
// receive it. Per-delivery fields (QoS, packet id, RETAIN, DUP) are written when the
// PUBLISH is serialized into a connection's output buffer.
//
// Made by make_message only, as one allocation: the shared_ptr's control block, the
// message and, behind it, the bytes of its topic and payload (a payload of inline_limit
// bytes or more, taken from a received PUBLISH, keeps its own buffer instead, moved in
// rather than copied). Not copyable: `topic` and `payload` view bytes the message owns
// (copy_message makes another message).
struct message {
    // Payloads at least this large, moved into make_message as a string, keep that string.
    static constexpr std::size_t inline_limit = 4096;
    // Payloads at least this large, received in a PUBLISH that is alone in its connection's
    // read buffer, stay in that buffer: the message takes it over instead of copying.
    static constexpr std::size_t adopt_limit = 64 * 1024;

    std::string_view topic;
    std::string_view payload;
    protocol::qos qos_level = protocol::qos::at_most_once;  // as published
    bool retain = false;                                    // as published
    // The 5.0 Properties block (Property Length included): as received, or encoded again
    // when a Topic Alias or Subscription Identifiers had to be removed. Empty when there are none
    // (written as the one byte 0x00, Property Length 0): no allocation for the usual message.
    std::vector<std::uint8_t> props_v5;
    std::optional<std::uint32_t> message_expiry_interval;  // seconds, as received
    clock::time_point received{};
    // The id of this message's record in the store, 0 while it has none. Set by the store
    // (which lives on the engine's thread), not part of the message's value.
    mutable std::uint64_t store_id = 0;
    // With threads > 1, the ids of its records in the stores of shards 1 to 3, likewise (0:
    // none); each element is written and read by its shard's thread only. Shards past 3
    // keep theirs in their recorder (store::recorder::set_secondary_shard).
    mutable std::array<std::uint64_t, 3> shard_store_ids{};
    // Its bytes counted against memory_limit while the broker holds it (set by the engine
    // when the message is routed, retained or restored).
    mutable memory_charge charge;

    message() = default;
    message(const message&) = delete;
    message& operator=(const message&) = delete;

  private:
    friend std::shared_ptr<message> make_message_owning(message_init&&, std::string&&);
    friend std::shared_ptr<message> make_message_adopting(message_init&&,
                                                          std::unique_ptr<std::uint8_t[]>&&);
    std::string large_payload_;  // the payload's bytes when they are not behind the message
    // Or the receive buffer the payload was read into, taken over (make_message_adopting).
    std::unique_ptr<std::uint8_t[]> read_buffer_;
};

// What a message is made of: make_message copies `topic` and `payload` in.
struct message_init {
    std::string_view topic{};
    std::string_view payload{};
    protocol::qos qos_level = protocol::qos::at_most_once;
    bool retain = false;
    std::vector<std::uint8_t> props_v5{};
    std::optional<std::uint32_t> message_expiry_interval{};
    clock::time_point received{};
};

// A message of these fields, topic and payload copied behind it (one allocation).
std::shared_ptr<message> make_message(message_init&& init);
// Likewise, with the payload given as a string: one of inline_limit bytes or more is moved
// in and kept as it is (init.payload is ignored), a smaller one copied behind the message.
std::shared_ptr<message> make_message_owning(message_init&& init, std::string&& payload);
// Likewise, with init.payload pointing into `buffer`, which the message takes over as it is
// (the topic is copied behind the message).
std::shared_ptr<message> make_message_adopting(message_init&& init,
                                               std::unique_ptr<std::uint8_t[]>&& buffer);
// Freed message blocks (of up to 1 KiB) this thread keeps for its next messages, their
// bytes, and the most it keeps (message_block_budget(): 0 under AddressSanitizer).
std::size_t kept_message_blocks() noexcept;
std::size_t kept_message_bytes() noexcept;
std::size_t message_block_budget() noexcept;
// Another message of the same value (topic, payload, QoS, RETAIN, properties, expiry,
// receive time); the store ids and the memory charge start empty.
std::shared_ptr<message> copy_message(const message& m);

// What a message is charged against memory_limit: its bytes and the object around them.
inline std::size_t held_cost(const message& m) noexcept {
    return sizeof(message) + m.topic.size() + m.payload.size() + m.props_v5.size();
}

using message_ptr = std::shared_ptr<const message>;

// A client id as one immutable string shared by what refers to it from other threads (a
// message's publisher on its way to another shard): one reference count per holder, not a
// copy of the string.
using client_id_ptr = std::shared_ptr<const std::string>;

// The Subscription Identifiers one delivery carries (5.0 §3.3.4): those of every matching
// subscription of the receiving session that has one. Usually none or one, so an empty
// vector (no allocation) is the common case.
using subscription_ids = std::vector<std::uint32_t>;

// Takes the fields of a received PUBLISH (moved, not copied). The properties must be
// valid for PUBLISH (the codec checked them on the way in).
message_ptr make_message(protocol::publish_packet&& p, clock::time_point now);
// The same from a PUBLISH decoded as views: topic and payload copied behind the message
// (a payload of adopt_limit bytes or more stays where it is when p.source hands over the
// buffer holding it: framer::take_buffer), the properties taken (their block as received, but for a
// Topic Alias or Subscription Identifiers, which are removed).
message_ptr make_message(protocol::publish_view&& p, clock::time_point now);
// The Will of a CONNECT as a message (the Will Delay Interval is kept by the session).
message_ptr make_message(protocol::will_message&& w, clock::time_point now);
// A copy with a new Message Expiry Interval (retained messages delivered later, §3.3.2.3.3).
message_ptr with_expiry(const message& m, std::uint32_t seconds_left);
// A message that waited (queued, retained) as it goes out at `now`: nullptr once its
// Message Expiry Interval has passed, else with the interval reduced by the time it
// waited (MQTT 5.0 §3.3.2.3.3); `m` itself when it has no interval or waited under 1 s.
message_ptr aged(const message_ptr& m, clock::time_point now);

// A 5.0 Topic Alias in one delivery (§3.3.2.3.4): `alias` 0 sends none; with an alias the
// topic name is sent only when `with_topic` (the first use, which sets the mapping), else
// it is empty and the client takes the topic from the alias.
struct topic_alias_use {
    std::uint16_t alias = 0;
    bool with_topic = true;
};

// The exact size of the PUBLISH for this delivery; QoS 0 has no packet identifier. `ids`
// are added to the 5.0 Properties as Subscription Identifier properties (ignored for 3.1.1).
std::size_t publish_size(const message& m, protocol::protocol_version v, protocol::qos q,
                         std::span<const std::uint32_t> ids = {}, topic_alias_use a = {});

// Appends the PUBLISH for one delivery to `out`, one pass, no intermediate buffer.
void append_publish(std::vector<std::uint8_t>& out, const message& m, protocol::protocol_version v,
                    protocol::qos q, std::uint16_t packet_id, bool retain, bool dup = false,
                    std::span<const std::uint32_t> ids = {}, topic_alias_use a = {});
// The same PUBLISH without its payload (which the caller sends from the message itself,
// as a separate buffer of a gathered write); returns the bytes appended.
std::size_t append_publish_head(std::vector<std::uint8_t>& out, const message& m,
                                protocol::protocol_version v, protocol::qos q,
                                std::uint16_t packet_id, bool retain, bool dup = false,
                                std::span<const std::uint32_t> ids = {}, topic_alias_use a = {});

// Bytes for a connection to write. The payloads of large messages are not copied in: they
// stay in their (shared, immutable) message and go out from there as separate buffers of
// one gathered write; `payloads` says where each one goes between the bytes.
struct output_batch {
    // Payloads at least this large are referenced rather than copied.
    static constexpr std::size_t share_threshold = 4096;
    struct payload_ref {
        std::size_t at;   // msg->payload follows bytes[0, at)
        message_ptr msg;  // keeps the payload alive until it is written
    };
    std::vector<std::uint8_t> bytes;
    // `bytes` counted against memory_limit (the referenced payloads are counted with their
    // messages): settled by the session that fills the batch, moved with it to the
    // connection that writes it, and given back once written (clear()).
    output_charge charge;

    std::size_t size() const noexcept { return bytes.size() + payload_bytes(); }
    bool empty() const noexcept { return bytes.empty(); }
    // The referenced payloads, in ascending `at`.
    std::span<const payload_ref> payloads() const noexcept {
        if (!shared_) return {};
        return shared_->refs;
    }
    // The sum of the referenced payloads' sizes.
    std::size_t payload_bytes() const noexcept { return shared_ ? shared_->bytes : 0; }
    void clear() noexcept {
        bytes.clear();
        charge.set(0);
        release_payloads();
    }
    void release_payloads() noexcept { shared_.reset(); }
    // The PUBLISH of one delivery: its payload referenced when large, else copied.
    void append_publish(const message_ptr& m, protocol::protocol_version v, protocol::qos q,
                        std::uint16_t packet_id, bool retain, bool dup = false,
                        std::span<const std::uint32_t> ids = {}, topic_alias_use a = {});
    // Everything as one contiguous byte sequence (appended to `out`).
    void flatten_into(std::vector<std::uint8_t>& out) const;

  private:
    // Every connection's session holds a batch, and few ever carry a large payload: the
    // references are behind one pointer, allocated at the first one and freed once written.
    struct shared_payloads {
        std::vector<payload_ref> refs;
        std::size_t bytes = 0;
    };
    std::unique_ptr<shared_payloads> shared_;
};

}  // namespace mqtt::broker
