#include "mqtt/broker/message.hpp"

#include <array>
#include <cstring>
#include <utility>

#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"

namespace mqtt::broker {
namespace {

using protocol::protocol_version;
using protocol::qos;

// The Properties block of a PUBLISH carrying `props`, taken from the codec's own encoding
// of a PUBLISH with a one-byte topic and no payload, so the property rules live in one
// place (the codec).
std::vector<std::uint8_t> encode_props(protocol::properties&& props) {
    props.topic_alias.reset();               // meaningful on one connection only
    props.subscription_identifiers.clear();  // set per subscriber at delivery
    if (props.empty()) return {};
    protocol::publish_packet carrier;
    carrier.topic = "t";
    carrier.props = std::move(props);
    auto bytes = protocol::encode(protocol::packet{std::move(carrier)}, protocol_version::v5);
    if (!bytes) return {};  // cannot happen for properties the decoder accepted
    const auto& b = *bytes;
    std::size_t header = 2;
    while (header < b.size() && (b[header - 1] & 0x80)) ++header;
    const std::size_t start = header + 3;  // topic length (2) + "t"
    return {b.begin() + static_cast<std::ptrdiff_t>(start), b.end()};
}

// The Subscription Identifier properties (0x0B, Variable Byte Integer each) of a delivery.
std::size_t ids_size(std::span<const std::uint32_t> ids) noexcept {
    std::size_t n = 0;
    for (const auto id : ids) n += 1 + protocol::variable_int_size(id);
    return n;
}

// The Property Length at the front of props_v5 (a Variable Byte Integer) and its size.
std::pair<std::uint32_t, std::size_t> property_length(const std::vector<std::uint8_t>& props) {
    std::uint32_t value = 0;
    std::size_t i = 0;
    for (unsigned shift = 0; i < props.size() && i < 4; shift += 7) {
        const std::uint8_t b = props[i++];
        value |= static_cast<std::uint32_t>(b & 0x7F) << shift;
        if ((b & 0x80) == 0) break;
    }
    return {value, i};
}

// The properties a delivery adds to the message's own: its Subscription Identifiers and
// its Topic Alias (0x23, Two Byte Integer).
std::size_t added_size(std::span<const std::uint32_t> ids, topic_alias_use a) noexcept {
    return ids_size(ids) + (a.alias != 0 ? 3 : 0);
}

// The size of the 5.0 Properties block of one delivery, Property Length included.
std::size_t props_size(const message& m, std::span<const std::uint32_t> ids, topic_alias_use a) {
    const std::size_t added = added_size(ids, a);
    if (added == 0) return m.props_v5.empty() ? 1 : m.props_v5.size();
    const auto [length, header] = property_length(m.props_v5);
    const auto total = static_cast<std::uint32_t>(length + added);
    return protocol::variable_int_size(total) + total;
}

std::size_t topic_size(const message& m, topic_alias_use a) noexcept {
    return a.alias != 0 && !a.with_topic ? 0 : m.topic.size();
}

std::size_t remaining_length(const message& m, protocol_version v, qos q,
                             std::span<const std::uint32_t> ids, topic_alias_use a) {
    if (!protocol::is_v5(v)) a = {};
    return 2 + topic_size(m, a) + (q != qos::at_most_once ? 2 : 0) +
           (protocol::is_v5(v) ? props_size(m, ids, a) : 0) + m.payload.size();
}

void put_varint(std::uint8_t*& at, std::uint32_t r) {
    do {
        std::uint8_t b = r & 0x7F;
        r >>= 7;
        *at++ = r ? static_cast<std::uint8_t>(b | 0x80) : b;
    } while (r != 0);
}

void put(std::uint8_t*& at, const void* p, std::size_t n) {
    if (n != 0) std::memcpy(at, p, n);
    at += n;
}

// Writes the PUBLISH up to its payload at `at` (room made by the caller); returns the end.
std::uint8_t* write_head(std::uint8_t* at, const message& m, protocol_version v, qos q,
                         std::uint16_t packet_id, bool retain, bool dup, std::size_t rem,
                         std::span<const std::uint32_t> ids, topic_alias_use a) {
    if (!protocol::is_v5(v)) a = {};
    const bool with_id = q != qos::at_most_once;
    *at++ = static_cast<std::uint8_t>(0x30 | (dup && with_id ? 0x08 : 0) |
                                      (static_cast<unsigned>(q) << 1) | (retain ? 1 : 0));
    put_varint(at, static_cast<std::uint32_t>(rem));
    const std::size_t topic_len = topic_size(m, a);
    *at++ = static_cast<std::uint8_t>(topic_len >> 8);
    *at++ = static_cast<std::uint8_t>(topic_len & 0xFF);
    put(at, m.topic.data(), topic_len);
    if (with_id) {
        *at++ = static_cast<std::uint8_t>(packet_id >> 8);
        *at++ = static_cast<std::uint8_t>(packet_id & 0xFF);
    }
    if (!protocol::is_v5(v)) return at;
    const std::size_t added = added_size(ids, a);
    if (added == 0) {
        if (m.props_v5.empty()) {
            *at++ = 0x00;  // Property Length 0
        } else {
            put(at, m.props_v5.data(), m.props_v5.size());
        }
        return at;
    }
    // The delivery's own properties first, then the message's (order is free, §2.2.2.2).
    const auto [length, header] = property_length(m.props_v5);
    put_varint(at, static_cast<std::uint32_t>(length + added));
    if (a.alias != 0) {
        *at++ = 0x23;
        *at++ = static_cast<std::uint8_t>(a.alias >> 8);
        *at++ = static_cast<std::uint8_t>(a.alias & 0xFF);
    }
    for (const auto id : ids) {
        *at++ = 0x0B;
        put_varint(at, id);
    }
    put(at, m.props_v5.data() + header, m.props_v5.size() - header);
    return at;
}

}  // namespace

namespace {

// Freed message blocks kept for the next messages made on the same thread. While many
// messages are alive at once (a QoS 1/2 in-flight window, a queue), glibc's own per-thread
// cache (7 blocks per size) runs dry and every message went through malloc's bins: about 300
// instructions per message with its free (fan-in QoS 1, callgrind). Blocks up to 1 KiB, in
// classes of 64 bytes, up to `budget` bytes in all per thread: a connection's read can make
// hundreds of messages in a row, and their acknowledgements free them in a row later. A
// block freed on another thread than the one that made it stays in that thread's cache. Off
// under AddressSanitizer, which must see each message freed to find a use after it.
class block_cache {
  public:
    static void* take(std::size_t bytes) {
        const std::size_t c = class_of(bytes);
        if (!enabled || c >= classes) return ::operator new(bytes);
        auto& st = state_;
        if (void* p = st.heads[c]) {
            st.heads[c] = *static_cast<void**>(p);
            --st.counts[c];
            st.bytes -= size_of(c);
            return p;
        }
        return ::operator new(size_of(c));
    }
    static void give(void* p, std::size_t bytes) noexcept {
        const std::size_t c = class_of(bytes);
        if (!enabled || c >= classes) {
            ::operator delete(p);
            return;
        }
        auto& st = state_;
        if (st.closed || st.bytes + size_of(c) > budget) {
            ::operator delete(p);
            return;
        }
        (void)&drain_;  // its destructor empties the cache when the thread ends
        *static_cast<void**>(p) = st.heads[c];
        st.heads[c] = p;
        ++st.counts[c];
        st.bytes += size_of(c);
    }

