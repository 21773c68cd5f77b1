#include "mqtt/broker/durable_session.hpp"

#include <utility>

namespace mqtt::broker {

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
