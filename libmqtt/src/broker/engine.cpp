#include "mqtt/broker/engine.hpp"

#include <algorithm>
#include <utility>

#include "mqtt/broker/figures.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {

engine::engine(limits l, log_function log, int verbosity)
    : limits_(l),
      log_(std::move(log)),
      verbosity_(verbosity),
      retained_(l.max_retained_messages, l.max_retained_bytes),
      security_{std::make_shared<const security_policy>()},
      id_random_(std::random_device{}()) {}

engine::~engine() = default;

void copy_reloadable(const limits& from, limits& to) noexcept {
    to.max_queued_messages = from.max_queued_messages;
    to.max_queued_bytes = from.max_queued_bytes;
    to.max_outbound_bytes = from.max_outbound_bytes;
    to.max_inflight_bytes = from.max_inflight_bytes;
    to.max_subscriptions = from.max_subscriptions;
    to.max_topic_length = from.max_topic_length;
    to.max_topic_levels = from.max_topic_levels;
    to.max_client_id_length = from.max_client_id_length;
    to.max_publish_rate = from.max_publish_rate;
    to.memory_limit = from.memory_limit;
    to.connect_timeout = from.connect_timeout;
    to.backpressure_timeout = from.backpressure_timeout;
    to.persistent_client_expiration = from.persistent_client_expiration;
    to.max_keepalive = from.max_keepalive;
    to.max_offline_sessions = from.max_offline_sessions;
    to.queue_qos0_messages = from.queue_qos0_messages;
    to.upgrade_outgoing_qos = from.upgrade_outgoing_qos;
}

// ---- subscriptions ----------------------------------------------------------------------

bool engine::subscribe(durable_session& s, std::string_view filter,
                       const protocol::subscription_options& o, std::uint32_t id) {
    const sub_entry e{o, id};
    const bool added = s.subscriptions.insert_or_assign(std::string{filter}, e).second;
    if (store_) store_->subscribed(s, filter, e);
    const auto shared = protocol::parse_shared(filter);
    if (shared.is_shared() && remote_group(filter)) {
        // The group's home shard keeps its turn: it learns of the member (again, for a
        // changed entry: the member's shard delivers with the entry it holds).
        const auto ref = std::make_shared<const share_ref>(
            share_ref{std::string{filter}, s.client_id, shard_index_});
        router_->share(home_of(filter), share_op::join, ref, nullptr);
        if (added) ++s.remote_shares;
        if (s.connection == nullptr) {
            note_remote_groups(s, share_op::offline);
        } else if (added && !s.connection->share_ready_now()) {
            // A join says ready: a connection that cannot send now says so at once.
            router_->share(home_of(filter), share_op::busy, ref, nullptr);
        }
        return added;
    }
    if (shared.is_shared()) return join_group(s, filter, shared.filter, e);
    const bool entry_added = subscriptions_.insert_or_assign(filter, &s, e);
    if (entry_added) interest_added(filter);
    return entry_added;
}

bool engine::unsubscribe(durable_session& s, std::string_view filter) {
    if (s.subscriptions.erase(std::string{filter}) == 0) return false;
    if (store_) store_->unsubscribed(s, filter);
    const auto shared = protocol::parse_shared(filter);
    if (shared.is_shared() && remote_group(filter)) {
        router_->share(home_of(filter), share_op::leave,
                       std::make_shared<const share_ref>(
                           share_ref{std::string{filter}, s.client_id, shard_index_}),
                       nullptr);
        --s.remote_shares;
        return true;
    }
    if (shared.is_shared()) return leave_group(s, filter, shared.filter);
    if (!subscriptions_.erase(filter, &s)) return false;
    interest_removed(filter);
    return true;
}

// ---- security ---------------------------------------------------------------------------

void engine::set_security(std::shared_ptr<const security_policy> p, std::size_t slot) {
    if (slot >= security_.size()) security_.resize(slot + 1);
    if (!p && slot == 0) p = std::make_shared<const security_policy>();
    security_[slot] = std::move(p);
    acl_ = security_[0]->acl.get();
    // The ACL blocks of the sessions under that slot (or falling back to it) are looked up
    // again, so new rules apply to connected clients at once.
    for (auto& [id, ds] : by_id_) {
        const acl_file* a = acl_of(*ds);
        ds->acl_block = a ? a->block_of(ds->username()) : -1;
    }
}

