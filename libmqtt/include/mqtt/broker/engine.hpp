#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mqtt/broker/durable_session.hpp"
#include "mqtt/broker/limits.hpp"
#include "mqtt/broker/message.hpp"
#include "mqtt/broker/retained_store.hpp"
#include "mqtt/broker/security.hpp"
#include "mqtt/broker/share_ref.hpp"
#include "mqtt/broker/shard_interest.hpp"
#include "mqtt/broker/store_hooks.hpp"
#include "mqtt/protocol/packet.hpp"
#include "mqtt/protocol/subscription_trie.hpp"

namespace mqtt::broker {

class session;
class connected_meter;  // figures.hpp

// With threads > 1 (docs/broker.md, "Threading") every MQTT session lives on one shard, the
// one its client id names: FNV-1a (64 bits) of the id's bytes, mixed by MurmurHash3's 64-bit
// finalizer, modulo the number of shards.
// So a client id's connections (a resume, a takeover) always meet on the same shard.
std::size_t shard_of(std::string_view client_id, std::size_t shards) noexcept;

// The other shards' part of routing, given to each shard's engine with threads > 1 (null
// with one shard: routing then costs one pointer test more than it did).
class shard_router {
  public:
    // A share group's note or delivery (m: null for notes) to shard `to`.
    virtual void share(std::size_t to, share_op op, const share_ref_ptr& r,
                       const message_ptr& m) = 0;
    // After m was routed to this shard's sessions: the shards `to` (those whose filters
    // may match it, see shard_interest; may be empty) match it too. True when any other
    // shard is congested (this one's channel to it at its high-water mark: what went
    // there, m or this shard's share group deliveries), or congested forwarding what it
    // gets to a third one: the publisher pauses until shards_resumed(). `publisher`: the
    // client id of the session that published m (null: none, a Will or $SYS; also when `to`
    // is empty), which goes with m to each shard for No Local there (route_from_shard) and
    // which the store's outbox keeps for No Local at a replay.
    virtual bool publish(const message_ptr& m, std::span<const std::size_t> to,
                         const client_id_ptr& publisher) = 0;
    // After m set or cleared (an empty payload) a retained message here.
    virtual void retained(const message_ptr& m) = 0;
    // Before a SUBSCRIBE is handled here: 0 when every retained change the other shards
    // made so far has reached this shard's replica; else a ticket, and the engine's
    // retained_reached() is called with it (or a later one) once they all have.
    virtual std::uint64_t retained_ticket() = 0;
    // The last session holding up what shard `from` sends here (route_from_shard() answered
    // true) has drained or gone: the messages from `from` flow again.
    virtual void resume_from(std::size_t from) = 0;

  protected:
    ~shard_router() = default;
};

// Log lines from the broker: verbosity 0 is always shown (errors, start, stop), 1 is
// connections, 2 is every packet decision worth a line.
using log_function = std::function<void(int verbosity, std::string_view line)>;

// The broker's shared state, passed explicitly to every connection: the connections, the
// MQTT sessions by client id (which outlive connections), the subscription index, the
// retained messages, routing and the counters.
// No I/O and no clock of its own (times come in as arguments). Not thread-safe: with one
// event loop it lives on that loop; spreading connections over several loops later means
// handing deliveries to each session's loop through its session_observer.
class engine {
  public:
    explicit engine(limits l = {}, log_function log = {}, int verbosity = 0);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    const limits& config() const noexcept { return limits_; }
    // SIGHUP: the reloadable limits of `l` replace the running ones (copy_reloadable).
    void reload_limits(const limits& l) noexcept { copy_reloadable(l, limits_); }
    broker::stats& stats() noexcept { return stats_; }
    const broker::stats& stats() const noexcept { return stats_; }

    // ---- connections (called by session itself)
    void add(session& s);     // every connection, from construction
    void remove(session& s);  // on destruction
    std::size_t session_count() const noexcept { return connection_count_; }

