// tern-broker's persistence (docs/persistence.md): one store per shard, each driven by its
// shard's loop. At start every shard's file is read; when they were written with another
// number of threads (or a start stopped half way), the sessions are put where they belong
// now and every store is written anew before anything is accepted.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "mqtt/store/recorder.hpp"
#include "mqtt/store/shards.hpp"
#include "mqtt/store/store_file.hpp"
#include "server_impl.hpp"

namespace mqtt::net {
namespace {

std::string join(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace

store::listener_keys server::impl::listener_keys() const {
    // "mqtt PORT HOST,HOST" as configured (port 0 for a free one), for every listener by its
    // number (group + 1): the same across restarts with the same configuration, whatever
    // the order of the listeners in it or their policies.
    struct found {
        std::string kind;
        std::uint16_t port = 0;
        std::vector<std::string> hosts;
        std::size_t slot = 0;
    };
    std::map<std::size_t, found> groups;
    for (const auto& l : opts.listeners) {
        auto& g = groups[l.group];
        g.kind = "mqtt";
        g.port = l.port;
        g.hosts.push_back(l.host);
        g.slot = security_slot(l.group);
    }
    for (const auto& l : opts.mqttsn_listeners) {
        auto& g = groups[l.group];
        g.kind = "mqtt-sn";
        g.port = l.port;
        g.hosts.push_back(l.host);
        g.slot = l.settings.security_slot;
    }
    store::listener_keys keys;
    for (auto& [group, g] : groups) {
        std::sort(g.hosts.begin(), g.hosts.end());
        std::string key = g.kind + " " + std::to_string(g.port) + " ";
        for (std::size_t i = 0; i < g.hosts.size(); ++i) key += (i == 0 ? "" : ",") + g.hosts[i];
        if (keys.size() < group + 2) keys.resize(group + 2);
        keys[group + 1] = {std::move(key), static_cast<std::uint32_t>(g.slot)};
    }
    return keys;
}

detail::store_driver& server::impl::make_store(std::size_t k) {
    auto cfg = opts.persistence;
    cfg.file = store::shard_file(cfg.file, k);
    auto note_fn = [this](int verbosity, bool error, std::string_view msg) {
        note(verbosity, error ? broker::log_level::error : broker::log_level::info,
             error ? broker::log_kind::error : broker::log_kind::log, msg);
    };
    auto& d = k == 0 ? store.emplace(io, engine, std::move(cfg), std::move(note_fn))
                     : shards[k]->store.emplace(runtime->io(k), shards[k]->engine, std::move(cfg),
                                                std::move(note_fn));
    d.set_listeners(listener_keys());
    return d;
}

std::error_code server::impl::open_stores(std::string* failed) {
    const auto& p = opts.persistence;
    const std::size_t n = sharded() ? shards.size() : 1;
    const auto now = store::clock_pair::now();
    const auto note_fn = [this](int verbosity, bool error, std::string_view msg) {
        note(verbosity, error ? broker::log_level::error : broker::log_level::info,
             error ? broker::log_kind::error : broker::log_kind::log, msg);
    };
    // A start with another number of threads that stopped while replacing the store files:
    // its new set is finished before anything is read (store::finish_store_set).
    const auto commit_path = join(p.location, store::store_set_commit_name(p.file));
    {
        const auto fin = store::finish_store_set(p.location, p.file);
        if (!fin) {
            if (failed) *failed = "store " + commit_path;
            return fin.error();
        }
        if (fin->damaged) {
            note_fn(0, true,
                    "store " + commit_path + ": unreadable, kept as " + commit_path +
                        ".damaged; the store files are read as they are");
        } else if (fin->found) {
            note_fn(0, false,
                    "store " + commit_path + ": a start that stopped while writing the stores " +
                        "for another number of threads is finished (" +
                        std::to_string(fin->renamed) + " file(s) put in place, " +
                        std::to_string(fin->removed) + " removed)");
        }
        for (const auto& r : fin->not_removed) report_not_removed(p.location, r);
    }
    // Every shard file there is, also of shards past n (written with more threads).
    std::size_t files = n;
    const auto others = store::shard_files(p.location, p.file);
    if (!others.empty()) files = std::max(files, others.back() + 1);
    std::vector<std::optional<store::loaded>> loaded(files);
    for (std::size_t k = 0; k < files; ++k) {
        const auto path = join(p.location, store::shard_file(p.file, k));
        auto l = detail::store_driver::load(path, now, note_fn);
        if (!l) {
            if (failed) *failed = "store " + path;
            return l.error();
        }
        if (k == 0 || l->report.existed) loaded[k] = std::move(*l);
    }
    std::vector<const store::state*> states(files, nullptr);
    std::vector<store::state*> mutable_states(files, nullptr);
    for (std::size_t k = 0; k < files; ++k) {
        if (loaded[k]) states[k] = mutable_states[k] = &loaded[k]->st;
    }
    // QoS 2 messages another shard recorded in its outbox (and acknowledged) that the
    // store of the shard they were for does not have: routed there now, before anything
    // else (docs/persistence.md, "Threads: the outbox").
    std::vector<std::uint64_t> taken_from(std::max(files, n), 0);  // by source shard
    for (const auto* st : states) {
        if (st == nullptr) continue;
        for (const auto& [src, seq] : st->applied()) {
            if (src < taken_from.size()) taken_from[src] = std::max(taken_from[src], seq);
        }
    }
    // The number of threads that wrote the stores: each shard writes its file at start.
    const std::size_t written_by = others.empty() ? 1 : others.back() + 1;
    std::vector<char> shares_sent;
    const auto into = replay_outboxes(mutable_states, written_by, shares_sent);
    std::size_t replayed = 0;
    for (const auto c : into) replayed += c;
    if (replayed != 0) {
        note(0, broker::log_level::notice, broker::log_kind::log,
             "store " + join(p.location, p.file) + ": " + std::to_string(replayed) +
                 " message(s) of another shard's outbox routed (queued) at start");
    }
    const auto home = [n](std::string_view id) { return broker::shard_of(id, n); };
    const bool rehome = !store::in_place(states, n, home);
    std::error_code set_failed;  // the new set found no room (store_set)
    if (rehome) {
        std::size_t moved = 0;
        auto fresh = store::redistribute(states, n, home, now.wall_ms, moved);
        note(0, broker::log_level::notice, broker::log_kind::log,
             "store " + join(p.location, p.file) + ": written with another number of threads " +
                 "(or a start that stopped half way): " + std::to_string(moved) +
                 " session(s) moved to the shard of their client id for threads " +
                 std::to_string(n) + "; every shard's store is written anew");
        // Written as one set (store::commit_store_set): a crash now leaves every old file
        // or every new one. Before, the files were written one by one and the old ones of
        // shards past n removed after: a start that stopped between two writes could route
        // an outbox item again, or lose one whose destination shard was gone.
        store::store_set set;
        for (std::size_t k = 0; k < n; ++k) {
            set.files.push_back({store::shard_file(p.file, k),
                                 [st = &fresh[k], wall = now.wall_ms](const store::byte_sink& out) {
                                     return store::write_state_snapshot(*st, wall, out);
                                 }});
        }
        for (std::size_t k = n; k < files; ++k) set.remove.push_back(store::shard_file(p.file, k));
        const auto done = store::commit_store_set(p.location, p.file, set);
        std::error_code left_in_place;
        if (!done && detail::store_driver::out_of_room(done.error()) &&
            !std::filesystem::exists(commit_path, left_in_place) && !left_in_place) {
            // No room for the new set (a full disk, a file size limit): the old set is
            // untouched. The broker starts with what it read, with every store failing
            // (QoS 1/2 refused) and the new set written once there is room (retry_store_set).
            set_failed = done.error();
            auto& ps = store_set.emplace();
            ps.remove = std::move(set.remove);
            std::size_t sessions = 0;
            for (std::size_t k = 0; k < n; ++k) {
                auto& bytes = ps.files.emplace_back();
                // Only a sink that cannot fail: the error is the state's, none here.
                (void)store::write_state_snapshot(fresh[k], now.wall_ms, [&bytes](auto piece) {
                    bytes.insert(bytes.end(), piece.begin(), piece.end());
                    return std::error_code{};
                });
                sessions += fresh[k].sessions().size();
            }
            note(0, broker::log_level::error, broker::log_kind::error,
                 "store " + commit_path + ": the stores for threads " + std::to_string(n) +
                     " could not be written (" + set_failed.message() + "); the previous " +
                     std::to_string(files) + " file(s) are kept as they were, " +
                     std::to_string(sessions) + " session(s) run from memory, and the new " +
                     "files are written once there is room (tried every second)");
            for (std::size_t k = 0; k < files; ++k) {
                loaded[k].reset();
                if (k < n) loaded[k] = store::loaded{std::move(fresh[k]), {}};
            }
        } else if (!done) {
            if (failed) *failed = "store " + commit_path;
            return done.error();
        }
        if (done) {
            for (const auto& r : done->not_removed) report_not_removed(p.location, r);
            if (done->removed != 0) {
                note(1, broker::log_level::info, broker::log_kind::log,
                     "store " + join(p.location, p.file) + ": " + std::to_string(done->removed) +
                         " file(s) of shards >= " + std::to_string(n) + " removed");
            }
        }
        fresh.clear();
        // Read back as any start reads them: the stores are then appended to as they are.
        for (std::size_t k = 0; k < files && done; ++k) {
            loaded[k].reset();
            if (k >= n) continue;
            const auto path = join(p.location, store::shard_file(p.file, k));
            auto l = detail::store_driver::load(path, now, note_fn);
            if (!l) {
                if (failed) *failed = "store " + path;
                return l.error();
            }
            loaded[k] = std::move(*l);
        }
    }
    // A store whose outbox the start gave share deliveries for another store's sessions is
    // written before the others: a crash between two of the writes then never leaves a
    // store that took an item its sender's file does not have (replay_shared).
    std::vector<std::size_t> order;
    for (std::size_t k = 0; k < n; ++k) {
        if (k < shares_sent.size() && shares_sent[k] != 0) order.push_back(k);
    }
    for (std::size_t k = 0; k < n; ++k) {
        if (std::find(order.begin(), order.end(), k) == order.end()) order.push_back(k);
    }
    for (const std::size_t k : order) {
        auto& d = make_store(k);
        store::loaded l = loaded[k] ? std::move(*loaded[k]) : store::loaded{};
        const auto& r = l.report;
        const bool replayed_into = k < into.size() && into[k] != 0;
        // (After a redistribution the files have what the replays routed already.)
        const bool rewrite =
            (!rehome && replayed_into) || !(r.existed && r.clean() && r.records != 0);
        if (const auto ec = d.open_loaded(std::move(l), now, rewrite, k, set_failed)) {
            if (failed) *failed = "store " + d.path();
            return ec;
        }
        d.set_peers(n);
        // What the other shards' connections acknowledged waits for this store too: when
        // it cannot write, theirs are refused as its own are (store_driver::remote_failing).
        const auto tell_others = [this, k, n](bool failing) {
            for (std::size_t j = 0; j < n; ++j) {
                if (j == k) continue;
                runtime->post(j, [this, j, k, failing] {
                    if (auto* s = held_store(j)) s->remote_failing(k, failing);
                });
            }
        };
        d.on_failing(tell_others);
        // Failing from the start (no room to write it): the others hear it as they would
        // hear it later (posted: they run once every store is open).
        if (d.failing()) tell_others(true);
        if (d.holds_output()) (k == 0 ? conns : *shards[k]->conns).store = &d;
        if (!outboxes.empty()) {
            // The numbers never go back, also when this file lost its last ones (damage)
            // and another store says it took more.
            outboxes[k].seq = std::max(d.mirror().outbox_last(), taken_from[k]);
            for (std::size_t j = 0; j < n; ++j) outboxes[k].applied[j] = d.mirror().applied_from(j);
        }
    }
    // Every replica of the retained messages gets shard 0's (the others' stores keep none).
    for (std::size_t k = 1; k < n; ++k) {
        for (const auto& [topic, id] : store->mirror().retained()) {
            const auto& m = store->mirror().messages().at(id).msg;
            shards[k]->engine.restore_retained(m);
        }
    }
    if (store_set) retry_store_set();
    return {};
}

bool server::impl::write_store_set(bool quiet) {
    if (!store_set) return true;
    const auto& p = opts.persistence;
    auto& ps = *store_set;
    const auto commit_path = join(p.location, store::store_set_commit_name(p.file));
    result<store::store_set_report> done = std::error_code{};
    if (ps.commit_left) {
        done = store::finish_store_set(p.location, p.file);
    } else {
        store::store_set set;
        for (std::size_t k = 0; k < ps.files.size(); ++k) {
            set.files.push_back(
                {store::shard_file(p.file, k), [bytes = &ps.files[k]](const store::byte_sink& out) {
                     return out(std::span<const std::uint8_t>{*bytes});
                 }});
        }
        set.remove = ps.remove;
        done = store::commit_store_set(p.location, p.file, set);
    }
    if (!done) {
        // Past its commit file the set is decided: only finishing it is left.
        std::error_code ec;
        ps.commit_left = std::filesystem::exists(commit_path, ec) && !ec;
        if (!quiet) {
            note(0, broker::log_level::error, broker::log_kind::error,
                 "store " + commit_path + ": the stores for threads " +
                     std::to_string(ps.files.size()) +
                     " still cannot be written: " + done.error().message());
        }
        return false;
    }
    for (const auto& r : done->not_removed) report_not_removed(p.location, r);
    note(0, broker::log_level::notice, broker::log_kind::log,
         "store " + commit_path + ": the stores for threads " + std::to_string(ps.files.size()) +
             " are written (" + std::to_string(done->removed) +
             " file(s) of the previous number of threads removed); each store is written "
             "anew with its state now");
    store_set.reset();
    return true;
}

void server::impl::retry_store_set() {
    store_set_timer.expires_after(std::chrono::seconds{1});
    store_set_timer.async_wait([this](const boost::system::error_code& ec) {
        if (ec || stopping || !store_set) return;
        if (!write_store_set(true)) return retry_store_set();
        // Each store writes its own state anew, on its own loop (as after any failure).
        store->set_committed(true);
        for (std::size_t k = 1; k < shards.size(); ++k) {
            runtime->post(k, [this, k] {
                if (shards[k]->store) shards[k]->store->set_committed(true);
            });
        }
    });
}

void server::impl::report_not_removed(const std::string& dir, const std::string& what) {
    // Left behind, its sessions would be redistributed again at the next start (copies of
    // sessions since changed or ended): say so.
    note(0, broker::log_level::error, broker::log_kind::error,
         "store " + join(dir, what) +
             ": cannot be removed; its sessions are in the other stores now: remove it before "
             "the next start");
}

detail::store_driver* server::impl::held_store(std::size_t k) {
    return k == 0 ? conns.store : shards[k]->conns->store;
}

void server::impl::item_sent(std::size_t from, std::size_t to, bool need) {
    auto* st = held_store(from);
    if (st == nullptr) return;
    const auto seq = ++counts[from].sent[to];
    if (need) st->remote_sent(to, seq);
}

void server::impl::items_taken(std::size_t k, std::size_t from, std::size_t n,
                               std::uint64_t share_max, std::uint64_t again_max) {
    auto* st = held_store(k);
    if (st == nullptr || n == 0) return;
    auto& c = counts[k];
    const auto seq = c.got[from] += n;
    // Agains go back to the shard the delivery came from: `from`.
    const std::uint64_t again = c.batch_again[from];
    const bool needs =
        std::any_of(c.batch_need.begin(), c.batch_need.end(), [](auto x) { return x != 0; });
    confirmation next{seq, outboxes[k].applied[from], false, {}, again};
    if (needs) next.need = c.batch_need;
    c.pending[from].push_back(std::move(next));
    if (share_max != 0) c.share_pending[from].push_back({share_max, again, {}, false});
    if (again_max != 0) {
        // The re-picks made while taking them (retries, or local deliveries recorded here).
        c.again_pending[from].push_back(
            {again_max, 0, needs ? c.batch_need : std::vector<std::uint64_t>{}, false});
    }
    st->when_synced([this, k, from, seq, share_max, again_max] {
        auto& c = counts[k];
        // That this shard synced the share deliveries waits for nothing else: the home's
        // confirmation of an again waits for it (a re-pick may come back here).
        if (share_max != 0) {
            runtime->post(from, [this, k, from, share_max] { share_synced(from, k, share_max); });
            for (auto& w : c.share_pending[from]) {
                if (w.max > share_max) break;
                w.synced = true;
            }
        }
        if (again_max != 0) {
            for (auto& w : c.again_pending[from]) {
                if (w.max > again_max) break;
                w.synced = true;
            }
        }
        for (auto& p : c.pending[from]) {
            if (p.seq > seq) break;
            p.synced = true;
        }
        send_again_confirmations(k, from);
        send_share_confirmations(k, from);
        send_confirmations(k, from);
    });
}

void server::impl::share_synced(std::size_t k, std::size_t to, std::uint64_t seq) {
    auto& c = counts[k];
    if (seq <= c.share_synced[to]) return;
    c.share_synced[to] = seq;
    for (std::size_t from = 0; from < c.again_pending.size(); ++from) {
        if (from != k && !c.again_pending[from].empty()) send_again_confirmations(k, from);
    }
}

void server::impl::share_confirmed(std::size_t k, std::size_t to, std::uint64_t seq) {
    auto& c = counts[k];
    if (seq <= c.share_confirmed[to]) return;
    c.share_confirmed[to] = seq;
    for (std::size_t from = 0; from < c.pending.size(); ++from) {
        if (from != k && !c.pending[from].empty()) send_confirmations(k, from);
    }
}

void server::impl::again_confirmed(std::size_t k, std::size_t to, std::uint64_t seq) {
    auto& c = counts[k];
    if (seq <= c.again_confirmed[to]) return;
    c.again_confirmed[to] = seq;
    send_share_confirmations(k, to);
    send_confirmations(k, to);
}

void server::impl::send_confirmations(std::size_t k, std::size_t from) {
    auto& c = counts[k];
    auto& q = c.pending[from];
    std::uint64_t seq = 0;
    std::uint64_t applied = 0;
    while (!q.empty() && q.front().synced) {
        const auto& p = q.front();
        bool met = p.again <= c.again_confirmed[from];
        for (std::size_t j = 0; j < p.need.size() && met; ++j) {
            met = p.need[j] <= c.share_confirmed[j];
        }
        if (!met) break;
        seq = p.seq;
        applied = std::max(applied, p.applied);
        q.pop_front();
    }
    if (seq == 0) return;
    runtime->post(from, [this, k, from, seq, applied] {
        auto* s = held_store(from);
        if (s == nullptr) return;
        s->remote_synced(k, seq);
        // Shard k's disk has what it did with these outbox items: they may go.
        if (applied != 0) s->recorder().outbox_confirmed(k, applied);
    });
}

void server::impl::send_share_confirmations(std::size_t k, std::size_t from) {
    auto& c = counts[k];
    auto& q = c.share_pending[from];
    std::uint64_t max = 0;
    while (!q.empty() && q.front().synced && q.front().again <= c.again_confirmed[from]) {
        max = q.front().max;
        q.pop_front();
    }
    if (max == 0) return;
    runtime->post(from, [this, k, from, max] { share_confirmed(from, k, max); });
}

void server::impl::send_again_confirmations(std::size_t k, std::size_t from) {
    auto& c = counts[k];
    auto& q = c.again_pending[from];
    std::uint64_t max = 0;
    while (!q.empty() && q.front().synced) {
        const auto& w = q.front();
        bool met = true;
        for (std::size_t j = 0; j < w.need.size() && met; ++j) met = w.need[j] <= c.share_synced[j];
        if (!met) break;
        max = w.max;
        q.pop_front();
    }
    if (max == 0) return;
    runtime->post(from, [this, k, from, max] { again_confirmed(from, k, max); });
}

std::uint64_t server::impl::outbox_item(std::size_t k, const broker::message_ptr& m,
                                        std::span<const std::size_t> to,
                                        std::string_view publisher) {
    auto* st = held_store(k);
    if (st == nullptr || m->qos_level != protocol::qos::exactly_once) return 0;
    // A publisher whose session the store does not hold (Clean Start without a Session
    // Expiry Interval) has no packet id on disk to keep together with the message, and
    // after a crash nothing to resend: its message goes to the other shards at once, and
    // its PUBREC waits for their syncs, as a QoS 1 message's PUBACK does. A message the
    // engine publishes itself, without a publisher (a Will), keeps the outbox.
    if (!publisher.empty() && !st->recorder().mirror().sessions().contains(std::string{publisher})) {
        return 0;
    }
    auto& o = outboxes[k];
    std::vector<std::uint16_t> dests;
    dests.reserve(to.size());
    for (const std::size_t j : to) dests.push_back(static_cast<std::uint16_t>(j));
    st->recorder().outbox_sent(m, ++o.seq, std::move(dests), std::string{publisher});
    ++o.gates;  // the items sent for m wait for this gate
    return o.seq;
}

void server::impl::outbox_recorded(std::size_t k) {
    auto* st = held_store(k);
    if (st == nullptr) return;
    st->when_synced([this, k, gate = outboxes[k].gates] {
        auto& o = outboxes[k];
        o.synced = std::max(o.synced, gate);
        send_outbox(k);
    });
}

void server::impl::send_outbox(std::size_t k) {
    if (outboxes.empty()) return;
    auto& o = outboxes[k];
    while (!o.items.empty() && o.items.front().gate <= o.synced) {
        auto& w = o.items.front();
        // Refused (the channel is max_items behind): kept, sent again by on_resume.
        if (!runtime->send(k, w.to, std::move(w.item))) return;
        o.items.pop_front();
    }
}

std::vector<std::size_t> server::impl::replay_outboxes(const std::vector<store::state*>& states,
                                                       std::size_t written_by,
                                                       std::vector<char>& shares_sent) {
    std::vector<const store::state*> view(states.begin(), states.end());
    // What every destination's file says it took leaves the outboxes; the rest is routed
    // (queued) in the destination's state, which is then written anew.
    store::settle_outboxes(states);
    const auto& l = engine.config();
    store::replay_rules rules;
    rules.upgrade_outgoing_qos = l.upgrade_outgoing_qos;
    rules.queue_qos0 = l.queue_qos0_messages;
    rules.max_queued_messages = l.max_queued_messages;
    rules.max_queued_bytes = l.max_queued_bytes;
    // The read ACL of the listener the session's client last came through, as the engine
    // checks a restored session's deliveries (store::read_check_of: the broker-wide one
    // when the store does not say). The bridges' local sessions are not subject to any
    // (server_options::bridges).
    store::replay_acls acls;
    acls.listeners = listener_keys();
    acls.by_slot.resize(1);
    acls.by_slot[0] = engine.security(0).acl;
    for (const auto& l : acls.listeners) {
        if (l.key.empty() || l.slot == 0) continue;
        if (acls.by_slot.size() <= l.slot) acls.by_slot.resize(l.slot + 1);
        acls.by_slot[l.slot] = engine.security(l.slot).acl;
    }
    for (const auto& b : opts.bridges) acls.exempt.insert(b.local.client_id);
    rules.may_read = store::read_check_of(std::move(acls));
    store::replay_counts counts;
    // A share group's home as the threads that wrote the stores had it.
    const auto home = [written_by](std::string_view filter) {
        return broker::shard_of(filter, written_by);
    };
    std::vector<std::size_t> n(states.size(), 0);
    shares_sent.assign(states.size(), 0);
    // Twice: the first pass may give a share group's message to a member in another store
    // through the outbox of the group's home (replay_shared), which the second routes.
    for (int pass = 0; pass < 2; ++pass) {
        for (std::size_t d = 0; d < states.size(); ++d) {
            if (states[d] == nullptr) continue;
            for (const auto& item : store::unapplied(view, d)) {
                bool sent = false;
                store::replay_shared(states, d, item, rules, home, sent, counts);
                store::replay(*states[d], item, rules, counts);
                if (sent) shares_sent[d] = 1;
                ++n[d];
            }
        }
    }
    if (counts.queue_full != 0) {
        note(0, broker::log_level::warning, broker::log_kind::warning,
             std::to_string(counts.queue_full) +
                 " delivery(ies) routed at start dropped: the session's queue was full "
                 "(max_queued_messages, max_queued_bytes)");
    }
    if (counts.denied != 0) {
        note(0, broker::log_level::warning, broker::log_kind::warning,
             std::to_string(counts.denied) +
                 " delivery(ies) routed at start dropped: the session's client may not read "
                 "the topic (acl_file)");
    }
    return n;
}

void server::impl::close_stores() {
    // The new set still waits: a last try, then each store writes its state at close().
    if (store_set && write_store_set(false)) {
        if (store) store->set_committed(false);
        for (std::size_t k = 1; k < shards.size(); ++k) {
            if (shards[k]->store) shards[k]->store->set_committed(false);
        }
    }
    if (store) store->close();
    for (std::size_t k = 1; k < shards.size(); ++k) {
        if (shards[k]->store) shards[k]->store->close();
    }
}

}  // namespace mqtt::net
