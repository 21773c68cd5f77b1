#include "mqtt/broker/engine.hpp"

#include <algorithm>
#include <utility>

#include "mqtt/broker/session.hpp"

namespace mqtt::broker {

engine::engine(limits l, log_function log, int verbosity)
    : limits_(l),
      log_(std::move(log)),
      verbosity_(verbosity),
      retained_(l.max_retained_messages, l.max_retained_bytes),
      id_random_(std::random_device{}()) {}

engine::~engine() = default;

// ---- subscriptions ----------------------------------------------------------------------

bool engine::subscribe(durable_session& s, std::string_view filter,
                       const protocol::subscription_options& o) {
    s.subscriptions.insert_or_assign(std::string{filter}, o);
    if (store_) store_->subscribed(s, filter, o);
    return subscriptions_.insert_or_assign(filter, &s, sub_entry{o});
}

bool engine::unsubscribe(durable_session& s, std::string_view filter) {
    if (s.subscriptions.erase(std::string{filter}) != 0 && store_) store_->unsubscribed(s, filter);
    return subscriptions_.erase(filter, &s);
}

// ---- messages ---------------------------------------------------------------------------

std::size_t engine::publish(const durable_session* from, const message_ptr& m) {
    if (m->retain && limits_.retain_available) {
        const auto outcome = retained_.set(m);
        if (outcome == retained_store::outcome::full) ++stats_.dropped_retain_full;
        if (store_ && (outcome == retained_store::outcome::stored ||
                       outcome == retained_store::outcome::replaced)) {
            store_->retained_set(m);
        } else if (store_ && outcome == retained_store::outcome::cleared) {
            store_->retained_cleared(m->topic);
        }
    }
    // A will published while routing (cannot happen today) must not clobber the scratch.
    std::vector<target> nested;
    auto& targets = routing_ ? nested : targets_;
    const bool outer = !routing_;
    routing_ = true;
    targets.clear();
    subscriptions_.match(
        m->topic, [&](std::string_view, durable_session* const& s, const sub_entry& e) {
            if (e.options.no_local && s == from) return;  // MQTT-3.8.3-3
            targets.push_back(target{s, e.options.max_qos, e.options.retain_as_published});
        });
    // Overlapping subscriptions of one session: one delivery at the highest granted QoS.
    std::sort(targets.begin(), targets.end(),
              [](const target& a, const target& b) { return a.s < b.s; });
    std::size_t reached = 0;
    for (std::size_t i = 0; i < targets.size();) {
        target t = targets[i];
        for (++i; i < targets.size() && targets[i].s == t.s; ++i) {
            t.q = std::max(t.q, targets[i].q);
            t.retain_as_published = t.retain_as_published || targets[i].retain_as_published;
        }
        // Delivered QoS is the lower of published and granted (MQTT-3.8.4-8 in 5.0), or
        // the granted one with upgrade_outgoing_qos (a Mosquitto option beyond the spec);
        // RETAIN is kept only with Retain As Published (MQTT-3.3.1-12 / 3.1.1 MQTT-3.3.1-9).
        const auto q = limits_.upgrade_outgoing_qos ? t.q : std::min(m->qos_level, t.q);
        const bool retain = t.retain_as_published && m->retain;
        if (t.s->connection != nullptr) {
            t.s->connection->deliver(m, q, retain, from ? from->connection : nullptr);
        } else {
            deliver_offline(*t.s, m, q, retain);
        }
        ++reached;
    }
    if (outer) routing_ = false;
    return reached;
}

void engine::deliver_offline(durable_session& s, const message_ptr& m, protocol::qos q,
                             bool retain) {
    // QoS 0 is queued for an offline session only when configured (queue_qos0_messages).
    if (q == protocol::qos::at_most_once && !limits_.queue_qos0_messages) {
        ++stats_.dropped_qos0_offline;
        return;
    }
    if (!enqueue(s, limits_, queued_delivery{m, q, retain})) {
        ++stats_.dropped_queue_full;
    } else if (store_) {
        store_->queued(s, s.queue.back());
    }
}

void engine::send_retained(session& s, std::string_view filter, protocol::qos granted,
                           clock::time_point now) {
    std::vector<std::string> expired;
    retained_.match(filter, [&](const message_ptr& m) {
        const auto q = limits_.upgrade_outgoing_qos ? granted : std::min(m->qos_level, granted);
        // Stop once the subscriber drops what it is given: a flood of re-subscriptions to
        // `#` must not cost a walk of every retained message each.
        if (!s.can_take(q)) return false;
        message_ptr out = aged(m, now);
        if (!out) {  // expired: drop it (§3.3.2.3.3)
            expired.push_back(m->topic);
            return true;
        }
        // Sent because of a new subscription: RETAIN set (MQTT-3.3.1-8 / 3.1.1 MQTT-3.3.1-8).
        s.deliver(out, q, true);
        return true;
    });
    for (const auto& t : expired) {
        retained_.erase(t);
        if (store_) store_->retained_cleared(t);
    }
}

void engine::restore_retained(const message_ptr& m) {
    if (retained_.set(m) == retained_store::outcome::full) ++stats_.dropped_retain_full;
}

}  // namespace mqtt::broker
