#pragma once

// tern-broker's store with threads > 1 (docs/persistence.md, "Threads"): one store file per
// shard, and what start-up does when the files were written with another number of
// threads. Pure functions over states, but for shard_files() (a directory listing).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/store/state.hpp"

namespace mqtt::broker {
class acl_file;
}

namespace mqtt::store {

// The store file of shard k: `file` for shard 0 (a store written with threads 1 is shard
// 0's as it is), `file.shardK` for the others.
std::string shard_file(const std::string& file, std::size_t k);
// The shards k >= 1 whose file is in `dir`, in increasing order (also past the current
// number of threads; K up to 1024, beyond which a file is not one the broker wrote).
std::vector<std::size_t> shard_files(const std::string& dir, const std::string& file);

// The shard a client id's session belongs on (broker::shard_of).
using home_function = std::function<std::size_t(std::string_view client_id)>;

// Whether the stores (index: the shard whose file it was) can be loaded each by its own
// shard with `n` threads: no file of a shard >= n, every session of a shard k >= 1 on the
// shard of its id, no client id in two stores, retained messages only in shard 0's store.
// A session in shard 0's store may have any id: bridges' and MQTT-SN clients' sessions live
// there whatever their id, and a TCP client whose session is on shard 0 is handed to it.
bool in_place(const std::vector<const state*>& stores, std::size_t n, const home_function& home);

// The n states to load instead, when in_place() is false. Sessions in shard 0's store stay
// there; a session of shard k >= 1 stays if k < n and it is on the shard of its id, else it
// goes to the shard of its id. A client id in more than one store (a start that stopped
// between writing the new stores and removing an old one: the copies are alike) is taken
// from the first store that has it, shard 0's first. Retained messages go to shard 0 (its
// own first; another store's only for a topic it lacks). Message ids are renumbered (each
// store had its own); `moved` counts the sessions that changed stores.
std::vector<state> redistribute(const std::vector<const state*>& stores, std::size_t n,
                                const home_function& home, std::int64_t now_ms, std::size_t& moved);

// ---- the outbox (docs/persistence.md, "Threads: the outbox")

// An outbox item of store `source` that another store has not taken.
struct pending_item {
    std::size_t source = 0;
    std::uint64_t seq = 0;
    std::int64_t received_ms = 0;
    broker::message_ptr msg;
    // A share group's delivery (outbox_share): the member's subscription and client id.
    std::string group;
    std::string client_id;
    // A message to route: the client id of the session that published it (empty: not
    // known, or none), whose No Local subscriptions it skips.
    std::string publisher{};
};

// The outbox items of the other stores that store `dest` has not taken: addressed to it,
// with a sequence past its inbox_applied for their source. By source, then sequence.
std::vector<pending_item> unapplied(const std::vector<const state*>& stores, std::size_t dest);

// Drops from every store's outbox what each destination's store says it has taken (what
// the files say, before any replay: only then is the confirmation on disk).
void settle_outboxes(const std::vector<state*>& stores);

// Whether the client of a stored session may read (receive) a topic: the broker's read ACL
// check (the store knows no ACL rules; the session carries its user name, if known).
using read_check = std::function<bool(std::string_view client_id, const stored_session& s,
                                      std::string_view topic)>;

// The read ACLs a replay checks (docs/persistence.md, "What a replay checks"): the broker's
// policy's and each listener's with a policy of its own, by the engine's security slot
// (nullptr: no acl_file, everything may be read), the listeners (their keys and slots), and
// the client ids no acl_file applies to (the local sessions of the broker's bridges).
struct replay_acls {
    std::vector<std::shared_ptr<const broker::acl_file>> by_slot;  // [0]: the broker's
    listener_keys listeners;
    std::set<std::string, std::less<>> exempt;
};

// The check of a session's read ACL at a replay, with the user name its record keeps
// (broker::stored_may_read): the broker's acl_file for a session whose record names no
// listener (written before listeners were kept), its listener's slot's for one whose
// listener is still there; for one whose listener is gone (or no longer told apart from
// another), the acl_file of the broker's policy and of every listener must each allow it,
// as the client may come back through any of them. Empty (no check) when no slot has an
// acl_file.
read_check read_check_of(replay_acls acls);

// What the engine's delivery does that a replay does too (broker::limits, the ACLs).
struct replay_rules {
    bool upgrade_outgoing_qos = false;
    bool queue_qos0 = false;
    // A session whose queue holds this many messages, or whose queued messages would pass
    // this many bytes (broker::queue_cost) with the message, does not get it (as the
    // engine's enqueue: dropped, counted in replay_counts::queue_full).
    std::size_t max_queued_messages = SIZE_MAX;
    std::size_t max_queued_bytes = SIZE_MAX;
    // Empty: every session may read everything (no acl_file). A session that may not read
    // the topic does not get it (counted in replay_counts::denied).
    read_check may_read{};
};

// What one start's replays did, over every call.
struct replay_counts {
    std::size_t queued = 0;      // deliveries queued
    std::size_t queue_full = 0;  // deliveries dropped: the session's queue was full
    std::size_t denied = 0;      // deliveries dropped: the session may not read the topic
    // Share deliveries replay_shared() gave members of other stores through an outbox, by
    // client id, not yet routed into their queues by replay(): counted as queued when
    // replay_shared() picks a member.
    struct on_way {
        std::size_t messages = 0;
        std::size_t bytes = 0;  // their broker::queue_cost
    };
    std::map<std::string, on_way, std::less<>> in_outboxes;
};

// Routes an item the store did not take to its sessions, as the engine routes a message
// from another shard to offline sessions: every ordinary subscription that matches but a
// No Local one of the item's publisher (MQTT-3.8.3-3; one delivery per session, at the highest
// granted QoS, with every Subscription Identifier), queued unless the session may not read the
// topic (rules.may_read) or its queue is full; then notes the item as taken (inbox_applied). A
// share group's delivery is queued for its member instead, if its session still has that
// subscription, may read the topic and its queue is not full. Returns the deliveries queued.
std::size_t replay(state& st, const pending_item& item, const replay_rules& rules,
                   replay_counts& counts);

// The share groups of an item replay() routes into store `dest` (call it first): each group
// whose home is `dest` (`home` of the whole `$share/...` filter, for the number of threads
// that wrote the stores) and whose filter matches gets the message once, for one member
// (every one is offline at start, so the engine would queue it for the next in turn): the
// member with the fewest messages queued whose queue is not full and who may read the
// topic (the others are passed over), one in `dest`'s store before one in another store,
// then by store and client id. Queued in `dest`'s store, or
// through `dest`'s outbox for another store's member (an outbox_share item, routed into
// that store by replay() once unapplied() finds it; so `dest`'s file must be written
// before that store's). With every member passed over, nobody (counted: as denied when one
// of them may not read it, else as queue_full). `shares_sent` is
// set when an outbox item was added. Returns the groups served.
std::size_t replay_shared(const std::vector<state*>& stores, std::size_t dest,
                          const pending_item& item, const replay_rules& rules,
                          const home_function& home, bool& shares_sent, replay_counts& counts);

}  // namespace mqtt::store
