#include "mqtt/broker/sys_topics.hpp"

#include <cmath>
#include <cstdio>
#include <memory>
#include <utility>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/message.hpp"

namespace mqtt::broker {
namespace {

std::string number(std::uint64_t v) {
    return std::to_string(v);
}

std::string two_decimals(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    return buf;
}

}  // namespace

sys_topics::sys_topics(engine& e, std::chrono::seconds interval, clock::time_point start,
                       std::string version)
    : engine_(e),
      interval_(interval),
      start_(start),
      next_(interval.count() > 0 ? start : clock::time_point::max()),
      version_(std::move(version)) {}

std::size_t sys_topics::on_timer(clock::time_point now, const figures& f) {
    if (!enabled() || now < next_) return 0;
    // The next slot past `now`: after a stall the schedule skips, it does not catch up.
    const auto behind = (now - next_) / interval_;
    next_ += interval_ * (behind + 1);
    const auto& st = f.stats;
    update_loads(now, st);

    const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(now - start_).count();
    std::size_t n = 0;
    auto put_if = [&](std::string_view topic, std::string payload) {
        if (put(topic, std::move(payload), now)) ++n;
    };
    put_if("version", version_);
    put_if("uptime", std::to_string(uptime) + " seconds");
    put_if("clients/connected", number(f.connected));
    put_if("clients/disconnected", number(f.offline_sessions));
    put_if("clients/total", number(f.stored_sessions));
    put_if("clients/maximum", number(st.connected_maximum));
    put_if("clients/expired", number(st.sessions_expired));
    put_if("messages/received", number(st.messages_received));
    put_if("messages/sent", number(st.messages_sent));
    put_if("bytes/received", number(st.bytes_received));
    put_if("bytes/sent", number(st.bytes_sent));
    put_if("publish/messages/dropped",
           number(st.dropped_qos0_slow + st.dropped_queue_full + st.dropped_too_large +
                  st.dropped_qos0_offline + st.dropped_expired));
    put_if("subscriptions/count", number(f.subscriptions));
    // What the limits against hostile clients refused (docs/security.md), and what
    // memory_limit counts now: the engine's meters, read now (so they count the $SYS
    // messages just published), which with shards every shard shares.
    put_if("limits/memory/bytes", number(engine_.held_bytes() + engine_.output_bytes()));
    put_if("limits/memory/output", number(engine_.output_bytes()));
    put_if("limits/memory/refused", number(st.dropped_memory_limit));
    put_if("limits/topic/refused", number(st.dropped_topic_limit));
    put_if("limits/rate/paused", number(st.rate_limited));
    put_if("limits/backpressure/timeouts", number(st.backpressure_timeouts));
    if (mqttsn_) {
        put_if("mqttsn/clients", number(st.mqttsn_clients));
        put_if("mqttsn/clients/lost", number(st.mqttsn_clients_lost));
        put_if("mqttsn/datagrams/malformed", number(st.mqttsn_datagrams_malformed));
        put_if("mqttsn/datagrams/unexpected", number(st.mqttsn_datagrams_unexpected));
        put_if("mqttsn/datagrams/receive_buffer", number(st.mqttsn_datagrams_receive_buffer));
        put_if("mqttsn/messages/dropped",
               number(st.mqttsn_dropped_sleep_buffer + st.mqttsn_dropped_undeliverable));
        put_if("mqttsn/retransmissions", number(st.mqttsn_retransmissions));
    }
    publish_loads("messages/received", received_, n, now);
    publish_loads("messages/sent", sent_, n, now);
    publish_loads("bytes/received", bytes_received_, n, now);
    publish_loads("bytes/sent", bytes_sent_, n, now);
    // Last, so it counts the $SYS topics too, this one included the first time. Read from
    // the engine, not the figures (read before this update): with shards, shard 0's replica,
    // which the others' converge to.
    const bool counted = last_payload_.count("retained messages/count") != 0;
    const bool adds_one = !counted && engine_.config().retain_available;
    put_if("retained messages/count", number(engine_.retained().size() + (adds_one ? 1 : 0)));
    return n;
}

// Each counter's rate over the last interval, scaled to per minute, is blended into the
// averages with weight 1 - exp(-dt / window): the usual exponentially decayed load average,
// independent of sys_interval.
void sys_topics::update_loads(clock::time_point now, const stats& st) {
    if (!updated_) {  // nothing to compare with yet: start from the counters as they are
        updated_ = true;
        last_update_ = now;
        received_.last = st.messages_received;
        sent_.last = st.messages_sent;
        bytes_received_.last = st.bytes_received;
        bytes_sent_.last = st.bytes_sent;
        return;
    }
    const double dt = std::chrono::duration<double>(now - last_update_).count();
    if (dt <= 0) return;
    last_update_ = now;
    decay(received_, st.messages_received, dt);
    decay(sent_, st.messages_sent, dt);
    decay(bytes_received_, st.bytes_received, dt);
    decay(bytes_sent_, st.bytes_sent, dt);
}

void sys_topics::decay(rate& r, std::uint64_t count, double seconds) {
    const double per_minute = static_cast<double>(count - r.last) * 60.0 / seconds;
    r.last = count;
    auto blend = [&](double& avg, double window) {
        avg = per_minute + std::exp(-seconds / window) * (avg - per_minute);
    };
    blend(r.avg.m1, 60.0);
    blend(r.avg.m5, 300.0);
    blend(r.avg.m15, 900.0);
}

void sys_topics::publish_loads(std::string_view what, const rate& r, std::size_t& n,
                               clock::time_point now) {
    const std::string base = "load/" + std::string{what} + "/";
    if (put(base + "1min", two_decimals(r.avg.m1), now)) ++n;
    if (put(base + "5min", two_decimals(r.avg.m5), now)) ++n;
    if (put(base + "15min", two_decimals(r.avg.m15), now)) ++n;
}

bool sys_topics::put(std::string_view topic, std::string payload, clock::time_point now) {
    auto [it, fresh] = last_payload_.try_emplace(std::string{topic});
    if (!fresh && it->second == payload) return false;
    it->second = payload;
    const std::string full = "$SYS/broker/" + std::string{topic};
    engine_.publish(
        nullptr,
        make_message({full, payload, protocol::qos::at_most_once, true, {}, std::nullopt, now}));
    return true;
}

}  // namespace mqtt::broker
