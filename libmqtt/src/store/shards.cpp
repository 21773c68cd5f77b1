#include "mqtt/store/shards.hpp"

#include "mqtt/broker/acl_file.hpp"
#include "mqtt/broker/durable_session.hpp"
#include "mqtt/protocol/topic.hpp"

#include <dirent.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <type_traits>
#include <variant>

namespace mqtt::store {
namespace {

constexpr std::string_view shard_suffix = ".shard";
// threads is at most 256: a file with a larger K is not one of ours (and a huge K must not
// size the broker's tables).
constexpr std::size_t max_shard_file = 1024;

// The client id a record is about, or nullptr (header, commit, message, retained).
template <class R>
const std::string* client_of(const R& r) {
    if constexpr (requires { r.client_id; }) {
        return &r.client_id;
    } else {
        return nullptr;
    }
}

}  // namespace

std::string shard_file(const std::string& file, std::size_t k) {
    if (k == 0) return file;
    return file + std::string{shard_suffix} + std::to_string(k);
}

std::vector<std::size_t> shard_files(const std::string& dir, const std::string& file) {
    std::vector<std::size_t> out;
    DIR* d = ::opendir(dir.empty() ? "." : dir.c_str());
    if (d == nullptr) return out;
    const std::string prefix = file + std::string{shard_suffix};
    while (const dirent* e = ::readdir(d)) {
        const std::string_view name{e->d_name};
        if (!name.starts_with(prefix)) continue;
        const auto digits = name.substr(prefix.size());
        std::size_t k = 0;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), k);
        // tern.db.shard1 only: not tern.db.shard1.new / .damaged, not tern.db.shard01.
        if (ec != std::errc{} || end != digits.data() + digits.size() || k == 0 ||
            digits.front() == '0' || k > max_shard_file) {
            continue;
        }
        out.push_back(k);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

bool in_place(const std::vector<const state*>& stores, std::size_t n, const home_function& home) {
    if (stores.size() > n) {
        for (std::size_t k = n; k < stores.size(); ++k) {
            if (stores[k] != nullptr) return false;
        }
    }
    std::set<std::string_view> seen;
    for (std::size_t k = 0; k < stores.size(); ++k) {
        if (stores[k] == nullptr) continue;
        if (k != 0 && !stores[k]->retained().empty()) return false;
        for (const auto& [id, s] : stores[k]->sessions()) {
            if (k != 0 && home(id) != k) return false;
            if (!seen.insert(id).second) return false;
        }
    }
    return true;
}

std::vector<state> redistribute(const std::vector<const state*>& stores, std::size_t n,
                                const home_function& home, std::int64_t now_ms,
                                std::size_t& moved) {
    n = std::max<std::size_t>(n, 1);
    std::vector<state> out(n);
    moved = 0;
    for (auto& st : out) st.apply(header_record{format_version, now_ms});
    std::uint64_t base = 0;  // message ids of store k are moved past those of the ones before
    for (std::size_t k = 0; k < stores.size(); ++k) {
        const state* src = stores[k];
        if (src == nullptr) continue;
        // Where each session of this store goes (absent: a copy another store had first).
        std::map<std::string_view, std::size_t> to;
        for (const auto& entry : src->sessions()) {
            // A name, not a structured binding: clang 14 (the fuzz build) cannot capture one.
            const std::string& id = entry.first;
            const bool taken = std::any_of(
                out.begin(), out.end(), [&](const state& o) { return o.sessions().contains(id); });
            if (taken) continue;
            const std::size_t h = std::min(home(id), n - 1);
            const std::size_t dest = k == 0 ? 0 : (k < n && h == k ? k : h);
            if (dest != k) ++moved;
            to.emplace(id, dest);
        }
        const auto remap = [base](std::uint64_t id) { return id == 0 ? 0 : id + base; };
        src->snapshot(now_ms, [&](const record& r) {
            std::visit(
                [&](const auto& x) {
                    using R = std::decay_t<decltype(x)>;
                    if constexpr (std::is_same_v<R, header_record> ||
                                  std::is_same_v<R, commit_record>) {
                        return;
                    } else if constexpr (std::is_same_v<R, message_record>) {
                        auto m = x;
                        m.id = remap(x.id);
                        for (auto& st : out) st.apply(m);  // pruned below where unused
                    } else if constexpr (std::is_same_v<R, retained_set_record>) {
                        const auto& topic = src->messages().at(x.msg_id).msg->topic;
                        if (k != 0 && out[0].retained().contains(topic)) return;
                        out[0].apply(retained_set_record{remap(x.msg_id)});
                    } else if constexpr (std::is_same_v<R, retained_clear_record> ||
                                         std::is_same_v<R, outbox_ack_record>) {
                        return;  // not in a snapshot
                    } else if constexpr (std::is_same_v<R, outbox_add_record>) {
                        // Replayed before (settle_outboxes, replay): kept for the
                        // destinations that still exist, in case this start stops half way
                        // and an old file of one of them is read again.
                        if (k >= n) return;
                        auto y = x;
                        y.msg_id = remap(x.msg_id);
                        std::erase_if(y.dests, [n](std::uint16_t d) { return d >= n; });
                        if (!y.dests.empty()) out[k].apply(y);
                    } else if constexpr (std::is_same_v<R, outbox_last_record>) {
                        if (k < n) out[k].apply(x);
                    } else if constexpr (std::is_same_v<R, inbox_applied_record>) {
                        // Every store now may hold sessions that took the item: all say so.
                        // Also of a shard that is gone: a start that stops before removing
                        // its file reads it again, with items nobody confirmed to it, which
                        // would otherwise be routed a second time.
                        for (std::size_t j = 0; j < n; ++j) {
                            if (j != x.source) out[j].apply(x);
                        }
                    } else {
                        const std::string* c = client_of(x);
                        if (c == nullptr) return;
                        const auto it = to.find(*c);
                        if (it == to.end()) return;
                        auto y = x;
                        if constexpr (requires { y.msg_id; }) y.msg_id = remap(x.msg_id);
                        if constexpr (requires { y.will_msg_id; })
                            y.will_msg_id = remap(x.will_msg_id);
                        out[it->second].apply(y);
                    }
                },
                r);
            return true;
        });
        base += src->max_message_id();
    }
    // A shard's outbox numbers never go back, also when another store had taken more of
    // them than its own file says it used.
    for (std::size_t j = 0; j < n; ++j) {
        for (const auto& st : out) out[j].apply(outbox_last_record{st.applied_from(j)});
    }
    for (auto& st : out) st.prune();
    return out;
}

std::vector<pending_item> unapplied(const std::vector<const state*>& stores, std::size_t dest) {
    std::vector<pending_item> out;
    if (dest >= stores.size() || stores[dest] == nullptr) return out;
    for (std::size_t k = 0; k < stores.size(); ++k) {
        if (k == dest || stores[k] == nullptr) continue;
        const std::uint64_t taken = stores[dest]->applied_from(k);
        const auto& msgs = stores[k]->messages();
        for (auto it = stores[k]->outbox().upper_bound(taken); it != stores[k]->outbox().end();
             ++it) {
            const auto& d = it->second.dests;
            if (!std::binary_search(d.begin(), d.end(), static_cast<std::uint16_t>(dest))) continue;
            const auto m = msgs.find(it->second.msg_id);
            if (m == msgs.end()) continue;  // cannot happen: the outbox holds a reference
            out.push_back({k, it->first, m->second.received_ms, m->second.msg, it->second.group,
                           it->second.client_id, it->second.publisher});
        }
    }
    return out;
}

namespace {

// read_check_of()'s check (see the header).
struct listener_read_check {
    replay_acls acls;
    std::string scratch{};
    bool operator()(std::string_view client_id, const stored_session& s, std::string_view topic) {
        if (acls.exempt.contains(client_id)) return true;
        if (!s.listener) return allows(acls.by_slot[0], client_id, s, topic);
        if (const auto n = listener_of(acls.listeners, *s.listener))
            return allows(of_slot(acls.listeners[*n].slot), client_id, s, topic);
        // Its listener is gone: every policy it may come back under must allow it.
        if (!allows(acls.by_slot[0], client_id, s, topic)) return false;
        for (const auto& l : acls.listeners) {
            if (l.key.empty() || l.slot == 0) continue;
            if (!allows(of_slot(l.slot), client_id, s, topic)) return false;
        }
        return true;
    }
    const std::shared_ptr<const broker::acl_file>& of_slot(std::size_t slot) const {
        return slot < acls.by_slot.size() ? acls.by_slot[slot] : acls.by_slot[0];
    }
    bool allows(const std::shared_ptr<const broker::acl_file>& a, std::string_view client_id,
                const stored_session& s, std::string_view topic) {
        const auto* user = s.username ? &*s.username : nullptr;
        return a == nullptr ||
               broker::stored_may_read(*a, client_id, s.identified, user, topic, scratch);
    }
};

}  // namespace

read_check read_check_of(replay_acls acls) {
    const bool any = std::any_of(acls.by_slot.begin(), acls.by_slot.end(),
                                 [](const auto& a) { return a != nullptr; });
    if (!any) return {};
    return listener_read_check{std::move(acls)};
}

void settle_outboxes(const std::vector<state*>& stores) {
    for (std::size_t k = 0; k < stores.size(); ++k) {
        if (stores[k] == nullptr || stores[k]->outbox().empty()) continue;
        for (std::size_t d = 0; d < stores.size(); ++d) {
            if (d == k || stores[d] == nullptr) continue;
            if (const auto seq = stores[d]->applied_from(k); seq != 0) {
                stores[k]->apply(outbox_ack_record{static_cast<std::uint16_t>(d), seq});
            }
        }
    }
}

namespace {

// One delivery of `m` as a subscription with `sub`'s options gives it (QoS 0 only with
// queue_qos0); false when none.
bool delivery_of(const broker::message& m, const stored_subscription& sub,
                 const replay_rules& rules, protocol::qos& q, bool& retain,
                 std::vector<std::uint32_t>& ids) {
    q = rules.upgrade_outgoing_qos ? sub.options.max_qos
                                   : std::min(m.qos_level, sub.options.max_qos);
    retain = sub.options.retain_as_published && m.retain;
    ids.clear();
    if (sub.id != 0) ids.push_back(sub.id);
    return q != protocol::qos::at_most_once || rules.queue_qos0;
}

// As the engine's enqueue: max_queued_messages, and max_queued_bytes with the message's
// cost; `way` is what is on its way to the session through an outbox.
bool queue_full(const stored_session& s, const replay_rules& rules, std::size_t cost,
                const replay_counts::on_way& way = {}) {
    return s.queue.size() + way.messages >= rules.max_queued_messages ||
           s.queued_bytes + way.bytes + cost > rules.max_queued_bytes;
}

bool may_read(const replay_rules& rules, std::string_view client_id, const stored_session& s,
              std::string_view topic) {
    return !rules.may_read || rules.may_read(client_id, s, topic);
}

// Queues the item's message for one member of a share group in `st`.
bool queue_share(state& st, const pending_item& item, const std::string& client_id,
                 const stored_subscription& sub, const replay_rules& rules) {
    protocol::qos q{};
    bool retain = false;
    std::vector<std::uint32_t> ids;
    if (!delivery_of(*item.msg, sub, rules, q, retain, ids)) return false;
    const std::uint64_t id = st.max_message_id() + 1;
    st.apply(message_record{id, item.received_ms, item.msg});
    st.apply(queue_push_record{client_id, id, q, retain, std::move(ids)});
    return true;
}

}  // namespace

std::size_t replay(state& st, const pending_item& item, const replay_rules& rules,
                   replay_counts& counts) {
    const auto& m = *item.msg;
    const std::size_t cost = broker::queue_cost(m);
    if (!item.client_id.empty()) {
        // A share group's delivery: its member, unless it left the group (then, as a
        // `retry` to a member gone, nobody), may not read the topic (as the engine's member
        // shard: the group's turn is spent) or its queue is full.
        if (const auto t = counts.in_outboxes.find(item.client_id);
            t != counts.in_outboxes.end() && t->second.messages != 0) {
            --t->second.messages;
            t->second.bytes -= std::min(t->second.bytes, cost);
        }
        std::size_t n = 0;
        const auto s = st.sessions().find(item.client_id);
        if (s != st.sessions().end()) {
            const auto sub = s->second.subscriptions.find(item.group);
            if (sub != s->second.subscriptions.end()) {
                if (!may_read(rules, item.client_id, s->second, m.topic)) {
                    ++counts.denied;
                } else if (queue_full(s->second, rules, cost)) {
                    ++counts.queue_full;
                } else if (queue_share(st, item, item.client_id, sub->second, rules)) {
                    n = 1;
                }
            }
        }
        st.apply(inbox_applied_record{static_cast<std::uint16_t>(item.source), item.seq});
        counts.queued += n;
        return n;
    }
    struct delivery {
        const std::string* client_id;
        protocol::qos q;
        bool retain;
        std::vector<std::uint32_t> ids;
    };
    std::vector<delivery> found;
    for (const auto& [client_id, s] : st.sessions()) {
        bool any = false;
        delivery d{&client_id, protocol::qos::at_most_once, false, {}};
        // No Local (MQTT-3.8.3-3), as the engine's routing: the publisher's own session
        // skips those of its subscriptions that ask for it, not the others.
        const bool own = !item.publisher.empty() && client_id == item.publisher;
        for (const auto& [filter, sub] : s.subscriptions) {
            if (protocol::parse_shared(filter).status != protocol::share_status::not_shared ||
                !protocol::topic_matches(filter, m.topic) || (own && sub.options.no_local)) {
                continue;
            }
            any = true;
            d.q = std::max(d.q, sub.options.max_qos);
            d.retain = d.retain || sub.options.retain_as_published;
            if (sub.id != 0) d.ids.push_back(sub.id);
        }
        if (!any) continue;
        if (!may_read(rules, client_id, s, m.topic)) {  // ACL read, as on every delivery
            ++counts.denied;
            continue;
        }
        d.q = rules.upgrade_outgoing_qos ? d.q : std::min(m.qos_level, d.q);
        d.retain = d.retain && m.retain;
        if (d.q == protocol::qos::at_most_once && !rules.queue_qos0) continue;
        if (queue_full(s, rules, cost)) {
            ++counts.queue_full;
            continue;
        }
        found.push_back(std::move(d));
    }
    if (!found.empty()) {
        const std::uint64_t id = st.max_message_id() + 1;
        st.apply(message_record{id, item.received_ms, item.msg});
        for (auto& d : found) {
            st.apply(queue_push_record{*d.client_id, id, d.q, d.retain, std::move(d.ids)});
        }
    }
    st.apply(inbox_applied_record{static_cast<std::uint16_t>(item.source), item.seq});
    counts.queued += found.size();
    return found.size();
}

std::size_t replay_shared(const std::vector<state*>& stores, std::size_t dest,
                          const pending_item& item, const replay_rules& rules,
                          const home_function& home, bool& shares_sent, replay_counts& counts) {
    if (!item.client_id.empty() || dest >= stores.size() || stores[dest] == nullptr) return 0;
    // The groups homed here that match, each with the member it goes to (see the header).
    struct member {
        std::size_t store;
        const std::string* client_id;
        const stored_subscription* sub;
        std::size_t queued;  // in its store's queue and on its way there through an outbox
    };
    const auto before = [dest](const member& a, const member& b) {
        if (a.queued != b.queued) return a.queued < b.queued;
        if ((a.store == dest) != (b.store == dest)) return a.store == dest;
        return a.store < b.store;  // then client ids in order: the first one found stays
    };
    std::map<std::string_view, member> groups;
    // The groups with a member passed over: whether one of them may not read the topic.
    std::map<std::string_view, bool> passed;
    const auto& topic = item.msg->topic;
    const std::size_t cost = broker::queue_cost(*item.msg);
    for (std::size_t j = 0; j < stores.size(); ++j) {
        if (stores[j] == nullptr) continue;
        for (const auto& [client_id, s] : stores[j]->sessions()) {
            for (const auto& [filter, sub] : s.subscriptions) {
                const auto shared = protocol::parse_shared(filter);
                if (!shared.is_shared() || home(filter) != dest ||
                    !protocol::topic_matches(shared.filter, topic)) {
                    continue;
                }
                replay_counts::on_way way;
                if (const auto t = counts.in_outboxes.find(client_id);
                    t != counts.in_outboxes.end()) {
                    way = t->second;
                }
                if (!may_read(rules, client_id, s, topic)) {
                    passed.insert_or_assign(filter, true);
                    continue;
                }
                if (queue_full(s, rules, cost, way)) {
                    passed.try_emplace(filter, false);
                    continue;
                }
                const member m{j, &client_id, &sub, s.queue.size() + way.messages};
                const auto it = groups.find(filter);
                if (it == groups.end() || before(m, it->second)) {
                    groups.insert_or_assign(filter, m);
                }
            }
        }
    }
    for (const auto& [filter, denied] : passed) {
        if (groups.contains(filter)) continue;
        // Every member passed over: nobody (as live with every queue full).
        ++(denied ? counts.denied : counts.queue_full);
    }
    std::size_t served = 0;
    state& st = *stores[dest];
    for (const auto& [filter, m] : groups) {
        if (m.store == dest) {
            if (queue_share(st, item, *m.client_id, *m.sub, rules)) {
                ++served;
                ++counts.queued;
            }
            continue;
        }
        // Another store's member: through this store's outbox, numbered past anything any
        // store says it took from it (as the running shard numbers them).
        std::uint64_t seq = st.outbox_last();
        for (const auto* other : stores) {
            if (other != nullptr) seq = std::max(seq, other->applied_from(dest));
        }
        const std::uint64_t id = st.max_message_id() + 1;
        st.apply(message_record{id, item.received_ms, item.msg});
        st.apply(outbox_add_record{
            seq + 1, id, {static_cast<std::uint16_t>(m.store)}, std::string{filter}, *m.client_id});
        auto& way = counts.in_outboxes[*m.client_id];
        ++way.messages;
        way.bytes += cost;
        shares_sent = true;
        ++served;
    }
    return served;
}

}  // namespace mqtt::store
