// tern-broker with threads > 1 (docs/broker.md, "Threading"): shards 1..N-1 next to shard 0
// (the loop and engine the broker always had), and what one shard publishes routed to the
// others through shard_runtime. Connections reach their shard in server_handoff.cpp.

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "net/transport/transport.hpp"
#include "server_impl.hpp"

namespace mqtt::net {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

}  // namespace

broker::engine& server::impl::engine_of(std::size_t k) {
    return k == 0 ? engine : shards[k]->engine;
}

void server::impl::create_shards() {
    const std::size_t n = opts.threads;
    shard_runtime_options ro;
    ro.shards = n;
    ro.shard0 = &io;
    // Publishers pause at high_water towards a shard, or when it is congested forwarding
    // (shard_runtime::check_forwarding). A channel then still takes what the other n - 1
    // shards had in flight into its sender (up to high_water each) and one message per
    // publisher that had not looked yet: n * high_water stays below max_items.
    ro.channel.max_items = std::max<std::size_t>(opts.shard_channel_items, n + 1);
    ro.channel.high_water = ro.channel.max_items / (n + 1);
    ro.channel.high_water_bytes = opts.shard_channel_bytes;
    runtime.emplace(ro);
    shards.resize(n);
    counts.resize(n);
    for (auto& c : counts) {
        c.sent.assign(n, 0);
        c.got.assign(n, 0);
        c.share_sent.assign(n, 0);
        c.share_synced.assign(n, 0);
        c.share_confirmed.assign(n, 0);
        c.again_sent.assign(n, 0);
        c.again_confirmed.assign(n, 0);
        c.batch_need.assign(n, 0);
        c.batch_again.assign(n, 0);
        c.pending.resize(n);
        c.share_pending.resize(n);
        c.again_pending.resize(n);
    }
    outboxes.resize(n);
    for (auto& o : outboxes) o.applied.assign(n, 0);
    retained_issued = std::make_unique<retained_counter[]>(n);
    for (std::size_t k = 1; k < n; ++k) {
        auto sh = std::make_unique<shard_state>(opts);
        set_security(sh->engine);
        sh->deadlines.start(runtime->io(k).get_executor());
        // The listener's count lives on shard 0.
        sh->conns.emplace(detail::connection_context{
            sh->engine, *sh->auth, sh->deadlines, nullptr,
            [this](std::uint32_t group, std::exception_ptr e) {
                asio::post(io, [this, group, e] { connection_ended(group, e); });
            }});
        set_batch_observer(runtime->io(k), &sh->conns->writes);
        sh->expiry.emplace(runtime->io(k));
        shards[k] = std::move(sh);
    }
    for (std::size_t k = 0; k < n; ++k) {
        links.push_back(std::make_unique<shard_link>(*this, k));
        memory_holds.push_back(std::make_unique<memory_hold>(runtime->io(k), n));
        retained_orders.push_back(std::make_unique<retained_order>(runtime->io(k), n));
    }
    for (std::size_t k = 0; k < n; ++k) {
        (k == 0 ? conns : *shards[k]->conns).writes.before_writes = [this, k] {
            runtime->flush(k);
        };
    }
    engine.set_shard(0, n, links[0].get(), nullptr);
    for (std::size_t k = 1; k < n; ++k) shards[k]->engine.set_shard(k, n, links[k].get(), &engine);
    std::vector<broker::shard_interest*> all;
    for (std::size_t k = 0; k < n; ++k) {
        interests.push_back(std::make_unique<broker::shard_interest>());
        all.push_back(interests.back().get());
    }
    for (std::size_t k = 0; k < n; ++k) engine_of(k).set_interests(all);
    for (std::size_t k = 0; k < n; ++k) {
        runtime->on_batch(k, [this, k](std::size_t from, std::span<shard_item> items) {
            return on_shard_batch(k, from, items);
        });
        runtime->on_resume(k, [this, k](std::size_t) {
            send_outbox(k);  // a channel refused what was waiting in the outbox
            engine_of(k).shards_resumed();
        });
    }
}

