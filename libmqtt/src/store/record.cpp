#include "mqtt/store/record.hpp"

#include <array>
#include <cstring>
#include <memory>
#include <utility>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define TERN_CRC32C_SSE42 1
#endif

namespace mqtt::store {
namespace {

constexpr std::uint8_t magic0 = 0x54;  // 'T'
constexpr std::uint8_t magic1 = 0x72;  // 'r'

constexpr std::array<std::uint32_t, 256> make_crc_table() {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[i] = c;
    }
    return t;
}
constexpr auto crc_table = make_crc_table();

// ---- writing

class writer {
  public:
    explicit writer(std::vector<std::uint8_t>& out) : out_(out) {}
    void u8(std::uint8_t v) { out_.push_back(v); }
    void u16(std::uint16_t v) { big_endian<2>(v); }
    void u32(std::uint32_t v) { big_endian<4>(v); }
    void u64(std::uint64_t v) { big_endian<8>(v); }
    void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
    void bytes(const void* p, std::size_t n) {
        u32(static_cast<std::uint32_t>(n));
        const auto* b = static_cast<const std::uint8_t*>(p);
        out_.insert(out_.end(), b, b + n);
    }
    void str(std::string_view s) { bytes(s.data(), s.size()); }
    void ids(const std::vector<std::uint32_t>& v) {
        u32(static_cast<std::uint32_t>(v.size()));
        for (const auto id : v) u32(id);
    }

  private:
    // One insert of N bytes, not N push_backs that each check the capacity (the byte-wise
    // version was 9% of a shard's time with every publish stored).
    template <std::size_t N>
    void big_endian(std::uint64_t v) {
        std::array<std::uint8_t, N> b;
        for (std::size_t i = 0; i < N; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * (N - 1 - i)));
        out_.insert(out_.end(), b.begin(), b.end());
    }

    std::vector<std::uint8_t>& out_;
};

// ---- reading: a bounds-checked cursor; any failure sticks.

class reader {
  public:
    explicit reader(std::span<const std::uint8_t> in) : in_(in) {}
    bool ok() const noexcept { return ok_; }
    bool done() const noexcept { return ok_ && at_ == in_.size(); }
    // A field added to a record type later: absent in records written before it.
    bool more() const noexcept { return ok_ && at_ < in_.size(); }
    std::uint8_t u8() {
        if (!need(1)) return 0;
        return in_[at_++];
    }
    std::uint16_t u16() {
        const auto hi = u8();
        return static_cast<std::uint16_t>((hi << 8) | u8());
    }
    std::uint32_t u32() {
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v = (v << 8) | u8();
        return v;
    }
    std::uint64_t u64() {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v = (v << 8) | u8();
        return v;
    }
    std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
    std::string str() { return std::string{view()}; }
    // The bytes of a string field, valid while the input is.
    std::string_view view() {
        const std::uint32_t n = u32();
        if (!need(n)) return {};
        const std::string_view s(reinterpret_cast<const char*>(in_.data() + at_), n);
        at_ += n;
        return s;
    }
    std::vector<std::uint8_t> blob() {
        const std::uint32_t n = u32();
        if (!need(n)) return {};
        std::vector<std::uint8_t> v(in_.begin() + static_cast<std::ptrdiff_t>(at_),
                                    in_.begin() + static_cast<std::ptrdiff_t>(at_ + n));
        at_ += n;
        return v;
    }
    protocol::qos qos() {
        const auto v = u8();
        if (v > 2) ok_ = false;
        return static_cast<protocol::qos>(v & 3);
    }
    bool flag() {
        const auto v = u8();
        if (v > 1) ok_ = false;
        return v == 1;
    }
    std::vector<std::uint32_t> ids() {
        const std::uint32_t n = u32();
        if (!need(std::size_t{n} * 4)) return {};
        std::vector<std::uint32_t> v(n);
        for (auto& id : v) {
            id = u32();
            if (id == 0 || id > 268'435'455) ok_ = false;  // Variable Byte Integer range
        }
        return v;
    }
    stage waiting() {
        const auto v = u8();
        if (v > 2) ok_ = false;
        return static_cast<stage>(v & 3);
    }
    void fail() noexcept { ok_ = false; }