    // ---- MQTT sessions (durable_session), keyed by client id
    struct attach_result {
        durable_session* state;
        bool present;  // an existing session was resumed (CONNACK Session Present)
    };
    // A connection's CONNECT was accepted. A connection already attached to `client_id` is
    // closed first (takeover, 5.0 reason 0x8E). With clean_start the existing session is
    // discarded; otherwise it is resumed and its pending Will cancelled (MQTT-3.1.3-9).
    attach_result attach(session& s, const std::string& client_id, bool clean_start,
                         clock::time_point now);
    // The connection attached to `ds` closed. A session with Session Expiry 0 ends now;
    // another one stays, offline, until it expires. The Will (if publish_will) goes out now,
    // after its delay, or when the session ends, whichever is first.
    void detach(durable_session& ds, bool publish_will, clock::time_point now);
    // A client id for a client that sent none, unique among the stored sessions: the
    // prefix (auto_id_prefix) and 16 random hex digits.
    std::string assign_client_id(std::string_view prefix = default_auto_id_prefix);
    // The connection attached to `client_id`, if any.
    session* find(std::string_view client_id) const;
    // The stored session of `client_id`, connected or not.
    const durable_session* find_session(std::string_view client_id) const;
    std::size_t connected_count() const noexcept { return connected_; }
    std::size_t stored_session_count() const noexcept { return by_id_.size(); }
    std::size_t offline_session_count() const noexcept { return by_id_.size() - connected_; }
    // Messages held by the stored sessions, summed in one pass over them (for the metrics
    // endpoint, not for the routing path).
    struct queue_totals {
        std::size_t queued = 0;        // waiting for an in-flight slot or for the client
        std::size_t queued_bytes = 0;  // their queue_cost, as max_queued_bytes counts it
        std::size_t inflight = 0;      // QoS 1/2 sent and not yet acknowledged
        std::size_t largest_queue = 0;
    };
    queue_totals queues() const noexcept;

    // ---- security: allow_anonymous, password_file, acl_file
    // Replaces the policy (SIGHUP): the ACL blocks of every stored session are looked up
    // again, so the new rules apply to connected clients at once.
    // Slot 0 is the broker's policy; with per_listener_settings each listener has a slot
    // of its own (its clients' sessions name it), and a slot never set falls back to 0.
    void set_security(std::shared_ptr<const security_policy> p, std::size_t slot = 0);
    const security_policy& security(std::size_t slot = 0) const noexcept {
        return slot < security_.size() && security_[slot] ? *security_[slot] : *security_[0];
    }
    // Records the user name a client connected with, and the policy slot and the number of
    // the listener it came through, for its ACL checks and the store.
    void identify(durable_session& ds, std::optional<std::string> username, std::size_t slot = 0,
                  std::size_t listener = 0);
    // ACL checks; always true without an acl_file (one pointer test, nothing allocated).
    bool may_publish(const durable_session& ds, std::string_view topic) {
        if (ds.listener_is_gone()) [[unlikely]]
            return every_policy_allows(ds, acl_access::write, topic);
        const acl_file* a = acl_of(ds);
        return a == nullptr || acl_check(*a, ds, acl_access::write, topic);
    }
    bool may_receive(const durable_session& ds, std::string_view topic) {
        if (ds.listener_is_gone()) [[unlikely]]
            return every_policy_allows(ds, acl_access::read, topic);
        const acl_file* a = acl_of(ds);
        return a == nullptr || acl_check(*a, ds, acl_access::read, topic);
    }
    // SUBSCRIBE: false when the ACL lets the client read no topic the filter matches
    // (acl_file::may_subscribe); the deliveries of a granted filter are still checked.
    bool may_subscribe(const durable_session& ds, std::string_view filter) const;

    // ---- time: offline sessions expire and delayed Wills fall due at deadlines
    // The earliest one; clock::time_point::max() when there is none.
    clock::time_point next_expiry() const noexcept;
    // Acts on every deadline at or before `now`. Call at (or after) next_expiry().
    void on_timer(clock::time_point now);
    // Called when next_expiry() moves earlier, so the timer driving on_timer() is re-armed.
    void set_expiry_hook(std::function<void()> hook) { expiry_hook_ = std::move(hook); }