    // The blocks this thread keeps now, and their bytes.
    static std::size_t kept() noexcept {
        std::size_t n = 0;
        for (const auto c : state_.counts) n += c;
        return n;
    }
    static std::size_t kept_bytes() noexcept { return state_.bytes; }
    static constexpr std::size_t bytes_budget() noexcept { return enabled ? budget : 0; }

  private:
    static constexpr std::size_t granule = 64;
#if defined(__SANITIZE_ADDRESS__)
    static constexpr bool enabled = false;
#else
    static constexpr bool enabled = true;
#endif
    static constexpr std::size_t classes = 16;
    static constexpr std::size_t budget = 512 * 1024;

    static constexpr std::size_t class_of(std::size_t bytes) noexcept {
        return bytes == 0 ? 0 : (bytes - 1) / granule;
    }
    static constexpr std::size_t size_of(std::size_t c) noexcept {
        return (c + 1) * granule;
    }

    // Trivially destructible, so it stays usable while other thread_local objects are
    // destroyed (a message freed then is given back to operator delete: `closed`).
    struct state {
        std::array<void*, classes> heads;
        std::array<std::uint32_t, classes> counts;
        std::size_t bytes;
        bool closed;
    };
    struct drain {
        ~drain() {
            auto& st = state_;
            st.closed = true;
            for (std::size_t c = 0; c < classes; ++c) {
                while (void* p = st.heads[c]) {
                    st.heads[c] = *static_cast<void**>(p);
                    ::operator delete(p);
                }
                st.counts[c] = 0;
            }
            st.bytes = 0;
        }
    };
    static thread_local state state_;
    static thread_local drain drain_;
};

thread_local block_cache::state block_cache::state_{};
thread_local block_cache::drain block_cache::drain_{};

// Allocates, with the object it is asked for (the shared_ptr's control block holding the
// message), `extra` bytes behind it, and says where they start.
template <class T>
struct tail_allocator {
    using value_type = T;
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);

