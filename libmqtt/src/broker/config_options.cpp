// The options of tern-broker's configuration file: one row per option, with how its value
// is checked and where it goes (the broker-wide limits and threads: config_limits.cpp). Names and
// meanings follow mosquitto.conf(5); where Tern implements only one value of an option (persistence
// false, protocol mqtt, ...), that value is accepted and any other is "not supported yet".

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <string>

#include "config_parser.hpp"

namespace mqtt::broker::detail {

std::string quoted(std::string_view s) {
    return "'" + std::string{s} + "'";
}

std::optional<std::uint64_t> parse_number(parse_state& st, std::string_view option,
                                          std::string_view text, std::uint64_t min,
                                          std::uint64_t max) {
    std::uint64_t v = 0;
    const auto* end = text.data() + text.size();
    const auto [p, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || text.front() == '+' || ec == std::errc::invalid_argument || p != end) {
        st.fail(std::string{option} + ": " + quoted(text) + " is not a whole number");
        return std::nullopt;
    }
    if (ec == std::errc::result_out_of_range || v < min || v > max) {
        st.fail(std::string{option} + ": " + std::string{text} + " is out of range (" +
                std::to_string(min) + " to " + std::to_string(max) + ")");
        return std::nullopt;
    }
    return v;
}

std::optional<bool> parse_bool(parse_state& st, std::string_view option, std::string_view text) {
    if (text == "true") return true;
    if (text == "false") return false;
    st.fail(std::string{option} + ": expected true or false, not " + quoted(text));
    return std::nullopt;
}

namespace {

// Options of which Tern implements one value only: that value is accepted (it describes
// what Tern does), any other valid value is not supported yet.
bool only_value(parse_state& st, std::string_view option, std::string_view value,
                std::string_view supported, std::initializer_list<std::string_view> others) {
    if (value == supported) return true;
    if (std::find(others.begin(), others.end(), value) != others.end()) {
        return st.fail(std::string{option} + " " + std::string{value} +
                           " is not supported yet (Tern supports " + std::string{option} + " " +
                           std::string{supported} + " only)",
                       true);
    }
    return st.fail(std::string{option} + ": invalid value " + quoted(value));
}

// ---- listeners

bool is_numeric_ipv4(std::string_view s) {
    int parts = 0;
    std::size_t i = 0;
    while (i <= s.size()) {
        const auto dot = std::min(s.find('.', i), s.size());
        const auto part = s.substr(i, dot - i);
        unsigned v = 0;
        const auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
        if (part.empty() || part.size() > 3 || ec != std::errc{} ||
            p != part.data() + part.size() || v > 255) {
            return false;
        }
        ++parts;
        i = dot + 1;
    }
    return parts == 4;
}

bool is_numeric_ipv6(std::string_view s) {
    if (s.size() < 2 || s.size() > 45) return false;
    int groups = 0;
    bool gap = false;
    std::size_t i = 0;
    if (s.substr(0, 2) == "::") {
        gap = true;
        i = 2;
    }
    while (i < s.size()) {
        const auto colon = std::min(s.find(':', i), s.size());
        const auto group = s.substr(i, colon - i);
        if (group.find('.') != std::string_view::npos) {  // ::ffff:192.0.2.1
            if (colon != s.size() || !is_numeric_ipv4(group)) return false;
            groups += 2;
            break;
        }
        if (group.empty() || group.size() > 4) return false;
        for (char c : group) {
            if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
        }
        ++groups;
        if (colon == s.size()) break;
        if (s.substr(colon, 2) == "::") {
            if (gap) return false;
            gap = true;
            i = colon + 2;
        } else {
            i = colon + 1;
            if (i == s.size()) return false;  // a trailing single ':'
        }
    }
    return gap ? groups < 8 : groups == 8;
}

bool check_bind_address(parse_state& st, std::string_view option, std::string_view host) {
    if (host == "localhost" || is_numeric_ipv4(host) || is_numeric_ipv6(host)) return true;
    if (!host.empty() && host.front() == '/') {
        return st.fail(std::string{option} + ": unix sockets are not supported yet", true);
    }
    return st.fail(std::string{option} + ": " + quoted(host) +
                       " is not a numeric IPv4 or IPv6 address or localhost (host names are "
                       "not supported yet)",
                   true);
}

bool same_listener(const listener_config& a, std::uint16_t port, std::string_view bind) {
    return a.port == port && a.bind == bind;
}

bool on_listener(parse_state& st, const option_args& a) {
    const auto port = parse_number(st, "listener", a.words[0], 0, 65535);
    if (!port) return false;
    const std::string_view bind = a.words.size() > 1 ? a.words[1] : std::string_view{};
    if (!bind.empty() && !check_bind_address(st, "listener", bind)) return false;
    for (const auto& l : st.listeners) {
        // An MQTT-SN listener is UDP: a TCP listener may share its port and address.
        if (!l.mqttsn && same_listener(l, static_cast<std::uint16_t>(*port), bind)) {
            return st.fail("listener " + std::string{a.words[0]} +
                           (bind.empty() ? "" : " " + std::string{bind}) +
                           " is already defined at " + l.origin.to_string());
        }
    }
    listener_config l;
    l.port = static_cast<std::uint16_t>(*port);
    l.bind = std::string{bind};
    l.origin = st.here();
    st.listeners.push_back(std::move(l));
    return true;
}

bool on_port(parse_state& st, const option_args& a) {
    const auto port = parse_number(st, "port", a.words[0], 0, 65535);
    if (!port) return false;
    st.default_listener.port = static_cast<std::uint16_t>(*port);
    if (!st.default_explicit) st.default_listener.origin = st.here();
    st.default_explicit = true;
    return true;
}

bool on_bind_address(parse_state& st, const option_args& a) {
    if (!check_bind_address(st, "bind_address", a.words[0])) return false;
    st.default_listener.bind = std::string{a.words[0]};
    if (!st.default_explicit) st.default_listener.origin = st.here();
    st.default_explicit = true;
    return true;
}

bool on_max_connections(parse_state& st, const option_args& a) {
    if (a.words[0] == "-1") {
        st.current_listener().max_connections.reset();
        return true;
    }
    const auto v = parse_number(st, "max_connections", a.words[0], 0, 1'000'000'000);
    if (!v) return false;
    st.current_listener().max_connections = static_cast<std::size_t>(*v);
    return true;
}

bool on_socket_domain(parse_state& st, const option_args& a) {
    if (a.words[0] == "ipv4") {
        st.current_listener().domain = socket_domain::ipv4;
    } else if (a.words[0] == "ipv6") {
        st.current_listener().domain = socket_domain::ipv6;
    } else {
        return st.fail("socket_domain: expected ipv4 or ipv6, not " + quoted(a.words[0]));
    }
    return true;
}

bool on_protocol(parse_state& st, const option_args& a) {
    const auto v = a.words[0];
    if (v == "mqttsn") return on_protocol_mqttsn(st);
    if (v == "mqtt") {
        st.current_listener().protocol = listener_protocol::mqtt;
    } else if (v == "websockets") {
        st.current_listener().protocol = listener_protocol::websockets;
    } else {
        return st.fail("protocol: expected mqtt, websockets or mqttsn, not " + quoted(v));
    }
    return true;
}

bool on_websockets_path(parse_state& st, const option_args& a) {
    const auto v = a.words[0];
    if (v.empty() || v.front() != '/' || v.find('?') != std::string_view::npos ||
        v.find('#') != std::string_view::npos) {
        return st.fail(
            "websockets_path: expected an absolute request path such as /mqtt "
            "(no query), not " +
            quoted(v));
    }
    auto& l = st.current_listener();
    l.websockets_path = std::string{v};
    l.websockets_path_origin = st.here();
    return true;
}

// max_qos and max_topic_alias belong to the listener block they are in, as in Mosquitto;
// before the first listener line without port/bind_address they are the broker's (finish()).
bool on_max_qos(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_qos", a.words[0], 0, 2);
    if (!v) return false;
    st.current_listener().max_qos = static_cast<std::uint8_t>(*v);
    return true;
}

bool on_max_topic_alias(parse_state& st, const option_args& a) {
    const auto v = parse_number(st, "max_topic_alias", a.words[0], 0, 65535);
    if (!v) return false;
    st.current_listener().max_topic_alias = static_cast<std::uint16_t>(*v);
    return true;
}

// ---- security

bool on_allow_anonymous(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "allow_anonymous", a.words[0]);
    if (!v) return false;
    if (st.cfg.per_listener_settings) {
        st.current_listener().allow_anonymous = *v;
    } else {
        st.cfg.allow_anonymous = *v;
    }
    if (!st.allow_anonymous_origin) st.allow_anonymous_origin = st.here();
    return true;
}

// password_file and acl_file: one of each for the whole broker, or with
// per_listener_settings true one of each for the listener block they are in.
bool security_file(parse_state& st, std::string& path, config_origin& origin,
                   const option_args& a) {
    path = std::string{a.rest};
    origin = st.here();
    return true;
}

bool on_password_file(parse_state& st, const option_args& a) {
    if (st.cfg.per_listener_settings) {
        auto& l = st.current_listener();
        return security_file(st, l.password_file, l.password_file_origin, a);
    }
    return security_file(st, st.cfg.password_file, st.cfg.password_file_origin, a);
}

bool on_acl_file(parse_state& st, const option_args& a) {
    if (st.cfg.per_listener_settings) {
        auto& l = st.current_listener();
        return security_file(st, l.acl_file, l.acl_file_origin, a);
    }
    return security_file(st, st.cfg.acl_file, st.cfg.acl_file_origin, a);
}

bool on_per_listener_settings(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "per_listener_settings", a.words[0]);
    if (!v) return false;
    if (*v != st.cfg.per_listener_settings &&
        (!st.listeners.empty() || st.allow_anonymous_origin || !st.cfg.password_file.empty() ||
         !st.cfg.acl_file.empty() || st.client_id_option_origin)) {
        return st.fail(
            "per_listener_settings must come before every listener, allow_anonymous, "
            "password_file, acl_file, allow_zero_length_clientid and auto_id_prefix line");
    }
    st.cfg.per_listener_settings = *v;
    return true;
}

// allow_zero_length_clientid and auto_id_prefix: the broker's, or with
// per_listener_settings true the listener block's (as Mosquitto).
void note_client_id_option(parse_state& st) {
    if (!st.client_id_option_origin) st.client_id_option_origin = st.here();
    if (!st.cfg.per_listener_settings) return;
    auto& l = st.current_listener();
    if (l.client_id_origin.file.empty()) l.client_id_origin = st.here();
}

bool on_allow_zero_length_clientid(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "allow_zero_length_clientid", a.words[0]);
    if (!v) return false;
    if (st.cfg.per_listener_settings) {
        st.current_listener().allow_zero_length_clientid = *v;
    } else {
        st.cfg.allow_zero_length_clientid = *v;
    }
    note_client_id_option(st);
    return true;
}