namespace {

asio::awaitable<void> shard_expiry_loop(broker::engine& e, asio::steady_timer& t,
                                        const bool& stopping) {
    while (!stopping) {
        t.expires_at(e.next_expiry());
        auto [ec] = co_await t.async_wait(nothrow);
        (void)ec;
        if (stopping) co_return;
        e.on_timer(broker::clock::now());
    }
}

}  // namespace

void server::impl::start_shards() {
    for (std::size_t k = 1; k < shards.size(); ++k) {
        auto& sh = *shards[k];
        sh.engine.set_expiry_hook([&sh] { sh.expiry->cancel(); });
        asio::co_spawn(runtime->io(k), shard_expiry_loop(sh.engine, *sh.expiry, sh.stopping),
                       asio::detached);
    }
    // Restored sessions' remote share groups: their homes hear of them from the loops
    // (the channels' notes go out at the end of a loop turn), before any connection.
    for (std::size_t k = 0; k < shards.size(); ++k) {
        runtime->post(k, [this, k] { engine_of(k).announce_restored_shares(); });
    }
    runtime->start(true);  // shard 0 is io, which run() runs on this thread
}

void server::impl::shutdown_shards() {
    boost::system::error_code ec;
    for (const auto& h : handoffs) h->socket.close(ec);
    for (std::size_t k = 1; k < shards.size(); ++k) {
        runtime->post(k, [this, k] {
            auto& sh = *shards[k];
            sh.stopping = true;
            sh.expiry->cancel();
            memory_holds[k]->timer.cancel();
            retained_orders[k]->timer.cancel();
            if (sh.store) sh.store->cancel_timer();
            sh.engine.shutdown();
        });
    }
}

void server::impl::end_shards() {
    if (!stopping) shutdown_shards();
    runtime->finish();  // each loop returns once its connections have closed
    runtime->join();
}

void server::impl::stop_shards() {
    for (std::size_t k = 1; k < shards.size(); ++k) {
        auto& sh = *shards[k];
        sh.engine.set_expiry_hook({});
        sh.deadlines.stop();
        sh.expiry.reset();
        sh.auth.reset();
        if (sh.conns) sh.conns->store = nullptr;
        sh.store.reset();
    }
    memory_holds.clear();
    retained_orders.clear();
}

void server::impl::post_to_shards(std::function<void(broker::engine&)> f) {
    auto shared = std::make_shared<const std::function<void(broker::engine&)>>(std::move(f));
    for (std::size_t k = 1; k < shards.size(); ++k)
        runtime->post(k, [this, k, shared] { (*shared)(shards[k]->engine); });
}

namespace {

bool share_delivery(const shard_item& item) noexcept {
    return item.what == shard_item::kind::share && item.msg != nullptr &&
           (item.op == broker::share_op::deliver || item.op == broker::share_op::queue ||
            item.op == broker::share_op::retry);
}

bool share_again(const shard_item& item) noexcept {
    return item.what == shard_item::kind::share && item.msg != nullptr &&
           item.op == broker::share_op::again;
}

}  // namespace

