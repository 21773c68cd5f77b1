#pragma once

// The records of tern-broker's store: plain structs with named fields, their encoding into
// framed, CRC-protected bytes and back. Pure functions over byte spans, no I/O, no clock:
// tested byte for byte (tests/unit/store_record_test.cpp). The file format is described in
// docs/persistence.md.
//
// A framed record:
//
//   offset size
//   0      2    magic 'T' 'r' (0x54 0x72)
//   2      1    format version (1)
//   3      1    record type (record_type)
//   4      4    payload length, big endian
//   8      4    CRC-32C (Castagnoli) of bytes 2..7 and the payload, big endian
//   12     n    payload
//
// Integers in payloads are big endian; a string is a 4-byte length then its bytes; a list of
// Subscription Identifiers is a 4-byte count then 4 bytes each.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "mqtt/broker/message.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::store {

inline constexpr std::uint8_t format_version = 1;
inline constexpr std::size_t frame_header_size = 12;
// Larger than the largest MQTT packet, smaller than a random length is likely to be.
inline constexpr std::uint32_t max_payload_size = (1u << 28) + 4096;

// CRC-32C (Castagnoli, reflected, as in iSCSI and ext4): crc32c("123456789") = 0xE3069283.
std::uint32_t crc32c(std::span<const std::uint8_t> bytes, std::uint32_t crc = 0) noexcept;

enum class record_type : std::uint8_t {
    header = 0,
    message = 1,
    retained_set = 2,
    retained_clear = 3,
    session = 4,
    session_end = 5,
    subscribe = 6,
    unsubscribe = 7,
    queue_push = 8,
    queue_pop = 9,
    inflight_add = 10,
    inflight_stage = 11,
    inflight_remove = 12,
    qos2_in_add = 13,
    qos2_in_remove = 14,
    session_offline = 15,
    commit = 16,
    outbox_add = 17,
    outbox_ack = 18,
    outbox_last = 19,
    inbox_applied = 20,
    outbox_share = 21,  // an outbox_add_record naming a share group's member
};

// What an outbound QoS 1/2 delivery waits for (broker::outbound_stage as a wire value).
enum class stage : std::uint8_t { puback = 0, pubrec = 1, pubcomp = 2 };

// The first record of every store file.
struct header_record {
    std::uint32_t format = format_version;
    std::int64_t created_ms = 0;  // Unix time, milliseconds
    bool operator==(const header_record&) const = default;
};

// A message referred to by id from retained, queue, in-flight and Will records. Written once
// however many sessions hold it. Times are Unix milliseconds, so that a Message Expiry
// Interval keeps counting while the broker is down.
struct message_record {
    std::uint64_t id = 0;
    std::int64_t received_ms = 0;
    broker::message_ptr msg;  // never null in a valid record
    bool operator==(const message_record& o) const;
};

