#include "mqtt/store/state.hpp"

#include "mqtt/broker/durable_session.hpp"

#include <algorithm>
#include <iterator>
#include <utility>

namespace mqtt::store {

namespace {

std::size_t cost_of(const stored_message& m) noexcept {
    return m.msg ? broker::queue_cost(*m.msg) : 0;
}

}  // namespace

std::uint64_t message_record_bytes(const broker::message& m) noexcept {
    // frame, id, receive time, QoS, retain, expiry flag and value, then topic, properties
    // (at least one byte) and payload with a 4-byte length each
    return frame_header_size + 8 + 8 + 1 + 1 + 1 + 4 + 4 + m.topic.size() + 4 +
           std::max<std::size_t>(m.props_v5.size(), 1) + 4 + m.payload.size();
}

std::optional<std::size_t> listener_of(const listener_keys& keys, std::string_view key) {
    std::optional<std::size_t> found;
    for (std::size_t n = 0; n < keys.size(); ++n) {
        if (keys[n].key.empty() || keys[n].key != key) continue;
        if (found) return std::nullopt;  // two listeners alike: neither
        found = n;
    }
    return found;
}

bool state::add_ref(std::uint64_t id, std::size_t* cost) {
    const auto it = find_message(messages_, id);
    if (it == messages_.end()) return false;
    ++it->second.refs;
    ++refs_;
    if (cost != nullptr) *cost = cost_of(it->second);
    return true;
}

void state::drop_ref(std::uint64_t id, std::size_t* cost) {
    const auto it = find_message(messages_, id);
    if (it == messages_.end()) return;
    if (cost != nullptr) *cost = cost_of(it->second);
    if (it->second.refs > 0) {
        --it->second.refs;
        --refs_;
    }
    if (it->second.refs == 0) erase_message(it);
}

void state::erase_message(std::map<std::uint64_t, stored_message>::iterator it) {
    if (it->second.msg) message_bytes_ -= message_record_bytes(*it->second.msg);
    messages_.erase(it);
}

stored_session* state::find(const std::string& client_id) {
    const auto it = sessions_.find(client_id);
    return it == sessions_.end() ? nullptr : &it->second;
}

void state::end_session(std::map<std::string, stored_session>::iterator it) {
    auto& s = it->second;
    for (const auto& q : s.queue) drop_ref(q.msg_id);
    for (const auto& o : s.inflight) {
        if (o.msg_id != 0) drop_ref(o.msg_id);
    }
    if (s.will_msg_id != 0) drop_ref(s.will_msg_id);
    sessions_.erase(it);
}

struct state::applier {
    state& st;