void engine::identify(durable_session& ds, std::optional<std::string> username, std::size_t slot,
                      std::size_t listener) {
    ds.set_username(std::move(username));
    ds.security_slot = static_cast<std::uint16_t>(slot);
    ds.listener = static_cast<std::uint16_t>(listener);
    const acl_file* a = acl_of(ds);
    ds.acl_block = a ? a->block_of(ds.username()) : -1;
}

bool engine::acl_check(const acl_file& acl, const durable_session& ds, acl_access a,
                       std::string_view topic) {
    const acl_client c{ds.username(), ds.client_id, ds.acl_block};
    return acl.allows(c, a, topic, acl_scratch_);
}

bool engine::every_policy_allows(const durable_session& ds, acl_access a, std::string_view topic) {
    // Its user's block in each file (the anonymous one without a user name); a session
    // restored without the user name its client connected with has none (patterns only).
    const bool named = ds.listener == durable_session::listener_gone;
    for (const auto& p : security_) {
        if (!p || !p->acl) continue;
        const acl_file& acl = *p->acl;
        const acl_client c{ds.username(), ds.client_id, named ? acl.block_of(ds.username()) : -1};
        if (!acl.allows(c, a, topic, acl_scratch_)) return false;
    }
    return true;
}

bool engine::may_subscribe(const durable_session& ds, std::string_view filter) const {
    const acl_file* a = acl_of(ds);
    if (a == nullptr) return true;
    const acl_client c{ds.username(), ds.client_id, ds.acl_block};
    return a->may_subscribe(c, filter);
}

// ---- messages ---------------------------------------------------------------------------

std::size_t engine::publish(const durable_session* from, const message_ptr& m) {
    // Charged here, on the publishing shard, before any other shard sees it (the charge
    // is written once, by one thread).
    charge(*m);
    if (m->retain && limits_.retain_available) {
        set_retained(m);
        if (router_) router_->retained(m);
    }
    const std::size_t reached = route(from, m);
    bool congested = false;
    if (router_ != nullptr) {
        publish_to_.clear();
        for (std::size_t k = 0; k < shard_count_; ++k) {
            if (k != shard_index_ && (interests_.empty() || interests_[k]->may_match(m->topic)))
                publish_to_.push_back(k);
        }
        // Also with nobody to send it to: what the router answers covers every shard (a
        // share group's deliveries from here to a congested one pause this publisher too).
        static const client_id_ptr none;
        congested = router_->publish(
            m, publish_to_,
            from != nullptr && !publish_to_.empty() ? from->shared_client_id() : none);
    }
    // share_hold_count_: a member here holds up a share group's home shard (share_deliver).
    if (router_ && (congested || share_hold_count_ != 0) && from != nullptr &&
        from->connection != nullptr) {
        // Back-pressure between shards: the publisher stops reading until the congested
        // shard has caught up (the message itself went out; nothing is dropped for this).
        session& s = *from->connection;
        if (!s.paused_for_shards()) {
            s.pause_for_shards();
            shard_paused_.push_back(&s);
            if (logging(2)) log(2, "client " + from->client_id + " paused: a shard is congested");
        }
    }
    return reached;
}

bool engine::route_from_shard(const message_ptr& m, std::size_t from, clock::time_point now,
                              std::string_view publisher) {
    routing_from_ = from;
    routing_now_ = now;
    route(nullptr, m, publisher);
    routing_from_ = no_shard;
    return shard_holds_[from] != 0;
}

void engine::release_shard(std::size_t from, bool resume) {
    if (--shard_holds_[from] != 0) return;
    if (share_hold_[from] != 0) {
        share_hold_[from] = 0;
        if (--share_hold_count_ == 0 && resume) resume_publishers();
    }
    if (resume && router_ != nullptr) router_->resume_from(from);
}

void engine::apply_retained(const message_ptr& m) {
    if (limits_.retain_available) set_retained(m);
}

