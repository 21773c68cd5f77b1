#include "mqtt/broker/figures.hpp"

#include <algorithm>

namespace mqtt::broker {

figures figures_of(const engine& e) {
    figures f;
    f.stats = e.stats();
    if (const auto* c = e.connected_clients()) f.stats.connected_maximum = c->maximum();
    f.connections = e.session_count();
    f.connected = e.connected_count();
    f.stored_sessions = e.stored_session_count();
    f.offline_sessions = e.offline_session_count();
    f.subscriptions = e.subscription_count();
    f.share_groups = e.share_group_count();
    f.queues = e.queues();
    f.retained_count = e.retained().size();
    f.retained_bytes = e.retained().bytes();
    f.held_bytes = e.held_bytes();
    f.output_bytes = e.output_bytes();
    f.memory_limit = e.config().memory_limit;
    return f;
}

void add_shard(figures& total, const figures& shard) {
    const auto maximum = std::max(total.stats.connected_maximum, shard.stats.connected_maximum);
    add_stats(total.stats, shard.stats);
    total.stats.connected_maximum = maximum;  // the shared meter's, the same on every shard
    total.connections += shard.connections;
    total.connected += shard.connected;
    total.stored_sessions += shard.stored_sessions;
    total.offline_sessions += shard.offline_sessions;
    total.subscriptions += shard.subscriptions;
    total.share_groups += shard.share_groups;
    total.queues.queued += shard.queues.queued;
    total.queues.queued_bytes += shard.queues.queued_bytes;
    total.queues.inflight += shard.queues.inflight;
    total.queues.largest_queue = std::max(total.queues.largest_queue, shard.queues.largest_queue);
    total.store_file_bytes += shard.store_file_bytes;
}

void add_stats(stats& to, const stats& from) noexcept {
    // Every counter of struct stats: one more there must be added here too.
    static_assert(sizeof(stats) == 50 * sizeof(std::uint64_t), "a counter missing in add_stats");
    to.connections_accepted += from.connections_accepted;
    to.connections_refused += from.connections_refused;
    to.connects_accepted += from.connects_accepted;
    to.connects_rejected += from.connects_rejected;
    to.protocol_errors += from.protocol_errors;
    to.keep_alive_timeouts += from.keep_alive_timeouts;
    to.takeovers += from.takeovers;
    to.messages_received += from.messages_received;
    to.messages_sent += from.messages_sent;
    to.wills_published += from.wills_published;
    to.dropped_qos0_slow += from.dropped_qos0_slow;
    to.dropped_queue_full += from.dropped_queue_full;
    to.dropped_too_large += from.dropped_too_large;
    to.dropped_retain_full += from.dropped_retain_full;
    to.dropped_sys_publish += from.dropped_sys_publish;
    to.dropped_acl += from.dropped_acl;
    to.dropped_memory_limit += from.dropped_memory_limit;
    to.dropped_store_failing += from.dropped_store_failing;
    to.dropped_topic_limit += from.dropped_topic_limit;
    to.rate_limited += from.rate_limited;
    to.backpressure_timeouts += from.backpressure_timeouts;
    to.auth_failures += from.auth_failures;
    to.dropped_qos0_offline += from.dropped_qos0_offline;
    to.dropped_expired += from.dropped_expired;
    to.sessions_resumed += from.sessions_resumed;
    to.sessions_expired += from.sessions_expired;
    to.sessions_refused += from.sessions_refused;
    to.connected_maximum += from.connected_maximum;
    to.bytes_received += from.bytes_received;
    to.bytes_sent += from.bytes_sent;
    for (std::size_t q = 0; q < 3; ++q) {
        to.received_by_qos[q] += from.received_by_qos[q];
        to.sent_by_qos[q] += from.sent_by_qos[q];
        to.payload_bytes_received_by_qos[q] += from.payload_bytes_received_by_qos[q];
        to.payload_bytes_sent_by_qos[q] += from.payload_bytes_sent_by_qos[q];
    }
    to.mqttsn_clients += from.mqttsn_clients;
    to.mqttsn_datagrams_malformed += from.mqttsn_datagrams_malformed;
    to.mqttsn_datagrams_unexpected += from.mqttsn_datagrams_unexpected;
    to.mqttsn_datagrams_receive_buffer += from.mqttsn_datagrams_receive_buffer;
    to.mqttsn_dropped_sleep_buffer += from.mqttsn_dropped_sleep_buffer;
    to.mqttsn_dropped_undeliverable += from.mqttsn_dropped_undeliverable;
    to.mqttsn_retransmissions += from.mqttsn_retransmissions;
    to.mqttsn_clients_lost += from.mqttsn_clients_lost;
}

}  // namespace mqtt::broker