  private:
    bool need(std::size_t n) {
        if (!ok_ || in_.size() - at_ < n) {
            ok_ = false;
            return false;
        }
        return true;
    }
    std::span<const std::uint8_t> in_;
    std::size_t at_ = 0;
    bool ok_ = true;
};

// The SUBSCRIBE options byte of MQTT 5.0 (§3.8.3.1).
std::uint8_t options_byte(const protocol::subscription_options& o) noexcept {
    return static_cast<std::uint8_t>(static_cast<unsigned>(o.max_qos) | (o.no_local ? 0x04 : 0) |
                                     (o.retain_as_published ? 0x08 : 0) |
                                     (static_cast<unsigned>(o.retain) << 4));
}

std::optional<protocol::subscription_options> options_from(std::uint8_t b) noexcept {
    if ((b & 0x03) == 3 || ((b >> 4) & 0x03) == 3 || (b & 0xC0) != 0) return std::nullopt;
    protocol::subscription_options o;
    o.max_qos = static_cast<protocol::qos>(b & 0x03);
    o.no_local = (b & 0x04) != 0;
    o.retain_as_published = (b & 0x08) != 0;
    o.retain = static_cast<protocol::retain_handling>((b >> 4) & 0x03);
    return o;
}

// A Properties block as the broker keeps it: a Variable Byte Integer length, then exactly
// that many bytes.
bool valid_props(const std::vector<std::uint8_t>& p) noexcept {
    if (p.empty()) return true;  // none, as held in memory
    std::uint32_t len = 0;
    std::size_t i = 0;
    for (int shift = 0; shift <= 21; shift += 7) {
        if (i >= p.size()) return false;
        const std::uint8_t b = p[i++];
        len |= static_cast<std::uint32_t>(b & 0x7F) << shift;
        if ((b & 0x80) == 0) return p.size() - i == len;
    }
    return false;
}

// Empty and {0x00} are both "no properties" (the first in memory, the second on disk).
bool same_props(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) noexcept {
    const auto none = [](const std::vector<std::uint8_t>& p) {
        return p.empty() || (p.size() == 1 && p[0] == 0x00);
    };
    return none(a) ? none(b) : a == b;
}

// ---- payloads

struct payload_writer {
    writer w;
    void operator()(const header_record& r) {
        w.u32(r.format);
        w.i64(r.created_ms);
    }
    void operator()(const message_record& r) {
        const auto& m = *r.msg;
        w.u64(r.id);
        w.i64(r.received_ms);
        w.u8(static_cast<std::uint8_t>(m.qos_level));
        w.u8(m.retain ? 1 : 0);
        w.u8(m.message_expiry_interval ? 1 : 0);
        w.u32(m.message_expiry_interval.value_or(0));
        w.str(m.topic);
        // In memory "no properties" is an empty props_v5; on disk it is the one-byte block
        // {0x00}, as it always was, so stores stay readable by either form's reader.
        if (m.props_v5.empty()) {
            constexpr std::uint8_t none = 0x00;
            w.bytes(&none, 1);
        } else {
            w.bytes(m.props_v5.data(), m.props_v5.size());
        }
        w.str(m.payload);
    }
    void operator()(const retained_set_record& r) { w.u64(r.msg_id); }
    void operator()(const retained_clear_record& r) { w.str(r.topic); }
    void operator()(const session_record& r) {
        w.str(r.client_id);
        w.u32(r.expiry_interval);
        if (!r.identified) return;  // as written before user names were stored (tests)
        w.u8(r.username ? 1 : 0);
        if (r.username) w.str(*r.username);
        if (r.listener) w.str(*r.listener);
    }
    void operator()(const session_end_record& r) { w.str(r.client_id); }
    void operator()(const subscribe_record& r) {
        w.str(r.client_id);
        w.str(r.filter);
        w.u8(options_byte(r.options));
        w.u32(r.subscription_id);
    }
    void operator()(const unsubscribe_record& r) {
        w.str(r.client_id);
        w.str(r.filter);
    }
    void operator()(const queue_push_record& r) {
        w.str(r.client_id);
        w.u64(r.msg_id);
        w.u8(static_cast<std::uint8_t>(r.q));
        w.u8(r.retain ? 1 : 0);
        w.ids(r.subscription_ids);
    }
    void operator()(const queue_pop_record& r) { w.str(r.client_id); }
    void operator()(const inflight_add_record& r) {
        w.str(r.client_id);
        w.u16(r.packet_id);
        w.u64(r.msg_id);
        w.u8(static_cast<std::uint8_t>(r.q));
        w.u8(r.retain ? 1 : 0);
        w.u8(static_cast<std::uint8_t>(r.waiting));
        w.ids(r.subscription_ids);
    }
    void operator()(const inflight_stage_record& r) {
        w.str(r.client_id);
        w.u16(r.packet_id);
        w.u8(static_cast<std::uint8_t>(r.waiting));
    }
    void operator()(const inflight_remove_record& r) {
        w.str(r.client_id);
        w.u16(r.packet_id);
    }
    void operator()(const qos2_in_add_record& r) {
        w.str(r.client_id);
        w.u16(r.packet_id);
    }
    void operator()(const qos2_in_remove_record& r) {
        w.str(r.client_id);
        w.u16(r.packet_id);
    }
    void operator()(const commit_record&) {}
    void operator()(const outbox_add_record& r) {
        w.u64(r.seq);
        w.u64(r.msg_id);
        w.u32(static_cast<std::uint32_t>(r.dests.size()));
        for (const auto d : r.dests) w.u16(d);
        if (r.client_id.empty()) {
            if (!r.publisher.empty()) w.str(r.publisher);
            return;
        }
        w.str(r.group);
        w.str(r.client_id);
    }
    void operator()(const outbox_ack_record& r) {
        w.u16(r.dest);
        w.u64(r.seq);
    }
    void operator()(const outbox_last_record& r) { w.u64(r.seq); }
    void operator()(const inbox_applied_record& r) {
        w.u16(r.source);
        w.u64(r.seq);
    }
    void operator()(const session_offline_record& r) {
        w.str(r.client_id);
        w.u32(r.expiry_interval);
        w.i64(r.expires_ms);
        w.u64(r.will_msg_id);
        w.i64(r.will_ms);
    }
};