bool engine::hold_for_retained(session& s) {
    if (router_ == nullptr || s.holding_any() || s.congested()) return false;
    const std::uint64_t ticket = router_->retained_ticket();
    if (ticket == 0) return false;
    retained_waiters_.emplace_back(ticket, &s);
    return true;
}

void engine::retained_reached(std::uint64_t ticket) {
    std::size_t n = 0;
    while (n < retained_waiters_.size() && retained_waiters_[n].first <= ticket) ++n;
    if (n == 0) return;
    std::vector<session*> go;
    go.reserve(n);
    for (std::size_t i = 0; i < n; ++i) go.push_back(retained_waiters_[i].second);
    retained_waiters_.erase(retained_waiters_.begin(),
                            retained_waiters_.begin() + static_cast<std::ptrdiff_t>(n));
    for (session* s : go) s->retained_caught_up();
}

void engine::shards_resumed() {
    // Publishing again finds out whether a shard is still congested (and pauses again).
    resume_publishers();
}

void engine::resume_publishers() {
    auto paused = std::move(shard_paused_);
    shard_paused_.clear();
    for (session* s : paused) s->resume_from_shards();
}

void engine::set_retained(const message_ptr& m) {
    const auto outcome = retained_.set(m);
    if (outcome == retained_store::outcome::full) ++stats_.dropped_retain_full;
    if (store_ && (outcome == retained_store::outcome::stored ||
                   outcome == retained_store::outcome::replaced)) {
        store_->retained_set(m);
    } else if (store_ && outcome == retained_store::outcome::cleared) {
        store_->retained_cleared(m->topic);
    }
}

void engine::set_shard(std::size_t index, std::size_t count, shard_router* r,
                       const engine* meters) {
    shard_index_ = index;
    shard_count_ = count == 0 ? 1 : count;
    router_ = r;
    shard_holds_.assign(shard_count_, 0);
    share_hold_.assign(shard_count_, 0);
    if (meters != nullptr) {
        meter_ = meters->meter_;
        out_meter_ = meters->out_meter_;
        transit_meter_ = meters->transit_meter_;
        stores_failing_ = meters->stores_failing_;
        clients_ = meters->clients_;
    } else if (shard_count_ > 1) {
        clients_ = std::make_shared<connected_meter>();
    }
}

void engine::set_interests(std::vector<shard_interest*> all) {
    interests_ = std::move(all);
    own_interest_ = shard_index_ < interests_.size() ? interests_[shard_index_] : nullptr;
    if (own_interest_ == nullptr) {
        interests_.clear();
        return;
    }
    // What is subscribed already (sessions restored from the store before this).
    subscriptions_.for_each([this](std::string_view filter, durable_session* const&,
                                   const sub_entry&) { own_interest_->add(filter); });
    shared_.for_each([this](std::string_view filter, share_group* const&, const no_value&) {
        own_interest_->add(filter);
    });
}

std::size_t shard_of(std::string_view client_id, std::size_t shards) noexcept {
    if (shards <= 1) return 0;
    std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64
    for (const char c : client_id) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    // MurmurHash3's 64-bit finalizer: FNV-1a's low bits depend on few of the bytes (the
    // lowest is the parity of the odd bytes), so "x-3" and "x-13" always landed apart.
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return static_cast<std::size_t>(h % shards);
}