struct retained_set_record {
    std::uint64_t msg_id = 0;
    bool operator==(const retained_set_record&) const = default;
};
struct retained_clear_record {
    std::string topic;
    bool operator==(const retained_clear_record&) const = default;
};
// A persistent session exists (created, resumed, or its Session Expiry Interval changed).
// With the user name of the client's CONNECT, for the read ACL checks of what is queued for
// it while it is offline (a replay at start): after the expiry interval, a byte (0: no user
// name, 1: a user name follows) and the name. A record written before user names were
// stored ends after the expiry interval: `identified` false, the user name is not known.
// Then the listener the client came through, as a string (listener_key), whatever that
// listener's security policy; a record without it (written before listeners were kept, or
// of an in-process bridge) does not say: nullopt, the broker-wide policy applies.
struct session_record {
    std::string client_id;
    std::uint32_t expiry_interval = 0;
    bool identified = true;
    std::optional<std::string> username{};  // nullopt: none (an anonymous client)
    std::optional<std::string> listener{};  // only with `identified`; never empty
    bool operator==(const session_record&) const = default;
};
struct session_end_record {
    std::string client_id;
    bool operator==(const session_end_record&) const = default;
};
struct subscribe_record {
    std::string client_id;
    std::string filter;
    protocol::subscription_options options;
    std::uint32_t subscription_id = 0;  // 5.0 Subscription Identifier, 0: none
    bool operator==(const subscribe_record&) const = default;
};
struct unsubscribe_record {
    std::string client_id;
    std::string filter;
    bool operator==(const unsubscribe_record&) const = default;
};
// A delivery appended to the session's queue (offline, or waiting for an in-flight slot).
struct queue_push_record {
    std::string client_id;
    std::uint64_t msg_id = 0;
    protocol::qos q = protocol::qos::at_most_once;
    bool retain = false;
    std::vector<std::uint32_t> subscription_ids;  // carried by this delivery
    bool operator==(const queue_push_record&) const = default;
};
// The front of the session's queue left it (sent, expired or dropped).
struct queue_pop_record {
    std::string client_id;
    bool operator==(const queue_pop_record&) const = default;
};
// An outbound QoS 1/2 PUBLISH sent and awaiting acknowledgement.
struct inflight_add_record {
    std::string client_id;
    std::uint16_t packet_id = 0;
    std::uint64_t msg_id = 0;  // 0 once only the PUBREL is left (stage pubcomp)
    protocol::qos q = protocol::qos::at_least_once;
    bool retain = false;
    stage waiting = stage::puback;
    std::vector<std::uint32_t> subscription_ids;
    bool operator==(const inflight_add_record&) const = default;
};
// PUBREC came: only PUBREL / PUBCOMP are left, the message is no longer needed.
struct inflight_stage_record {
    std::string client_id;
    std::uint16_t packet_id = 0;
    stage waiting = stage::pubcomp;
    bool operator==(const inflight_stage_record&) const = default;
};
struct inflight_remove_record {
    std::string client_id;
    std::uint16_t packet_id = 0;
    bool operator==(const inflight_remove_record&) const = default;
};
// Inbound QoS 2: PUBLISH received and routed, PUBREL not yet come.
struct qos2_in_add_record {
    std::string client_id;
    std::uint16_t packet_id = 0;
    bool operator==(const qos2_in_add_record&) const = default;
};
struct qos2_in_remove_record {
    std::string client_id;
    std::uint16_t packet_id = 0;
    bool operator==(const qos2_in_remove_record&) const = default;
};
// The session's connection closed: when it expires and its delayed Will, if any. -1: never
// / none. A later session_record (reconnect) makes it online again.
struct session_offline_record {
    std::string client_id;
    std::uint32_t expiry_interval = 0;
    std::int64_t expires_ms = -1;
    std::uint64_t will_msg_id = 0;  // 0: no Will pending
    std::int64_t will_ms = -1;
    bool operator==(const session_offline_record&) const = default;
};

// The end of one group of records written together (a group commit, or a snapshot): the
// records of a group count only once its commit record is in the file, so that a group cut
// short by a crash (a kill during write(), a power cut before the sync) leaves none of its
// records behind. What they described was never acknowledged: the output that depended on
// them waits for the sync. Without it, a cut between the records of one PUBLISH (routed to a
// queue; its QoS 2 packet id noted) could keep the message but lose the id, and the
// publisher's resend would be routed a second time. Empty payload.
struct commit_record {
    bool operator==(const commit_record&) const = default;
};

// threads > 1 (docs/persistence.md, "Threads: the outbox"): a message this shard sends to
// other shards, written in the same group as the records of the packet that published it
// (its QoS 2 packet id), so that a crash keeps both or neither. `seq` numbers what this
// shard sends, in the order every destination takes it; `dests` are the shards it goes to.
// A share group's delivery that this shard, the group's home, sends to a member's shard
// names the member (`client_id` and its subscription `group`) and has that one destination;
// it is written as record type outbox_share.
// A message to route (outbox_add) ends with the client id of the session that published
// it, for No Local at a replay (MQTT-3.8.3-3); a record written before it was kept, or of
// a message no session published (a Will, $SYS), ends after the destinations: `publisher`
// empty, nobody's.
struct outbox_add_record {
    std::uint64_t seq = 0;
    std::uint64_t msg_id = 0;
    std::vector<std::uint16_t> dests;
    std::string group;        // outbox_share only
    std::string client_id;    // outbox_share only (never empty there)
    std::string publisher{};  // outbox_add only; empty: not known
    bool operator==(const outbox_add_record&) const = default;
};
// Shard `dest` has on its disk what it did with this shard's outbox items up to `seq`: they
// are no longer needed for it (an item goes once every destination has confirmed it).
struct outbox_ack_record {
    std::uint16_t dest = 0;
    std::uint64_t seq = 0;
    bool operator==(const outbox_ack_record&) const = default;
};
// The highest outbox sequence this shard has used (snapshots: the numbers never go back,
// also once every item is confirmed and gone).
struct outbox_last_record {
    std::uint64_t seq = 0;
    bool operator==(const outbox_last_record&) const = default;
};
// Written by a receiving shard in the group of the records its routing made: it has taken
// shard `source`'s outbox items up to `seq`. At start, an outbox item past it is routed again.
struct inbox_applied_record {
    std::uint16_t source = 0;
    std::uint64_t seq = 0;
    bool operator==(const inbox_applied_record&) const = default;
};

