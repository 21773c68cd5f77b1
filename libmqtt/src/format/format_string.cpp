#include "mqtt/format/format_string.hpp"

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>

#include "mqtt/format/message_json.hpp"

namespace mqtt::format {
namespace {

constexpr std::string_view specifiers = "%ACDEFIJPRSUjlmpqrtxX";

struct spec {
    bool left = false;
    bool zero = false;
    std::size_t width = 0;
    std::optional<std::size_t> precision;
    char conv = 0;
};

// Parses "%[-0]*[width][.precision]X" at fmt[i] (the '%'); returns the index after X.
std::size_t parse_spec(std::string_view fmt, std::size_t i, spec& s) {
    ++i;
    while (i < fmt.size() && (fmt[i] == '-' || fmt[i] == '0')) {
        (fmt[i] == '-' ? s.left : s.zero) = true;
        ++i;
    }
    while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9' && s.width < 10'000)
        s.width = s.width * 10 + static_cast<std::size_t>(fmt[i++] - '0');
    if (i < fmt.size() && fmt[i] == '.') {
        std::size_t p = 0;
        ++i;
        while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9' && p < 10'000)
            p = p * 10 + static_cast<std::size_t>(fmt[i++] - '0');
        s.precision = p;
    }
    s.conv = i < fmt.size() ? fmt[i] : '\0';
    return i + 1;
}

void pad(std::string& out, std::string_view text, const spec& s, bool numeric) {
    if (s.precision && (s.conv == 'C' || s.conv == 'I' || s.conv == 'R' || s.conv == 't'))
        text = text.substr(0, *s.precision);
    const std::size_t fill = s.width > text.size() ? s.width - text.size() : 0;
    if (s.left) {
        out += text;
        out.append(fill, ' ');
    } else {
        out.append(fill, s.zero && numeric ? '0' : ' ');
        out += text;
    }
}

std::string hex(std::string_view bytes, bool upper) {
    static constexpr char lower_digits[] = "0123456789abcdef";
    static constexpr char upper_digits[] = "0123456789ABCDEF";
    const char* d = upper ? upper_digits : lower_digits;
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        out += d[u >> 4];
        out += d[u & 15];
    }
    return out;
}

std::tm local(std::chrono::system_clock::time_point t) {
    const auto secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    localtime_r(&secs, &tm);
    return tm;
}

std::string strftime_of(const char* f, const std::tm& tm) {
    char buf[256];
    const auto n = std::strftime(buf, sizeof buf, f, &tm);
    return std::string(buf, n);
}

long nanoseconds_of(std::chrono::system_clock::time_point t) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch());
    return static_cast<long>(ns.count() % 1'000'000'000);
}

// Mosquitto's %j/%J object: tst (local time, microseconds), topic, qos, retain, payloadlen,
// mid (QoS > 0), payload. A payload that is not UTF-8 goes in payload_base64 instead.
bool append_mosquitto_json(std::string& out, const protocol::publish_packet& m,
                           std::chrono::system_clock::time_point t, bool raw_payload) {
    const auto tm = local(t);
    char frac[32];  // room for any long, which GCC cannot rule out
    std::snprintf(frac, sizeof frac, ".%06ldZ", nanoseconds_of(t) / 1000);
    std::string line = "{\"tst\":\"" + strftime_of("%Y-%m-%dT%H:%M:%S", tm) + frac +
                       strftime_of("%z", tm) + "\",\"topic\":";
    append_json_string(line, m.topic);
    line += ",\"qos\":" + std::to_string(static_cast<int>(m.qos_level));
    line += ",\"retain\":" + std::string(m.retain ? "1" : "0");
    line += ",\"payloadlen\":" + std::to_string(m.payload.size());
    if (m.qos_level != protocol::qos::at_most_once)
        line += ",\"mid\":" + std::to_string(m.packet_id);
    if (raw_payload) {
        if (!json_depth_within(m.payload)) return false;  // too deep to write back safely
        auto value = nlohmann::json::parse(m.payload, nullptr, false);
        if (value.is_discarded()) return false;
        line += ",\"payload\":" + value.dump();
    } else if (is_utf8_text(m.payload)) {
        line += ",\"payload\":";
        append_json_string(line, m.payload);
    } else {
        line += ",\"payload_base64\":\"" + base64_encode(m.payload) + "\"";
    }
    out += line + "}";
    return true;
}

template <class T>
std::string number_or_empty(const std::optional<T>& v) {
    return v ? std::to_string(static_cast<std::uint64_t>(*v)) : std::string{};
}