void server::impl::send_to(std::size_t from, std::size_t to, shard_item&& item) {
    if (item.msg != nullptr &&
        (item.what == shard_item::kind::publish || item.what == shard_item::kind::share)) {
        engine_of(from).charge_transit(item.transit, *item.msg);
    }
    // Numbered for its confirmation (docs/persistence.md, "Threads"); a batch being taken
    // here is confirmed to its sender only after this one.
    auto& c = counts[from];
    const bool share_outbox = share_delivery(item) && share_through_outbox(from, to, item);
    if (share_outbox) {
        // Durable here, with what made it (docs/persistence.md, "Threads: the outbox"): no
        // confirmation from `to` is waited for.
    } else if (share_delivery(item) && held_store(from) != nullptr) {
        item.share_seq = ++c.share_sent[to];
        if (c.taking) c.batch_need[to] = item.share_seq;
    } else if (share_again(item) && held_store(from) != nullptr) {
        // Sent back to the home: the delivery that brought it is confirmed only once the
        // home has the re-pick (items_taken).
        item.again_seq = ++c.again_sent[to];
        if (c.taking) c.batch_again[to] = item.again_seq;
    }
    if (item.outbox_seq != 0 || !outboxes[from].items.empty()) {
        // Through the outbox, or behind an item waiting in it (channel order): numbered
        // now, sent once the outbox's group is on disk. An outbox item holds nobody's
        // output: its record is in this shard's group, which the output waits for anyway.
        auto& o = outboxes[from];
        item_sent(from, to, item.outbox_seq == 0);
        o.items.push_back({o.gates, to, std::move(item)});
        if (share_outbox) outbox_recorded(from);
        return;
    }
    if (runtime->send(from, to, std::move(item))) {
        item_sent(from, to);
        return;
    }
    // Refused: the other shard is shard_channel_limits::max_items behind, which the
    // publishers' pause leaves to senders without a connection (Wills) and to more
    // publishers than the high-water mark sending at the same moment (each pauses after
    // that one message). The item waits in this shard's queue, with what follows it to
    // any shard (channel order), and goes when `to` frees room (on_resume -> send_outbox):
    // an acknowledged message is not dropped. Bounded by those senders.
    auto& o = outboxes[from];
    item_sent(from, to, true);
    o.items.push_back({0, to, std::move(item)});
    std::uint64_t& refused = from == 0 ? refused0 : shards[from]->refused;
    if (refused++ == 0) {
        note(0, broker::log_level::warning, broker::log_kind::warning,
             "shard " + std::to_string(from) + ": shard " + std::to_string(to) +
                 " is too far behind; what it is sent waits in memory until it catches up");
    }
}

bool server::impl::share_through_outbox(std::size_t from, std::size_t to, shard_item& item) {
    auto* st = outboxes.empty() ? nullptr : held_store(from);
    if (st == nullptr || item.msg->qos_level != protocol::qos::exactly_once || !item.ref) {
        return false;
    }
    auto& o = outboxes[from];
    st->recorder().outbox_share_sent(item.msg, ++o.seq, to, item.ref->group, item.ref->client_id);
    ++o.gates;
    item.outbox_seq = o.seq;
    return true;
}

std::size_t server::impl::on_shard_batch(std::size_t k, std::size_t from,
                                         std::span<shard_item> items) {
    // The writers the batch wakes start at its end.
    const detail::write_deferral::scope batch{(k == 0 ? conns : *shards[k]->conns).writes};
    // With persistence: what the batch made this shard send, and the share deliveries in it,
    // decide when it is confirmed (items_taken). Without, nothing is counted.
    auto& c = counts[k];
    const bool counted = held_store(k) != nullptr;
    c.taking = counted;
    if (counted) {
        std::fill(c.batch_need.begin(), c.batch_need.end(), 0);
        std::fill(c.batch_again.begin(), c.batch_again.end(), 0);
    }
    const std::size_t taken = take_items(k, from, items);
    c.taking = false;
    if (!counted) return taken;
    std::uint64_t share_max = 0;
    std::uint64_t again_max = 0;
    for (std::size_t i = 0; i < taken; ++i) {
        share_max = std::max(share_max, items[i].share_seq);
        again_max = std::max(again_max, items[i].again_seq);
    }
    items_taken(k, from, taken, share_max, again_max);
    return taken;
}

