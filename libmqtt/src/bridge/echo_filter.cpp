#include "mqtt/bridge/echo_filter.hpp"

namespace mqtt::bridge {

std::uint64_t echo_filter::fingerprint(std::string_view topic, std::string_view payload) noexcept {
    // FNV-1a over topic, a separator that cannot be in a topic, and the payload.
    std::uint64_t h = 14695981039346656037ull;
    const auto mix = [&h](std::string_view s) {
        for (unsigned char c : s) {
            h ^= c;
            h *= 1099511628211ull;
        }
    };
    mix(topic);
    h ^= 0xff;
    h *= 1099511628211ull;
    mix(payload);
    return h;
}

void echo_filter::forget_oldest() {
    const auto hash = order_.front().hash;
    order_.pop_front();
    auto it = live_.find(hash);
    if (it == live_.end()) return;
    if (--it->second == 0) live_.erase(it);
}

void echo_filter::expire(clock::time_point now) {
    while (!order_.empty() && now - order_.front().at > ttl_) forget_oldest();
}

void echo_filter::sent(std::string_view topic, std::string_view payload, clock::time_point now) {
    if (capacity_ == 0) return;
    expire(now);
    while (order_.size() >= capacity_) forget_oldest();
    const auto hash = fingerprint(topic, payload);
    order_.push_back({hash, now});
    ++live_[hash];
}

bool echo_filter::is_echo(std::string_view topic, std::string_view payload,
                          clock::time_point now) {
    expire(now);
    auto it = live_.find(fingerprint(topic, payload));
    if (it == live_.end()) return false;
    // One copy used up. The deque entry stays until it expires or is pushed out; the count
    // is what says how many echoes are still expected.
    if (--it->second == 0) live_.erase(it);
    return true;
}

}  // namespace mqtt::bridge