    tail_allocator(std::size_t extra, char** tail) noexcept : extra_(extra), tail_(tail) {}
    template <class U>
    tail_allocator(const tail_allocator<U>& o) noexcept : extra_(o.extra_), tail_(o.tail_) {}

    T* allocate(std::size_t n) {
        const std::size_t head = n * sizeof(T);
        auto* p = static_cast<char*>(block_cache::take(head + extra_));
        if (tail_ != nullptr) *tail_ = p + head;
        return reinterpret_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept { block_cache::give(p, n * sizeof(T) + extra_); }
    template <class U>
    bool operator==(const tail_allocator<U>& o) const noexcept {
        return extra_ == o.extra_;
    }

  private:
    template <class U>
    friend struct tail_allocator;
    std::size_t extra_;
    char** tail_;  // where the last allocation's extra bytes start (used while making)
};

// A message with `tail` bytes behind it, its fields but topic and payload set.
std::shared_ptr<message> allocate_message(message_init& init, std::size_t tail, char*& at) {
    auto m = std::allocate_shared<message>(tail_allocator<message>{tail, &at});
    m->qos_level = init.qos_level;
    m->retain = init.retain;
    m->props_v5 = std::move(init.props_v5);
    m->message_expiry_interval = init.message_expiry_interval;
    m->received = init.received;
    return m;
}

std::string_view put_text(char*& at, std::string_view s) noexcept {
    if (s.empty()) return {};
    std::memcpy(at, s.data(), s.size());
    const std::string_view placed{at, s.size()};
    at += s.size();
    return placed;
}

}  // namespace

std::size_t kept_message_blocks() noexcept {
    return block_cache::kept();
}
std::size_t kept_message_bytes() noexcept {
    return block_cache::kept_bytes();
}
std::size_t message_block_budget() noexcept {
    return block_cache::bytes_budget();
}

std::shared_ptr<message> make_message(message_init&& init) {
    char* at = nullptr;
    auto m = allocate_message(init, init.topic.size() + init.payload.size(), at);
    m->topic = put_text(at, init.topic);
    m->payload = put_text(at, init.payload);
    return m;
}

std::shared_ptr<message> make_message_owning(message_init&& init, std::string&& payload) {
    if (payload.size() < message::inline_limit) {
        init.payload = payload;
        return make_message(std::move(init));
    }
    char* at = nullptr;
    auto m = allocate_message(init, init.topic.size(), at);
    m->topic = put_text(at, init.topic);
    m->large_payload_ = std::move(payload);
    m->payload = m->large_payload_;
    return m;
}

std::shared_ptr<message> make_message_adopting(message_init&& init,
                                               std::unique_ptr<std::uint8_t[]>&& buffer) {
    char* at = nullptr;
    auto m = allocate_message(init, init.topic.size(), at);
    m->topic = put_text(at, init.topic);
    m->read_buffer_ = std::move(buffer);
    m->payload = init.payload;
    return m;
}

std::shared_ptr<message> copy_message(const message& m) {
    return make_message({m.topic, m.payload, m.qos_level, m.retain, m.props_v5,
                         m.message_expiry_interval, m.received});
}

message_ptr make_message(protocol::publish_packet&& p, clock::time_point now) {
    // The topic (and a small payload) are copied: the strings stay with the packet, which
    // the session's decoder reuses, so a PUBLISH costs one allocation, not three.
    message_init init{p.topic, {}, p.qos_level, p.retain, {}, p.props.message_expiry_interval, now};
    init.props_v5 = encode_props(std::move(p.props));
    return make_message_owning(std::move(init), std::move(p.payload));
}

message_ptr make_message(protocol::publish_view&& p, clock::time_point now) {
    message_init init{.topic = p.topic,
                      .payload = p.payload,
                      .qos_level = p.qos_level,
                      .retain = p.retain,
                      .message_expiry_interval = p.props.message_expiry_interval,
                      .received = now};
    if (!p.has_props) {
        // None: no block kept, written as Property Length 0.
    } else if (!p.props_block.empty() && !p.props.topic_alias &&
               p.props.subscription_identifiers.empty()) {
        // Nothing to take out: the block as received (order is free, §2.2.2.2), not
        // encoded again from the property set.
        init.props_v5.assign(p.props_block.begin(), p.props_block.end());
    } else {
        init.props_v5 = encode_props(std::move(p.props));
    }
    if (p.source != nullptr && p.payload.size() >= message::adopt_limit) {
        // A large payload alone in its read buffer (the usual case: the connection reads
        // the rest of a large packet into room made for exactly that) stays there. Only a
        // buffer about the packet's size is taken (at most 4 KiB more than its topic,
        // properties and payload), so held_cost, which counts those, stays about right.
        const std::size_t most = p.topic.size() + p.props_block.size() + p.payload.size() + 4096;
        auto taken = p.source->take_buffer(most);
        const auto* first = reinterpret_cast<const std::uint8_t*>(p.payload.data());
        if (taken.bytes && first >= taken.bytes.get() &&
            first + p.payload.size() <= taken.bytes.get() + taken.size) {
            return make_message_adopting(std::move(init), std::move(taken.bytes));
        }
    }
    return make_message(std::move(init));
}

message_ptr make_message(protocol::will_message&& w, clock::time_point now) {
    message_init init{w.topic, {}, w.qos_level, w.retain, {}, w.props.message_expiry_interval, now};
    // Will Properties are a subset of PUBLISH properties plus the Will Delay Interval.
    w.props.will_delay_interval.reset();
    init.props_v5 = encode_props(std::move(w.props));
    return make_message_owning(std::move(init), std::move(w.payload));
}

namespace {

// A copy with a new Message Expiry Interval: decode the properties back, change the one
// field, encode again. A rare path (messages with an expiry that waited), so clarity wins.
std::shared_ptr<message> expiry_copy(const message& m, std::uint32_t seconds_left) {
    auto copy = copy_message(m);
    copy->message_expiry_interval = seconds_left;
    std::vector<std::uint8_t> body{0x00, 0x01, 't'};
    if (m.props_v5.empty()) {
        body.push_back(0x00);
    } else {
        body.insert(body.end(), m.props_v5.begin(), m.props_v5.end());
    }
    auto decoded = protocol::decode(0x30, body, protocol_version::v5);
    if (!decoded) return copy;
    auto& pub = std::get<protocol::publish_packet>(*decoded);
    pub.props.message_expiry_interval = seconds_left;
    copy->props_v5 = encode_props(std::move(pub.props));
    return copy;
}

}  // namespace

message_ptr with_expiry(const message& m, std::uint32_t seconds_left) {
    return expiry_copy(m, seconds_left);
}

message_ptr aged(const message_ptr& m, clock::time_point now) {
    if (!m->message_expiry_interval) return m;
    const auto waited = std::chrono::duration_cast<std::chrono::seconds>(now - m->received);
    if (waited.count() <= 0) return m;
    const auto left = static_cast<long long>(*m->message_expiry_interval) - waited.count();
    if (left <= 0) return nullptr;
    // The copy counts its remaining interval from now, so ageing it again is right.
    auto copy = expiry_copy(*m, static_cast<std::uint32_t>(left));
    copy->received = now;
    return copy;
}

std::size_t publish_size(const message& m, protocol_version v, qos q,
                         std::span<const std::uint32_t> ids, topic_alias_use a) {
    const std::size_t rem = remaining_length(m, v, q, ids, a);
    return 1 + protocol::variable_int_size(static_cast<std::uint32_t>(rem)) + rem;
}

std::size_t append_publish_head(std::vector<std::uint8_t>& out, const message& m,
                                protocol_version v, qos q, std::uint16_t packet_id, bool retain,
                                bool dup, std::span<const std::uint32_t> ids, topic_alias_use a) {
    const std::size_t rem = remaining_length(m, v, q, ids, a);
    const std::size_t head =
        1 + protocol::variable_int_size(static_cast<std::uint32_t>(rem)) + rem - m.payload.size();
    const std::size_t at = out.size();
    out.resize(at + head);  // zero-fills the head only, which is small
    write_head(out.data() + at, m, v, q, packet_id, retain, dup, rem, ids, a);
    return head;
}

void append_publish(std::vector<std::uint8_t>& out, const message& m, protocol_version v, qos q,
                    std::uint16_t packet_id, bool retain, bool dup,
                    std::span<const std::uint32_t> ids, topic_alias_use a) {
    const std::size_t rem = remaining_length(m, v, q, ids, a);
    const std::size_t at = out.size();
    out.resize(at + 1 + protocol::variable_int_size(static_cast<std::uint32_t>(rem)) + rem);
    auto* end = write_head(out.data() + at, m, v, q, packet_id, retain, dup, rem, ids, a);
    put(end, m.payload.data(), m.payload.size());
}

void output_batch::append_publish(const message_ptr& m, protocol_version v, qos q,
                                  std::uint16_t packet_id, bool retain, bool dup,
                                  std::span<const std::uint32_t> ids, topic_alias_use a) {
    if (m->payload.size() < share_threshold) {
        broker::append_publish(bytes, *m, v, q, packet_id, retain, dup, ids, a);
        return;
    }
    append_publish_head(bytes, *m, v, q, packet_id, retain, dup, ids, a);
    if (!shared_) shared_ = std::make_unique<shared_payloads>();
    shared_->refs.push_back(payload_ref{bytes.size(), m});
    shared_->bytes += m->payload.size();
}

void output_batch::flatten_into(std::vector<std::uint8_t>& out) const {
    out.reserve(out.size() + size());
    std::size_t from = 0;
    for (const auto& p : payloads()) {
        out.insert(out.end(), bytes.begin() + static_cast<std::ptrdiff_t>(from),
                   bytes.begin() + static_cast<std::ptrdiff_t>(p.at));
        out.insert(out.end(), p.msg->payload.begin(), p.msg->payload.end());
        from = p.at;
    }
    out.insert(out.end(), bytes.begin() + static_cast<std::ptrdiff_t>(from), bytes.end());
}

}  // namespace mqtt::broker
