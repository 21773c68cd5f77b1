#include "mqtt/format/message_json.hpp"

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>

#include "mqtt/protocol/property.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::format {
namespace {

using protocol::property_id;

void append_key(std::string& out, std::string_view key) {
    if (out.back() != '{') out += ',';
    out += '"';
    out += key;
    out += "\":";
}

std::string_view name_of(property_id id) {
    const auto* info = protocol::find_property(static_cast<std::uint8_t>(id));
    return info ? info->name : std::string_view{"unknown"};
}

template <class T>
void add_number(std::string& out, property_id id, const std::optional<T>& v) {
    if (!v) return;
    append_key(out, name_of(id));
    out += std::to_string(static_cast<std::uint32_t>(*v));
}

void add_string(std::string& out, property_id id, const std::optional<std::string>& v) {
    if (!v) return;
    append_key(out, name_of(id));
    append_json_string(out, *v);
}

// Binary Data: a string when it is text, else {"base64": "..."}.
void add_binary(std::string& out, property_id id, const std::optional<std::string>& v) {
    if (!v) return;
    append_key(out, name_of(id));
    if (is_utf8_text(*v)) {
        append_json_string(out, *v);
    } else {
        out += "{\"base64\":";
        append_json_string(out, base64_encode(*v));
        out += '}';
    }
}

// The properties a PUBLISH from a broker can carry (§3.3.2.3).
void append_properties(std::string& out, const protocol::properties& p) {
    out += '{';
    add_number(out, property_id::payload_format_indicator, p.payload_format_indicator);
    add_number(out, property_id::message_expiry_interval, p.message_expiry_interval);
    add_number(out, property_id::topic_alias, p.topic_alias);
    add_string(out, property_id::content_type, p.content_type);
    add_string(out, property_id::response_topic, p.response_topic);
    add_binary(out, property_id::correlation_data, p.correlation_data);
    if (!p.subscription_identifiers.empty()) {
        append_key(out, name_of(property_id::subscription_identifier));
        out += '[';
        for (std::size_t i = 0; i < p.subscription_identifiers.size(); ++i) {
            if (i) out += ',';
            out += std::to_string(p.subscription_identifiers[i]);
        }
        out += ']';
    }
    if (!p.user_properties.empty()) {
        append_key(out, name_of(property_id::user_property));
        out += '[';
        for (std::size_t i = 0; i < p.user_properties.size(); ++i) {
            out += i ? ",[" : "[";
            append_json_string(out, p.user_properties[i].first);
            out += ',';
            append_json_string(out, p.user_properties[i].second);
            out += ']';
        }
        out += ']';
    }
    out += '}';
}

}  // namespace

bool is_utf8_text(std::string_view bytes) noexcept {
    // validate_utf8() stops at U+0000 (forbidden in MQTT strings): check between the NULs.
    while (true) {
        const auto nul = bytes.find('\0');
        if (protocol::validate_utf8(bytes.substr(0, nul))) return false;
        if (nul == std::string_view::npos) return true;
        bytes.remove_prefix(nul + 1);
    }
}

std::string base64_encode(std::string_view bytes) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const std::uint32_t n = (std::uint32_t(std::uint8_t(bytes[i])) << 16) |
                                (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8) |
                                std::uint8_t(bytes[i + 2]);
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += alphabet[(n >> 6) & 63];
        out += alphabet[n & 63];
    }
    const auto rest = bytes.size() - i;
    if (rest > 0) {
        std::uint32_t n = std::uint32_t(std::uint8_t(bytes[i])) << 16;
        if (rest == 2) n |= std::uint32_t(std::uint8_t(bytes[i + 1])) << 8;
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
    auto secs = static_cast<std::time_t>(us / 1'000'000);
    auto frac = us % 1'000'000;
    if (frac < 0) {
        frac += 1'000'000;
        --secs;
    }
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[96];  // room for any int GCC can imagine in each field
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(frac));
    return buf;
}