    // ---- subscriptions
    // True when new, false when it replaced the session's subscription to that filter.
    // A valid `$share/<name>/<filter>` joins the share group <name> on <filter> (5.0 §4.8.2):
    // each matching message goes to one member of the group, in turn. `id` is the 5.0
    // Subscription Identifier (0: none).
    bool subscribe(durable_session& s, std::string_view filter,
                   const protocol::subscription_options& o, std::uint32_t id = 0);
    bool unsubscribe(durable_session& s, std::string_view filter);
    // Every subscription of every session, shared ones included.
    std::size_t subscription_count() const noexcept {
        return subscriptions_.size() + shared_members_;
    }
    std::size_t share_group_count() const noexcept { return groups_.size(); }

    // ---- messages
    // Stores or clears the retained message, then delivers to every matching subscription
    // (once per session, at the highest granted QoS). Returns the sessions reached.
    std::size_t publish(const durable_session* from, const message_ptr& m);
    // Delivers the retained messages matching `filter` to one new subscription.
    // They carry the subscription's Subscription Identifier `id` (0: none).
    void send_retained(session& s, std::string_view filter, protocol::qos granted,
                       clock::time_point now, std::uint32_t id = 0);
    const retained_store& retained() const noexcept { return retained_; }
    // memory_limit: the bytes of the messages held (queued, in flight, retained), each
    // counted once, and the bytes in connection output buffers waiting to be written (the
    // large payloads there are the messages' own, counted with them); full once together
    // they reach the limit, and a new PUBLISH is refused.
    std::size_t held_bytes() const noexcept { return meter_->bytes(); }
    std::size_t output_bytes() const noexcept { return out_meter_->bytes(); }
    bool memory_full() const noexcept {
        return meter_->bytes() + out_meter_->bytes() >= limits_.memory_limit;
    }
    // Counts m against memory_limit until it is destroyed (once; later calls do nothing).
    void charge(const message& m) { m.charge.charge(meter_, held_cost(m)); }
    // Counts an output buffer's bytes against memory_limit (what it holds now).
    void charge_output(output_batch& b) { b.charge.set(out_meter_, b.bytes.size()); }
    // With threads > 1: a message on its way to another shard (in a channel, not yet routed
    // there) is counted a second time, on the transit meter, until that shard takes it.
    void charge_transit(output_charge& c, const message& m) { c.set(transit_meter_, held_cost(m)); }
    std::size_t transit_bytes() const noexcept { return transit_meter_->bytes(); }
    // The receiving shard's check before it routes a message from another shard: full
    // without what is still in the channels. Those bytes are the senders' to bound (their
    // publishers are refused at memory_full()); counting them here too could hold every
    // channel while nothing but the channels fills the memory.
    bool memory_full_settled() const noexcept {
        const std::size_t all = meter_->bytes() + out_meter_->bytes();
        return all - std::min(all, transit_meter_->bytes()) >= limits_.memory_limit;
    }

