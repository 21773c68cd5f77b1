#include "mqtt/broker/durable_session.hpp"

#include <utility>

namespace mqtt::broker {

durable_session::extras& durable_session::more() {
    if (!more_) more_.reset(new extras);
    return *more_;
}

void durable_session::trim() noexcept {
    if (more_ && more_->unused()) more_.reset();
}

void durable_session::set_will(message_ptr w, std::uint32_t delay) {
    if (!more_ && !w && delay == 0) return;
    auto& m = more();
    m.will = std::move(w);
    m.will_delay = delay;
    trim();
}

message_ptr durable_session::take_will() {
    if (!more_) return nullptr;
    auto w = std::move(more_->will);
    more_->will_at = never;
    trim();
    return w;
}

void durable_session::set_username(std::optional<std::string> u) {
    if (!more_ && !u) return;
    more().username = std::move(u);
    trim();
}

const client_id_ptr& durable_session::shared_client_id() const {
    // Only on the session's own thread; the engine's sessions are never const objects.
    auto& m = const_cast<durable_session*>(this)->more();
    if (!m.shared_id) m.shared_id = std::make_shared<const std::string>(client_id);
    return m.shared_id;
}

void durable_session::set_will_at(clock::time_point t) {
    if (!more_ && t == never) return;
    more().will_at = t;
    trim();
}

void durable_session::set_expires_at(clock::time_point t) {
    if (!more_ && t == never) return;
    more().expires_at = t;
    trim();
}

void durable_session::set_timer_key(clock::time_point t) {
    if (!more_ && t == never) return;
    more().timer_key = t;
    trim();
}

bool enqueue(durable_session& s, const limits& l, queued_delivery d) {
    const std::size_t cost = queue_cost(*d.msg);
    if (s.queue.size() >= l.max_queued_messages || s.queued_bytes + cost > l.max_queued_bytes) {
        return false;
    }
    s.queue.push_back(std::move(d));
    s.queued_bytes += cost;
    return true;
}

}  // namespace mqtt::broker