    bool operator()(const header_record& h) const { return h.format == format_version; }
    bool operator()(const commit_record&) const { return true; }  // load_bytes() groups by it
    bool operator()(const message_record& m) const {
        if (m.id == 0 || !m.msg) return false;
        // Ids grow: a new message goes at the end, without a search from the root.
        auto& msgs = st.messages_;
        auto& e = msgs.empty() || std::prev(msgs.end())->first < m.id
                      ? msgs.emplace_hint(msgs.end(), m.id, stored_message{})->second
                      : msgs[m.id];
        if (e.msg) {
            // The same message written again (compaction does that) is fine; another one
            // under an id in use (a damaged or pieced-together file) would change what the
            // references to it deliver, a retained one under another topic than its own.
            if (!(message_record{m.id, e.received_ms, e.msg} == m)) return false;
            st.message_bytes_ -= message_record_bytes(*e.msg);
        }
        e.msg = m.msg;
        st.message_bytes_ += message_record_bytes(*e.msg);
        e.received_ms = m.received_ms;
        st.max_id_ = std::max(st.max_id_, m.id);
        return true;
    }
    bool operator()(const retained_set_record& r) const {
        const auto it = find_message(st.messages_, r.msg_id);
        if (it == st.messages_.end()) return false;
        const std::string_view topic = it->second.msg->topic;
        ++it->second.refs;
        ++st.refs_;
        auto pos = st.retained_.lower_bound(topic);
        if (pos != st.retained_.end() && pos->first == topic) {
            const auto old = std::exchange(pos->second, r.msg_id);
            st.drop_ref(old);
        } else {
            st.retained_.emplace_hint(pos, std::string{topic}, r.msg_id);
        }
        return true;
    }
    bool operator()(const retained_clear_record& r) const {
        const auto it = st.retained_.find(r.topic);
        if (it == st.retained_.end()) return true;  // clearing nothing is fine
        const auto id = it->second;
        st.retained_.erase(it);
        st.drop_ref(id);
        return true;
    }
    bool operator()(const session_record& r) const {
        auto& s = st.sessions_[r.client_id];
        s.expiry_interval = r.expiry_interval;
        s.identified = r.identified;
        s.username = r.username;
        s.listener = r.listener;
        s.offline = false;
        s.expires_ms = -1;
        if (s.will_msg_id != 0) st.drop_ref(std::exchange(s.will_msg_id, 0));
        s.will_ms = -1;
        return true;
    }
    bool operator()(const session_end_record& r) const {
        const auto it = st.sessions_.find(r.client_id);
        if (it == st.sessions_.end()) return false;
        st.end_session(it);
        return true;
    }
    bool operator()(const subscribe_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr) return false;
        s->subscriptions.insert_or_assign(r.filter,
                                          stored_subscription{r.options, r.subscription_id});
        return true;
    }
    bool operator()(const unsubscribe_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr) return false;
        s->subscriptions.erase(r.filter);
        return true;
    }
    bool operator()(const queue_push_record& r) const {
        auto* s = st.find(r.client_id);
        std::size_t cost = 0;
        if (s == nullptr || !st.add_ref(r.msg_id, &cost)) return false;
        s->queue.push_back({r.msg_id, r.q, r.retain, r.subscription_ids});
        s->queued_bytes += cost;
        return true;
    }
    bool operator()(const queue_pop_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr || s->queue.empty()) return false;
        std::size_t cost = 0;
        st.drop_ref(s->queue.front().msg_id, &cost);
        s->queued_bytes -= std::min(s->queued_bytes, cost);
        s->queue.pop_front();
        return true;
    }
    bool operator()(const inflight_add_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr || r.packet_id == 0) return false;
        const bool used =
            std::any_of(s->inflight.begin(), s->inflight.end(),
                        [&](const inflight_ref& o) { return o.packet_id == r.packet_id; });
        if (used) return false;
        if (r.waiting == stage::pubcomp ? r.msg_id != 0 : !st.add_ref(r.msg_id)) return false;
        s->inflight.push_back(
            {r.packet_id, r.msg_id, r.q, r.retain, r.waiting, r.subscription_ids});
        return true;
    }
    std::vector<inflight_ref>::iterator find_inflight(stored_session& s, std::uint16_t id) const {
        return std::find_if(s.inflight.begin(), s.inflight.end(),
                            [&](const inflight_ref& o) { return o.packet_id == id; });
    }
    bool operator()(const inflight_stage_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr) return false;
        const auto it = find_inflight(*s, r.packet_id);
        if (it == s->inflight.end() || r.waiting != stage::pubcomp) return false;
        it->waiting = stage::pubcomp;
        if (it->msg_id != 0) st.drop_ref(std::exchange(it->msg_id, 0));
        return true;
    }
    bool operator()(const inflight_remove_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr) return false;
        const auto it = find_inflight(*s, r.packet_id);
        if (it == s->inflight.end()) return false;
        if (it->msg_id != 0) st.drop_ref(it->msg_id);
        s->inflight.erase(it);
        return true;
    }
    bool operator()(const qos2_in_add_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr) return false;
        auto& v = s->qos2_in;
        const auto it = std::lower_bound(v.begin(), v.end(), r.packet_id);
        if (it == v.end() || *it != r.packet_id) v.insert(it, r.packet_id);
        return true;
    }
    bool operator()(const qos2_in_remove_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr) return false;
        std::erase(s->qos2_in, r.packet_id);
        return true;
    }
    bool operator()(const outbox_add_record& r) const {
        if (r.seq == 0 || r.dests.empty() || st.outbox_.contains(r.seq) || !st.add_ref(r.msg_id))
            return false;
        auto dests = r.dests;
        std::sort(dests.begin(), dests.end());
        dests.erase(std::unique(dests.begin(), dests.end()), dests.end());
        st.outbox_.emplace(
            r.seq, outbox_entry{r.msg_id, std::move(dests), r.group, r.client_id, r.publisher});
        st.outbox_last_ = std::max(st.outbox_last_, r.seq);
        return true;
    }
    bool operator()(const outbox_ack_record& r) const {
        for (auto it = st.outbox_.begin(); it != st.outbox_.end() && it->first <= r.seq;) {
            std::erase(it->second.dests, r.dest);
            if (!it->second.dests.empty()) {
                ++it;
                continue;
            }
            st.drop_ref(it->second.msg_id);
            it = st.outbox_.erase(it);
        }
        return true;
    }
    bool operator()(const outbox_last_record& r) const {
        st.outbox_last_ = std::max(st.outbox_last_, r.seq);
        return true;
    }
    bool operator()(const inbox_applied_record& r) const {
        auto& a = st.applied_[r.source];
        a = std::max(a, r.seq);
        return true;
    }
    bool operator()(const session_offline_record& r) const {
        auto* s = st.find(r.client_id);
        if (s == nullptr) return false;
        if (r.will_msg_id != 0 && !st.add_ref(r.will_msg_id)) return false;
        if (s->will_msg_id != 0) st.drop_ref(s->will_msg_id);
        s->expiry_interval = r.expiry_interval;
        s->offline = true;
        s->expires_ms = r.expires_ms;
        s->will_msg_id = r.will_msg_id;
        s->will_ms = r.will_ms;
        return true;
    }
};

