// acl_file: parsing and the allow/deny decision, following Mosquitto 2.0's default ACL check.

#include "mqtt/broker/acl_file.hpp"

#include <algorithm>

#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {
namespace {

enum class verdict { allow, deny, none };

// Mosquitto splits these lines on spaces only (a tab is part of a word).
std::string_view next_word(std::string_view& s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    const auto end = std::min(s.find(' '), s.size());
    const auto w = s.substr(0, end);
    s.remove_prefix(end);
    return w;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

// Deny rules go in front of the others, as Mosquitto puts them.
void add_rule(std::vector<acl_rule>& rules, acl_rule r) {
    if (r.access == 0) {
        rules.insert(rules.begin(), std::move(r));
    } else {
        rules.push_back(std::move(r));
    }
}

// The pattern with %c and %u replaced, into `out`.
void expand(std::string_view pattern, const acl_client& c, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] == '%' && i + 1 < pattern.size()) {
            if (pattern[i + 1] == 'c') {
                out.append(c.client_id);
                ++i;
                continue;
            }
            if (pattern[i + 1] == 'u' && c.username != nullptr) {
                out.append(*c.username);
                ++i;
                continue;
            }
        }
        out.push_back(pattern[i]);
    }
}

verdict decide(const acl_rule& r, std::string_view filter, acl_access a, std::string_view topic) {
    if (!protocol::topic_matches(filter, topic)) return verdict::none;
    if (r.access == 0) return verdict::deny;
    return (r.access & static_cast<std::uint8_t>(a)) != 0 ? verdict::allow : verdict::none;
}

bool has_wildcard_char(std::string_view s) {
    return s.find_first_of("+#") != std::string_view::npos;
}

}  // namespace

acl_parse_result acl_file::parse(std::string_view text, std::string_view file) {
    acl_parse_result out;
    acl_file acl;
    std::optional<std::string> user;
    int line_no = 0;
    std::size_t pos = 0;
    const auto fail = [&](const std::string& what) {
        out.error = std::string{file} + ":" + std::to_string(line_no) + ": " + what;
        return out;
    };
    while (pos < text.size()) {
        const auto nl = std::min(text.find('\n', pos), text.size());
        std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        while (!line.empty() && is_space(line.back())) line.remove_suffix(1);
        if (line.empty() || line.front() == '#') continue;
        std::string_view rest = line;
        const auto keyword = next_word(rest);
        if (keyword.empty()) continue;
        if (keyword == "topic" || keyword == "pattern") {
            auto access_word = next_word(rest);
            if (access_word.empty()) return fail("empty topic");
            auto topic = trim(rest);
            std::uint8_t access = 3;
            if (topic.empty()) {
                topic = access_word;  // "topic TOPIC": read and write
            } else if (access_word == "read") {
                access = 1;
            } else if (access_word == "write") {
                access = 2;
            } else if (access_word == "readwrite") {
                access = 3;
            } else if (access_word == "deny") {
                access = 0;
            } else {
                return fail("invalid access '" + std::string{access_word} +
                            "' (read, write, readwrite or deny)");
            }
            if (!protocol::is_valid_topic_filter(topic)) {
                return fail("invalid topic filter '" + std::string{topic} + "'");
            }
            acl_rule r;
            r.topic = std::string{topic};
            r.access = access;
            if (keyword == "pattern") {
                r.substitutes = topic.find("%c") != std::string_view::npos ||
                                topic.find("%u") != std::string_view::npos;
                r.needs_user = topic.find("%u") != std::string_view::npos;
                add_rule(acl.patterns_, std::move(r));
                continue;
            }
            auto it = std::find_if(acl.users_.begin(), acl.users_.end(),
                                   [&](const acl_user_rules& u) { return u.user == user; });
            if (it == acl.users_.end()) {
                acl.users_.push_back(acl_user_rules{user, {}});
                it = std::prev(acl.users_.end());
            }
            add_rule(it->rules, std::move(r));
        } else if (keyword == "user") {
            const auto name = trim(rest);
            if (name.empty()) return fail("missing user name after 'user'");
            user = std::string{name};
        } else {
            return fail("invalid line (expected user, topic or pattern)");
        }
    }
    out.value = std::move(acl);
    return out;
}

int acl_file::block_of(const std::string* username) const {
    for (std::size_t i = 0; i < users_.size(); ++i) {
        const auto& u = users_[i].user;
        if (username == nullptr ? !u.has_value() : (u.has_value() && *u == *username)) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

bool acl_file::allows(const acl_client& c, acl_access a, std::string_view topic,
                      std::string& scratch) const {
    if (c.block >= 0 && static_cast<std::size_t>(c.block) < users_.size()) {
        for (const auto& r : users_[static_cast<std::size_t>(c.block)].rules) {
            const auto v = decide(r, r.topic, a, topic);
            if (v != verdict::none) return v == verdict::allow;
        }
    }
    if (patterns_.empty()) return false;
    // A '+' or '#' in a user name or client id would widen a pattern: refused.
    if ((c.username != nullptr && has_wildcard_char(*c.username)) ||
        has_wildcard_char(c.client_id)) {
        return false;
    }
    for (const auto& r : patterns_) {
        if (r.needs_user && c.username == nullptr) continue;
        std::string_view filter = r.topic;
        if (r.substitutes) {
            expand(r.topic, c, scratch);
            filter = scratch;
        }
        const auto v = decide(r, filter, a, topic);
        if (v != verdict::none) return v == verdict::allow;
    }
    return false;
}

}  // namespace mqtt::broker
