// The MQTT sessions of the engine: attaching connections to them (clean start, resume,
// takeover), keeping them while offline, their expiry and delayed Wills.

#include <algorithm>
#include <cstdio>
#include <utility>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/figures.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {

void engine::add(session& s) {
    s.prev_connection_ = nullptr;
    s.next_connection_ = connections_;
    if (connections_ != nullptr) connections_->prev_connection_ = &s;
    connections_ = &s;
    ++connection_count_;
}

void engine::remove(session& s) {
    if (s.prev_connection_ != nullptr) {
        s.prev_connection_->next_connection_ = s.next_connection_;
    } else {
        connections_ = s.next_connection_;
    }
    if (s.next_connection_ != nullptr) s.next_connection_->prev_connection_ = s.prev_connection_;
    s.prev_connection_ = s.next_connection_ = nullptr;
    --connection_count_;
    if (s.paused_for_shards()) std::erase(shard_paused_, &s);
    if (s.waiting_for_retained()) {
        std::erase_if(retained_waiters_, [&s](const auto& w) { return w.second == &s; });
    }
}

engine::attach_result engine::attach(session& s, const std::string& client_id, bool clean_start,
                                     clock::time_point now) {
    auto it = by_id_.find(client_id);
    if (it != by_id_.end() && it->second->connection != nullptr && it->second->connection != &s) {
        ++stats_.takeovers;
        // Detaches it, which may end its session (Session Expiry 0): look again after.
        it->second->connection->close_by_server(protocol::reason_code::session_taken_over, now);
        it = by_id_.find(client_id);
    }
    if (it != by_id_.end() && clean_start) {  // MQTT-3.1.2-4 / 5.0 MQTT-3.1.2-4
        end_session(*it->second);
        it = by_id_.end();
    }
    bool present = false;
    if (it == by_id_.end()) {
        auto ds = std::make_unique<durable_session>();
        ds->client_id = client_id;
        const std::string_view key{ds->client_id};  // the map's key is the session's own id
        it = by_id_.emplace(key, std::move(ds)).first;
    } else {
        present = true;
        ++stats_.sessions_resumed;
        durable_session& ds = *it->second;
        unschedule(ds);
        // Back before the Will Delay passed: the Will is not sent (MQTT-3.1.3-9).
        ds.set_will(nullptr);
        ds.set_will_at(clock::time_point::max());
        ds.set_expires_at(clock::time_point::max());
    }
    it->second->connection = &s;
    ++connected_;
    if (clients_) clients_->up();
    if (present) note_remote_groups(*it->second, share_op::online);
    stats_.connected_maximum = std::max<std::uint64_t>(stats_.connected_maximum, connected_);
    return {it->second.get(), present};
}

void engine::detach(durable_session& ds, bool publish, clock::time_point now) {
    if (ds.connection != nullptr) {
        --connected_;
        if (clients_) clients_->down();
    }
    ds.connection = nullptr;
    if (!publish) ds.set_will(nullptr, ds.will_delay());
    if (ds.expiry_interval == 0) {  // ends with the connection; end_session sends the Will
        end_session(ds);
        return;
    }
    note_remote_groups(ds, share_op::offline);
    if (ds.will()) {
        if (ds.will_delay() == 0) {
            publish_will(ds);
        } else {
            ds.set_will_at(now + std::chrono::seconds{ds.will_delay()});
        }
    }
    if (ds.expiry_interval != session_never_expires) {
        ds.set_expires_at(now + std::chrono::seconds{ds.expiry_interval});
    }
    schedule(ds);
    if (store_) store_->session_offline(ds);
}

void engine::restore_session(std::unique_ptr<durable_session> s, bool identified) {
    durable_session& ds = *s;
    ds.connection = nullptr;
    if (identified) {
        const acl_file* a = acl_of(ds);
        ds.acl_block = a ? a->block_of(ds.username()) : -1;
    }
    for (const auto& q : ds.queue) {
        if (q.msg) charge(*q.msg);
    }
    // Restored in-flight messages count toward max_inflight_bytes from the start.
    ds.inflight_bytes = 0;
    for (const auto& o : ds.inflight) {
        if (o.msg) charge(*o.msg);  // none once only PUBREL/PUBCOMP is left
        ds.inflight_bytes += inflight_cost(o);
    }
    ds.remote_shares = 0;
    for (const auto& [filter, e] : ds.subscriptions) {
        const auto shared = protocol::parse_shared(filter);
        if (shared.is_shared() && remote_group(filter)) {
            ++ds.remote_shares;  // its home learns of it: announce_restored_shares()
        } else if (shared.is_shared()) {
            join_group(ds, filter, shared.filter, e);
        } else if (subscriptions_.insert_or_assign(filter, &ds, e)) {
            interest_added(filter);
        }
    }
    // A session with this id already there goes first: its id is the key's memory.
    if (const auto old = by_id_.find(std::string_view{ds.client_id}); old != by_id_.end()) {
        by_id_.erase(old);
    }
    const std::string_view key{ds.client_id};
    by_id_.emplace(key, std::move(s));
    schedule(ds);
}