std::optional<record> decode_message(reader& r) {
    message_record m;
    m.id = r.u64();
    m.received_ms = r.i64();
    broker::message_init init;
    init.qos_level = r.qos();
    init.retain = r.flag();
    const bool has_expiry = r.flag();
    const std::uint32_t expiry = r.u32();
    if (has_expiry) init.message_expiry_interval = expiry;
    init.topic = r.view();
    init.props_v5 = r.blob();
    init.payload = r.view();
    if (!r.done() || m.id == 0 || !valid_props(init.props_v5)) return std::nullopt;
    if (init.props_v5.size() == 1) init.props_v5.clear();  // {0x00}: none (message.hpp)
    m.msg = broker::make_message(std::move(init));
    return record{std::move(m)};
}

std::optional<record> decode_fields(record_type t, reader& r) {
    switch (t) {
        case record_type::header: {
            header_record h;
            h.format = r.u32();
            h.created_ms = r.i64();
            return record{h};
        }
        case record_type::message:
            return decode_message(r);
        case record_type::retained_set:
            return record{retained_set_record{r.u64()}};
        case record_type::retained_clear:
            return record{retained_clear_record{r.str()}};
        case record_type::session: {
            session_record s;
            s.client_id = r.str();
            s.expiry_interval = r.u32();
            s.identified = r.more();
            if (s.identified) {
                const auto has_user = r.u8();
                if (has_user > 1) return std::nullopt;
                if (has_user == 1) s.username = r.str();
                // Absent in a record written before listeners were kept.
                if (r.more()) {
                    s.listener = r.str();
                    if (s.listener->empty()) return std::nullopt;
                }
            }
            return record{std::move(s)};
        }
        case record_type::session_end:
            return record{session_end_record{r.str()}};
        case record_type::subscribe: {
            subscribe_record s;
            s.client_id = r.str();
            s.filter = r.str();
            const auto o = options_from(r.u8());
            if (!o) return std::nullopt;
            s.options = *o;
            if (r.more()) s.subscription_id = r.u32();
            if (s.subscription_id > 268'435'455) return std::nullopt;
            return record{std::move(s)};
        }
        case record_type::unsubscribe: {
            unsubscribe_record u;
            u.client_id = r.str();
            u.filter = r.str();
            return record{std::move(u)};
        }
        case record_type::queue_push: {
            queue_push_record q;
            q.client_id = r.str();
            q.msg_id = r.u64();
            q.q = r.qos();
            q.retain = r.flag();
            if (r.more()) q.subscription_ids = r.ids();
            return record{std::move(q)};
        }
        case record_type::queue_pop:
            return record{queue_pop_record{r.str()}};
        case record_type::inflight_add: {
            inflight_add_record a;
            a.client_id = r.str();
            a.packet_id = r.u16();
            a.msg_id = r.u64();
            a.q = r.qos();
            a.retain = r.flag();
            a.waiting = r.waiting();
            if (r.more()) a.subscription_ids = r.ids();
            return record{std::move(a)};
        }
        case record_type::inflight_stage: {
            inflight_stage_record s;
            s.client_id = r.str();
            s.packet_id = r.u16();
            s.waiting = r.waiting();
            return record{std::move(s)};
        }
        case record_type::inflight_remove: {
            inflight_remove_record x;
            x.client_id = r.str();
            x.packet_id = r.u16();
            return record{std::move(x)};
        }
        case record_type::qos2_in_add: {
            qos2_in_add_record x;
            x.client_id = r.str();
            x.packet_id = r.u16();
            return record{std::move(x)};
        }
        case record_type::qos2_in_remove: {
            qos2_in_remove_record x;
            x.client_id = r.str();
            x.packet_id = r.u16();
            return record{std::move(x)};
        }
        case record_type::session_offline: {
            session_offline_record o;
            o.client_id = r.str();
            o.expiry_interval = r.u32();
            o.expires_ms = r.i64();
            o.will_msg_id = r.u64();
            o.will_ms = r.i64();
            return record{std::move(o)};
        }
        case record_type::commit:
            return record{commit_record{}};
        case record_type::outbox_add:
        case record_type::outbox_share: {
            outbox_add_record o;
            o.seq = r.u64();
            o.msg_id = r.u64();
            const std::uint32_t n = r.u32();
            // Destinations are other shards (threads is at most 256): a larger count is damage.
            if (!r.ok() || n == 0 || n > 1024 || o.seq == 0 || o.msg_id == 0) return std::nullopt;
            o.dests.reserve(n);
            for (std::uint32_t i = 0; i < n && r.ok(); ++i) o.dests.push_back(r.u16());
            if (t == record_type::outbox_share) {
                o.group = r.str();
                o.client_id = r.str();
                if (!r.ok() || n != 1 || o.client_id.empty() || o.group.empty())
                    return std::nullopt;
            } else if (r.more()) {
                o.publisher = r.str();  // absent in a record written before it was kept
                if (o.publisher.empty()) return std::nullopt;
            }
            return record{std::move(o)};
        }
        case record_type::outbox_ack: {
            outbox_ack_record a;
            a.dest = r.u16();
            a.seq = r.u64();
            return record{a};
        }
        case record_type::outbox_last:
            return record{outbox_last_record{r.u64()}};
        case record_type::inbox_applied: {
            inbox_applied_record a;
            a.source = r.u16();
            a.seq = r.u64();
            return record{a};
        }
    }
    return std::nullopt;
}