// One %-sequence; false only for %J with a payload that is not JSON.
bool append_spec(std::string& out, const spec& s, const protocol::publish_packet& m,
                 std::chrono::system_clock::time_point t) {
    const auto& p = m.props;
    switch (s.conv) {
        case '%':
            out += '%';
            return true;
        case 'A':
            pad(out, number_or_empty(p.topic_alias), s, true);
            return true;
        case 'C':
            pad(out, p.content_type.value_or(""), s, false);
            return true;
        case 'D':
            out += p.correlation_data.value_or("");
            return true;
        case 'E':
            pad(out, number_or_empty(p.message_expiry_interval), s, true);
            return true;
        case 'F':
            pad(out, number_or_empty(p.payload_format_indicator), s, true);
            return true;
        case 'I':
            pad(out, strftime_of("%Y-%m-%dT%H:%M:%S%z", local(t)), s, false);
            return true;
        case 'l':
            pad(out, std::to_string(m.payload.size()), s, true);
            return true;
        case 'm':
            pad(out, std::to_string(m.packet_id), s, true);
            return true;
        case 'p':
            pad(out, m.payload, s, false);
            return true;
        case 'q':
            out += std::to_string(static_cast<int>(m.qos_level));
            return true;
        case 'r':
            out += m.retain ? '1' : '0';
            return true;
        case 'R':
            pad(out, p.response_topic.value_or(""), s, false);
            return true;
        case 't':
            pad(out, m.topic, s, false);
            return true;
        case 'x':
            pad(out, hex(m.payload, false), s, true);
            return true;
        case 'X':
            pad(out, hex(m.payload, true), s, true);
            return true;
        case 'S': {
            std::string ids;
            for (auto id : p.subscription_identifiers)
                ids += (ids.empty() ? "" : ",") + std::to_string(id);
            pad(out, ids, s, true);
            return true;
        }
        case 'P':
            for (std::size_t i = 0; i < p.user_properties.size(); ++i) {
                if (i) out += ' ';
                out += p.user_properties[i].first + ":" + p.user_properties[i].second;
            }
            return true;
        case 'U': {
            char buf[48];
            std::snprintf(buf, sizeof buf, "%lld.%09ld",
                          static_cast<long long>(std::chrono::system_clock::to_time_t(t)),
                          nanoseconds_of(t));
            out += buf;
            return true;
        }
        case 'j':
            return append_mosquitto_json(out, m, t, false);
        case 'J':
            return append_mosquitto_json(out, m, t, true);
        default:
            return true;  // check_format_string() ruled it out
    }
}

char escaped(char c) {
    switch (c) {
        case '\\':
            return '\\';
        case '0':
            return '\0';
        case 'a':
            return '\a';
        case 'e':
            return '\x1b';
        case 'n':
            return '\n';
        case 'r':
            return '\r';
        case 't':
            return '\t';
        case 'v':
            return '\v';
        default:
            return 0x7F;  // not an escape
    }
}

}  // namespace

std::string check_format_string(std::string_view fmt) {
    for (std::size_t i = 0; i < fmt.size();) {
        const char c = fmt[i];
        if (c == '%') {
            spec s;
            i = parse_spec(fmt, i, s);
            if (s.conv == '\0') return "a '%' at the end";
            if (specifiers.find(s.conv) == std::string_view::npos)
                return std::string("unknown sequence %") + s.conv;
        } else if (c == '@' || c == '\\') {
            if (i + 1 >= fmt.size()) return std::string("a '") + c + "' at the end";
            if (c == '\\' && escaped(fmt[i + 1]) == 0x7F)
                return std::string("unknown escape \\") + fmt[i + 1];
            i += 2;
        } else {
            ++i;
        }
    }
    return {};
}

bool append_formatted(std::string& out, std::string_view fmt, const protocol::publish_packet& msg,
                      std::chrono::system_clock::time_point received_at) {
    std::optional<std::tm> tm;  // local time, computed once if @ is used
    for (std::size_t i = 0; i < fmt.size();) {
        const char c = fmt[i];
        if (c == '%') {
            spec s;
            i = parse_spec(fmt, i, s);
            if (!append_spec(out, s, msg, received_at)) return false;
        } else if (c == '@' && i + 1 < fmt.size()) {
            const char d = fmt[i + 1];
            i += 2;
            if (d == '@') {
                out += '@';
            } else if (d == 'N') {
                char buf[32];
                std::snprintf(buf, sizeof buf, "%09ld", nanoseconds_of(received_at));
                out += buf;
            } else {
                if (!tm) tm = local(received_at);
                const char f[3] = {'%', d, '\0'};
                out += strftime_of(f, *tm);
            }
        } else if (c == '\\' && i + 1 < fmt.size()) {
            out += escaped(fmt[i + 1]);
            i += 2;
        } else {
            out += c;
            ++i;
        }
    }
    return true;
}

}  // namespace mqtt::format