void engine::announce_restored_shares() {
    for (const auto& [id, ds] : by_id_) {
        if (ds->remote_shares == 0 || ds->connection != nullptr) continue;
        note_remote_groups(*ds, share_op::join);
        note_remote_groups(*ds, share_op::offline);
    }
}

void engine::end_session(durable_session& ds) {
    unschedule(ds);
    if (store_) store_->session_ended(ds);
    // Unsubscribe first: a session does not receive its own Will.
    note_remote_groups(ds, share_op::leave);
    for (const auto& [filter, e] : ds.subscriptions) {
        const auto shared = protocol::parse_shared(filter);
        if (shared.is_shared() && remote_group(filter)) continue;
        if (shared.is_shared()) {
            leave_group(ds, filter, shared.filter);
        } else if (subscriptions_.erase(filter, &ds)) {
            interest_removed(filter);
        }
    }
    ds.subscriptions.clear();
    if (ds.will()) publish_will(ds);
    const auto it = by_id_.find(std::string_view{ds.client_id});
    const auto owned = std::move(it->second);  // ds, destroyed after its key left the map
    by_id_.erase(it);
}

void engine::publish_will(durable_session& ds) {
    message_ptr will = ds.take_will();
    if (protocol::is_system_topic(will->topic)) {  // $SYS is the broker's
        ++stats_.dropped_sys_publish;
        return;
    }
    if (!may_publish(ds, will->topic)) {  // the Will is a publish of its client (ACL write)
        ++stats_.dropped_acl;
        if (logging(1))
            log(1,
                "will of " + ds.client_id + " to " + std::string{will->topic} + " denied by acl");
        return;
    }
    ++stats_.wills_published;
    publish(nullptr, will);
}

std::string engine::assign_client_id(std::string_view prefix) {
    for (;;) {
        char buf[20];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id_random_()));
        std::string id;
        id.reserve(prefix.size() + 16);
        id.append(prefix).append(buf, 16);
        // With shards, an id of this shard's, so its reconnections come back here.
        if (shard_count_ > 1 && shard_of(id, shard_count_) != shard_index_) continue;
        if (!by_id_.contains(id)) return id;
    }
}

session* engine::find(std::string_view client_id) const {
    const auto it = by_id_.find(client_id);
    return it == by_id_.end() ? nullptr : it->second->connection;
}

const durable_session* engine::find_session(std::string_view client_id) const {
    const auto it = by_id_.find(client_id);
    return it == by_id_.end() ? nullptr : it->second.get();
}

// ---- deadlines ----------------------------------------------------------------------------

clock::time_point engine::next_expiry() const noexcept {
    return deadlines_.empty() ? clock::time_point::max() : deadlines_.begin()->first;
}

void engine::schedule(durable_session& ds) {
    unschedule(ds);
    const auto key = std::min(ds.will_at(), ds.expires_at());
    if (key == clock::time_point::max()) return;
    ds.set_timer_key(key);
    const bool earlier = key < next_expiry();
    deadlines_.emplace(key, &ds);
    if (earlier && expiry_hook_) expiry_hook_();
}

void engine::unschedule(durable_session& ds) {
    if (ds.timer_key() == clock::time_point::max()) return;
    deadlines_.erase({ds.timer_key(), &ds});
    ds.set_timer_key(clock::time_point::max());
}

void engine::on_timer(clock::time_point now) {
    // Bounded: every pass removes one entry, and a rescheduled one is later than now.
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        durable_session& ds = *deadlines_.begin()->second;
        unschedule(ds);
        const bool will_due = ds.will() && ds.will_at() <= now;
        if (will_due) publish_will(ds);  // Will Delay passed
        if (ds.expires_at() <= now) {
            ++stats_.sessions_expired;
            if (logging(1)) log(1, "session " + ds.client_id + " expired");
            end_session(ds);  // publishes a Will still pending (the session ends first)
            continue;
        }
        schedule(ds);
        if (will_due && store_) store_->session_offline(ds);  // without its Will now
    }
}

void engine::shutdown() {
    std::vector<session*> all;
    all.reserve(connection_count_);
    for (session* s = connections_; s != nullptr; s = s->next_connection_) all.push_back(s);
    for (session* s : all) s->close_by_server(protocol::reason_code::server_shutting_down);
}

engine::queue_totals engine::queues() const noexcept {
    queue_totals t;
    for (const auto& [id, s] : by_id_) {
        t.queued += s->queue.size();
        t.queued_bytes += s->queued_bytes;
        t.inflight += s->inflight.size();
        t.largest_queue = std::max(t.largest_queue, s->queue.size());
    }
    return t;
}

}  // namespace mqtt::broker
