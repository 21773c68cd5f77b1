#pragma once

// Loop detection without No Local (MQTT 3.1.1 peers): the bridge notes a fingerprint of every
// message it publishes to a broker, and a message that comes back from that broker with the
// same topic and payload within `ttl` is its own echo, dropped once per message sent. Bounded:
// at most `capacity` fingerprints, the oldest forgotten first. Sans-I/O: time is an argument.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string_view>
#include <unordered_map>

namespace mqtt::bridge {

class echo_filter {
  public:
    using clock = std::chrono::steady_clock;

    explicit echo_filter(std::size_t capacity = 65536,
                         std::chrono::milliseconds ttl = std::chrono::seconds{30})
        : capacity_(capacity), ttl_(ttl) {}

    // A message was published to the broker.
    void sent(std::string_view topic, std::string_view payload, clock::time_point now);
    // A message arrived from that broker: true when it is the echo of one sent (and that
    // fingerprint is used up).
    bool is_echo(std::string_view topic, std::string_view payload, clock::time_point now);

    std::size_t size() const noexcept { return order_.size(); }

    static std::uint64_t fingerprint(std::string_view topic, std::string_view payload) noexcept;

  private:
    void expire(clock::time_point now);
    void forget_oldest();

    struct entry {
        std::uint64_t hash;
        clock::time_point at;
    };
    std::size_t capacity_;
    std::chrono::milliseconds ttl_;
    std::deque<entry> order_;                             // oldest first
    std::unordered_map<std::uint64_t, std::size_t> live_;  // hash -> copies in order_ not used up
};

}  // namespace mqtt::bridge
