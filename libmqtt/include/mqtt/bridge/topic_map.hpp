#pragma once

// Bridge topic rules and remapping, as Mosquitto's `topic` bridge option defines them:
//
//   topic <pattern> [[[out|in|both] qos] local-prefix remote-prefix]
//
// Outgoing (out, both): subscribe to local-prefix + pattern on the local broker; a message
// there loses the local prefix (when its topic starts with it) and gains the remote prefix.
// Incoming (in, both): subscribe to remote-prefix + pattern on the remote broker; a message
// loses the remote prefix and gains the local prefix. `""` stands for an empty pattern or
// prefix; an empty pattern needs both prefixes (it then maps one topic to one topic).
// Pure functions and plain data: no I/O, no allocation beyond the strings returned.

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/protocol/types.hpp"

namespace mqtt::bridge {

enum class direction : std::uint8_t { out, in, both };

std::string_view to_string(direction d) noexcept;

struct topic_rule {
    std::string pattern;  // empty for the `""` marker
    direction dir = direction::out;
    protocol::qos qos = protocol::qos::at_most_once;
    std::string local_prefix;   // empty: none
    std::string remote_prefix;  // empty: none

    bool outgoing() const noexcept { return dir != direction::in; }
    bool incoming() const noexcept { return dir != direction::out; }
    // The filter subscribed to on each side (prefix + pattern).
    std::string local_filter() const { return local_prefix + pattern; }
    std::string remote_filter() const { return remote_prefix + pattern; }

    bool operator==(const topic_rule&) const = default;
};

// A rule, or why the words do not make one (a sentence without the file position).
struct rule_result {
    std::optional<topic_rule> rule;
    std::string error;
};

// Parses the words after `topic`: pattern [direction [qos [local-prefix remote-prefix]]],
// `""` for empty. Rejected, as Mosquitto rejects them: a direction other than in, out or
// both; a QoS other than 0, 1 or 2; a local prefix without a remote prefix; a prefix with
// a wildcard or otherwise not a valid topic name; a prefix + pattern that is not a valid
// topic filter (e.g. `a` + `#`); an empty pattern without two non-empty prefixes; extra
// words.
rule_result parse_rule(std::span<const std::string> words);
// The same from one string of words separated by blanks (the --topic flag).
rule_result parse_rule(std::string_view text);

// The topic a message gets on the other side, or std::nullopt when the rule does not carry
// it (wrong direction, filter not matching, or a remapped topic that is not a valid name).
std::optional<std::string> to_remote(const topic_rule& r, std::string_view local_topic);
std::optional<std::string> to_local(const topic_rule& r, std::string_view remote_topic);

// The rules of one bridge, looked up in order: the first rule that matches a topic decides.
class topic_map {
  public:
    topic_map() = default;
    explicit topic_map(std::vector<topic_rule> rules) : rules_(std::move(rules)) {}

    struct route {
        std::string topic;       // on the destination side
        protocol::qos qos;       // the rule's QoS (the caller takes the lower of this and
                                 // the message's)
        const topic_rule* rule;  // the rule that matched
    };
    std::optional<route> outgoing(std::string_view local_topic) const;
    std::optional<route> incoming(std::string_view remote_topic) const;

    struct subscription {
        std::string filter;
        protocol::qos qos;
        bool operator==(const subscription&) const = default;
    };
    // What to subscribe to on each side (the same filter once, at the highest QoS asked).
    std::vector<subscription> local_subscriptions() const;
    std::vector<subscription> remote_subscriptions() const;

    const std::vector<topic_rule>& rules() const noexcept { return rules_; }
    bool empty() const noexcept { return rules_.empty(); }

  private:
    std::vector<topic_rule> rules_;
};

}  // namespace mqtt::bridge
