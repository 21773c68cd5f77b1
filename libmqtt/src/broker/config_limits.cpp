// The broker-wide limits of tern-broker's configuration file (queues, packets, topics,
// rates, memory, keep-alive, session expiry), the $SYS interval and the number of event
// loops, with the check of what several event loops cannot serve yet. The option table is in
// config_options.cpp.

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "config_parser.hpp"

namespace mqtt::broker::detail {
namespace {

// The largest MQTT packet: fixed header byte, 4-byte Remaining Length, 268435455 bytes.
constexpr std::uint64_t largest_mqtt_packet = 1 + 4 + 268'435'455;
constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

}  // namespace

// ---- limits

bool on_max_inflight_messages(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_inflight_messages", a.words[0], 0, 65535);
    if (!v) return false;
    // 0: no maximum, which is 65535 at most (the packet identifiers there are).
    st.cfg.limits.max_inflight = static_cast<std::uint16_t>(*v == 0 ? 65535 : *v);
    return true;
}

bool on_max_queued_messages(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_queued_messages", a.words[0], 0, 1'000'000'000);
    if (!v) return false;
    st.cfg.limits.max_queued_messages = *v == 0 ? unlimited : static_cast<std::size_t>(*v);
    return true;
}

// A Tern option (Mosquitto has no bound on stored sessions): 0 means no maximum.
bool on_max_offline_sessions(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_offline_sessions", a.words[0], 0, 1'000'000'000);
    if (!v) return false;
    st.cfg.limits.max_offline_sessions = *v == 0 ? unlimited : static_cast<std::size_t>(*v);
    return true;
}

bool on_max_queued_bytes(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_queued_bytes", a.words[0], 0, 1ull << 40);
    if (!v) return false;
    st.cfg.limits.max_queued_bytes = *v == 0 ? unlimited : static_cast<std::size_t>(*v);
    return true;
}

// A Tern option: the per-connection output bound (no 0: a client that never reads must
// always be bounded).
bool on_max_outbound_bytes(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_outbound_bytes", a.words[0], 1024, 1ull << 40);
    if (!v) return false;
    st.cfg.limits.max_outbound_bytes = static_cast<std::size_t>(*v);
    return true;
}

bool on_max_packet_size(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_packet_size", a.words[0], 0, largest_mqtt_packet);
    if (!v) return false;
    if (*v != 0 && *v < 20) {
        return st.fail("max_packet_size: below 20 bytes is forbidden (0 means no limit)");
    }
    st.cfg.limits.max_packet_size = static_cast<std::uint32_t>(*v == 0 ? largest_mqtt_packet : *v);
    return true;
}

bool on_message_size_limit(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "message_size_limit", a.words[0], 0, 268'435'455);
    if (!v) return false;
    if (*v != 0) {
        return st.fail("message_size_limit other than 0 is not supported yet (use max_packet_size)",
                       true);
    }
    return true;
}

bool on_max_inflight_bytes(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_inflight_bytes", a.words[0], 0, 1ull << 40);
    if (!v) return false;
    st.cfg.limits.max_inflight_bytes = static_cast<std::size_t>(*v);  // 0: no limit
    return true;
}

// ---- Tern's limits against hostile clients (docs/security.md); 0 means no maximum where
// a maximum can be lifted.

bool on_max_subscriptions(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_subscriptions", a.words[0], 0, 1'000'000'000);
    if (!v) return false;
    st.cfg.limits.max_subscriptions = *v == 0 ? unlimited : static_cast<std::size_t>(*v);
    return true;
}

bool on_max_topic_length(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_topic_length", a.words[0], 1, 65535);
    if (!v) return false;
    st.cfg.limits.max_topic_length = static_cast<std::size_t>(*v);
    return true;
}

bool on_max_topic_levels(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_topic_levels", a.words[0], 1, 65535);
    if (!v) return false;
    st.cfg.limits.max_topic_levels = static_cast<std::size_t>(*v);
    return true;
}

bool on_max_client_id_length(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_client_id_length", a.words[0], 23, 65535);
    if (!v) return false;
    st.cfg.limits.max_client_id_length = static_cast<std::size_t>(*v);
    return true;
}

bool on_max_publish_rate(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_publish_rate", a.words[0], 0, 1'000'000'000);
    if (!v) return false;
    st.cfg.limits.max_publish_rate = static_cast<std::uint32_t>(*v);
    return true;
}

bool on_connect_timeout_ms(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "connect_timeout_ms", a.words[0], 1, 3'600'000);
    if (!v) return false;
    st.cfg.limits.connect_timeout = std::chrono::milliseconds{*v};
    return true;
}

// 0: a congested subscriber holds up what feeds it for as long as it stays connected.
bool on_backpressure_timeout_ms(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "backpressure_timeout_ms", a.words[0], 0, 86'400'000);
    if (!v) return false;
    st.cfg.limits.backpressure_timeout = std::chrono::milliseconds{*v};
    return true;
}

// Mosquitto's option, with a counted meaning: the bytes of messages held (see limits).
bool on_memory_limit(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "memory_limit", a.words[0], 0, 1ull << 50);
    if (!v) return false;
    st.cfg.limits.memory_limit = *v == 0 ? unlimited : static_cast<std::size_t>(*v);
    return true;
}

bool on_max_keepalive(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_keepalive", a.words[0], 0, 65535);
    if (!v) return false;
    st.cfg.limits.max_keepalive = static_cast<std::uint16_t>(*v);
    return true;
}

bool on_retain_available(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "retain_available", a.words[0]);
    if (v) st.cfg.limits.retain_available = *v;
    return v.has_value();
}

bool on_queue_qos0_messages(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "queue_qos0_messages", a.words[0]);
    if (v) st.cfg.limits.queue_qos0_messages = *v;
    return v.has_value();
}

bool on_upgrade_outgoing_qos(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "upgrade_outgoing_qos", a.words[0]);
    if (v) st.cfg.limits.upgrade_outgoing_qos = *v;
    return v.has_value();
}

bool on_persistent_client_expiration(parse_state& st, const option_args& a) {
    const auto d = parse_duration(a.words[0]);
    if (!d || d->count() == 0) {
        return st.fail("persistent_client_expiration: " + quoted(a.words[0]) +
                       " is not a duration: a whole number from 1 followed by h, d, w, m or y "
                       "(hours, days, weeks, months of 30 days, years of 365 days), at most "
                       "4294967295 seconds");
    }
    st.cfg.limits.persistent_client_expiration = *d;
    return true;
}

bool on_sys_interval(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "sys_interval", a.words[0], 0, 4'294'967'295u);
    if (!v) return false;
    st.cfg.sys_interval = std::chrono::seconds{*v};
    return true;
}

bool on_threads(parse_state& st, const option_args& a) {
    // 0: the default, one per core (default_threads()).
    const auto v = parse_number(st, "threads", a.words[0], 0, max_threads);
    if (!v) return false;
    st.cfg.threads = *v == 0 ? default_threads() : static_cast<std::size_t>(*v);
    st.cfg.threads_origin = st.here();
    return true;
}

}  // namespace mqtt::broker::detail
