#include "mqtt/format/message_json_in.hpp"

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "mqtt/format/message_json.hpp"
#include "mqtt/format/properties_in.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::format {
namespace {

using json = nlohmann::json;

int base64_value(char c) noexcept {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// One property of the "properties" object; an error message or empty.
std::string set_json_property(protocol::properties& props, const std::string& name,
                              const json& value) {
    if (name == "subscription_identifier" || name == "topic_alias") return {};  // output only
    std::optional<property_error> err;
    if (name == "user_property") {
        if (!value.is_array()) return "properties.user_property: not an array of [key, value]";
        for (const auto& pair : value) {
            if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() ||
                !pair[1].is_string())
                return "properties.user_property: not an array of [key, value] string pairs";
            err = set_property(props, property_target::publish, name,
                               pair[0].get_ref<const std::string&>(),
                               std::string_view(pair[1].get_ref<const std::string&>()));
            if (err) return "properties." + err->message;
        }
        return {};
    }
    const bool text =
        name == "content_type" || name == "response_topic" || name == "correlation_data";
    if (value.is_number_unsigned() && !text) {
        err = set_property(props, property_target::publish, name,
                           std::to_string(value.get<std::uint64_t>()));
    } else if (value.is_string()) {
        const auto& s = value.get_ref<const std::string&>();
        // Numbers must be numbers: "60" for an interval is a mistake worth reporting.
        if (!text) return "properties." + name + ": not a non-negative integer";
        err = set_property(props, property_target::publish, name, s);
    } else if (value.is_object() && name == "correlation_data" && value.size() == 1 &&
               value.contains("base64") && value["base64"].is_string()) {
        auto bytes = base64_decode(value["base64"].get_ref<const std::string&>());
        if (!bytes) return "properties.correlation_data.base64: not valid base64";
        err = set_property(props, property_target::publish, name, *bytes);
    } else {
        return "properties." + name + ": unexpected value " + value.dump();
    }
    return err ? "properties." + err->message : std::string{};
}

std::string read_fields(const json& obj, const json_in_defaults& d, protocol::publish_packet& m) {
    bool has_topic = false, has_payload = false;
    m.topic = d.topic;
    m.qos_level = d.qos;
    m.retain = d.retain;
    for (const auto& [key, value] : obj.items()) {
        if (key == json_field::topic) {
            if (!value.is_string()) return "\"topic\" is not a string";
            m.topic = value.get<std::string>();
            has_topic = true;
        } else if (key == json_field::payload || key == json_field::payload_base64) {
            if (has_payload) return "both \"payload\" and \"payload_base64\"";
            has_payload = true;
            if (!value.is_string()) return "\"" + key + "\" is not a string";
            if (key == json_field::payload) {
                m.payload = value.get<std::string>();
            } else {
                auto bytes = base64_decode(value.get_ref<const std::string&>());
                if (!bytes) return "\"payload_base64\" is not valid base64";
                m.payload = std::move(*bytes);
            }
        } else if (key == json_field::qos) {
            if (!value.is_number_unsigned() || value.get<std::uint64_t>() > 2)
                return "\"qos\" is not 0, 1 or 2";
            m.qos_level = static_cast<protocol::qos>(value.get<std::uint64_t>());
        } else if (key == json_field::retain) {
            if (!value.is_boolean()) return "\"retain\" is not true or false";
            m.retain = value.get<bool>();
        } else if (key == json_field::properties) {
            if (!value.is_object()) return "\"properties\" is not an object";
            for (const auto& [name, v] : value.items())
                if (auto e = set_json_property(m.props, name, v); !e.empty()) return e;
        } else if (key != json_field::dup && key != json_field::mid &&
                   key != json_field::received_at) {
            return "unknown field \"" + key + "\"";
        }
    }
    if (!has_topic && d.topic.empty()) return "no \"topic\" (and no -t)";
    if (protocol::validate_utf8(m.topic) || !protocol::is_valid_topic_name(m.topic))
        return "not a valid topic name: \"" + m.topic + "\"";
    if (!has_payload) return "no \"payload\" or \"payload_base64\"";
    return {};
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        std::array<int, 4> v{};
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = text[i + static_cast<std::size_t>(k)];
            const bool last_group = i + 4 == text.size();
            if (c == '=' && last_group && k >= 2) {
                ++pad;
                v[static_cast<std::size_t>(k)] = 0;
                continue;
            }
            if (pad > 0) return std::nullopt;  // data after '='
            v[static_cast<std::size_t>(k)] = base64_value(c);
            if (v[static_cast<std::size_t>(k)] < 0) return std::nullopt;
        }
        const std::uint32_t n = (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) |
                                (std::uint32_t(v[2]) << 6) | std::uint32_t(v[3]);
        out += static_cast<char>((n >> 16) & 0xFF);
        if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
        if (pad < 1) out += static_cast<char>(n & 0xFF);
    }
    return out;
}

json_in_result parse_message_json(std::string_view line, const json_in_defaults& defaults) {
    json_in_result r;
    if (!json_depth_within(line)) {
        r.error = "nested deeper than " + std::to_string(max_json_depth) + " levels";
        return r;
    }
    // No exceptions for bad input: a discarded value says the line is not JSON.
    const json obj = json::parse(line.begin(), line.end(), nullptr, false);
    if (obj.is_discarded()) {
        r.error = "not valid JSON";
    } else if (!obj.is_object()) {
        r.error = "not a JSON object";
    } else {
        r.error = read_fields(obj, defaults, r.message);
    }
    return r;
}

}  // namespace mqtt::format
