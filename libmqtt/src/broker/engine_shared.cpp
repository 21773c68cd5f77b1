// Shared subscriptions (`$share/<name>/<filter>`, MQTT 5.0 §4.8.2): share groups, served in
// turn. With threads > 1 (docs/broker.md, "Threading") a group lives on its home shard,
// shard_of(the whole filter): members on other shards are registered there by notes from
// their shard (join, leave, online, offline), and the home sends the message of a remote
// member's turn to that member's shard (share_op::deliver), one hop more for those only.

#include <algorithm>
#include <utility>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {

bool engine::join_group(durable_session& s, std::string_view filter, std::string_view inner,
                        const sub_entry& e) {
    auto it = groups_.find(std::string{filter});
    if (it == groups_.end()) {
        it = groups_.emplace(std::string{filter}, std::make_unique<share_group>()).first;
        shared_.insert_or_assign(inner, it->second.get(), no_value{});
        interest_added(inner);
    }
    auto& members = it->second->members;
    const auto m = std::find_if(members.begin(), members.end(),
                                [&](const share_group::member& x) { return x.s == &s; });
    if (m != members.end()) {
        m->e = e;
        return false;
    }
    members.push_back({&s, e, nullptr, true, true});
    ++shared_members_;
    return true;
}

namespace {

template <typename Members>
auto find_remote(Members& members, const share_ref& r) {
    return std::find_if(members.begin(), members.end(), [&](const auto& x) {
        return x.ref && x.ref->shard == r.shard && x.ref->client_id == r.client_id;
    });
}

}  // namespace

void engine::join_remote(std::string_view filter, share_ref_ptr r) {
    const auto inner = protocol::parse_shared(filter).filter;
    auto it = groups_.find(std::string{filter});
    if (it == groups_.end()) {
        it = groups_.emplace(std::string{filter}, std::make_unique<share_group>()).first;
        shared_.insert_or_assign(inner, it->second.get(), no_value{});
        interest_added(inner);
    }
    auto& members = it->second->members;
    const auto m = find_remote(members, *r);
    if (m != members.end()) {
        m->ref = std::move(r);
        m->online = true;
        return;
    }
    members.push_back({nullptr, sub_entry{}, std::move(r), true, true});
    ++shared_members_;
}

bool engine::leave_group(durable_session& s, std::string_view filter, std::string_view inner) {
    const auto it = groups_.find(std::string{filter});
    if (it == groups_.end()) return false;
    share_group& g = *it->second;
    const auto m = std::find_if(g.members.begin(), g.members.end(),
                                [&](const share_group::member& x) { return x.s == &s; });
    if (m == g.members.end()) return false;
    const auto index = static_cast<std::size_t>(m - g.members.begin());
    g.members.erase(m);
    --shared_members_;
    if (g.next > index) --g.next;  // the same member stays next in turn
    if (g.next >= g.members.size()) g.next = 0;
    if (g.members.empty()) {
        if (shared_.erase(inner, &g)) interest_removed(inner);
        groups_.erase(it);
    }
    return true;
}

void engine::leave_remote(std::string_view filter, std::string_view inner, const share_ref& r) {
    const auto it = groups_.find(std::string{filter});
    if (it == groups_.end()) return;
    share_group& g = *it->second;
    const auto m = find_remote(g.members, r);
    if (m == g.members.end()) return;
    const auto index = static_cast<std::size_t>(m - g.members.begin());
    g.members.erase(m);
    --shared_members_;
    if (g.next > index) --g.next;
    if (g.next >= g.members.size()) g.next = 0;
    if (g.members.empty()) {
        if (shared_.erase(inner, &g)) interest_removed(inner);
        groups_.erase(it);
    }
}

void engine::note_remote_groups(const durable_session& ds, share_op op) {
    if (shard_count_ <= 1 || router_ == nullptr) return;
    for (const auto& [filter, e] : ds.subscriptions) {
        if (!protocol::parse_shared(filter).is_shared() || !remote_group(filter)) continue;
        router_->share(home_of(filter), op,
                       std::make_shared<const share_ref>(
                           share_ref{filter, ds.client_id, shard_index_}),
                       nullptr);
    }
}

void engine::note_share_ready(const durable_session& ds, bool ready) {
    note_remote_groups(ds, ready ? share_op::ready : share_op::busy);
}

// Each share group whose filter matches gets the message once, for one of its members
// (MQTT 5.0 §4.8.2), in turn. A session with a shared and an ordinary subscription may
// receive the message once for each.
void engine::route_shared(const durable_session* from, const message_ptr& m, std::size_t& reached) {
    std::vector<share_group*> nested;
    auto& groups = matched_groups_.empty() ? matched_groups_ : nested;
    groups.clear();
    shared_.match(m->topic, [&](std::string_view, share_group* const& g, const no_value&) {
        groups.push_back(g);
    });
    for (share_group* g : groups) {
        if (serve_group(*g, from, m)) ++reached;
    }
    groups.clear();
}