using record =
    std::variant<header_record, message_record, retained_set_record, retained_clear_record,
                 session_record, session_end_record, subscribe_record, unsubscribe_record,
                 queue_push_record, queue_pop_record, inflight_add_record, inflight_stage_record,
                 inflight_remove_record, qos2_in_add_record, qos2_in_remove_record,
                 session_offline_record, commit_record, outbox_add_record, outbox_ack_record,
                 outbox_last_record, inbox_applied_record>;

record_type type_of(const record& r) noexcept;

// Appends the framed record to `out`.
void append_record(std::vector<std::uint8_t>& out, const record& r);
std::vector<std::uint8_t> encode_record(const record& r);

// Takes encoded records a piece at a time (a snapshot on its way to a file); an error stops
// the writing and is passed on.
using byte_sink = std::function<std::error_code(std::span<const std::uint8_t>)>;

// Decodes one payload of the given type and format version; nullopt when it does not parse
// (truncated, trailing bytes, out-of-range values, unknown type or version).
std::optional<record> decode_payload(std::uint8_t version, std::uint8_t type,
                                     std::span<const std::uint8_t> payload);

// What scanning a store file found that it could not use.
enum class damage_kind : std::uint8_t {
    corrupt,    // bytes between valid records (skipped; reading resynchronised)
    torn_tail,  // an incomplete or corrupt record at the end (cut off)
};
std::string_view to_string(damage_kind k) noexcept;

struct damage {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    damage_kind kind = damage_kind::corrupt;
    bool operator==(const damage&) const = default;
};

// Reads framed records from a whole file's bytes: each valid record goes to `on_record`
// with its offset; an invalid one is skipped by looking for the next offset where a whole
// valid record starts. Returns what was skipped, in file order. Zero bytes from where a
// record would start to the end are the file's preallocated room (store_file), not damage;
// `data_end`, if given, is set to where they start (the size of the bytes when there are none).
template <class F>
std::vector<damage> scan(std::span<const std::uint8_t> bytes, F&& on_record,
                         std::uint64_t* data_end = nullptr);

namespace detail {
// The record starting at `at`, if a whole valid one does; `size` is its framed size.
std::optional<record> record_at(std::span<const std::uint8_t> bytes, std::size_t at,
                                std::size_t& size);
std::size_t find_magic(std::span<const std::uint8_t> bytes, std::size_t from) noexcept;
// The offset of the first byte from `from` on that is not zero, or the size of the bytes.
std::size_t skip_zeros(std::span<const std::uint8_t> bytes, std::size_t from) noexcept;
// crc32c() with a table, a byte at a time: what it computes where the CPU has no crc32
// instruction (x86-64 without SSE 4.2, other architectures).
std::uint32_t crc32c_portable(std::span<const std::uint8_t> bytes, std::uint32_t crc = 0) noexcept;
}  // namespace detail

template <class F>
std::vector<damage> scan(std::span<const std::uint8_t> bytes, F&& on_record,
                         std::uint64_t* data_end) {
    std::vector<damage> found;
    std::size_t at = 0;
    if (data_end != nullptr) *data_end = bytes.size();
    while (at < bytes.size()) {
        std::size_t size = 0;
        if (auto r = detail::record_at(bytes, at, size)) {
            on_record(static_cast<std::uint64_t>(at), std::move(*r));
            at += size;
            continue;
        }
        // Resynchronise: the next offset where a whole valid record starts.
        std::size_t from = at + 1;
        if (bytes[at] == 0) {
            from = detail::skip_zeros(bytes, at);
            if (from == bytes.size()) {  // zeros to the end: room made ahead, not damage
                if (data_end != nullptr) *data_end = at;
                break;
            }
        }
        std::size_t next = detail::find_magic(bytes, from);
        while (next < bytes.size() && !detail::record_at(bytes, next, size)) {
            next = detail::find_magic(bytes, next + 1);
        }
        const bool tail = next >= bytes.size();
        found.push_back({at, (tail ? bytes.size() : next) - at,
                         tail ? damage_kind::torn_tail : damage_kind::corrupt});
        at = next;
    }
    return found;
}

}  // namespace mqtt::store
