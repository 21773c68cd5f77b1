#include "mqtt/format/properties_in.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <initializer_list>

#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::format {
namespace {

using protocol::property_id;
using target = property_target;

constexpr std::array<std::string_view, 6> target_names{"connect",     "publish",    "subscribe",
                                                       "unsubscribe", "disconnect", "will"};

// What a client may send in each packet (§3.1.2.11, §3.1.3.2, §3.3.2.3, §3.8.2.1, §3.10.2.1,
// §3.14.2.2). Not the specification's table: Subscription Identifier and Topic Alias rules
// for the client side differ from what a broker may send.
bool allowed(target t, property_id id) noexcept {
    const auto in = [id](std::initializer_list<property_id> ids) {
        for (auto i : ids)
            if (i == id) return true;
        return false;
    };
    if (id == property_id::user_property) return true;
    switch (t) {
        case target::connect:
            return in({property_id::session_expiry_interval, property_id::receive_maximum,
                       property_id::maximum_packet_size, property_id::topic_alias_maximum,
                       property_id::request_response_information,
                       property_id::request_problem_information, property_id::authentication_method,
                       property_id::authentication_data});
        case target::publish:
            return in({property_id::payload_format_indicator, property_id::message_expiry_interval,
                       property_id::topic_alias, property_id::response_topic,
                       property_id::correlation_data, property_id::content_type});
        case target::will:
            return in({property_id::will_delay_interval, property_id::payload_format_indicator,
                       property_id::message_expiry_interval, property_id::content_type,
                       property_id::response_topic, property_id::correlation_data});
        case target::subscribe:
            return id == property_id::subscription_identifier;
        case target::unsubscribe:
            return false;
        case target::disconnect:
            return in({property_id::session_expiry_interval, property_id::reason_string});
    }
    return false;
}

std::optional<std::uint64_t> parse_uint(std::string_view s) noexcept {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return v;
}

property_error bad(std::string_view name, std::string_view why) {
    return {std::string(name) + ": " + std::string(why), false};
}

// Integer properties: the range each one allows (§3.1.2.11 etc.; 0 is a Protocol Error
// for Receive Maximum, Maximum Packet Size, Topic Alias and Subscription Identifier).
std::optional<property_error> set_integer(protocol::properties& p,
                                          const protocol::property_info& info,
                                          std::string_view name, std::string_view value) {
    const auto v = parse_uint(value);
    std::uint64_t lo = 0, hi = 0xFFFFFFFF;
    switch (info.type) {
        case protocol::property_type::byte:
            hi = 1;  // every byte property a client sends is a 0/1 switch
            break;
        case protocol::property_type::two_byte_int:
            hi = 0xFFFF;
            break;
        case protocol::property_type::variable_int:
            hi = 268'435'455;
            break;
        default:
            break;
    }
    switch (info.id) {
        case property_id::receive_maximum:
        case property_id::maximum_packet_size:
        case property_id::topic_alias:
        case property_id::subscription_identifier:
            lo = 1;
            break;
        default:
            break;
    }
    if (!v || *v < lo || *v > hi)
        return bad(name, "not an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                             ": '" + std::string(value) + "'");
    const auto n = static_cast<std::uint32_t>(*v);
    const auto set = [&](auto& field) -> std::optional<property_error> {
        if (field) return bad(name, "given twice");
        field = static_cast<typename std::decay_t<decltype(field)>::value_type>(n);
        return std::nullopt;
    };
    switch (info.id) {
        case property_id::payload_format_indicator:
            return set(p.payload_format_indicator);
        case property_id::message_expiry_interval:
            return set(p.message_expiry_interval);
        case property_id::session_expiry_interval:
            return set(p.session_expiry_interval);
        case property_id::will_delay_interval:
            return set(p.will_delay_interval);
        case property_id::maximum_packet_size:
            return set(p.maximum_packet_size);
        case property_id::receive_maximum:
            return set(p.receive_maximum);
        case property_id::topic_alias_maximum:
            return set(p.topic_alias_maximum);
        case property_id::topic_alias:
            return set(p.topic_alias);
        case property_id::request_problem_information:
            return set(p.request_problem_information);
        case property_id::request_response_information:
            return set(p.request_response_information);
        case property_id::subscription_identifier:
            if (!p.subscription_identifiers.empty()) return bad(name, "given twice");
            p.subscription_identifiers.push_back(n);
            return std::nullopt;
        default:
            return bad(name, "not an integer property");
    }
}

std::optional<property_error> set_text(protocol::properties& p, const protocol::property_info& info,
                                       std::string_view name, std::string_view value) {
    const bool binary = info.type == protocol::property_type::binary_data;
    if (value.size() > 65535) return bad(name, "longer than 65535 bytes");
    if (!binary && protocol::validate_utf8(value)) return bad(name, "not valid UTF-8");
    if (info.id == property_id::response_topic && !protocol::is_valid_topic_name(value))
        return bad(name, "not a valid topic name: '" + std::string(value) + "'");
    std::optional<std::string>* field = nullptr;
    switch (info.id) {
        case property_id::content_type:
            field = &p.content_type;
            break;
        case property_id::response_topic:
            field = &p.response_topic;
            break;
        case property_id::correlation_data:
            field = &p.correlation_data;
            break;
        case property_id::reason_string:
            field = &p.reason_string;
            break;
        case property_id::authentication_method:
            field = &p.authentication_method;
            break;
        case property_id::authentication_data:
            field = &p.authentication_data;
            break;
        default:
            return bad(name, "not a text property");
    }
    if (*field) return bad(name, "given twice");
    *field = std::string(value);
    return std::nullopt;
}

}  // namespace

std::optional<property_target> parse_property_target(std::string_view word) noexcept {
    for (std::size_t i = 0; i < target_names.size(); ++i)
        if (target_names[i] == word) return static_cast<property_target>(i);
    return std::nullopt;
}

std::string_view to_string(property_target t) noexcept {
    return target_names[static_cast<std::size_t>(t)];
}

std::optional<property_error> set_property(protocol::properties& props, property_target t,
                                           std::string_view name, std::string_view value,
                                           std::optional<std::string_view> value2) {
    std::string snake(name);
    for (auto& c : snake)
        if (c == '-') c = '_';
    const auto* info = protocol::find_property(std::string_view(snake));
    if (!info) return property_error{"unknown property '" + std::string(name) + "'", false};
    if (!allowed(t, info->id))
        return property_error{
            std::string(name) + " is not a property a client may send in " +
                (t == target::will ? std::string("the will")
                                   : "a " + std::string(to_string(t)) + " packet"),
            false};
    if (info->id == property_id::authentication_method ||
        info->id == property_id::authentication_data)
        return property_error{"-D connect " + std::string(name) + " (enhanced authentication)",
                              true};
    if (info->id == property_id::user_property) {
        if (!value2) return bad(name, "needs a key and a value");
        if (protocol::validate_utf8(value) || protocol::validate_utf8(*value2))
            return bad(name, "not valid UTF-8");
        if (value.size() > 65535 || value2->size() > 65535)
            return bad(name, "longer than 65535 bytes");
        props.user_properties.emplace_back(std::string(value), std::string(*value2));
        return std::nullopt;
    }
    if (value2) return bad(name, "takes one value");
    switch (info->type) {
        case protocol::property_type::utf8_string:
        case protocol::property_type::binary_data:
            return set_text(props, *info, name, value);
        default:
            return set_integer(props, *info, name, value);
    }
}

protocol::properties& property_set::of(property_target t) noexcept {
    switch (t) {
        case target::connect:
            return connect;
        case target::publish:
            return publish;
        case target::subscribe:
            return subscribe;
        case target::unsubscribe:
            return unsubscribe;
        case target::disconnect:
            return disconnect;
        case target::will:
            break;
    }
    return will;
}

bool property_set::empty() const noexcept {
    return connect.empty() && publish.empty() && subscribe.empty() && unsubscribe.empty() &&
           disconnect.empty() && will.empty();
}

std::optional<property_error> add_property_arg(property_set& set,
                                               const std::vector<std::string>& words) {
    if (words.size() < 3 || words.size() > 4)
        return property_error{"-D takes PACKET PROPERTY VALUE (two values for user-property)",
                              false};
    const auto t = parse_property_target(words[0]);
    if (!t)
        return property_error{
            "unknown packet '" + words[0] +
                "' (connect, publish, subscribe, unsubscribe, disconnect or will)",
            false};
    std::optional<std::string_view> second;
    if (words.size() == 4) second = words[3];
    return set_property(set.of(*t), *t, words[1], words[2], second);
}

}  // namespace mqtt::format
