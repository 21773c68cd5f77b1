#include "mqtt/broker/retained_store.hpp"

namespace mqtt::broker {

retained_store::outcome retained_store::set(const message_ptr& m) {
    auto it = by_topic_.find(std::string_view{m->topic});
    if (m->payload.empty()) {
        if (it == by_topic_.end()) return outcome::nothing_to_clear;
        bytes_ -= cost(*it->second);
        by_topic_.erase(it);
        return outcome::cleared;
    }
    if (it != by_topic_.end()) {
        const std::size_t old = cost(*it->second);
        if (bytes_ - old + cost(*m) > max_bytes_) return outcome::full;
        bytes_ = bytes_ - old + cost(*m);
        it->second = m;
        return outcome::replaced;
    }
    if (by_topic_.size() >= max_messages_ || bytes_ + cost(*m) > max_bytes_) return outcome::full;
    bytes_ += cost(*m);
    by_topic_.emplace(m->topic, m);
    return outcome::stored;
}

void retained_store::erase(std::string_view topic) {
    if (auto it = by_topic_.find(topic); it != by_topic_.end()) {
        bytes_ -= cost(*it->second);
        by_topic_.erase(it);
    }
}

}  // namespace mqtt::broker
