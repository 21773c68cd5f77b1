#include "mqtt/protocol/topic.hpp"

namespace mqtt::protocol {

namespace {

constexpr std::string_view share_prefix = "$share";

}  // namespace

bool is_valid_topic_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > max_topic_length) return false;
    // No wildcards in a Topic Name (5.0: [MQTT-4.7.0-1], 3.1.1: [MQTT-4.7.1-1]);
    // [MQTT-4.7.3-2] no U+0000.
    constexpr std::string_view forbidden{"+#\0", 3};
    return name.find_first_of(forbidden) == std::string_view::npos;
}

bool is_valid_topic_filter(std::string_view filter) noexcept {
    // [MQTT-4.7.3-1] at least one character; [MQTT-4.7.3-3] at most 65535 bytes.
    if (filter.empty() || filter.size() > max_topic_length) return false;
    const std::size_t n = filter.size();
    for (std::size_t i = 0; i < n; ++i) {
        const char c = filter[i];
        const bool level_start = i == 0 || filter[i - 1] == '/';
        const bool level_end = i + 1 == n || filter[i + 1] == '/';
        switch (c) {
            case '\0':  // [MQTT-4.7.3-2]
                return false;
            case '+':  // [MQTT-4.7.1-2] (3.1.1: -3) a whole level
                if (!level_start || !level_end) return false;
                break;
            case '#':  // [MQTT-4.7.1-1] (3.1.1: -2) a whole level, and the last one
                if (!level_start || i + 1 != n) return false;
                break;
            default:
                break;
        }
    }
    return true;
}

bool is_wildcard_filter(std::string_view filter) noexcept {
    return filter.find_first_of("+#") != std::string_view::npos;
}

bool topic_matches(std::string_view filter, std::string_view topic) noexcept {
    // [MQTT-4.7.2-1] a filter starting with a wildcard never matches a `$` topic.
    if (is_dollar_topic(topic) && !filter.empty() && (filter[0] == '+' || filter[0] == '#')) {
        return false;
    }
    detail::level_cursor f{filter};
    detail::level_cursor t{topic};
    while (!f.done()) {
        const auto fl = f.next();
        // `#` takes whatever is left, including nothing: `a/#` matches `a`.
        if (fl == "#") return true;
        if (t.done()) return false;
        const auto tl = t.next();
        if (fl != "+" && fl != tl) return false;
    }
    return t.done();
}

shared_filter parse_shared(std::string_view filter) noexcept {
    shared_filter out;
    const bool shared_namespace =
        filter.starts_with(share_prefix) &&
        (filter.size() == share_prefix.size() || filter[share_prefix.size()] == '/');
    if (!shared_namespace) {
        out.filter = filter;
        return out;
    }
    out.status = share_status::malformed;
    if (filter.size() == share_prefix.size()) return out;  // just "$share"

    const auto rest = filter.substr(share_prefix.size() + 1);
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos) return out;  // "$share/group": no filter at all
    const auto name = rest.substr(0, slash);
    // [MQTT-4.8.2-1] at least one character; [MQTT-4.8.2-2] no `/`, `+`, `#`. The slash is
    // excluded by construction; U+0000 is excluded as in any UTF-8 string.
    constexpr std::string_view forbidden{"+#\0", 3};
    if (name.empty() || name.find_first_of(forbidden) != std::string_view::npos) return out;
    const auto inner = rest.substr(slash + 1);
    if (!is_valid_topic_filter(inner)) return out;

    out.status = share_status::shared;
    out.share_name = name;
    out.filter = inner;
    return out;
}

}  // namespace mqtt::protocol
