#pragma once

// The share groups' notes and deliveries between shards (threads > 1), in their own header
// so that mqtt/net/shard_runtime.hpp carries them without the engine's.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mqtt::broker {

// Shared subscriptions with threads > 1 (docs/broker.md, "Threading"): a share group
// `$share/<name>/<filter>` has a home shard, shard_of(the whole filter). Every shard sees
// every message, so the home shard alone picks the member in turn. A member whose session
// lives on another shard is known at the home by the share_ref of its join (immutable;
// the home's deliveries to it share that one: a reference count per message, no copy).
struct share_ref {
    std::string group;      // `$share/<name>/<filter>`
    std::string client_id;  // the member's session
    std::size_t shard = 0;  // the member's shard
};
using share_ref_ptr = std::shared_ptr<const share_ref>;

// What goes between a member's shard and the group's home shard, in each pair's FIFO order.
enum class share_op : std::uint8_t {
    join,     // member -> home: subscribed (connected); again: replaces the member's entry
    leave,    // member -> home: unsubscribed, or its session ended
    online,   // member -> home: its session has a connection again
    offline,  // member -> home: its connection closed, the session stays
    // member -> home: its connection cannot send a QoS 1/2 message now (Receive Maximum or
    // max_inflight_messages reached, messages waiting, or its output over its bound), and
    // again can (`ready`). Sent by members of remote groups only, on each change; a home
    // passes over a busy member while another one can send (as it does locally).
    busy,
    ready,
    deliver,  // home -> member: the member's turn; an offline member sends it back
    queue,    // home -> member: every member was offline; the session queues it
    again,    // member -> home: not taken (offline, unsubscribed, gone): pick again
    // home -> member: the pick after an `again`; taken (queued if offline) or, when the
    // session is gone, dropped: never sent back twice, so a lost note cannot make a loop.
    retry,
};

}  // namespace mqtt::broker