std::size_t server::impl::take_items(std::size_t k, std::size_t from, std::span<shard_item> items) {
    auto& e = engine_of(k);
    // Held up since an earlier batch (a drain not posted by resume_from): wait for it.
    if (e.holding_shard(from) != 0) return 0;
    const auto now = broker::clock::now();
    // The outbox items taken are noted in this shard's group with what routing them did
    // (docs/persistence.md, "Threads: the outbox"). When routing them recorded nothing (no
    // stored session took them) nothing is written: a sync per batch for no record.
    std::uint64_t applied = 0;
    auto* st = outboxes.empty() ? nullptr : held_store(k);
    const std::uint64_t before = st != nullptr ? st->recorder().appended() : 0;
    const auto taken = [&](std::size_t n) {
        if (applied == 0) return n;
        outboxes[k].applied[from] = applied;
        if (st != nullptr && st->recorder().appended() != before) {
            st->recorder().inbox_taken(from, applied);
        }
        return n;
    };
    for (std::size_t i = 0; i < items.size(); ++i) {
        auto& it = items[i];
        if (it.transit.bytes() != 0) {
            // A message to route here: not while the memory is full without the channels,
            // as one thread would have refused it (its fan-out here could add many times
            // its size).
            if (e.memory_full_settled()) {
                hold_for_memory(k, from);
                return taken(i);
            }
            it.transit.set(0);
        }
        if (it.what == shard_item::kind::publish) {
            const bool held = e.route_from_shard(
                it.msg, from, now,
                it.publisher ? std::string_view{*it.publisher} : std::string_view{});
            if (it.outbox_seq != 0) applied = it.outbox_seq;
            // A congested subscriber took it: the rest waits, so that `from`'s channel fills
            // and its publishers pause (back-pressure across shards, nothing dropped).
            if (held) return taken(i + 1);
            continue;
        }
        if (it.what == shard_item::kind::share) {
            auto op = it.op;
            if (it.outbox_seq != 0) {
                // A QoS 2 share delivery from the home's outbox: taken here (queued if the
                // member went offline) rather than sent back, since the home's file has it
                // for this member only (docs/persistence.md, "Threads: the outbox").
                op = broker::share_op::retry;
                applied = it.outbox_seq;
            }
            if (e.share_from_shard(from, op, it.ref, it.msg, now)) return taken(i + 1);
            continue;
        }
        e.apply_retained(it.msg);
        if (k == 0) {
            for (std::size_t j = 1; j < shards.size(); ++j) {
                shard_item relay{it.what, it.msg};
                relay.origin = it.origin;
                send_to(0, j, std::move(relay));
            }
        }
        retained_applied(k, it.origin);
    }
    return taken(items.size());
}

std::uint64_t server::impl::retained_ticket(std::size_t k) {
    auto& o = *retained_orders[k];
    const std::size_t n = shards.size();
    if (memory_holds[k]->armed || (k == 0 ? stopping : shards[k]->stopping)) return 0;
    auto& e = engine_of(k);
    for (std::size_t s = 0; s < n; ++s) {
        if (e.holding_shard(s) != 0) return 0;
    }
    std::vector<std::uint64_t> snapshot(n, 0);
    bool behind = false;
    for (std::size_t s = 0; s < n; ++s) {
        if (s == k) continue;  // its own changes are in its replica at once
        snapshot[s] = retained_issued[s].issued.load(std::memory_order_seq_cst);
        if (snapshot[s] > o.applied[s]) behind = true;
    }
    if (!behind) return 0;
    if (!o.targets.empty() && o.targets.back().issued == snapshot) return o.targets.back().ticket;
    o.targets.push_back({++o.last_ticket, std::move(snapshot), std::chrono::steady_clock::now()});
    if (!o.armed) retained_wait_timer(k);
    return o.last_ticket;
}