    // ---- shards (threads > 1): this engine is shard `index` of `count`; `r` hands what is
    // published here to the others; `meters` is shard 0's engine, whose memory_limit
    // meters and connected_meter every shard shares (nullptr for shard 0 itself, which
    // makes the connected_meter when count > 1). Before any connection.
    void set_shard(std::size_t index, std::size_t count, shard_router* r, const engine* meters);
    // Every shard's summary of its filters ([shard_index()] is this engine's, which it keeps
    // up to date; the others it reads): a message goes only to the shards whose filters
    // may match it. Filters already subscribed are added now. Unset (or one shard), every
    // message goes to every other shard.
    void set_interests(std::vector<shard_interest*> all);
    std::size_t shard_index() const noexcept { return shard_index_; }
    std::size_t shard_count() const noexcept { return shard_count_; }
    // The clients connected over every shard (shard 0's, shared); nullptr with one shard.
    const connected_meter* connected_clients() const noexcept { return clients_.get(); }
    // A message published on shard `from` (charged there): routed to this shard's sessions,
    // the retained messages untouched. `publisher`: the client id of the session that
    // published it (empty: none), whose sessions here, if any, do not get it through their
    // No Local subscriptions (MQTT-3.8.3-3: one client id may have a session on two shards,
    // docs/broker.md, "Threading"). True when a
    // subscriber it reached is congested (QoS 1/2 queue over half its bounds): the caller
    // takes nothing more from shard `from` until the router's resume_from(from), so that
    // the sending shard's publishers pause (the channel fills to its high-water mark) as a
    // local publisher would, instead of the subscriber's queue overflowing. `now`: when it
    // is routed here (a hold it starts counts backpressure_timeout from then, not from
    // m->received: the message may have waited in the channel for a while).
    bool route_from_shard(const message_ptr& m, std::size_t from, clock::time_point now,
                          std::string_view publisher = {});
    static constexpr std::size_t no_shard = static_cast<std::size_t>(-1);
    // The shard whose message is being routed here (route_from_shard()), else no_shard.
    std::size_t routing_from_shard() const noexcept { return routing_from_; }
    // The `now` given with it (meaningful while routing_from_shard() is not no_shard).
    clock::time_point routing_now() const noexcept { return routing_now_; }
    // Sessions holding up shard `from` (route_from_shard() answered true for them).
    std::size_t holding_shard(std::size_t from) const noexcept {
        return from < shard_holds_.size() ? shard_holds_[from] : 0;
    }
    // From a session: it holds up shard `from` / no longer does. resume: tell the router when
    // the last hold on `from` ends (not from a destructor: the shards' loops may be ending).
    void hold_shard(std::size_t from) noexcept { ++shard_holds_[from]; }
    void release_shard(std::size_t from, bool resume);
    // A share group's note or delivery from shard `from` (share_op). True as for
    // route_from_shard(): a member it reached is congested, take nothing more from `from`.
    bool share_from_shard(std::size_t from, share_op op, const share_ref_ptr& r,
                          const message_ptr& m, clock::time_point now);
    // From a connection with remote share groups (session::note_share_ready): it can send a
    // QoS 1/2 message now, or no longer can; each of those groups' home shards is told.
    void note_share_ready(const durable_session& ds, bool ready);
    // After restore_session(), once the shards' loops run: the homes of the restored
    // sessions' remote share groups learn of their (offline) members.
    void announce_restored_shares();
    // A retained set or clear made on another shard, applied to this shard's replica.
    void apply_retained(const message_ptr& m);
    // A SUBSCRIBE of `s` is next: true when it must wait until this shard's replica of the
    // retained messages has every change the other shards made before now (the router's
    // retained_ticket()), so that a client subscribing right after a retained message was
    // set or cleared on another shard gets what that left. The session's input stays
    // paused until retained_reached() with its ticket. Not for a session others wait on
    // (a congested subscriber reads on, as for the pause for shards).
    bool hold_for_retained(session& s);
    // The replica has the changes of every ticket up to `ticket`: their sessions go on.
    void retained_reached(std::uint64_t ticket);
    std::size_t holding_for_retained() const noexcept { return retained_waiters_.size(); }
    // A congested shard took its backlog (or is no longer congested forwarding): the
    // publishers paused for it read again.
    void shards_resumed();
    std::size_t paused_for_shards() const noexcept { return shard_paused_.size(); }

    // Closes every session (5.0 clients get DISCONNECT 0x8B).
    void shutdown();

    // ---- persistence: the store hears about every durable change (nullptr: none)
    void set_store(store_hooks* s) noexcept { store_ = s; }
    store_hooks* store() const noexcept { return store_; }
    // Set while the store's last write failed (a full disk): new QoS 1/2 publishes are
    // refused, since they could not be made durable before their acknowledgement. With
    // threads > 1 on every shard while any shard's store is failing (a publish may go to
    // a subscriber of that shard): the shards share the count.
    void set_store_failing(bool failing) noexcept {
        if (failing == store_failing_) return;
        store_failing_ = failing;
        if (failing) {
            stores_failing_->fetch_add(1, std::memory_order_relaxed);
        } else {
            stores_failing_->fetch_sub(1, std::memory_order_relaxed);
        }
    }
    bool store_failing() const noexcept {
        return stores_failing_->load(std::memory_order_relaxed) != 0;
    }
    // State read back from a store at start, before any connection: an offline session
    // (its subscriptions are indexed, its expiry and Will scheduled) and a retained message.
    // The store is not told about these.
    // `identified`: its user name (durable_session::username) is the one its client last
    // connected with, and its ACL checks use it (against the broker-wide policy) until the
    // client connects again; otherwise (a store that did not keep it) it has no ACL block.
    void restore_session(std::unique_ptr<durable_session> s, bool identified = false);
    void restore_retained(const message_ptr& m);

