#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

// Topic Names and Topic Filters (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7) and Shared Subscription
// filters (MQTT 5.0 §4.8.2). Pure functions over string_views: no allocation, no throw.
//
// UTF-8 well-formedness is not re-checked here: the codec has already run validate_utf8()
// on every string it decoded. Callers holding text from elsewhere (a CLI argument, a config
// file) run validate_utf8() first.
namespace mqtt::protocol {

// A UTF-8 Encoded String carries a two-byte length, so no topic can be longer.
inline constexpr std::size_t max_topic_length = 65535;

// A Topic Name for PUBLISH or a Will: 1..65535 bytes, no wildcard, no U+0000.
// The MQTT 5.0 zero-length topic used with a Topic Alias is resolved by the session
// before this check; it is not a valid name by itself.
bool is_valid_topic_name(std::string_view name) noexcept;

// A Topic Filter for SUBSCRIBE / UNSUBSCRIBE: 1..65535 bytes, no U+0000, `+` alone in its
// level, `#` alone in the last level. `$share/...` filters are valid as plain filters too;
// run parse_shared() to tell them apart.
bool is_valid_topic_filter(std::string_view filter) noexcept;

// True when the filter has a `+` or `#` anywhere (for a valid filter: a wildcard level).
bool is_wildcard_filter(std::string_view filter) noexcept;

// Whether `topic` matches `filter`, `#` matching the parent level too (`a/#` matches `a`),
// and a filter starting with a wildcard never matching a topic starting with `$`.
// Meaningful for a valid filter and a valid name; defined (no UB, just an answer) for any
// input.
bool topic_matches(std::string_view filter, std::string_view topic) noexcept;

// A topic whose first character is `$`: reserved for the server (MQTT 5.0 §4.7.2); wildcard
// filters at the first level do not see it.
constexpr bool is_dollar_topic(std::string_view topic) noexcept {
    return !topic.empty() && topic.front() == '$';
}

// `$SYS` itself or anything under `$SYS/`: the widely used prefix for broker statistics.
constexpr bool is_system_topic(std::string_view topic) noexcept {
    constexpr std::string_view sys = "$SYS";
    return topic.starts_with(sys) && (topic.size() == sys.size() || topic[sys.size()] == '/');
}

// ---- Shared Subscriptions (MQTT 5.0 §4.8.2) -------------------------------------------

enum class share_status : std::uint8_t {
    not_shared,  // an ordinary filter (still to be checked with is_valid_topic_filter)
    shared,      // `$share/<share_name>/<filter>`, both parts valid
    malformed,   // first level is `$share` but the rest is not a valid shared form:
                 // the server answers Topic Filter invalid (0x8F), or closes with
                 // Protocol Error where the packet as a whole is rejected
};

struct shared_filter {
    share_status status = share_status::not_shared;
    // The ShareName (non-empty, no `/`, `+`, `#`) when status is shared; empty otherwise.
    std::string_view share_name;
    // The filter to subscribe with: the inner filter when shared, the whole input when
    // not_shared, empty when malformed. Views into the argument.
    std::string_view filter;

    bool is_shared() const noexcept { return status == share_status::shared; }
    bool is_malformed() const noexcept { return status == share_status::malformed; }
};

// Splits `$share/<share_name>/<filter>`. Any filter whose first level is exactly `$share`
// is treated as an attempt at a shared subscription, so `$share`, `$share/g`, `$share//x`,
// `$share/g+/x` and `$share/g/a#` are malformed rather than silently becoming ordinary
// subscriptions to reserved topics. The inner filter must be a valid topic filter; a
// not_shared result is NOT validated (call is_valid_topic_filter on it).
// Protocol versions without shared subscriptions (3.1.1) may skip this call entirely.
shared_filter parse_shared(std::string_view filter) noexcept;

namespace detail {

// A level-by-level cursor over a topic or filter, without allocating. "a//b" has three
// levels, "a/" two, and the empty string one (empty) level, as §4.7.1.1 counts them.
class level_cursor {
  public:
    explicit constexpr level_cursor(std::string_view s) noexcept : s_(s) {}

    constexpr bool done() const noexcept { return done_; }

    // Precondition: !done().
    constexpr std::string_view next() noexcept {
        const auto slash = s_.find('/', pos_);
        if (slash == std::string_view::npos) {
            done_ = true;
            return s_.substr(pos_);
        }
        const auto level = s_.substr(pos_, slash - pos_);
        pos_ = slash + 1;
        return level;
    }

  private:
    std::string_view s_;
    std::size_t pos_ = 0;
    bool done_ = false;
};

}  // namespace detail

}  // namespace mqtt::protocol