// The assigned id is prefix + 16 hex digits, sent back as a 5.0 Assigned Client Identifier
// (a UTF-8 string): printable ASCII keeps it usable in logs, ACL patterns and topics.
bool on_auto_id_prefix(parse_state& st, const option_args& a) {
    const auto v = a.words[0];
    constexpr std::size_t max_prefix = 64;
    const bool printable = std::all_of(v.begin(), v.end(), [](char c) {
        return c > ' ' && c < 0x7f && c != '+' && c != '#' && c != '/';
    });
    if (v.size() > max_prefix || !printable) {
        return st.fail("auto_id_prefix: " + quoted(v) + " is not 1 to " +
                       std::to_string(max_prefix) +
                       " printable ASCII characters without '/', '+' or '#'");
    }
    if (st.cfg.per_listener_settings) {
        st.current_listener().auto_id_prefix = std::string{v};
    } else {
        st.cfg.auto_id_prefix = std::string{v};
    }
    note_client_id_option(st);
    return true;
}

// Always per listener, as in Mosquitto (not a per_listener_settings option).
bool on_use_username_as_clientid(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "use_username_as_clientid", a.words[0]);
    if (!v) return false;
    auto& l = st.current_listener();
    l.use_username_as_clientid = *v;
    l.use_username_as_clientid_origin = st.here();
    return true;
}

