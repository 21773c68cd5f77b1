#include "mqtt/store/snapshot_cursor.hpp"

#include <type_traits>
#include <variant>

namespace mqtt::store {

bool snapshot_cursor::add(const record& r, const std::function<bool(const record&)>& out) {
    bool more = out(r);
    if (++in_group_ >= snapshot_group_records) {
        in_group_ = 0;
        more = out(commit_record{}) && more;
    }
    return more;
}

bool snapshot_cursor::step(const state& st, const std::function<bool(const record&)>& out) {
    bool more = true;
    if (phase_ == phase::header) {
        // The header as a group of its own, as in state::snapshot.
        out(header_record{format_version, now_ms_});
        out(commit_record{});
        phase_ = phase::messages;
    }
    while (more && phase_ != phase::done) {
        if (phase_ == phase::messages) {
            // Every message, referred to or not: one nobody refers to now may be referred to
            // by a later record without a message record of its own (the recorder writes one
            // only for a message the state does not hold). Reading prunes the others.
            const auto it = st.messages().lower_bound(next_message_);
            if (it == st.messages().end()) {
                phase_ = phase::outbox;
                continue;
            }
            next_message_ = it->first + 1;
            more = add(message_record{it->first, it->second.received_ms, it->second.msg}, out);
        } else if (phase_ == phase::outbox) {
            // Bounded by what the other shards have not confirmed yet: in one slice.
            phase_ = phase::retained;
            if (st.outbox_last() != 0) more = add(outbox_last_record{st.outbox_last()}, out);
            for (const auto& [seq, o] : st.outbox()) {
                more = refer(st, o.msg_id, out) && more;
                more = add(outbox_add_record{seq, o.msg_id, o.dests, o.group, o.client_id,
                                             o.publisher},
                           out) &&
                       more;
            }
            for (const auto& [source, seq] : st.applied()) {
                more = add(inbox_applied_record{source, seq}, out) && more;
            }
        } else if (phase_ == phase::retained) {
            const auto& r = st.retained();
            const auto it = any_topic_ ? r.upper_bound(last_topic_) : r.begin();
            if (it == r.end()) {
                phase_ = phase::sessions;
                continue;
            }
            last_topic_ = it->first;
            any_topic_ = true;
            more = refer(st, it->second, out);
            more = add(retained_set_record{it->second}, out) && more;
        } else {
            const auto& ss = st.sessions();
            if (any_session_ && !session_whole_) {
                const auto it = ss.find(session_);
                if (it != ss.end() && queue_at_ < it->second.queue.size()) {
                    const auto& q = it->second.queue[queue_at_++];
                    more = refer(st, q.msg_id, out);
                    more = add(queue_push_record{session_, q.msg_id, q.q, q.retain,
                                                 q.subscription_ids},
                               out) &&
                           more;
                    continue;
                }
                session_whole_ = true;
            }
            const auto it = any_session_ ? ss.upper_bound(session_) : ss.begin();
            if (it == ss.end()) {
                phase_ = phase::done;
                break;
            }
            const auto& [client_id, s] = *it;
            session_ = client_id;
            any_session_ = true;
            session_whole_ = false;
            queue_at_ = 0;
            // The head at once (bounded by the broker's limits); the queue in slices.
            more = add(
                session_record{client_id, s.expiry_interval, s.identified, s.username, s.listener},
                out);
            if (s.offline) {
                if (s.will_msg_id != 0) more = refer(st, s.will_msg_id, out) && more;
                more = add(session_offline_record{client_id, s.expiry_interval, s.expires_ms,
                                                  s.will_msg_id, s.will_ms},
                           out) &&
                       more;
            }
            for (const auto& [filter, sub] : s.subscriptions) {
                more = add(subscribe_record{client_id, filter, sub.options, sub.id}, out) && more;
            }
            for (const auto id : s.qos2_in) {
                more = add(qos2_in_add_record{client_id, id}, out) && more;
            }
            for (const auto& o : s.inflight) {
                if (o.msg_id != 0) more = refer(st, o.msg_id, out) && more;
                more = add(inflight_add_record{client_id, o.packet_id, o.msg_id, o.q, o.retain,
                                               o.waiting, o.subscription_ids},
                           out) &&
                       more;
            }
        }
    }
    if (in_group_ != 0) {  // a slice is a group: what follows it may be cut, not it
        in_group_ = 0;
        out(commit_record{});
    }
    return done();
}

bool snapshot_cursor::refer(const state& st, std::uint64_t id,
                            const std::function<bool(const record&)>& out) {
    if (dropped_.empty() || dropped_.erase(id) == 0) return true;
    const auto it = st.messages().find(id);
    if (it == st.messages().end()) return true;
    return add(message_record{id, it->second.received_ms, it->second.msg}, out);
}

void snapshot_cursor::note_drops(const state& st, const record& r) {
    const auto session = [&](const std::string& id) -> const stored_session* {
        const auto it = st.sessions().find(id);
        return it == st.sessions().end() ? nullptr : &it->second;
    };
    const auto inflight = [&](const std::string& id, std::uint16_t packet_id) {
        if (const auto* s = session(id)) {
            for (const auto& o : s->inflight) {
                if (o.packet_id == packet_id) dropped(o.msg_id);
            }
        }
    };
    if (const auto* x = std::get_if<queue_pop_record>(&r)) {
        if (const auto* s = session(x->client_id); s != nullptr && !s->queue.empty()) {
            dropped(s->queue.front().msg_id);
        }
    } else if (const auto* x = std::get_if<inflight_remove_record>(&r)) {
        inflight(x->client_id, x->packet_id);
    } else if (const auto* x = std::get_if<inflight_stage_record>(&r)) {
        inflight(x->client_id, x->packet_id);
    } else if (const auto* x = std::get_if<session_end_record>(&r)) {
        if (const auto* s = session(x->client_id)) {
            for (const auto& q : s->queue) dropped(q.msg_id);
            for (const auto& o : s->inflight) dropped(o.msg_id);
            dropped(s->will_msg_id);
        }
    } else if (const auto* x = std::get_if<session_record>(&r)) {
        if (const auto* s = session(x->client_id)) dropped(s->will_msg_id);
    } else if (const auto* x = std::get_if<session_offline_record>(&r)) {
        if (const auto* s = session(x->client_id)) dropped(s->will_msg_id);
    } else if (const auto* x = std::get_if<outbox_ack_record>(&r)) {
        for (const auto& [seq, o] : st.outbox()) {
            if (seq > x->seq) break;
            if (o.dests.size() == 1 && o.dests.front() == x->dest) dropped(o.msg_id);
        }
    } else if (const auto* x = std::get_if<retained_clear_record>(&r)) {
        const auto it = st.retained().find(x->topic);
        if (it != st.retained().end()) dropped(it->second);
    } else if (const auto* x = std::get_if<retained_set_record>(&r)) {
        const auto m = st.messages().find(x->msg_id);
        if (m != st.messages().end()) {
            const auto it = st.retained().find(m->second.msg->topic);
            if (it != st.retained().end()) dropped(it->second);
        }
    }
}

bool snapshot_cursor::session_follows(const std::string& client_id, const record& r) {
    if (phase_ == phase::done) return true;
    if (phase_ != phase::sessions || !any_session_) return false;
    if (client_id != session_) return client_id < session_;
    if (session_whole_) return true;
    // The session being written: its head is out, its queue up to queue_at_.
    if (std::holds_alternative<queue_push_record>(r)) return false;  // the back: not yet
    if (std::holds_alternative<queue_pop_record>(r)) {
        if (queue_at_ == 0) return false;  // an entry not written yet leaves
        --queue_at_;
        return true;
    }
    if (std::holds_alternative<session_end_record>(r)) queue_at_ = 0;  // its queue is gone
    return true;
}

bool snapshot_cursor::follows(const state& st, const record& r, std::uint64_t& again) {
    again = 0;
    if (!follows(st, r)) return false;
    note_drops(st, r);
    // A reference it adds: to a message the file may have dropped, which goes first.
    std::uint64_t id = 0;
    if (const auto* x = std::get_if<queue_push_record>(&r)) {
        id = x->msg_id;
    } else if (const auto* x = std::get_if<inflight_add_record>(&r)) {
        id = x->msg_id;
    } else if (const auto* x = std::get_if<retained_set_record>(&r)) {
        id = x->msg_id;
    } else if (const auto* x = std::get_if<session_offline_record>(&r)) {
        id = x->will_msg_id;
    } else if (const auto* x = std::get_if<outbox_add_record>(&r)) {
        id = x->msg_id;
    }
    if (id != 0 && dropped_.erase(id) != 0) again = id;
    return true;
}

bool snapshot_cursor::follows(const state& st, const record& r) {
    return std::visit(
        [&](const auto& x) -> bool {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, header_record> || std::is_same_v<T, commit_record>) {
                return false;
            } else if constexpr (std::is_same_v<T, message_record>) {
                return phase_ > phase::messages || x.id < next_message_;
            } else if constexpr (std::is_same_v<T, outbox_add_record> ||
                                 std::is_same_v<T, outbox_ack_record> ||
                                 std::is_same_v<T, outbox_last_record> ||
                                 std::is_same_v<T, inbox_applied_record>) {
                return phase_ > phase::outbox;
            } else if constexpr (std::is_same_v<T, retained_set_record>) {
                if (phase_ != phase::retained) return phase_ > phase::retained;
                const auto it = st.messages().find(x.msg_id);
                return it != st.messages().end() && any_topic_ &&
                       it->second.msg->topic <= last_topic_;
            } else if constexpr (std::is_same_v<T, retained_clear_record>) {
                if (phase_ != phase::retained) return phase_ > phase::retained;
                return any_topic_ && x.topic <= last_topic_;
            } else {
                return session_follows(x.client_id, r);
            }
        },
        r);
}

}  // namespace mqtt::store
