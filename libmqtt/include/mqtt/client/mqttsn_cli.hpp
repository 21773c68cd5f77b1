#pragma once

// The MQTT-SN flags of tern-pub and tern-sub and their checks (an mqttsn:// URL), header-only
// like cli_config.hpp so that mqtt_client does not depend on CLI11.

#include <CLI/CLI.hpp>
#include <charconv>
#include <string>
#include <vector>

#include "mqtt/cli/options.hpp"
#include "mqtt/client/mqttsn_tools.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::client {

struct mqttsn_flags {
    std::vector<std::string> predefined;  // --sn-predefined ID:TOPIC
    bool qos_minus_one = false;           // tern-pub --qos-minus-one
};

inline void add_mqttsn_options(CLI::App& app, mqttsn_flags& f, bool publisher) {
    const char* group = "MQTT-SN (with an mqttsn:// URL)";
    app.add_option("--sn-predefined", f.predefined,
                   "A topic id the gateway has predefined, as ID:TOPIC (ID 1-65535): TOPIC "
                   "goes by that id without REGISTER, and messages arriving by it are named "
                   "TOPIC; repeat for more")
        ->type_name("ID:TOPIC")
        ->allow_extra_args(false)
        ->group(group);
    if (publisher) {
        app.add_flag("--qos-minus-one", f.qos_minus_one,
                     "QoS -1: send PUBLISH datagrams without connecting; the topic must be "
                     "predefined (--sn-predefined) or two characters (a short topic name)")
            ->group(group);
    }
}

// The request for run_mqttsn_pub / run_mqttsn_sub, or CLI::ValidationError (exit 2) for what
// MQTT-SN cannot carry. `topics` are the topics (tern-pub) or filters (tern-sub) to use.
inline mqttsn_request to_mqttsn_request(const mqttsn_flags& f, const cli::client_options& o,
                                        const std::vector<std::string>& topics) {
    const auto& c = o.connection;
    if (c.tls) throw CLI::ValidationError("--url", "mqttsn:// has no TLS");
    if (!c.username.empty() || !c.password.empty())
        throw CLI::ValidationError("--username", "MQTT-SN 1.2 has no user name or password");
    mqttsn_request r;
    for (const auto& p : f.predefined) {
        const auto colon = p.find(':');
        unsigned id = 0;
        const auto* end = p.data() + (colon == std::string::npos ? p.size() : colon);
        const auto [ptr, ec] = std::from_chars(p.data(), end, id);
        const std::string topic = colon == std::string::npos ? "" : p.substr(colon + 1);
        if (colon == std::string::npos || ec != std::errc{} || ptr != end || id == 0 ||
            id > 65535 || protocol::validate_utf8(topic) || !protocol::is_valid_topic_filter(topic))
            throw CLI::ValidationError("--sn-predefined", "expected ID:TOPIC, not " + p);
        r.predefined[static_cast<std::uint16_t>(id)] = topic;
    }
    r.qos_minus_one = f.qos_minus_one;
    if (f.qos_minus_one) {
        for (const auto& t : topics) {
            bool predefined = false;
            for (const auto& [id, name] : r.predefined) predefined = predefined || name == t;
            if (!predefined && t.size() != 2)
                throw CLI::ValidationError("--qos-minus-one",
                                           "needs a predefined topic (--sn-predefined) or a "
                                           "two-character one, not " +
                                               t);
        }
    }
    return r;
}

// Flags of the MQTT-SN options without an mqttsn:// URL: a usage error.
inline void require_mqttsn_url(const mqttsn_flags& f) {
    if (!f.predefined.empty())
        throw CLI::ValidationError("--sn-predefined", "needs an mqttsn:// URL (-L)");
    if (f.qos_minus_one)
        throw CLI::ValidationError("--qos-minus-one", "needs an mqttsn:// URL (-L)");
}

}  // namespace mqtt::client