bool on_metrics_listener(parse_state& st, const option_args& a) {
    const auto port = parse_number(st, "metrics_listener", a.words[0], 0, 65535);
    if (!port) return false;
    metrics_listener_config m;
    m.port = static_cast<std::uint16_t>(*port);
    if (a.words.size() > 1) {
        const auto host = a.words[1];
        if (!check_bind_address(st, "metrics_listener", host)) return false;
        m.bind = host == "localhost" ? "127.0.0.1" : std::string{host};
    }
    m.origin = st.here();
    st.cfg.metrics = std::move(m);
    return true;
}

// ---- persistence

bool on_persistence(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "persistence", a.words[0]);
    if (v) st.cfg.persistence.enabled = *v;
    return v.has_value();
}

bool on_persistence_location(parse_state& st, const option_args& a) {
    st.cfg.persistence.location = std::string{a.words[0]};
    return true;
}

bool on_persistence_file(parse_state& st, const option_args& a) {
    const auto name = a.words[0];
    if (name.find('/') != std::string_view::npos || name == "." || name == "..") {
        return st.fail("persistence_file: " + quoted(name) +
                       " is not a file name (the directory is persistence_location)");
    }
    st.cfg.persistence.file = std::string{name};
    return true;
}

bool on_persistence_sync(parse_state& st, const option_args& a) {
    const auto v = a.words[0];
    auto& p = st.cfg.persistence.sync;
    if (v == "always") {
        p = sync_policy::always;
    } else if (v == "batch") {
        p = sync_policy::batch;
    } else if (v == "periodic") {
        p = sync_policy::periodic;
    } else {
        return st.fail("persistence_sync: expected always, batch or periodic, not " + quoted(v));
    }
    return true;
}

