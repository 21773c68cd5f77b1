#include "mqtt/broker/log_event.hpp"

#include <cstdio>
#include <ctime>

#include "json_writer.hpp"
#include "mqtt/format/json_string.hpp"

namespace mqtt::broker {

namespace detail {

using format::append_json_text;

json_object& json_object::key(std::string_view k) {
    if (!first_) out_ += ',';
    first_ = false;
    append_json_text(out_, k);
    out_ += ':';
    return *this;
}

json_object& json_object::string(std::string_view k, std::string_view v) {
    key(k);
    append_json_text(out_, v);
    return *this;
}

json_object& json_object::number(std::string_view k, std::uint64_t v) {
    key(k);
    out_ += std::to_string(v);
    return *this;
}

json_object& json_object::boolean(std::string_view k, bool v) {
    key(k);
    out_ += v ? "true" : "false";
    return *this;
}

json_object& json_object::null(std::string_view k) {
    key(k);
    out_ += "null";
    return *this;
}

json_object& json_object::raw(std::string_view k, std::string_view json) {
    key(k);
    out_.append(json);
    return *this;
}

}  // namespace detail

std::string_view to_string(log_level l) {
    switch (l) {
        case log_level::error:
            return "error";
        case log_level::warning:
            return "warning";
        case log_level::notice:
            return "notice";
        case log_level::info:
            return "info";
        case log_level::debug:
            return "debug";
    }
    return "notice";
}

log_event classify_log_line(int verbosity, std::string_view line) {
    log_event e;
    e.verbosity = verbosity;
    e.level = verbosity <= 0   ? log_level::notice
              : verbosity == 1 ? log_level::info
                               : log_level::debug;
    e.msg = line;
    constexpr std::string_view client = "client ";
    if (line.substr(0, client.size()) != client) return e;
    const auto rest = line.substr(client.size());
    // "client ID connected from PEER (VERSION, keep alive Ns)": the peer has no spaces, so
    // the last " connected from " is the one the engine wrote, whatever the client id holds.
    constexpr std::string_view connected = " connected from ";
    if (const auto at = rest.rfind(connected); at != std::string_view::npos) {
        const auto after = rest.substr(at + connected.size());
        e.event = log_kind::connect;
        e.client_id = rest.substr(0, at);
        e.peer = after.substr(0, after.find(' '));
        return e;
    }
    // "client ID closed: REASON".
    constexpr std::string_view closed = " closed: ";
    if (const auto at = rest.find(closed); at != std::string_view::npos) {
        e.event = log_kind::disconnect;
        e.client_id = rest.substr(0, at);
        e.reason = rest.substr(at + closed.size());
        return e;
    }
    // "client ID subscribed to FILTER ..." / "client ID unsubscribed from FILTER".
    for (const auto& [word, kind] :
         {std::pair{std::string_view{" subscribed to "}, log_kind::subscribe},
          std::pair{std::string_view{" unsubscribed from "}, log_kind::unsubscribe}}) {
        if (const auto at = rest.find(word); at != std::string_view::npos) {
            e.event = kind;
            e.client_id = rest.substr(0, at);
            return e;
        }
    }
    return e;
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
    const auto secs = static_cast<std::time_t>(us / 1'000'000 - (us % 1'000'000 < 0 ? 1 : 0));
    const auto frac = ((us % 1'000'000) + 1'000'000) % 1'000'000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long long>(frac));
    return buf;
}

std::string format_log_line(const log_event& e, const log_style& style,
                            std::chrono::system_clock::time_point now) {
    std::string out;
    if (!style.json) {
        out.reserve(e.msg.size() + 48);
        if (style.timestamp) out += iso8601_utc(now) + ' ';
        out.append(style.tool);
        out += ": ";
        if (e.level == log_level::error) out += "error: ";
        if (e.level == log_level::warning) out += "warning: ";
        out.append(e.msg);
        out += '\n';
        return out;
    }
    out.reserve(e.msg.size() + 128);
    detail::json_object o{out};
    o.string(log_field::time, iso8601_utc(now));
    o.string(log_field::level, to_string(e.level));
    o.string(log_field::event, e.event);
    if (!e.client_id.empty()) o.string(log_field::client_id, e.client_id);
    if (!e.peer.empty()) o.string(log_field::peer, e.peer);
    if (!e.reason.empty()) o.string(log_field::reason, e.reason);
    o.string(log_field::msg, e.msg);
    o.close();
    out += '\n';
    return out;
}

}  // namespace mqtt::broker
