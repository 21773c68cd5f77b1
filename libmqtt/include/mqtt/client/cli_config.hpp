#pragma once

// From the shared command-line options (mqtt::cli) to a client connection_config, for the
// front ends that link mqtt_cli. Header-only so mqtt_client does not depend on CLI11.

#include <unistd.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "mqtt/cli/options.hpp"
#include "mqtt/client/connection.hpp"
#include "mqtt/format/properties_in.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::client {

// The client id: -i as given; else -I plus the process id; else, where an empty id is not
// allowed (MQTT 3.1), `fallback_prefix` plus the process id; else empty, which a 3.1.1 or
// 5.0 broker answers with an id of its own.
inline std::string client_id_for(const cli::connection_options& c,
                                 const std::string& fallback_prefix) {
    if (!c.client_id.empty()) return c.client_id;
    const auto pid = std::to_string(::getpid());
    if (!c.id_prefix.empty()) return c.id_prefix + pid;
    if (c.version == protocol::protocol_version::v3_1) return fallback_prefix + pid;
    return {};
}

// --cafile --capath --cert --key --insecure --tls-version; without --cafile and --capath
// the system trust store.
inline net::tls_client_settings to_tls_settings(const cli::tls_options& t) {
    net::tls_client_settings s;
    s.cafile = t.cafile;
    s.capath = t.capath;
    s.certfile = t.cert;
    s.keyfile = t.key;
    s.insecure = t.insecure;
    s.min_version = net::parse_tls_version(t.tls_version).value_or(net::tls_version::tls1_2);
    return s;
}

inline connection_config to_connection_config(const cli::client_options& o,
                                              const std::string& fallback_prefix) {
    const auto& c = o.connection;
    connection_config cfg;
    cfg.host = c.host;
    cfg.port = cli::effective_port(c);
    auto& p = cfg.session.connect;
    p.version = c.version;
    p.clean_start = c.clean_session;
    p.keep_alive = c.keepalive;
    p.client_id = client_id_for(c, fallback_prefix);
    if (!c.username.empty()) p.username = c.username;
    if (!c.password.empty()) p.password = c.password;
    if (protocol::is_v5(c.version) && c.session_expiry > 0)
        p.props.session_expiry_interval = c.session_expiry;
    if (c.tls) cfg.tls = to_tls_settings(o.tls);
    if (c.websocket) cfg.websocket_path = c.websocket_path;
    return cfg;
}

// Why -D or the will options cannot be used as given: a usage error, or (not_implemented) a
// valid request this build cannot carry out.
struct option_error {
    std::string option;
    std::string message;
    bool not_implemented = false;
};

// Reads every -D into `out`, accepting only the packets in `packets` (those the tool sends);
// -D needs MQTT 5.0.
inline std::optional<option_error> parse_property_args(
    const std::vector<std::vector<std::string>>& args,
    std::initializer_list<format::property_target> packets, protocol::protocol_version version,
    format::property_set& out) {
    if (args.empty()) return std::nullopt;
    if (!protocol::is_v5(version))
        return option_error{"--property", "properties need MQTT 5.0 (-V 5)"};
    for (const auto& words : args) {
        if (!words.empty()) {
            auto t = format::parse_property_target(words[0]);
            bool ok = false;
            for (auto p : packets) ok = ok || (t && *t == p);
            if (t && !ok)
                return option_error{"--property",
                                    "this tool sends no " + words[0] + " packet to put it in"};
        }
        if (auto err = format::add_property_arg(out, words))
            return option_error{"--property", err->message, err->not_implemented};
    }
    return std::nullopt;
}

// The will options and the -D connect/will properties into CONNECT; -x and -D connect
// session-expiry-interval are the same property and may not both be given.
inline std::optional<option_error> apply_connect_extras(connection_config& cfg,
                                                        const cli::will_options& will,
                                                        const format::property_set& props) {
    auto& p = cfg.session.connect;
    const auto& extra = props.connect;
    if (extra.session_expiry_interval && p.props.session_expiry_interval)
        return option_error{"--property", "session-expiry-interval given with -x too"};
    auto session_expiry = p.props.session_expiry_interval;
    auto users = std::move(p.props.user_properties);
    p.props = extra;
    if (session_expiry) p.props.session_expiry_interval = session_expiry;
    users.insert(users.end(), extra.user_properties.begin(), extra.user_properties.end());
    p.props.user_properties = std::move(users);
    if (!props.will.empty() && will.topic.empty())
        return option_error{"--property", "will properties need --will-topic"};
    if (!props.disconnect.empty() && props.disconnect.session_expiry_interval.value_or(0) != 0 &&
        p.props.session_expiry_interval.value_or(0) == 0)
        return option_error{"--property",
                            "a disconnect session-expiry-interval needs a non-zero one in "
                            "CONNECT (-x); the broker would call it a protocol error"};
    if (will.topic.empty()) return std::nullopt;
    if (protocol::validate_utf8(will.topic) || !protocol::is_valid_topic_name(will.topic))
        return option_error{"--will-topic", "not a valid topic name: " + will.topic};
    protocol::will_message w;
    w.topic = will.topic;
    w.payload = will.payload;
    w.qos_level = will.qos;
    w.retain = will.retain;
    w.props = props.will;
    p.will = std::move(w);
    return std::nullopt;
}

}  // namespace mqtt::client