bool state::apply(const record& r) {
    const bool ok = std::visit(applier{*this}, r);
    if (!ok) ++rejected_;
    return ok;
}

void state::replace_message(std::uint64_t id, broker::message_ptr m) {
    const auto it = messages_.find(id);
    if (it == messages_.end()) return;
    if (it->second.msg) message_bytes_ -= message_record_bytes(*it->second.msg);
    it->second.msg = std::move(m);
    if (it->second.msg) message_bytes_ += message_record_bytes(*it->second.msg);
}

void state::prune() {
    for (auto it = messages_.begin(); it != messages_.end();) {
        const auto next = std::next(it);
        if (it->second.refs == 0) erase_message(it);
        it = next;
    }
}

std::size_t state::queued_count() const noexcept {
    std::size_t n = 0;
    for (const auto& [id, s] : sessions_) n += s.queue.size();
    return n;
}

std::size_t state::inflight_count() const noexcept {
    std::size_t n = 0;
    for (const auto& [id, s] : sessions_) n += s.inflight.size();
    return n;
}

void state::snapshot(std::int64_t now_ms, const std::function<bool(const record&)>& out) const {
    // The header as a group of its own: a file that has commit records from its start is
    // read by groups (load_bytes), even when its only other group is cut short.
    if (!out(header_record{format_version, now_ms}) || !out(commit_record{})) return;
    // A snapshot is written to a new file that replaces the old one only once synced, so it
    // is never cut short: its groups are only there to bound what reading it holds back.
    std::size_t in_group = 0;
    const auto add = [&](const record& r) {
        if (!out(r)) return false;
        if (++in_group < snapshot_group_records) return true;
        in_group = 0;
        return out(commit_record{});
    };
    for (const auto& [id, m] : messages_) {
        if (m.refs != 0 && !add(message_record{id, m.received_ms, m.msg})) return;
    }
    if (outbox_last_ != 0 && !add(outbox_last_record{outbox_last_})) return;
    for (const auto& [seq, o] : outbox_) {
        if (!add(outbox_add_record{seq, o.msg_id, o.dests, o.group, o.client_id, o.publisher}))
            return;
    }
    for (const auto& [source, seq] : applied_) {
        if (!add(inbox_applied_record{source, seq})) return;
    }
    for (const auto& [topic, id] : retained_) {
        if (!add(retained_set_record{id})) return;
    }
    for (const auto& [client_id, s] : sessions_) {
        if (!add(session_record{client_id, s.expiry_interval, s.identified, s.username,
                                s.listener})) {
            return;
        }
        for (const auto& [filter, sub] : s.subscriptions) {
            if (!add(subscribe_record{client_id, filter, sub.options, sub.id})) return;
        }
        for (const auto id : s.qos2_in) {
            if (!add(qos2_in_add_record{client_id, id})) return;
        }
        for (const auto& o : s.inflight) {
            if (!add(inflight_add_record{client_id, o.packet_id, o.msg_id, o.q, o.retain, o.waiting,
                                         o.subscription_ids})) {
                return;
            }
        }
        for (const auto& q : s.queue) {
            if (!add(queue_push_record{client_id, q.msg_id, q.q, q.retain, q.subscription_ids})) {
                return;
            }
        }
        if (s.offline && !add(session_offline_record{client_id, s.expiry_interval, s.expires_ms,
                                                     s.will_msg_id, s.will_ms})) {
            return;
        }
    }
    if (in_group != 0) out(commit_record{});
}

std::vector<record> state::snapshot(std::int64_t now_ms) const {
    std::vector<record> out;
    snapshot(now_ms, [&](const record& r) {
        out.push_back(r);
        return true;
    });
    return out;
}

}  // namespace mqtt::store
