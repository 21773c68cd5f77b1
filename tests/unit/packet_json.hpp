#pragma once

// Test-side JSON view of a decoded packet, for the hex vectors (tests/vectors/*.json) and
// for failure messages. Field names are snake_case; every field of the packet type is
// present, an absent optional one as null, so a vector can assert absence ("will": null).
// Binary values are lowercase hex in *_hex fields; reason codes are their to_string()
// names. Header-only and test-only: the tools' JSON output lives in the output module.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "mqtt/protocol/packet.hpp"
#include "mqtt/protocol/property.hpp"
#include "mqtt/protocol/reason_code.hpp"
#include "mqtt/protocol/types.hpp"

namespace mqtt::test {

inline std::string to_hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 0x0F];
    }
    return out;
}

inline std::string packet_type_name(protocol::packet_type t) {
    std::string s{protocol::to_string(t)};
    for (auto& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return s;
}

inline nlohmann::json to_json(const protocol::properties& p) {
    using nlohmann::json;
    json j = json::object();
    auto num = [&](std::string_view name, const auto& field) {
        if (field) j[std::string(name)] = static_cast<std::uint32_t>(*field);
    };
    auto str = [&](std::string_view name, const std::optional<std::string>& field) {
        if (field) j[std::string(name)] = *field;
    };
    auto bin = [&](std::string_view name, const std::optional<std::string>& field) {
        if (field) j[std::string(name) + "_hex"] = to_hex(*field);
    };
    num("payload_format_indicator", p.payload_format_indicator);
    num("message_expiry_interval", p.message_expiry_interval);
    str("content_type", p.content_type);
    str("response_topic", p.response_topic);
    bin("correlation_data", p.correlation_data);
    if (!p.subscription_identifiers.empty())
        j["subscription_identifier"] = p.subscription_identifiers;
    num("session_expiry_interval", p.session_expiry_interval);
    str("assigned_client_identifier", p.assigned_client_identifier);
    num("server_keep_alive", p.server_keep_alive);
    str("authentication_method", p.authentication_method);
    bin("authentication_data", p.authentication_data);
    num("request_problem_information", p.request_problem_information);
    num("will_delay_interval", p.will_delay_interval);
    num("request_response_information", p.request_response_information);
    str("response_information", p.response_information);
    str("server_reference", p.server_reference);
    str("reason_string", p.reason_string);
    num("receive_maximum", p.receive_maximum);
    num("topic_alias_maximum", p.topic_alias_maximum);
    num("topic_alias", p.topic_alias);
    num("maximum_qos", p.maximum_qos);
    num("retain_available", p.retain_available);
    if (!p.user_properties.empty()) {
        json pairs = json::array();
        for (const auto& [k, v] : p.user_properties) pairs.push_back(json::array({k, v}));
        j["user_property"] = std::move(pairs);
    }
    num("maximum_packet_size", p.maximum_packet_size);
    num("wildcard_subscription_available", p.wildcard_subscription_available);
    num("subscription_identifier_available", p.subscription_identifier_available);
    num("shared_subscription_available", p.shared_subscription_available);
    return j;
}

namespace detail {

using nlohmann::json;

inline json optional_string(const std::optional<std::string>& s) {
    return s ? json(*s) : json(nullptr);
}

inline json reason_names(const std::vector<protocol::reason_code>& codes) {
    json a = json::array();
    for (auto c : codes) a.push_back(std::string(protocol::to_string(c)));
    return a;
}

inline void fill(json& j, const protocol::connect_packet& p) {
    j["protocol_version"] = std::string(protocol::to_string(p.version));
    j["clean_start"] = p.clean_start;
    j["keep_alive"] = p.keep_alive;
    j["bridge"] = p.bridge;
    j["client_id"] = p.client_id;
    j["username"] = optional_string(p.username);
    j["password_hex"] = p.password ? json(to_hex(*p.password)) : json(nullptr);
    if (p.will) {
        j["will"] = {{"topic", p.will->topic},
                     {"payload_hex", to_hex(p.will->payload)},
                     {"qos", static_cast<int>(p.will->qos_level)},
                     {"retain", p.will->retain},
                     {"properties", to_json(p.will->props)}};
    } else {
        j["will"] = nullptr;
    }
    j["properties"] = to_json(p.props);
}

inline void fill(json& j, const protocol::connack_packet& p) {
    j["session_present"] = p.session_present;
    j["reason_code"] = std::string(protocol::to_string(p.code));
    j["properties"] = to_json(p.props);
}

inline void fill(json& j, const protocol::publish_packet& p) {
    j["topic"] = p.topic;
    j["qos"] = static_cast<int>(p.qos_level);
    j["retain"] = p.retain;
    j["dup"] = p.dup;
    j["packet_id"] = p.packet_id;
    j["payload_hex"] = to_hex(p.payload);
    j["properties"] = to_json(p.props);
}

template <class Ack>
requires requires(const Ack& a) {
    a.code;
    a.packet_id;
}
inline void fill(json& j, const Ack& p) {
    j["packet_id"] = p.packet_id;
    j["reason_code"] = std::string(protocol::to_string(p.code));
    j["properties"] = to_json(p.props);
}

inline void fill(json& j, const protocol::subscribe_packet& p) {
    j["packet_id"] = p.packet_id;
    json subs = json::array();
    for (const auto& s : p.subscriptions) {
        subs.push_back({{"filter", s.filter},
                        {"qos", static_cast<int>(s.options.max_qos)},
                        {"no_local", s.options.no_local},
                        {"retain_as_published", s.options.retain_as_published},
                        {"retain_handling", static_cast<int>(s.options.retain)}});
    }
    j["subscriptions"] = std::move(subs);
    j["properties"] = to_json(p.props);
}

inline void fill(json& j, const protocol::suback_packet& p) {
    j["packet_id"] = p.packet_id;
    j["reason_codes"] = reason_names(p.codes);
    j["properties"] = to_json(p.props);
}

inline void fill(json& j, const protocol::unsubscribe_packet& p) {
    j["packet_id"] = p.packet_id;
    j["filters"] = p.filters;
    j["properties"] = to_json(p.props);
}

inline void fill(json& j, const protocol::unsuback_packet& p) {
    j["packet_id"] = p.packet_id;
    j["reason_codes"] = reason_names(p.codes);
    j["properties"] = to_json(p.props);
}

inline void fill(json&, const protocol::pingreq_packet&) {}
inline void fill(json&, const protocol::pingresp_packet&) {}

template <class P>
requires std::is_same_v<P, protocol::disconnect_packet> || std::is_same_v<P, protocol::auth_packet>
inline void fill(json& j, const P& p) {
    j["reason_code"] = std::string(protocol::to_string(p.code));
    j["properties"] = to_json(p.props);
}

}  // namespace detail

inline nlohmann::json to_json(const protocol::packet& pk) {
    nlohmann::json j = nlohmann::json::object();
    j["type"] = packet_type_name(protocol::type_of(pk));
    std::visit([&](const auto& p) { detail::fill(j, p); }, pk);
    return j;
}

}  // namespace mqtt::test
