#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/broker/message.hpp"
#include "mqtt/broker/string_map.hpp"

namespace mqtt::broker {

// Retained messages as a trie of topic levels, bounded in count and in bytes. Matching a
// filter walks its levels: a literal level is one lookup, `+` visits the children, `#`
// the subtree; so a subscription costs what it matches, not what is stored. Nothing is
// recursive: a 30,000-level topic cannot overflow the stack.
class retained_store {
  public:
    retained_store(std::size_t max_messages, std::size_t max_bytes)
        : max_messages_(max_messages), max_bytes_(max_bytes) {}
    ~retained_store();
    retained_store(const retained_store&) = delete;
    retained_store& operator=(const retained_store&) = delete;

    enum class outcome { stored, replaced, cleared, nothing_to_clear, full };

    // Stores m under its topic, or clears the topic when the payload is empty (§3.3.1.3).
    outcome set(const message_ptr& m);
    void erase(std::string_view topic);

    // Calls f(const message_ptr&) for every retained message whose topic matches `filter`
    // (a valid Topic Filter); wildcards in the first level do not match `$` topics. f
    // returns false to stop early (the subscriber cannot take more).
    using visitor = std::function<bool(const message_ptr&)>;
    void match(std::string_view filter, const visitor& f) const;

    std::size_t size() const noexcept { return count_; }
    // What the bound counts: topic, payload and properties bytes plus a per-level charge
    // for the trie nodes.
    std::size_t bytes() const noexcept { return bytes_; }

  private:
    struct node {
        string_map<std::unique_ptr<node>> children;
        message_ptr msg;
    };
    static constexpr std::size_t per_level_cost = 128;
    static std::size_t cost(const message& m) noexcept;
    void remove(std::string_view topic);
    static bool visit_subtree(const node& n, bool skip_dollar, const visitor& f);

    std::size_t max_messages_;
    std::size_t max_bytes_;
    std::size_t count_ = 0;
    std::size_t bytes_ = 0;
    node root_;
};

}  // namespace mqtt::broker
