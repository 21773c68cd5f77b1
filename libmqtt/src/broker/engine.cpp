#include "mqtt/broker/engine.hpp"

#include <algorithm>
#include <cstdio>
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

// ---- sessions ---------------------------------------------------------------------------

void engine::add(session& s) {
    sessions_.insert(&s);
}

void engine::remove(session& s) {
    sessions_.erase(&s);
}

void engine::attach(session& s) {
    const auto it = by_id_.find(s.client_id());
    if (it != by_id_.end() && it->second != &s) {
        ++stats_.takeovers;
        session* old = it->second;
        old->close_by_server(protocol::reason_code::session_taken_over);  // detaches it
        by_id_.erase(s.client_id());  // in case it was not attached through detach()
    }
    by_id_[s.client_id()] = &s;
}

void engine::detach(session& s) {
    for (const auto& f : s.filters()) subscriptions_.erase(f, &s);
    const auto it = by_id_.find(s.client_id());
    if (it != by_id_.end() && it->second == &s) by_id_.erase(it);
}

std::string engine::assign_client_id() {
    for (;;) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "tern-%016llx",
                      static_cast<unsigned long long>(id_random_()));
        std::string id{buf};
        if (!by_id_.contains(id)) return id;
    }
}

session* engine::find(std::string_view client_id) const {
    const auto it = by_id_.find(std::string{client_id});
    return it == by_id_.end() ? nullptr : it->second;
}

// ---- subscriptions ----------------------------------------------------------------------

bool engine::subscribe(session& s, std::string_view filter,
                       const protocol::subscription_options& o) {
    return subscriptions_.insert_or_assign(filter, &s, sub_entry{o});
}

bool engine::unsubscribe(session& s, std::string_view filter) {
    return subscriptions_.erase(filter, &s);
}

// ---- messages ---------------------------------------------------------------------------

std::size_t engine::publish(const session* from, const message_ptr& m) {
    if (m->retain) {
        if (retained_.set(m) == retained_store::outcome::full) ++stats_.dropped_retain_full;
    }
    // A will published while routing (cannot happen today) must not clobber the scratch.
    std::vector<target> nested;
    auto& targets = routing_ ? nested : targets_;
    const bool outer = !routing_;
    routing_ = true;
    targets.clear();
    subscriptions_.match(m->topic, [&](std::string_view, session* const& s, const sub_entry& e) {
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
        // Delivered QoS is the lower of published and granted (MQTT-3.8.4-8 in 5.0);
        // RETAIN is kept only with Retain As Published (MQTT-3.3.1-12 / 3.1.1 MQTT-3.3.1-9).
        t.s->deliver(m, std::min(m->qos_level, t.q), t.retain_as_published && m->retain);
        ++reached;
    }
    if (outer) routing_ = false;
    return reached;
}

void engine::send_retained(session& s, std::string_view filter, protocol::qos granted,
                           clock::time_point now) {
    std::vector<std::string> expired;
    retained_.match(filter, [&](const message_ptr& m) {
        // Stop once the subscriber drops what it is given: a flood of re-subscriptions to
        // `#` must not cost a walk of every retained message each.
        if (!s.can_take(granted)) return false;
        message_ptr out = m;
        if (m->message_expiry_interval) {
            const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - m->received);
            const auto left = static_cast<long long>(*m->message_expiry_interval) - age.count();
            if (left <= 0) {  // expired: drop it (§3.3.2.3.3)
                expired.push_back(m->topic);
                return true;
            }
            out = with_expiry(*m, static_cast<std::uint32_t>(left));
        }
        // Sent because of a new subscription: RETAIN set (MQTT-3.3.1-8 / 3.1.1 MQTT-3.3.1-8).
        s.deliver(out, std::min(m->qos_level, granted), true);
        return true;
    });
    for (const auto& t : expired) retained_.erase(t);
}

void engine::shutdown() {
    std::vector<session*> all(sessions_.begin(), sessions_.end());
    for (session* s : all) s->close_by_server(protocol::reason_code::server_shutting_down);
}

}  // namespace mqtt::broker