// The first member in turn that can send it now (MQTT 5.0 §4.8.2: not one at its Receive
// Maximum), else the first whose queue takes it, else the first connected one, else (all
// offline) the next one, whose session queues it. A member on another shard can send now
// while its shard last said ready (share_op::busy / ready); a busy one counts as taking it
// (its queue's room is not known here).
bool engine::serve_group(share_group& g, const durable_session* from, const message_ptr& m,
                         bool retry) {
    const std::size_t n = g.members.size();
    if (n == 0) return false;
    const bool qos0 = m->qos_level == protocol::qos::at_most_once && !limits_.upgrade_outgoing_qos;
    std::size_t pick = n;
    std::size_t takes = n;
    std::size_t online = n;
    for (std::size_t k = 0; k < n && pick == n; ++k) {
        const std::size_t i = (g.next + k) % n;
        const auto& member = g.members[i];
        if (member.s == nullptr) {  // on another shard
            if (!member.online) continue;
            if (online == n) online = i;
            if (member.ready || qos0) {
                pick = i;
            } else if (takes == n) {
                takes = i;
            }
            continue;
        }
        session* c = member.s->connection;
        if (c == nullptr) continue;
        if (online == n) online = i;
        const auto q = limits_.upgrade_outgoing_qos
                           ? member.e.options.max_qos
                           : std::min(m->qos_level, member.e.options.max_qos);
        if (c->can_send_now(q)) {
            pick = i;
        } else if (takes == n && c->can_take(q)) {
            takes = i;
        }
    }
    const bool all_offline = online == n;
    if (pick == n) pick = takes != n ? takes : online != n ? online : g.next % n;
    g.next = (pick + 1) % n;
    const auto& member = g.members[pick];
    if (member.s == nullptr) {
        const auto& r = member.ref;
        const auto op = retry         ? share_op::retry
                        : all_offline ? share_op::queue
                                      : share_op::deliver;
        // Back-pressure when the channel to the member's shard is congested: the router
        // pauses the publishers here, and those of the shards whose messages this one
        // forwards, through their router_->publish().
        router_->share(r->shard, op, r, m);
        return true;
    }
    // ACL read: a member that may not read it does not get it, and neither does another
    // one (as in Mosquitto, the group's turn is spent).
    if (!may_receive(*member.s, m->topic)) return false;
    subscription_ids ids;
    if (member.e.id != 0) ids.push_back(member.e.id);
    deliver(target{member.s, member.e.options.max_qos, member.e.options.retain_as_published,
                   member.e.id},
            m, from, std::move(ids));
    return true;
}

bool engine::share_from_shard(std::size_t from, share_op op, const share_ref_ptr& r,
                              const message_ptr& m, clock::time_point now) {
    routing_now_ = now;  // for a hold that a delivery below starts (routing_from_ set there)
    switch (op) {
        case share_op::join: join_remote(r->group, r); break;
        case share_op::leave:
            leave_remote(r->group, protocol::parse_shared(r->group).filter, *r);
            break;
        case share_op::online:
        case share_op::offline:
        case share_op::busy:
        case share_op::ready: {
            const auto it = groups_.find(r->group);
            if (it == groups_.end()) break;
            const auto mem = find_remote(it->second->members, *r);
            if (mem == it->second->members.end()) break;
            if (op == share_op::busy || op == share_op::ready) {
                mem->ready = op == share_op::ready;
            } else {  // a new connection starts ready (it says busy when it is not)
                mem->online = op == share_op::online;
                mem->ready = true;
            }
            break;
        }
        case share_op::deliver:
        case share_op::queue:
        case share_op::retry: share_deliver(from, op, r, m); break;
        case share_op::again: {
            // Not taken on the member's shard: the next member in turn (the notes that
            // explain why came first, on the same channel).
            const auto it = groups_.find(r->group);
            if (it == groups_.end()) break;  // no member left: as with one thread, nobody
            routing_from_ = from;
            serve_group(*it->second, nullptr, m, true);
            routing_from_ = no_shard;
            break;
        }
    }
    return shard_holds_[from] != 0;
}

// On the member's shard: the home shard picked this session. One that is offline (unless
// every member was: `queue`, or it is a `retry`), no longer a member, or gone sends it back
// to be given to the next member; the home has had this shard's notes saying so before it
// gets it back. A `retry` is not sent back again.
void engine::share_deliver(std::size_t from, share_op op, const share_ref_ptr& r,
                           const message_ptr& m) {
    const auto it = by_id_.find(std::string_view{r->client_id});
    durable_session* ds = it == by_id_.end() ? nullptr : it->second.get();
    const auto sub = ds ? ds->subscriptions.find(r->group) : decltype(ds->subscriptions.end()){};
    if (ds == nullptr || sub == ds->subscriptions.end()) {
        if (op != share_op::retry) {
            router_->share(from, share_op::again, r, m);
        } else if (logging(1)) {
            // Gone or unsubscribed since the home picked it (a QoS 2 delivery through the
            // home's outbox, which is not sent back), or its leave note was lost.
            log(1, "shared message to " + std::string{m->topic} + " dropped: " + r->client_id +
                       " is no longer in " + r->group);
        }
        return;
    }
    if (op == share_op::deliver && ds->connection == nullptr) {
        router_->share(from, share_op::again, r, m);
        return;
    }
    if (!may_receive(*ds, m->topic)) return;  // the turn is spent, as on one shard
    const sub_entry e = sub->second;
    subscription_ids ids;
    if (e.id != 0) ids.push_back(e.id);
    // A member it congests holds up what the home shard sends here, as a subscriber does.
    routing_from_ = from;
    deliver(target{ds, e.options.max_qos, e.options.retain_as_published, e.id}, m, nullptr,
            std::move(ids));
    routing_from_ = no_shard;
    // The home's channel is held: this shard's publishers pause as well until it is let go
    // (release_shard), since what they publish to the group comes back through that
    // channel and would pile up there past its bound before the home's pause arrived.
    if (shard_holds_[from] != 0 && share_hold_[from] == 0) {
        share_hold_[from] = 1;
        ++share_hold_count_;
    }
}

}  // namespace mqtt::broker
