#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mqtt/broker/figures.hpp"
#include "mqtt/broker/limits.hpp"

namespace mqtt::broker {

class engine;

// The broker's own $SYS/broker/... topics (sys_interval in tern.conf): every `interval` it
// reads the engine's counters (with threads > 1, every shard's figures summed) and
// publishes them through the engine as retained QoS 0 messages from no client, with the
// topic names Mosquitto uses; with shards the engine routes them to every shard. A topic
// is published only when its value changed since it was last published (uptime changes
// every time), so a subscriber to $SYS/broker/# sees each value once and then its changes.
// Sans-I/O: the time comes in as an argument; the net layer arms a timer at next_due().
class sys_topics {
  public:
    // interval 0 disables it: next_due() is max() and on_timer() publishes nothing.
    sys_topics(engine& e, std::chrono::seconds interval, clock::time_point start,
               std::string version);

    bool enabled() const noexcept { return interval_.count() > 0; }
    // With an MQTT-SN listener: the gateway's counters under $SYS/broker/mqttsn/ too.
    void set_mqttsn(bool on) noexcept { mqttsn_ = on; }
    // When on_timer() next publishes; start for the first time (everything at once).
    clock::time_point next_due() const noexcept { return next_; }
    // At or after next_due(): publishes what changed and moves next_due() one interval on
    // (past `now`, so a stalled loop does not publish a burst). Returns the topics published.
    // The figures are the engine's own.
    std::size_t on_timer(clock::time_point now) {
        return enabled() && now >= next_ ? on_timer(now, figures_of(engine_)) : 0;
    }
    // The same with the given figures: with threads > 1 every shard's summed (add_shard).
    std::size_t on_timer(clock::time_point now, const figures& f);

    // Per-minute message rates decayed over 1, 5 and 15 minutes (load/messages/...; the
    // same for load/bytes/...).
    struct load {
        double m1 = 0, m5 = 0, m15 = 0;
    };
    const load& received_load() const noexcept { return received_.avg; }
    const load& sent_load() const noexcept { return sent_.avg; }

  private:
    struct rate {
        load avg;
        std::uint64_t last = 0;  // the counter at the previous update
    };
    void update_loads(clock::time_point now, const stats& st);
    static void decay(rate& r, std::uint64_t count, double seconds);
    void publish_loads(std::string_view what, const rate& r, std::size_t& n, clock::time_point now);
    // Publishes `payload` on $SYS/broker/<topic> if it differs from the last one there.
    bool put(std::string_view topic, std::string payload, clock::time_point now);

    engine& engine_;
    std::chrono::seconds interval_;
    clock::time_point start_;
    clock::time_point next_;
    std::string version_;
    clock::time_point last_update_{};
    bool updated_ = false;  // last_update_ is set
    bool mqttsn_ = false;
    rate received_, sent_, bytes_received_, bytes_sent_;
    std::unordered_map<std::string, std::string> last_payload_;
};

}  // namespace mqtt::broker
