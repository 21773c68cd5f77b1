#pragma once

// From the shared command-line options (mqtt::cli) to a client connection_config, for the
// front ends that link mqtt_cli. Header-only so mqtt_client does not depend on CLI11.

#include <unistd.h>

#include <string>

#include "mqtt/cli/options.hpp"
#include "mqtt/client/connection.hpp"

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
    return cfg;
}

}  // namespace mqtt::client