bool on_autosave_interval(parse_state& st, const option_args& a) {
    // Mosquitto: seconds between saves, 0: only at the stop. Tern: seconds between syncs with
    // persistence_sync periodic, 0: no timed sync (at a graceful stop and each compaction).
    const auto v = parse_number(st, "autosave_interval", a.words[0], 0, 86'400u * 365);
    if (!v) return false;
    st.cfg.persistence.autosave_interval = std::chrono::seconds{*v};
    return true;
}

bool on_set_tcp_nodelay(parse_state& st, const option_args& a) {
    // Tern always sets TCP_NODELAY: MQTT acknowledgements are small and latency-bound.
    return only_value(st, "set_tcp_nodelay", a.words[0], "true", {"false"});
}

// ---- logging

bool on_log_type(parse_state& st, const option_args& a) {
    static constexpr std::pair<std::string_view, int> levels[] = {
        {"none", -1},     {"error", 0},       {"warning", 0},    {"notice", 1}, {"information", 1},
        {"subscribe", 1}, {"unsubscribe", 1}, {"websockets", 1}, {"debug", 2},  {"all", 2},
    };
    const auto* it = std::find_if(std::begin(levels), std::end(levels),
                                  [&](const auto& l) { return l.first == a.words[0]; });
    if (it == std::end(levels)) {
        return st.fail("log_type: unknown type " + quoted(a.words[0]) +
                       " (debug, error, warning, notice, information, subscribe, unsubscribe, "
                       "websockets, none, all)");
    }
    auto& log = st.cfg.log;
    log.verbosity = std::max(log.verbosity.value_or(-1), it->second);
    log.types.emplace_back(a.words[0]);
    return true;
}

bool on_log_dest(parse_state& st, const option_args& a) {
    const auto dest = a.words[0];
    if (dest == "file" || dest == "syslog" || dest == "topic" || dest == "dlt") {
        return st.fail("log_dest " + std::string{dest} + " is not supported yet", true);
    }
    if (dest != "stderr" && dest != "stdout" && dest != "none") {
        return st.fail("log_dest: unknown destination " + quoted(dest));
    }
    if (a.words.size() > 1) return st.fail("unexpected " + quoted(a.words[1]) + " after log_dest");
    if (st.log_dest_origin && st.cfg.log.dest != dest) {
        return st.fail("log_dest " + std::string{dest} + ": a second destination (" +
                           st.cfg.log.dest + " is set at " + st.log_dest_origin->to_string() +
                           ") is not supported yet",
                       true);
    }
    if (!st.log_dest_origin) st.log_dest_origin = st.here();
    st.cfg.log.dest = std::string{dest};
    return true;
}

bool on_connection_messages(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "connection_messages", a.words[0]);
    if (v) st.cfg.log.connection_messages = *v;
    return v.has_value();
}

