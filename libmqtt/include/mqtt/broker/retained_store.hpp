#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mqtt/broker/message.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {

// Retained messages by topic, bounded in count and bytes. A wildcard filter is matched
// against every stored topic (linear; an index by level is for a later slice), a plain
// filter is one lookup.
class retained_store {
  public:
    retained_store(std::size_t max_messages, std::size_t max_bytes)
        : max_messages_(max_messages), max_bytes_(max_bytes) {}

    enum class outcome { stored, replaced, cleared, nothing_to_clear, full };

    // Stores m under its topic, or clears the topic when the payload is empty (§3.3.1.3).
    outcome set(const message_ptr& m);
    void erase(std::string_view topic);

    // Calls f(const message_ptr&) for every retained message whose topic matches `filter`.
    template <class F>
    void match(std::string_view filter, F&& f) const {
        if (filter.find_first_of("+#") == std::string_view::npos) {
            if (const auto it = by_topic_.find(filter); it != by_topic_.end()) f(it->second);
            return;
        }
        for (const auto& [topic, m] : by_topic_) {
            if (protocol::topic_matches(filter, topic)) f(m);
        }
    }

    std::size_t size() const noexcept { return by_topic_.size(); }
    std::size_t bytes() const noexcept { return bytes_; }

  private:
    struct hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    static std::size_t cost(const message& m) noexcept {
        return m.topic.size() + m.payload.size() + m.props_v5.size();
    }

    std::size_t max_messages_;
    std::size_t max_bytes_;
    std::size_t bytes_ = 0;
    std::unordered_map<std::string, message_ptr, hash, std::equal_to<>> by_topic_;
};

}  // namespace mqtt::broker