    // The packet a session decodes a received packet into, reused from one packet to the
    // next so its strings and property set keep their memory (one for the engine, not one
    // per connection: a packet is over 1 KB). nullptr while it is lent out: a packet
    // handled while another one is being handled decodes into a fresh packet.
    protocol::packet* borrow_rx_packet() noexcept {
        return std::exchange(rx_lent_, true) ? nullptr : &rx_packet_;
    }
    // Likewise the view a received PUBLISH is decoded into (one of the two is lent at a time).
    protocol::publish_view* borrow_rx_publish() noexcept {
        return std::exchange(rx_lent_, true) ? nullptr : &rx_publish_;
    }
    void return_rx_packet() noexcept { rx_lent_ = false; }

    bool logging(int verbosity) const noexcept { return log_ && verbosity <= verbosity_; }
    void log(int verbosity, std::string_view line) const {
        if (logging(verbosity)) log_(verbosity, line);
    }

  private:
    using sub_entry = subscription_entry;
    struct target {
        durable_session* s;
        protocol::qos q;
        bool retain_as_published;
        std::uint32_t id;  // Subscription Identifier, 0 for none
    };
    using trie = protocol::subscription_trie<durable_session*, sub_entry>;
    // A share group: the sessions subscribed to `$share/<name>/<filter>`, served in turn.
    struct share_group {
        // Local (s set) or, with threads > 1, on another shard (ref set, s null; e unused).
        struct member {
            durable_session* s;
            sub_entry e;
            share_ref_ptr ref;
            bool online = true;  // a remote member's connection, as its shard last said
            bool ready = true;   // and whether it can send now (share_op::busy / ready)
        };
        std::vector<member> members;  // in the order they joined
        std::size_t next = 0;         // the member to try first for the next message
    };
    struct no_value {};
    using group_trie = protocol::subscription_trie<share_group*, no_value>;

    void deliver(const target& t, const message_ptr& m, const durable_session* from,
                 subscription_ids ids);
    void deliver_offline(durable_session& s, const message_ptr& m, protocol::qos q, bool retain,
                         subscription_ids ids);
    // `from_id`: the publisher's client id when it published on another shard (from null).
    std::size_t route(const durable_session* from, const message_ptr& m,
                      std::string_view from_id = {});
    void set_retained(const message_ptr& m);
    void route_shared(const durable_session* from, const message_ptr& m, std::size_t& reached);
    // One message for group g: its next member in turn (see route_shared).
    bool serve_group(share_group& g, const durable_session* from, const message_ptr& m,
                     bool retry = false);
    bool join_group(durable_session& s, std::string_view filter, std::string_view inner,
                    const sub_entry& e);
    bool leave_group(durable_session& s, std::string_view filter, std::string_view inner);
    // With threads > 1: the home shard of a group (the whole `$share/...` filter).
    std::size_t home_of(std::string_view group) const noexcept {
        return shard_of(group, shard_count_);
    }
    bool remote_group(std::string_view group) const noexcept {
        return shard_count_ > 1 && home_of(group) != shard_index_;
    }
    // The session's subscriptions to groups homed on other shards: note op to each home.
    void note_remote_groups(const durable_session& ds, share_op op);
    void join_remote(std::string_view filter, share_ref_ptr r);
    void leave_remote(std::string_view filter, std::string_view inner, const share_ref& r);
    void share_deliver(std::size_t from, share_op op, const share_ref_ptr& r, const message_ptr& m);
    void resume_publishers();
    // [shard]: a member here, congested by a share delivery from that home shard, holds up
    // its channel: this shard's publishers pause too (their messages may come back here
    // through the home, and the home's channel is held).
    std::vector<char> share_hold_;
    std::size_t share_hold_count_ = 0;
    void end_session(durable_session& s);
    void publish_will(durable_session& s);
    void schedule(durable_session& s);
    void unschedule(durable_session& s);
    bool acl_check(const acl_file& acl, const durable_session& ds, acl_access a,
                   std::string_view topic);
    // A session whose listener is gone (durable_session::listener_is_gone): the acl_file of
    // every security slot that has one must allow it.
    bool every_policy_allows(const durable_session& ds, acl_access a, std::string_view topic);
    const acl_file* acl_of(const durable_session& ds) const noexcept {
        return ds.security_slot == 0 ? acl_ : security(ds.security_slot).acl.get();
    }

