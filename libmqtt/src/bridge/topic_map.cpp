#include "mqtt/bridge/topic_map.hpp"

#include <algorithm>

#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::bridge {
namespace {

constexpr std::string_view empty_marker = "\"\"";

std::string unquote(const std::string& word) {
    return word == empty_marker ? std::string{} : word;
}

rule_result fail(std::string why) {
    return {std::nullopt, std::move(why)};
}

// A prefix is published under, so it must be a valid topic name (no wildcards).
std::string check_prefix(std::string_view which, const std::string& prefix,
                         const std::string& pattern) {
    if (prefix.empty()) return {};
    if (!protocol::is_valid_topic_name(prefix))
        return "invalid " + std::string(which) + " prefix '" + prefix +
               "' (a topic name without wildcards)";
    if (!protocol::is_valid_topic_filter(prefix + pattern))
        return "invalid " + std::string(which) + " prefix and pattern combination '" + prefix +
               pattern + "'";
    return {};
}

std::optional<std::string> remap(std::string_view topic, std::string_view filter,
                                 std::string_view from_prefix, std::string_view to_prefix) {
    if (!protocol::topic_matches(filter, topic)) return std::nullopt;
    // `a/#` also matches `a`, which does not start with the prefix `a/`: then nothing is
    // stripped, as Mosquitto does.
    if (!from_prefix.empty() && topic.starts_with(from_prefix)) topic.remove_prefix(from_prefix.size());
    std::string out;
    out.reserve(to_prefix.size() + topic.size());
    out.append(to_prefix);
    out.append(topic);
    if (!protocol::is_valid_topic_name(out)) return std::nullopt;
    return out;
}

void add_subscription(std::vector<topic_map::subscription>& subs, std::string filter,
                      protocol::qos qos) {
    for (auto& s : subs)
        if (s.filter == filter) {
            s.qos = std::max(s.qos, qos);
            return;
        }
    subs.push_back({std::move(filter), qos});
}

}  // namespace

std::string_view to_string(direction d) noexcept {
    switch (d) {
        case direction::out:
            return "out";
        case direction::in:
            return "in";
        case direction::both:
            return "both";
    }
    return "out";
}

rule_result parse_rule(std::span<const std::string> words) {
    if (words.empty()) return fail("missing topic pattern");
    if (words.size() > 5) return fail("too many words (pattern [direction [qos [local-prefix remote-prefix]]])");
    for (const auto& w : words)
        if (protocol::validate_utf8(w)) return fail("not valid UTF-8");
    topic_rule r;
    r.pattern = unquote(words[0]);
    if (!r.pattern.empty() && !protocol::is_valid_topic_filter(r.pattern))
        return fail("invalid topic pattern '" + r.pattern + "'");
    if (words.size() >= 2) {
        const auto& d = words[1];
        if (d == "out") r.dir = direction::out;
        else if (d == "in") r.dir = direction::in;
        else if (d == "both") r.dir = direction::both;
        else return fail("invalid direction '" + d + "' (in, out or both)");
    }
    if (words.size() >= 3) {
        const auto& q = words[2];
        if (q != "0" && q != "1" && q != "2") return fail("invalid QoS '" + q + "' (0, 1 or 2)");
        r.qos = static_cast<protocol::qos>(q[0] - '0');
    }
    if (words.size() == 4) return fail("a local prefix needs a remote prefix after it");
    if (words.size() == 5) {
        r.local_prefix = unquote(words[3]);
        r.remote_prefix = unquote(words[4]);
    }
    if (r.pattern.empty() && (r.local_prefix.empty() || r.remote_prefix.empty()))
        return fail("an empty (\"\") pattern needs a local and a remote prefix");
    if (auto e = check_prefix("local", r.local_prefix, r.pattern); !e.empty()) return fail(e);
    if (auto e = check_prefix("remote", r.remote_prefix, r.pattern); !e.empty()) return fail(e);
    return {std::move(r), {}};
}

rule_result parse_rule(std::string_view text) {
    std::vector<std::string> words;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
        const auto start = i;
        while (i < text.size() && text[i] != ' ' && text[i] != '\t') ++i;
        if (i > start) words.emplace_back(text.substr(start, i - start));
    }
    return parse_rule(words);
}

std::optional<std::string> to_remote(const topic_rule& r, std::string_view local_topic) {
    if (!r.outgoing()) return std::nullopt;
    return remap(local_topic, r.local_filter(), r.local_prefix, r.remote_prefix);
}

std::optional<std::string> to_local(const topic_rule& r, std::string_view remote_topic) {
    if (!r.incoming()) return std::nullopt;
    return remap(remote_topic, r.remote_filter(), r.remote_prefix, r.local_prefix);
}

std::optional<topic_map::route> topic_map::outgoing(std::string_view local_topic) const {
    for (const auto& r : rules_)
        if (auto t = to_remote(r, local_topic)) return route{std::move(*t), r.qos, &r};
    return std::nullopt;
}

std::optional<topic_map::route> topic_map::incoming(std::string_view remote_topic) const {
    for (const auto& r : rules_)
        if (auto t = to_local(r, remote_topic)) return route{std::move(*t), r.qos, &r};
    return std::nullopt;
}

std::vector<topic_map::subscription> topic_map::local_subscriptions() const {
    std::vector<subscription> out;
    for (const auto& r : rules_)
        if (r.outgoing()) add_subscription(out, r.local_filter(), r.qos);
    return out;
}

std::vector<topic_map::subscription> topic_map::remote_subscriptions() const {
    std::vector<subscription> out;
    for (const auto& r : rules_)
        if (r.incoming()) add_subscription(out, r.remote_filter(), r.qos);
    return out;
}

}  // namespace mqtt::bridge
