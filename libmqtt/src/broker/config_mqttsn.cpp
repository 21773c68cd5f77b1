// The MQTT-SN options of the configuration file (docs/mqtt-sn.md).

#include <charconv>
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
    const auto [it, added] = st.cfg.mqttsn_predefined.emplace(static_cast<std::uint16_t>(id), topic);
    if (!added) {
        return st.fail("mqttsn_predefined_topic: topic id " + std::to_string(id) +
                       " is defined twice");
    }
    return true;
}

}  // namespace mqtt::broker::detail
