#include "mqtt/protocol/property.hpp"

#include <array>
#include <type_traits>

#include "mqtt/protocol/codec.hpp"
#include "properties_codec.hpp"

namespace mqtt::protocol {
namespace {

using ctx = property_context;
using enum property_type;

constexpr std::uint32_t bits(std::initializer_list<ctx> cs) {
    std::uint32_t b = 0;
    for (auto c : cs) b |= 1u << static_cast<unsigned>(c);
    return b;
}

constexpr std::uint32_t pub_will = bits({ctx::publish, ctx::will});
constexpr std::uint32_t all_with_user_props =
    bits({ctx::connect, ctx::connack, ctx::publish, ctx::will, ctx::puback, ctx::pubrec,
          ctx::pubrel, ctx::pubcomp, ctx::subscribe, ctx::suback, ctx::unsubscribe,
          ctx::unsuback, ctx::disconnect, ctx::auth});

// §2.2.2.2, in identifier order.
constexpr std::array<property_info, 27> table{{
    {property_id::payload_format_indicator, byte, "payload_format_indicator", pub_will, false},
    {property_id::message_expiry_interval, four_byte_int, "message_expiry_interval", pub_will,
     false},
    {property_id::content_type, utf8_string, "content_type", pub_will, false},
    {property_id::response_topic, utf8_string, "response_topic", pub_will, false},
    {property_id::correlation_data, binary_data, "correlation_data", pub_will, false},
    {property_id::subscription_identifier, variable_int, "subscription_identifier",
     bits({ctx::publish, ctx::subscribe}), true},
    {property_id::session_expiry_interval, four_byte_int, "session_expiry_interval",
     bits({ctx::connect, ctx::connack, ctx::disconnect}), false},
    {property_id::assigned_client_identifier, utf8_string, "assigned_client_identifier",
     bits({ctx::connack}), false},
    {property_id::server_keep_alive, two_byte_int, "server_keep_alive", bits({ctx::connack}),
     false},
    {property_id::authentication_method, utf8_string, "authentication_method",
     bits({ctx::connect, ctx::connack, ctx::auth}), false},
    {property_id::authentication_data, binary_data, "authentication_data",
     bits({ctx::connect, ctx::connack, ctx::auth}), false},
    {property_id::request_problem_information, byte, "request_problem_information",
     bits({ctx::connect}), false},
    {property_id::will_delay_interval, four_byte_int, "will_delay_interval", bits({ctx::will}),
     false},
    {property_id::request_response_information, byte, "request_response_information",
     bits({ctx::connect}), false},
    {property_id::response_information, utf8_string, "response_information",
     bits({ctx::connack}), false},
    {property_id::server_reference, utf8_string, "server_reference",
     bits({ctx::connack, ctx::disconnect}), false},
    {property_id::reason_string, utf8_string, "reason_string",
     bits({ctx::connack, ctx::puback, ctx::pubrec, ctx::pubrel, ctx::pubcomp, ctx::suback,
           ctx::unsuback, ctx::disconnect, ctx::auth}),
     false},
    {property_id::receive_maximum, two_byte_int, "receive_maximum",
     bits({ctx::connect, ctx::connack}), false},
    {property_id::topic_alias_maximum, two_byte_int, "topic_alias_maximum",
     bits({ctx::connect, ctx::connack}), false},
    {property_id::topic_alias, two_byte_int, "topic_alias", bits({ctx::publish}), false},
    {property_id::maximum_qos, byte, "maximum_qos", bits({ctx::connack}), false},
    {property_id::retain_available, byte, "retain_available", bits({ctx::connack}), false},
    {property_id::user_property, utf8_string_pair, "user_property", all_with_user_props, true},
    {property_id::maximum_packet_size, four_byte_int, "maximum_packet_size",
     bits({ctx::connect, ctx::connack}), false},
    {property_id::wildcard_subscription_available, byte, "wildcard_subscription_available",
     bits({ctx::connack}), false},
    {property_id::subscription_identifier_available, byte, "subscription_identifier_available",
     bits({ctx::connack}), false},
    {property_id::shared_subscription_available, byte, "shared_subscription_available",
     bits({ctx::connack}), false},
}};

constexpr std::array<std::int8_t, 0x2B> index_by_id = [] {
    std::array<std::int8_t, 0x2B> ix{};
    ix.fill(-1);
    for (std::size_t i = 0; i < table.size(); ++i)
        ix[static_cast<std::size_t>(table[i].id)] = static_cast<std::int8_t>(i);
    return ix;
}();

// Calls f(id, field) for every field of a properties struct, in identifier order.
template <class Props, class F>
void for_each_field(Props& p, F&& f) {
    f(property_id::payload_format_indicator, p.payload_format_indicator);
    f(property_id::message_expiry_interval, p.message_expiry_interval);
    f(property_id::content_type, p.content_type);
    f(property_id::response_topic, p.response_topic);
    f(property_id::correlation_data, p.correlation_data);
    f(property_id::subscription_identifier, p.subscription_identifiers);
    f(property_id::session_expiry_interval, p.session_expiry_interval);
    f(property_id::assigned_client_identifier, p.assigned_client_identifier);
    f(property_id::server_keep_alive, p.server_keep_alive);
    f(property_id::authentication_method, p.authentication_method);
    f(property_id::authentication_data, p.authentication_data);
    f(property_id::request_problem_information, p.request_problem_information);
    f(property_id::will_delay_interval, p.will_delay_interval);
    f(property_id::request_response_information, p.request_response_information);
    f(property_id::response_information, p.response_information);
    f(property_id::server_reference, p.server_reference);
    f(property_id::reason_string, p.reason_string);
    f(property_id::receive_maximum, p.receive_maximum);
    f(property_id::topic_alias_maximum, p.topic_alias_maximum);
    f(property_id::topic_alias, p.topic_alias);
    f(property_id::maximum_qos, p.maximum_qos);
    f(property_id::retain_available, p.retain_available);
    f(property_id::user_property, p.user_properties);
    f(property_id::maximum_packet_size, p.maximum_packet_size);
    f(property_id::wildcard_subscription_available, p.wildcard_subscription_available);
    f(property_id::subscription_identifier_available, p.subscription_identifier_available);
    f(property_id::shared_subscription_available, p.shared_subscription_available);
}

// Values the specification forbids (each a Protocol Error, §3.1.2.11, §3.2.2.3, §3.3.2.3).
std::error_code check_value(property_id id, std::uint32_t v) noexcept {
    switch (id) {
        case property_id::payload_format_indicator:
        case property_id::request_problem_information:
        case property_id::request_response_information:
        case property_id::maximum_qos:
        case property_id::retain_available:
        case property_id::wildcard_subscription_available:
        case property_id::subscription_identifier_available:
        case property_id::shared_subscription_available:
            return v > 1 ? errc::invalid_property_value : errc{};
        case property_id::receive_maximum:
        case property_id::maximum_packet_size:
            return v == 0 ? errc::invalid_property_value : errc{};
        case property_id::subscription_identifier:
            return v == 0 || v > max_variable_int ? errc::invalid_property_value : errc{};
        case property_id::topic_alias:
            return v == 0 ? errc::topic_alias_zero : errc{};
        default:
            return {};
    }
}

std::error_code check_string_value(property_id id, std::string_view s) noexcept {
    // A Response Topic is a Topic Name: no wildcards (MQTT-3.3.2-14).
    if (id == property_id::response_topic &&
        (s.empty() || detail::has_wildcard(s)))
        return errc::invalid_property_value;
    return {};
}

template <class T>
bool read_number(detail::reader& r, property_type type, T& out) {
    std::uint32_t v = 0;
    switch (type) {
        case byte: {
            std::uint8_t b;
            if (!r.u8(b)) return false;
            v = b;
            break;
        }
        case two_byte_int: {
            std::uint16_t s;
            if (!r.u16(s)) return false;
            v = s;
            break;
        }
        case four_byte_int:
            if (!r.u32(v)) return false;
            break;
        case variable_int:
            if (!r.varint(v)) return false;
            break;
        default:
            return r.fail(errc::unknown_property);
    }
    out = static_cast<T>(v);
    return true;
}

// Reads one property's value into its field.
struct field_reader {
    detail::reader& r;
    const property_info& info;
    bool ok = true;