std::uint32_t get_u32(std::span<const std::uint8_t> b, std::size_t at) noexcept {
    return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) |
           (std::uint32_t{b[at + 2]} << 8) | std::uint32_t{b[at + 3]};
}

}  // namespace

namespace {

#ifdef TERN_CRC32C_SSE42
// SSE 4.2's crc32 instruction computes CRC-32C: 8 bytes per instruction instead of a table
// lookup per byte (about 20 times faster here: every record is checksummed on the event
// loop when it is appended, and again when the file is read).
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::span<const std::uint8_t> bytes,
                                                             std::uint32_t crc) noexcept {
    std::uint64_t c = ~crc;
    const std::uint8_t* p = bytes.data();
    std::size_t n = bytes.size();
    for (; n >= 8; p += 8, n -= 8) {
        std::uint64_t v = 0;
        std::memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    auto c32 = static_cast<std::uint32_t>(c);
    for (; n > 0; ++p, --n) c32 = _mm_crc32_u8(c32, *p);
    return ~c32;
}
#endif

}  // namespace

namespace detail {

std::uint32_t crc32c_portable(std::span<const std::uint8_t> bytes, std::uint32_t crc) noexcept {
    crc = ~crc;
    for (const std::uint8_t b : bytes) crc = crc_table[(crc ^ b) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

}  // namespace detail

std::uint32_t crc32c(std::span<const std::uint8_t> bytes, std::uint32_t crc) noexcept {
#ifdef TERN_CRC32C_SSE42
    if (__builtin_cpu_supports("sse4.2")) return crc32c_sse42(bytes, crc);
#endif
    return detail::crc32c_portable(bytes, crc);
}

bool message_record::operator==(const message_record& o) const {
    if (id != o.id || received_ms != o.received_ms || !msg != !o.msg) return false;
    if (!msg) return true;
    const auto& a = *msg;
    const auto& b = *o.msg;
    return a.topic == b.topic && a.payload == b.payload && a.qos_level == b.qos_level &&
           a.retain == b.retain && same_props(a.props_v5, b.props_v5) &&
           a.message_expiry_interval == b.message_expiry_interval;
}

record_type type_of(const record& r) noexcept {
    if (const auto* o = std::get_if<outbox_add_record>(&r); o != nullptr && !o->client_id.empty()) {
        return record_type::outbox_share;
    }
    return static_cast<record_type>(r.index());
}

std::string_view to_string(damage_kind k) noexcept {
    return k == damage_kind::corrupt ? "corrupt" : "torn_tail";
}

void append_record(std::vector<std::uint8_t>& out, const record& r) {
    const std::size_t start = out.size();
    out.insert(out.end(), {magic0, magic1, format_version, static_cast<std::uint8_t>(type_of(r)), 0,
                           0, 0, 0, 0, 0, 0, 0});
    std::visit(payload_writer{writer{out}}, r);
    const std::size_t len = out.size() - start - frame_header_size;
    for (int i = 0; i < 4; ++i) {
        out[start + 4 + static_cast<std::size_t>(i)] =
            static_cast<std::uint8_t>(len >> (24 - 8 * i));
    }
    const std::span<const std::uint8_t> all{out};
    std::uint32_t crc = crc32c(all.subspan(start + 2, 6));
    crc = crc32c(all.subspan(start + frame_header_size), crc);
    for (int i = 0; i < 4; ++i) {
        out[start + 8 + static_cast<std::size_t>(i)] =
            static_cast<std::uint8_t>(crc >> (24 - 8 * i));
    }
}

std::vector<std::uint8_t> encode_record(const record& r) {
    std::vector<std::uint8_t> out;
    append_record(out, r);
    return out;
}

std::optional<record> decode_payload(std::uint8_t version, std::uint8_t type,
                                     std::span<const std::uint8_t> payload) {
    if (version != format_version || type > static_cast<std::uint8_t>(record_type::outbox_share))
        return std::nullopt;
    reader r{payload};
    auto rec = decode_fields(static_cast<record_type>(type), r);
    if (!rec || !r.done()) return std::nullopt;
    return rec;
}

namespace detail {

std::optional<record> record_at(std::span<const std::uint8_t> bytes, std::size_t at,
                                std::size_t& size) {
    if (bytes.size() - at < frame_header_size) return std::nullopt;
    if (bytes[at] != magic0 || bytes[at + 1] != magic1) return std::nullopt;
    const std::uint32_t len = get_u32(bytes, at + 4);
    if (len > max_payload_size || bytes.size() - at - frame_header_size < len) return std::nullopt;
    const auto payload = bytes.subspan(at + frame_header_size, len);
    const std::uint32_t crc = crc32c(payload, crc32c(bytes.subspan(at + 2, 6)));
    if (crc != get_u32(bytes, at + 8)) return std::nullopt;
    size = frame_header_size + len;
    return decode_payload(bytes[at + 2], bytes[at + 3], payload);
}

std::size_t find_magic(std::span<const std::uint8_t> bytes, std::size_t from) noexcept {
    for (std::size_t i = from; i + 1 < bytes.size(); ++i) {
        if (bytes[i] == magic0 && bytes[i + 1] == magic1) return i;
    }
    return bytes.size();
}

std::size_t skip_zeros(std::span<const std::uint8_t> bytes, std::size_t from) noexcept {
    while (from < bytes.size() && bytes[from] == 0) ++from;
    return from;
}

}  // namespace detail
}  // namespace mqtt::store
