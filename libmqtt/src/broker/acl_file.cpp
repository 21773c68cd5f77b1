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

// The levels of a filter, one at a time, with a look at the next one before taking it.
class levels {
  public:
    explicit levels(std::string_view s) noexcept : rest_(s) {}
    bool at_end() const noexcept { return end_; }
    std::string_view peek() const noexcept {
        return rest_.substr(0, std::min(rest_.find('/'), rest_.size()));
    }
    // What is left, the current level included ("b/c" of "a/b/c" after one advance()).
    std::string_view remainder() const noexcept { return rest_; }
    void advance() noexcept {
        const auto slash = rest_.find('/');
        if (slash == std::string_view::npos) {
            rest_ = {};
            end_ = true;
        } else {
            rest_.remove_prefix(slash + 1);
        }
    }

  private:
    std::string_view rest_;
    bool end_ = false;
};

bool is_wildcard_level(std::string_view l) {
    return l == "+" || l == "#";
}

bool starts_with_dollar(std::string_view l) {
    return !l.empty() && l.front() == '$';
}

// A filter whose first level is `x` seen against one whose first level is the wildcard `w`
// (+ or #): the wildcard does not reach topics starting with '$' (MQTT-4.7.2-1).
bool dollar_blocks(bool first_level, std::string_view x) {
    return first_level && starts_with_dollar(x) && !is_wildcard_level(x);
}

}  // namespace

bool filter_intersection(std::string_view a, std::string_view b, std::string& meet) {
    meet.clear();
    levels x{a};
    levels y{b};
    for (bool first = true;; first = false) {
        if (x.at_end() && y.at_end()) return true;
        // '#' on one side takes whatever is left of the other, the parent level included.
        for (int side = 0; side < 2; ++side) {
            const levels& h = side == 0 ? x : y;
            const levels& o = side == 0 ? y : x;
            if (h.at_end() || h.peek() != "#") continue;
            if (o.at_end()) return true;  // "a/#" and "a": "a"
            if (dollar_blocks(first, o.peek())) return false;
            if (!first) meet.push_back('/');
            meet.append(o.remainder());
            return true;
        }
        if (x.at_end() || y.at_end()) return false;
        const auto l = x.peek();
        const auto r = y.peek();
        std::string_view level;
        if (l == "+") {
            if (dollar_blocks(first, r)) return false;
            level = r;
        } else if (r == "+") {
            if (dollar_blocks(first, l)) return false;
            level = l;
        } else if (l == r) {
            level = l;
        } else {
            return false;
        }
        if (!first) meet.push_back('/');
        meet.append(level);
        x.advance();
        y.advance();
    }
}

bool filters_overlap(std::string_view a, std::string_view b) {
    std::string meet;
    return filter_intersection(a, b, meet);
}

bool filter_covers(std::string_view outer, std::string_view inner) noexcept {
    levels d{outer};
    levels x{inner};
    for (bool first = true;; first = false) {
        if (!d.at_end() && d.peek() == "#") {
            return x.at_end() || !dollar_blocks(first, x.peek());
        }
        if (d.at_end() || x.at_end()) return d.at_end() && x.at_end();
        const auto dl = d.peek();
        const auto xl = x.peek();
        // `inner` goes on to every depth, its parent level included (none at the first level,
        // where "+/#" matches what "#" does).
        if (xl == "#") return first && d.remainder() == "+/#";
        if (dl == "+") {
            if (dollar_blocks(first, xl)) return false;
        } else if (xl == "+" || dl != xl) {
            return false;
        }
        d.advance();
        x.advance();
    }
}

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

bool acl_file::allows_unknown_user(std::string_view client_id, acl_access a, std::string_view topic,
                                   std::string& scratch) const {
    for (const auto& u : users_) {
        for (const auto& r : u.rules) {
            if (r.access != 0) break;  // the deny rules come first
            if (protocol::topic_matches(r.topic, topic)) return false;
        }
    }
    if (patterns_.empty() || has_wildcard_char(client_id)) return false;
    const acl_client c{nullptr, client_id, -1};
    for (const auto& r : patterns_) {
        std::string_view filter = r.topic;
        if (r.needs_user) {
            if (r.access != 0) continue;  // may allow some user, not every one
            // A user name may hold '/': every level from the one with %u on could be anything.
            const auto level = r.topic.rfind('/', r.topic.find("%u"));
            if (level == std::string::npos) return false;  // matches what any name makes
            expand(std::string_view{r.topic}.substr(0, level + 1), c, scratch);
            scratch.push_back('#');
            filter = scratch;
        } else if (r.substitutes) {
            expand(r.topic, c, scratch);
            filter = scratch;
        }
        const auto v = decide(r, filter, a, topic);
        if (v != verdict::none) return v == verdict::allow;
    }
    return false;
}

bool stored_may_read(const acl_file& acl, std::string_view client_id, bool identified,
                     const std::string* username, std::string_view topic, std::string& scratch) {
    if (!identified) return acl.allows_unknown_user(client_id, acl_access::read, topic, scratch);
    const acl_client c{username, client_id, acl.block_of(username)};
    return acl.allows(c, acl_access::read, topic, scratch);
}

bool acl_file::may_subscribe(const acl_client& c, std::string_view filter) const {
    // allows() decides a topic by the first rule matching it: the client's own deny rules,
    // its other rules, then the pattern deny rules and the other patterns. So some topic of
    // `filter` is readable when a read rule meets the filter somewhere not covered by a deny
    // rule that comes before that rule.
    std::vector<std::string> denies;
    std::string meet;
    const auto readable_through = [&](std::string_view rule) {
        if (!filter_intersection(filter, rule, meet)) return false;
        return std::none_of(denies.begin(), denies.end(),
                            [&](const std::string& d) { return filter_covers(d, meet); });
    };
    const auto reads = [](const acl_rule& r) {
        return (r.access & static_cast<std::uint8_t>(acl_access::read)) != 0;
    };
    if (c.block >= 0 && static_cast<std::size_t>(c.block) < users_.size()) {
        for (const auto& r : users_[static_cast<std::size_t>(c.block)].rules) {
            if (r.access == 0) {
                denies.push_back(r.topic);
            } else if (reads(r) && readable_through(r.topic)) {
                return true;
            }
        }
    }
    if (patterns_.empty()) return false;
    if ((c.username != nullptr && has_wildcard_char(*c.username)) ||
        has_wildcard_char(c.client_id)) {
        return false;
    }
    std::string expanded;
    for (const auto& r : patterns_) {
        if (r.needs_user && c.username == nullptr) continue;
        std::string_view rule = r.topic;
        if (r.substitutes) {
            expand(r.topic, c, expanded);
            rule = expanded;
        }
        if (r.access == 0) {
            denies.emplace_back(rule);
        } else if (reads(r) && readable_through(rule)) {
            return true;
        }
    }
    return false;
}

}  // namespace mqtt::broker
