// `connection` blocks in tern-broker's configuration: the broker keeps their lines as written
// and hands them to the bridge's own parser (mqtt/bridge/config.hpp, the one tern-bridge's -c
// file uses), then maps its errors back to the FILE:LINE each line came from. The local side
// of these bridges is the broker itself, in-process.

#include <algorithm>

#include "config_parser.hpp"

namespace mqtt::broker::detail {

const std::vector<std::string_view>& bridge_option_names() {
    static const std::vector<std::string_view> names = {
        "address",
        "addresses",
        "bridge_cafile",
        "bridge_capath",
        "bridge_certfile",
        "bridge_insecure",
        "bridge_keyfile",
        "bridge_protocol_version",
        "bridge_tls_version",
        "cleansession",
        "clientid",
        "connection",
        "keepalive_interval",
        "local_cleansession",
        "local_clientid",
        "local_password",
        "local_username",
        "notification_topic",
        "notifications",
        "notifications_local_only",
        "password",
        "queue_dir",
        "queue_full_policy",
        "queue_max_bytes",
        "remote_clientid",
        "remote_password",
        "remote_username",
        "restart_timeout",
        "round_robin",
        "topic",
        "try_private",
        "username",
    };
    return names;
}

bool is_bridge_option(std::string_view name) {
    const auto& names = bridge_option_names();
    return name.starts_with("bridge_") || name == "local_address" ||
           std::binary_search(names.begin(), names.end(), name);
}

bool on_bridge_line(parse_state& st, std::string_view name, std::string_view line) {
    if (name == "local_address") {
        return st.fail(
            "local_address: the local side of a bridge in tern-broker is the broker itself "
            "(in-process); to bridge two other brokers, run tern-bridge");
    }
    st.bridge_text.append(line);
    st.bridge_text += '\n';
    st.bridge_origins.push_back(st.here());
    return true;
}

bool finish_bridges(parse_state& st) {
    if (st.bridge_origins.empty()) return true;
    const auto hostname =
        st.source && st.source->hostname ? st.source->hostname() : std::string{"localhost"};
    bridge::address in_process;
    in_process.host = "in-process";
    in_process.port = 0;
    in_process.in_process = true;
    auto r = bridge::parse_config(st.bridge_text, "", hostname, in_process);
    if (r.error) {
        // Line k of the kept text is bridge_origins[k - 1]; a problem of the whole text
        // (no `connection` at all) is put at the first bridge line.
        const auto k = r.error->line == 0 ? 1 : r.error->line;
        const auto& at = st.bridge_origins.at(std::min(k, st.bridge_origins.size()) - 1);
        st.file = at.file;
        st.line = at.line;
        return st.fail(r.error->message);
    }
    st.cfg.bridges = std::move(r.bridges);
    return true;
}

}  // namespace mqtt::broker::detail