void append_message_json(std::string& out, const protocol::publish_packet& msg,
                         protocol::protocol_version version,
                         std::chrono::system_clock::time_point received_at) {
    out += '{';
    append_key(out, json_field::topic);
    append_json_string(out, msg.topic);
    if (is_utf8_text(msg.payload)) {
        append_key(out, json_field::payload);
        append_json_string(out, msg.payload);
    } else {
        append_key(out, json_field::payload_base64);
        append_json_string(out, base64_encode(msg.payload));
    }
    append_key(out, json_field::qos);
    out += std::to_string(static_cast<int>(msg.qos_level));
    append_key(out, json_field::retain);
    out += msg.retain ? "true" : "false";
    append_key(out, json_field::dup);
    out += msg.dup ? "true" : "false";
    if (msg.qos_level != protocol::qos::at_most_once) {
        append_key(out, json_field::mid);
        out += std::to_string(msg.packet_id);
    }
    append_key(out, json_field::received_at);
    append_json_string(out, iso8601_utc(received_at));
    if (protocol::is_v5(version)) {
        append_key(out, json_field::properties);
        append_properties(out, msg.props);
    }
    out += '}';
}

void append_message_json(std::string& out, const protocol::publish_packet& msg,
                         protocol::protocol_version version,
                         std::chrono::system_clock::time_point received_at,
                         const json_options& options) {
    if (!options.payload_as_json && !options.pretty) {
        append_message_json(out, msg, version, received_at);
        return;
    }
    // The slow path (a parse per message) is for people and for JSON payloads; the default
    // output above does not pay for it.
    std::string line;
    append_message_json(line, msg, version, received_at);
    auto obj = nlohmann::ordered_json::parse(line, nullptr, false);
    if (obj.is_discarded()) {  // cannot happen: we wrote it
        out += line;
        return;
    }
    // A payload nested deeper than max_json_depth is written as text (or base64) instead.
    if (options.payload_as_json && json_depth_within(msg.payload)) {
        auto value = nlohmann::ordered_json::parse(msg.payload, nullptr, false);
        if (!value.is_discarded() && !msg.payload.empty()) {
            nlohmann::ordered_json reordered;
            for (auto& [key, v] : obj.items()) {
                if (key == json_field::payload || key == json_field::payload_base64)
                    reordered[std::string(payload_json_field)] = value;
                else
                    reordered[key] = std::move(v);
            }
            obj = std::move(reordered);
        }
    }
    out += obj.dump(options.pretty ? 2 : -1);
}

void append_error_json(std::string& out, std::string_view message, int exit_status) {
    out += "{\"error\":";
    append_json_string(out, message);
    out += ",\"exit_status\":" + std::to_string(exit_status) + "}";
}

void append_publish_result_json(std::string& out, const publish_result& r) {
    const auto field = [&](std::string_view name) {
        out += out.back() == '{' ? "\"" : ",\"";
        out += name;
        out += "\":";
    };
    out += '{';
    field(json_field::seq);
    out += std::to_string(r.seq);
    field(json_field::topic);
    append_json_string(out, r.topic);
    field(json_field::qos);
    out += r.qos_minus_one ? "-1" : std::to_string(static_cast<int>(r.qos));
    field(json_field::retain);
    out += r.retain ? "true" : "false";
    if (r.mid != 0) {
        field(json_field::mid);
        out += std::to_string(r.mid);
    }
    field(json_field::bytes);
    out += std::to_string(r.bytes);
    field(json_field::reason_code);
    out += std::to_string(static_cast<int>(r.code));
    field(json_field::reason);
    append_json_string(out, protocol::to_string(r.code));
    out += '}';
}

void append_message_text(std::string& out, const protocol::publish_packet& msg, bool with_topic) {
    if (with_topic) {
        out += msg.topic;
        out += ' ';
    }
    out += msg.payload;
}

}  // namespace mqtt::format