    template <class T>
    bool set_number(std::optional<T>& field) {
        if (field) return r.fail(errc::duplicate_property);
        T v{};
        if (!read_number(r, info.type, v)) return false;
        if (auto e = check_value(info.id, v)) return r.fail(static_cast<errc>(e.value()));
        field = v;
        return true;
    }
    bool set(std::optional<std::uint8_t>& f) { return set_number(f); }
    bool set(std::optional<std::uint16_t>& f) { return set_number(f); }
    bool set(std::optional<std::uint32_t>& f) { return set_number(f); }
    bool set(std::optional<std::string>& field) {
        if (field) return r.fail(errc::duplicate_property);
        std::string s;
        if (!(info.type == binary_data ? r.binary(s) : r.utf8(s))) return false;
        if (auto e = check_string_value(info.id, s)) return r.fail(static_cast<errc>(e.value()));
        field = std::move(s);
        return true;
    }
    bool set(std::vector<std::uint32_t>& ids) {
        std::uint32_t v = 0;
        if (!read_number(r, info.type, v)) return false;
        if (auto e = check_value(info.id, v)) return r.fail(static_cast<errc>(e.value()));
        ids.push_back(v);
        return true;
    }
    bool set(std::vector<user_property>& props) {
        user_property p;
        if (!r.utf8(p.first) || !r.utf8(p.second)) return false;
        props.push_back(std::move(p));
        return true;
    }
};

std::size_t value_size(const property_info& info, std::uint32_t v) {
    switch (info.type) {
        case byte: return 1;
        case two_byte_int: return 2;
        case four_byte_int: return 4;
        default: return variable_int_size(v);
    }
}

}  // namespace

const property_info* find_property(std::uint8_t id) noexcept {
    if (id >= index_by_id.size() || index_by_id[id] < 0) return nullptr;
    return &table[static_cast<std::size_t>(index_by_id[id])];
}

const property_info* find_property(std::string_view name) noexcept {
    for (const auto& info : table)
        if (info.name == name) return &info;
    return nullptr;
}

bool is_allowed_in(property_id id, property_context c) noexcept {
    const auto* info = find_property(static_cast<std::uint8_t>(id));
    return info && (info->contexts & (1u << static_cast<unsigned>(c))) != 0;
}

bool properties::empty() const noexcept {
    bool any = false;
    for_each_field(*this, [&](property_id, const auto& f) {
        using F = std::remove_cvref_t<decltype(f)>;
        if constexpr (requires { f.has_value(); })
            any = any || f.has_value();
        else
            any = any || !f.empty();
        (void)sizeof(F);
    });
    return !any;
}

void properties::clear() noexcept {
    for_each_field(*this, [](property_id, auto& f) {
        if constexpr (requires { f.reset(); })
            f.reset();
        else
            f.clear();
    });
}

namespace detail {

bool read_properties(reader& r, property_context c, properties& out) {
    std::uint32_t length;
    reader block{{}};
    if (!r.varint(length) || !r.take(length, block)) return false;
    while (!block.at_end()) {
        std::uint32_t id;
        if (!block.varint(id)) break;
        const auto* info = id <= 0xFF ? find_property(static_cast<std::uint8_t>(id)) : nullptr;
        if (!info) {
            block.fail(errc::unknown_property);
            break;
        }
        if ((info->contexts & (1u << static_cast<unsigned>(c))) == 0) {
            block.fail(errc::property_not_allowed);
            break;
        }
        // Subscription Identifier may repeat only in PUBLISH (§3.3.2.3.8, §3.8.2.1.2).
        if (info->id == property_id::subscription_identifier && c != property_context::publish &&
            !out.subscription_identifiers.empty()) {
            block.fail(errc::duplicate_property);
            break;
        }
        field_reader fr{block, *info};
        bool done = false;
        for_each_field(out, [&](property_id fid, auto& field) {
            if (fid == info->id && !done) {
                done = true;
                fr.set(field);
            }
        });
        if (!block.ok()) break;
    }
    if (!block.ok()) return r.fail(static_cast<errc>(block.error().value()));
    return true;
}

result<std::uint32_t> properties_length(const properties& p, property_context c) {
    std::size_t total = 0;
    std::error_code ec;
    const auto mask = 1u << static_cast<unsigned>(c);
    for_each_field(p, [&](property_id id, const auto& field) {
        using F = std::remove_cvref_t<decltype(field)>;
        const auto& info = *find_property(static_cast<std::uint8_t>(id));
        auto allowed = [&] {
            if ((info.contexts & mask) == 0 && !ec) ec = errc::property_not_allowed;
        };
        if constexpr (std::is_same_v<F, std::optional<std::string>>) {
            if (!field) return;
            allowed();
            if (field->size() > 0xFFFF && !ec) ec = errc::invalid_property_value;
            total += 1 + 2 + field->size();
        } else if constexpr (std::is_same_v<F, std::vector<std::uint32_t>>) {
            if (field.empty()) return;
            allowed();
            if (field.size() > 1 && c != property_context::publish && !ec)
                ec = errc::duplicate_property;
            for (auto v : field) {
                if (auto e = check_value(id, v); e && !ec) ec = e;
                total += 1 + value_size(info, v);
            }
        } else if constexpr (std::is_same_v<F, std::vector<user_property>>) {
            if (field.empty()) return;
            allowed();
            for (const auto& [k, v] : field) {
                if ((k.size() > 0xFFFF || v.size() > 0xFFFF) && !ec)
                    ec = errc::invalid_property_value;
                total += 1 + 4 + k.size() + v.size();
            }
        } else {
            if (!field) return;
            allowed();
            if (auto e = check_value(id, *field); e && !ec) ec = e;
            total += 1 + value_size(info, *field);
        }
    });
    if (ec) return ec;
    if (total > max_variable_int) return errc::packet_too_large;
    return static_cast<std::uint32_t>(total);
}

void write_properties(writer& w, const properties& p, std::uint32_t length) {
    w.varint(length);
    if (length == 0) return;
    for_each_field(p, [&](property_id id, const auto& field) {
        using F = std::remove_cvref_t<decltype(field)>;
        const auto& info = *find_property(static_cast<std::uint8_t>(id));
        const auto tag = static_cast<std::uint8_t>(id);
        auto number = [&](std::uint32_t v) {
            w.u8(tag);
            switch (info.type) {
                case byte: w.u8(static_cast<std::uint8_t>(v)); break;
                case two_byte_int: w.u16(static_cast<std::uint16_t>(v)); break;
                case four_byte_int: w.u32(v); break;
                default: w.varint(v); break;
            }
        };
        if constexpr (std::is_same_v<F, std::optional<std::string>>) {
            if (!field) return;
            w.u8(tag);
            w.string(*field);
        } else if constexpr (std::is_same_v<F, std::vector<std::uint32_t>>) {
            for (auto v : field) number(v);
        } else if constexpr (std::is_same_v<F, std::vector<user_property>>) {
            for (const auto& [k, v] : field) {
                w.u8(tag);
                w.string(k);
                w.string(v);
            }
        } else {
            if (field) number(*field);
        }
    });
}

}  // namespace detail
}  // namespace mqtt::protocol