bool on_log_timestamp(parse_state& st, const option_args& a) {
    const auto v = parse_bool(st, "log_timestamp", a.words[0]);
    if (v) st.cfg.log.timestamp = *v;
    return v.has_value();
}

// ---- files

bool on_include_dir(parse_state& st, const option_args& a) {
    if (!st.in_main_file) return st.fail("include_dir is only allowed in the main file");
    return include_directory(st, std::string{a.rest});
}

using S = option_scope;

}  // namespace

bool check_listener_protocol(parse_state& st, const listener_config& l) {
    if (l.mqttsn && (l.max_qos || l.max_topic_alias)) {
        st.file = l.origin.file;
        st.line = l.origin.line;
        return st.fail("max_qos and max_topic_alias do not apply to a protocol mqttsn listener");
    }
    if (l.mqttsn && l.use_username_as_clientid) {
        // MQTT-SN's CONNECT has no user name: every client would be refused.
        st.file = l.use_username_as_clientid_origin.file;
        st.line = l.use_username_as_clientid_origin.line;
        return st.fail(
            "use_username_as_clientid true on a protocol mqttsn listener, whose clients have "
            "no user name");
    }
    if (l.websockets_path.empty() || l.protocol == listener_protocol::websockets) return true;
    st.file = l.websockets_path_origin.file;
    st.line = l.websockets_path_origin.line;
    return st.fail("websockets_path needs protocol websockets in the same listener block");
}