    limits limits_;
    broker::stats stats_;
    log_function log_;
    int verbosity_;
    // Every connection, linked through the sessions themselves (no node or bucket of a set
    // per connection: memory per idle connection).
    session* connections_ = nullptr;
    std::size_t connection_count_ = 0;
    // Keyed by a view of the durable session's own client_id (one copy of the id, not two):
    // a session leaves the map before its id changes or it is destroyed.
    std::unordered_map<std::string_view, std::unique_ptr<durable_session>> by_id_;
    std::size_t connected_ = 0;
    // (deadline, session) of every offline session with a pending Will or an expiry.
    std::set<std::pair<clock::time_point, durable_session*>> deadlines_;
    std::function<void()> expiry_hook_;
    trie subscriptions_;
    // Share groups by their full `$share/<name>/<filter>`, and indexed by <filter>.
    std::unordered_map<std::string, std::unique_ptr<share_group>> groups_;
    group_trie shared_;
    std::size_t shared_members_ = 0;
    std::vector<share_group*> matched_groups_;  // scratch for publish()
    retained_store retained_;
    std::vector<target> targets_;  // scratch for publish(), reused to avoid allocating
    bool routing_ = false;
    std::vector<std::shared_ptr<const security_policy>> security_;  // by slot; [0] never null
    const acl_file* acl_ = nullptr;  // security_[0]->acl, cached for the routing path
    std::string acl_scratch_;        // expanded ACL patterns, reused
    std::mt19937_64 id_random_;
    store_hooks* store_ = nullptr;
    bool store_failing_ = false;  // this engine's own store
    std::shared_ptr<std::atomic<std::size_t>> stores_failing_ =
        std::make_shared<std::atomic<std::size_t>>(0);
    std::shared_ptr<memory_meter> meter_ = std::make_shared<memory_meter>();
    std::shared_ptr<memory_meter> out_meter_ = std::make_shared<memory_meter>();
    std::shared_ptr<memory_meter> transit_meter_ = std::make_shared<memory_meter>();
    shard_router* router_ = nullptr;            // set_shard(): null with one shard
    std::vector<shard_interest*> interests_;     // set_interests(): [shard], or empty
    shard_interest* own_interest_ = nullptr;     // interests_[shard_index_]
    std::vector<std::size_t> publish_to_;        // scratch for publish(): the shards it goes to
    void interest_added(std::string_view filter) noexcept {
        if (own_interest_ != nullptr) own_interest_->add(filter);
    }
    void interest_removed(std::string_view filter) noexcept {
        if (own_interest_ != nullptr) own_interest_->remove(filter);
    }
    std::shared_ptr<connected_meter> clients_;  // set_shard(): null with one shard
    std::vector<session*> shard_paused_;        // publishers paused for a congested shard
    // Sessions whose SUBSCRIBE waits for the retained replica, by ticket (increasing).
    std::vector<std::pair<std::uint64_t, session*>> retained_waiters_;
    // [from]: congested sessions holding up what shard `from` sends (see route_from_shard).
    std::vector<std::uint32_t> shard_holds_;
    std::size_t routing_from_ = no_shard;  // the sending shard while route_from_shard() runs
    clock::time_point routing_now_{};      // and the time it was given
    std::size_t shard_index_ = 0;
    std::size_t shard_count_ = 1;
    protocol::packet rx_packet_;         // borrow_rx_packet()
    protocol::publish_view rx_publish_;  // borrow_rx_publish()
    bool rx_lent_ = false;
};

}  // namespace mqtt::broker
