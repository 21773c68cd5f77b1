#pragma once

// tern-broker's log records as values, and the one place that turns them into lines: human
// text (the default) or one JSON object per line. Every JSON field name is here.

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace mqtt::broker {

namespace log_field {
inline constexpr std::string_view time = "time";  // ISO 8601, UTC, microseconds
inline constexpr std::string_view level = "level";
inline constexpr std::string_view event = "event";
inline constexpr std::string_view client_id = "client_id";
inline constexpr std::string_view peer = "peer";
inline constexpr std::string_view reason = "reason";
inline constexpr std::string_view msg = "msg";
}  // namespace log_field

// What happened. "log" is any line without a more specific kind.
namespace log_kind {
inline constexpr std::string_view start = "start";            // listening; names the addresses
inline constexpr std::string_view connect = "connect";        // CONNECT accepted
inline constexpr std::string_view disconnect = "disconnect";  // a connected client left
inline constexpr std::string_view subscribe = "subscribe";
inline constexpr std::string_view unsubscribe = "unsubscribe";
inline constexpr std::string_view refused = "refused";  // closed at accept (max_connections)
inline constexpr std::string_view reload = "reload";    // SIGHUP
inline constexpr std::string_view signal = "signal";
inline constexpr std::string_view stop = "stop";
inline constexpr std::string_view stats = "stats";  // counters after stopping
inline constexpr std::string_view bridge = "bridge";  // a bridge of a `connection` block
inline constexpr std::string_view error = "error";
inline constexpr std::string_view warning = "warning";
inline constexpr std::string_view log = "log";
}  // namespace log_kind

enum class log_level { error, warning, notice, info, debug };
std::string_view to_string(log_level l);

// One log record. The views point into the caller's strings and live for the call only.
struct log_event {
    int verbosity = 0;  // 0 shown by default, 1 with -v, 2 with -vv (-1: --quiet still shows)
    log_level level = log_level::notice;
    std::string_view event = log_kind::log;
    std::string_view client_id;
    std::string_view peer;
    std::string_view reason;
    std::string_view msg;  // the human sentence, always set
};

using event_function = std::function<void(const log_event&)>;

// The engine logs text lines ("client X connected from P (...)", "client X closed: R");
// this recognises them and fills in the structured fields. Any other line is a "log" event.
log_event classify_log_line(int verbosity, std::string_view line);

struct log_style {
    bool json = false;
    bool timestamp = false;  // text only; JSON lines always carry `time`
    std::string_view tool = "tern-broker";
};

// "2026-11-22T06:08:19.123456Z".
std::string iso8601_utc(std::chrono::system_clock::time_point t);

// One line, newline included.
std::string format_log_line(const log_event& e, const log_style& style,
                            std::chrono::system_clock::time_point now);

}  // namespace mqtt::broker
