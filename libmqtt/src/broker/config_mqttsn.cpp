// The MQTT-SN options of the configuration file (docs/mqtt-sn.md).

#include <charconv>
#include <optional>
#include <string>

#include "config_parser.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::broker::detail {

bool on_protocol_mqttsn(parse_state& st) {
    if (st.listeners.empty())
        return st.fail("protocol mqttsn: only in a listener block (after a listener line)");
    auto& l = st.listeners.back();
    for (const auto& other : st.listeners) {
        if (&other != &l && other.mqttsn && other.port == l.port && other.bind == l.bind) {
            return st.fail("an MQTT-SN listener on port " + std::to_string(l.port) +
                           (l.bind.empty() ? "" : " " + l.bind) + " is already defined at " +
                           other.origin.to_string());
        }
    }
    l.mqttsn = true;
    return true;
}

bool on_mqttsn_predefined_topic(parse_state& st, const option_args& a) {
    const std::string_view id_text = a.words[0];
    unsigned id = 0;
    const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (ec != std::errc{} || end != id_text.data() + id_text.size() || id == 0 || id > 65535) {
        return st.fail("mqttsn_predefined_topic: the topic id must be 1 to 65535, not \"" +
                       std::string{id_text} + "\"");
    }
    const std::string topic{a.words[1]};
    if (protocol::validate_utf8(topic) || !protocol::is_valid_topic_filter(topic)) {
        return st.fail("mqttsn_predefined_topic: \"" + topic + "\" is not a valid topic");
    }
    const auto [it, added] =
        st.cfg.mqttsn_predefined.emplace(static_cast<std::uint16_t>(id), topic);
    if (!added) {
        return st.fail("mqttsn_predefined_topic: topic id " + std::to_string(id) +
                       " is defined twice");
    }
    return true;
}

// mqttsn_advertise SECONDS ADDRESS PORT: ADVERTISE every SECONDS to ADDRESS:PORT (an IP
// address, checked when the listener starts; a broadcast address is allowed).
bool on_mqttsn_advertise(parse_state& st, const option_args& a) {
    const auto every = parse_number(st, "mqttsn_advertise SECONDS", a.words[0], 1, 65535);
    if (!every) return false;
    const auto port = parse_number(st, "mqttsn_advertise PORT", a.words[2], 1, 65535);
    if (!port) return false;
    st.cfg.mqttsn.advertise_interval = std::chrono::seconds{*every};
    st.cfg.mqttsn.advertise_host = std::string{a.words[1]};
    st.cfg.mqttsn.advertise_port = static_cast<std::uint16_t>(*port);
    return true;
}

bool on_mqttsn_gateway_id(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "mqttsn_gateway_id", a.words[0], 0, 255);
    if (v) st.cfg.mqttsn.gateway_id = static_cast<std::uint8_t>(*v);
    return v.has_value();
}

bool on_mqttsn_max_buffered_messages(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "mqttsn_max_buffered_messages", a.words[0], 0, 1'000'000);
    if (v) st.cfg.mqttsn.max_buffered_messages = *v;
    return v.has_value();
}

bool on_mqttsn_max_inflight(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "mqttsn_max_inflight", a.words[0], 1, 65535);
    if (v) st.cfg.mqttsn.max_inflight = static_cast<std::uint16_t>(*v);
    return v.has_value();
}

bool on_mqttsn_receive_buffer(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "mqttsn_receive_buffer", a.words[0], 0, 1u << 30);
    if (v) st.cfg.mqttsn.receive_buffer = *v;
    return v.has_value();
}

bool on_mqttsn_retry_count(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "mqttsn_retry_count", a.words[0], 0, 100);
    if (v) st.cfg.mqttsn.retry_count = static_cast<unsigned>(*v);
    return v.has_value();
}

bool on_mqttsn_retry_interval(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "mqttsn_retry_interval", a.words[0], 1, 3600);
    if (v) st.cfg.mqttsn.retry_interval = std::chrono::seconds{*v};
    return v.has_value();
}

}  // namespace mqtt::broker::detail