// Matches m against this shard's subscriptions and delivers it.
std::size_t engine::route(const durable_session* from, const message_ptr& m,
                          std::string_view from_id) {
    // A will published while routing (cannot happen today) must not clobber the scratch.
    std::vector<target> nested;
    auto& targets = routing_ ? nested : targets_;
    const bool outer = !routing_;
    routing_ = true;
    targets.clear();
    subscriptions_.match(
        m->topic, [&](std::string_view, durable_session* const& s, const sub_entry& e) {
            // MQTT-3.8.3-3; by client id for a message from another shard (the same id
            // may have a session here: a bridge's or MQTT-SN client's on shard 0).
            if (e.options.no_local && (s == from || (!from_id.empty() && s->client_id == from_id)))
                return;
            targets.push_back(target{s, e.options.max_qos, e.options.retain_as_published, e.id});
        });
    // Overlapping subscriptions of one session: one delivery at the highest granted QoS,
    // carrying the Subscription Identifiers of all of them (MQTT-3.3.4-3, MQTT-3.3.4-5).
    if (targets.size() > 1) {
        std::sort(targets.begin(), targets.end(),
                  [](const target& a, const target& b) { return a.s < b.s; });
    }
    std::size_t reached = 0;
    for (std::size_t i = 0; i < targets.size();) {
        target t = targets[i];
        subscription_ids ids;
        if (t.id != 0) ids.push_back(t.id);
        for (++i; i < targets.size() && targets[i].s == t.s; ++i) {
            t.q = std::max(t.q, targets[i].q);
            t.retain_as_published = t.retain_as_published || targets[i].retain_as_published;
            if (targets[i].id != 0) ids.push_back(targets[i].id);
        }
        if (!may_receive(*t.s, m->topic)) continue;  // ACL read, on every delivery
        deliver(t, m, from, std::move(ids));
        ++reached;
    }
    if (!groups_.empty()) route_shared(from, m, reached);
    if (outer) routing_ = false;
    return reached;
}

void engine::deliver(const target& t, const message_ptr& m, const durable_session* from,
                     subscription_ids ids) {
    // Delivered QoS is the lower of published and granted (MQTT-3.8.4-8 in 5.0), or the
    // granted one with upgrade_outgoing_qos (a Mosquitto option beyond the spec); RETAIN is
    // kept only with Retain As Published (MQTT-3.3.1-12 / 3.1.1 MQTT-3.3.1-9).
    const auto q = limits_.upgrade_outgoing_qos ? t.q : std::min(m->qos_level, t.q);
    const bool retain = t.retain_as_published && m->retain;
    if (t.s->connection != nullptr) {
        t.s->connection->deliver(m, q, retain, from ? from->connection : nullptr, std::move(ids));
    } else {
        deliver_offline(*t.s, m, q, retain, std::move(ids));
    }
}

void engine::deliver_offline(durable_session& s, const message_ptr& m, protocol::qos q, bool retain,
                             subscription_ids ids) {
    // QoS 0 is queued for an offline session only when configured (queue_qos0_messages).
    if (q == protocol::qos::at_most_once && !limits_.queue_qos0_messages) {
        ++stats_.dropped_qos0_offline;
        return;
    }
    if (!enqueue(s, limits_, queued_delivery{m, q, retain, std::move(ids)})) {
        ++stats_.dropped_queue_full;
    } else if (store_) {
        store_->queued(s, s.queue.back());
    }
}

void engine::send_retained(session& s, std::string_view filter, protocol::qos granted,
                           clock::time_point now, std::uint32_t id) {
    std::vector<std::string> expired;
    retained_.match(filter, [&](const message_ptr& m) {
        const auto q = limits_.upgrade_outgoing_qos ? granted : std::min(m->qos_level, granted);
        // Stop once the subscriber drops what it is given: a flood of re-subscriptions to
        // `#` must not cost a walk of every retained message each.
        if (!s.can_take(q)) return false;
        if (s.durable() != nullptr && !may_receive(*s.durable(), m->topic)) return true;
        message_ptr out = aged(m, now);
        if (!out) {  // expired: drop it (§3.3.2.3.3)
            expired.emplace_back(m->topic);
            return true;
        }
        if (out != m) charge(*out);  // a copy may be queued or stay in flight
        // Sent because of a new subscription: RETAIN set (MQTT-3.3.1-8 / 3.1.1 MQTT-3.3.1-8).
        s.deliver(out, q, true, nullptr, id != 0 ? subscription_ids{id} : subscription_ids{});
        return true;
    });
    for (const auto& t : expired) {
        retained_.erase(t);
        if (store_) store_->retained_cleared(t);
    }
}

void engine::restore_retained(const message_ptr& m) {
    charge(*m);
    if (retained_.set(m) == retained_store::outcome::full) ++stats_.dropped_retain_full;
}

}  // namespace mqtt::broker