// Sorted by name; supported_options() and the man page check rely on this list.
const std::vector<option_spec>& option_table() {
    static const std::vector<option_spec> table = {
        {"acl_file", S::security, 1, 64, false, on_acl_file},
        {"allow_anonymous", S::security, 1, 1, false, on_allow_anonymous},
        {"allow_zero_length_clientid", S::security, 1, 1, false, on_allow_zero_length_clientid},
        {"auto_id_prefix", S::security, 1, 1, false, on_auto_id_prefix},
        {"autosave_interval", S::global, 1, 1, false, on_autosave_interval},
        {"backpressure_timeout_ms", S::global, 1, 1, false, on_backpressure_timeout_ms},
        {"bind_address", S::global, 1, 1, false, on_bind_address},
        {"cafile", S::listener, 1, 64, false, on_cafile},
        {"capath", S::listener, 1, 64, false, on_capath},
        {"certfile", S::listener, 1, 64, false, on_certfile},
        {"ciphers", S::listener, 1, 1, false, on_ciphers},
        {"ciphers_tls1.3", S::listener, 1, 1, false, on_ciphers_tls1_3},
        {"connect_timeout_ms", S::global, 1, 1, false, on_connect_timeout_ms},
        {"connection_messages", S::global, 1, 1, false, on_connection_messages},
        {"crlfile", S::listener, 1, 64, false, on_crlfile},
        {"include_dir", S::global, 1, 64, true, on_include_dir},
        {"keyfile", S::listener, 1, 64, false, on_keyfile},
        {"listener", S::global, 1, 2, true, on_listener},
        {"log_dest", S::global, 1, 2, true, on_log_dest},
        {"log_timestamp", S::global, 1, 1, false, on_log_timestamp},
        {"log_type", S::global, 1, 1, true, on_log_type},
        {"max_client_id_length", S::global, 1, 1, false, on_max_client_id_length},
        {"max_connections", S::listener, 1, 1, false, on_max_connections},
        {"max_inflight_bytes", S::global, 1, 1, false, on_max_inflight_bytes},
        {"max_inflight_messages", S::global, 1, 1, false, on_max_inflight_messages},
        {"max_keepalive", S::global, 1, 1, false, on_max_keepalive},
        {"max_offline_sessions", S::global, 1, 1, false, on_max_offline_sessions},
        {"max_outbound_bytes", S::global, 1, 1, false, on_max_outbound_bytes},
        {"max_packet_size", S::global, 1, 1, false, on_max_packet_size},
        {"max_publish_rate", S::global, 1, 1, false, on_max_publish_rate},
        {"max_qos", S::listener, 1, 1, false, on_max_qos},
        {"max_queued_bytes", S::global, 1, 1, false, on_max_queued_bytes},
        {"max_queued_messages", S::global, 1, 1, false, on_max_queued_messages},
        {"max_subscriptions", S::global, 1, 1, false, on_max_subscriptions},
        {"max_topic_alias", S::listener, 1, 1, false, on_max_topic_alias},
        {"max_topic_length", S::global, 1, 1, false, on_max_topic_length},
        {"max_topic_levels", S::global, 1, 1, false, on_max_topic_levels},
        {"memory_limit", S::global, 1, 1, false, on_memory_limit},
        {"message_size_limit", S::global, 1, 1, false, on_message_size_limit},
        {"metrics_listener", S::global, 1, 2, false, on_metrics_listener},
        {"mqttsn_advertise", S::global, 3, 3, false, on_mqttsn_advertise},
        {"mqttsn_gateway_id", S::global, 1, 1, false, on_mqttsn_gateway_id},
        {"mqttsn_max_buffered_messages", S::global, 1, 1, false, on_mqttsn_max_buffered_messages},
        {"mqttsn_max_inflight", S::global, 1, 1, false, on_mqttsn_max_inflight},
        {"mqttsn_predefined_topic", S::global, 2, 2, true, on_mqttsn_predefined_topic},
        {"mqttsn_receive_buffer", S::global, 1, 1, false, on_mqttsn_receive_buffer},
        {"mqttsn_retry_count", S::global, 1, 1, false, on_mqttsn_retry_count},
        {"mqttsn_retry_interval", S::global, 1, 1, false, on_mqttsn_retry_interval},
        {"password_file", S::security, 1, 64, false, on_password_file},
        {"per_listener_settings", S::global, 1, 1, false, on_per_listener_settings},
        {"persistence", S::global, 1, 1, false, on_persistence},
        {"persistence_file", S::global, 1, 1, false, on_persistence_file},
        {"persistence_location", S::global, 1, 1, false, on_persistence_location},
        {"persistence_sync", S::global, 1, 1, false, on_persistence_sync},
        {"persistent_client_expiration", S::global, 1, 1, false, on_persistent_client_expiration},
        {"port", S::global, 1, 1, false, on_port},
        {"protocol", S::listener, 1, 1, false, on_protocol},
        {"queue_qos0_messages", S::global, 1, 1, false, on_queue_qos0_messages},
        {"require_certificate", S::listener, 1, 1, false, on_require_certificate},
        {"retain_available", S::global, 1, 1, false, on_retain_available},
        {"set_tcp_nodelay", S::global, 1, 1, false, on_set_tcp_nodelay},
        {"socket_domain", S::listener, 1, 1, false, on_socket_domain},
        {"sys_interval", S::global, 1, 1, false, on_sys_interval},
        {"threads", S::global, 1, 1, false, on_threads},
        {"tls_version", S::listener, 1, 1, false, on_tls_version},
        {"upgrade_outgoing_qos", S::global, 1, 1, false, on_upgrade_outgoing_qos},
        {"use_identity_as_username", S::listener, 1, 1, false, on_use_identity_as_username},
        {"use_subject_as_username", S::listener, 1, 1, false, on_use_subject_as_username},
        {"use_username_as_clientid", S::listener, 1, 1, false, on_use_username_as_clientid},
        {"websockets_path", S::listener, 1, 1, false, on_websockets_path},
    };
    return table;
}

// Mosquitto options (mosquitto.conf(5), 2.0) that Tern does not implement yet. Sorted.
const std::vector<std::string_view>& unsupported_option_names() {
    static const std::vector<std::string_view> names = {
        "allow_duplicate_messages",
        "auth_opt_*",
        "auth_plugin",
        "auth_plugin_deny_special_chars",
        "autosave_on_changes",
        "bind_interface",
        "check_retain_source",
        "clientid_prefixes",
        "dhparamfile",
        "global_plugin",
        "http_dir",
        "idle_timeout",
        "log_facility",
        "log_timestamp_format",
        "mount_point",
        "pid_file",
        "plugin",
        "plugin_opt_*",
        "psk_file",
        "psk_hint",
        "start_type",
        "threshold",
        "tls_engine",
        "tls_engine_kpass_sha1",
        "tls_keyform",
        "user",
        "websockets_headers_size",
        "websockets_log_level",
    };
    return names;
}

}  // namespace mqtt::broker::detail