void server::impl::retained_wait_timer(std::size_t k) {
    auto& o = *retained_orders[k];
    if (o.targets.empty()) return;
    o.armed = true;
    o.timer.expires_at(o.targets.front().since + retained_wait_max);
    o.timer.async_wait([this, k](const boost::system::error_code& ec) {
        if (ec) return;  // shutting down
        auto& o = *retained_orders[k];
        o.armed = false;
        const auto now = std::chrono::steady_clock::now();
        std::uint64_t reached = 0;
        while (!o.targets.empty() && o.targets.front().since + retained_wait_max <= now) {
            reached = o.targets.front().ticket;
            o.targets.pop_front();
        }
        if (reached != 0) {
            note(0, broker::log_level::warning, broker::log_kind::warning,
                 "a SUBSCRIBE waited " + std::to_string(retained_wait_max.count()) +
                     " ms for retained changes from other threads: handled without them");
            engine_of(k).retained_reached(reached);
        }
        retained_wait_timer(k);
    });
}

void server::impl::retained_applied(std::size_t k, std::size_t origin) {
    auto& o = *retained_orders[k];
    if (origin == k) return;  // its own change, back from shard 0 (applied when made)
    ++o.applied[origin];
    std::uint64_t reached = 0;
    while (!o.targets.empty()) {
        const auto& t = o.targets.front();
        bool met = true;
        for (std::size_t s = 0; s < t.issued.size() && met; ++s) met = o.applied[s] >= t.issued[s];
        if (!met) break;
        reached = t.ticket;
        o.targets.pop_front();
    }
    if (reached != 0) engine_of(k).retained_reached(reached);
}

void server::impl::hold_for_memory(std::size_t k, std::size_t from) {
    auto& h = *memory_holds[k];
    h.from[from] = 1;
    if (h.armed || (k == 0 ? stopping : shards[k]->stopping)) return;
    h.armed = true;
    h.timer.expires_after(memory_retry);
    h.timer.async_wait([this, k](const boost::system::error_code& ec) {
        if (ec) return;  // shutting down
        auto& h = *memory_holds[k];
        h.armed = false;
        for (std::size_t j = 0; j < h.from.size(); ++j) {
            if (h.from[j] == 0) continue;
            h.from[j] = 0;
            runtime->resume_drain(j, k);  // take_items() looks again
        }
    });
}

broker::stats server::impl::summed_stats() {
    broker::stats sum = engine.stats();
    for (std::size_t k = 1; k < shards.size(); ++k)
        broker::add_stats(sum, shards[k]->engine.stats());
    return sum;
}

void server::impl::collect_figures(std::function<void(broker::figures)> done) {
    // Slot k is written on shard k's thread only; for_each_shard orders those writes
    // before the completion on shard 0.
    auto of = std::make_shared<std::vector<broker::figures>>(shards.size());
    runtime->for_each_shard(
        [this, of](std::size_t k) {
            auto& f = (*of)[k] = broker::figures_of(engine_of(k));
            const auto& st = k == 0 ? store : shards[k]->store;
            f.store_file_bytes = st ? st->file_bytes() : 0;
        },
        [of, done = std::move(done)]() mutable {
            auto total = std::move((*of)[0]);
            for (std::size_t k = 1; k < of->size(); ++k) broker::add_shard(total, (*of)[k]);
            auto finish = std::move(done);  // released here, on shard 0
            finish(std::move(total));
        });
}

// The $SYS topics with threads > 1: at sys.next_due() every shard's figures are gathered,
// then shard 0 publishes them (routed to every shard as any publish). Completion handlers,
// not a coroutine (GCC 12 with ASan -O1 reports -Werror=mismatched-new-delete on an
// awaitable frame here, a false positive; see read_first_packet).
void server::impl::sys_tick() {
    sys_timer.expires_at(sys.next_due());
    sys_timer.async_wait([this](const boost::system::error_code& ec) {
        if (ec || stopping) return;
        collect_figures([this](broker::figures f) {
            if (stopping) return;
            sys.on_timer(broker::clock::now(), f);
            sys_tick();
        });
    });
}

}  // namespace mqtt::net
