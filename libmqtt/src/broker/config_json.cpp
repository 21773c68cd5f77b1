// tern-broker --print-config: the effective configuration as JSON. Options appear under their
// mosquitto.conf names with values that the file would accept back (0 where Mosquitto says
// "0: no maximum"); the bounds no option sets yet are under "fixed_limits".

#include <limits>

#include "json_writer.hpp"
#include "mqtt/broker/config.hpp"
#include "mqtt/format/json_string.hpp"

namespace mqtt::broker {
namespace {

constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();
constexpr std::uint32_t largest_mqtt_packet = 1 + 4 + 268'435'455;

std::uint64_t or_zero(std::size_t v) {
    return v == unlimited ? 0 : v;
}

std::string_view to_string(socket_domain d) {
    switch (d) {
        case socket_domain::ipv4:
            return "ipv4";
        case socket_domain::ipv6:
            return "ipv6";
        case socket_domain::any:
            break;
    }
    return "any";
}

std::string string_array(const std::vector<std::string>& items) {
    std::string out = "[";
    for (const auto& s : items) {
        if (out.size() > 1) out += ',';
        format::append_json_text(out, s);
    }
    return out + "]";
}

std::string_view to_string(net::tls_server_settings::username_source u) {
    switch (u) {
        case net::tls_server_settings::username_source::identity:
            return "identity";
        case net::tls_server_settings::username_source::subject:
            return "subject";
        case net::tls_server_settings::username_source::none:
            break;
    }
    return "none";
}

// The TLS options of a listener under their mosquitto.conf names ("" for not set).
std::string tls_json(const net::tls_server_settings& t) {
    std::string out;
    detail::json_object o{out};
    o.string("certfile", t.certfile);
    o.string("keyfile", t.keyfile);
    o.string("cafile", t.cafile);
    o.string("capath", t.capath);
    o.string("crlfile", t.crlfile);
    o.boolean("require_certificate", t.require_certificate);
    o.boolean("use_identity_as_username",
              t.username_from == net::tls_server_settings::username_source::identity);
    o.boolean("use_subject_as_username",
              t.username_from == net::tls_server_settings::username_source::subject);
    o.string("username_from_certificate", to_string(t.username_from));
    o.string("tls_version", net::to_string(t.min_version));
    o.string("ciphers", t.ciphers);
    o.string("ciphers_tls1.3", t.ciphers_tls1_3);
    o.close();
    return out;
}

std::string listener_json(const config& c, const listener_config& l) {
    std::string out;
    detail::json_object o{out};
    o.number("port", l.port);
    o.string("bind", l.bind);
    o.raw("addresses", string_array(bind_addresses(l)));
    o.string("socket_domain", to_string(l.domain));
    o.string("protocol", l.mqttsn ? std::string_view{"mqttsn"} : to_string(l.protocol));
    if (l.protocol == listener_protocol::websockets) o.string("websockets_path", l.websockets_path);
    if (l.max_connections) {
        o.number("max_connections", *l.max_connections);
    } else {
        o.null("max_connections");
    }
    o.boolean("allow_anonymous", l.allow_anonymous.value_or(c.allow_anonymous));
    // The files that apply to this listener's clients (its own with per_listener_settings).
    const auto& pw = c.per_listener_settings ? l.password_file : c.password_file;
    const auto& acl = c.per_listener_settings ? l.acl_file : c.acl_file;
    if (pw.empty()) {
        o.null("password_file");
    } else {
        o.string("password_file", pw);
    }
    if (acl.empty()) {
        o.null("acl_file");
    } else {
        o.string("acl_file", acl);
    }
    o.boolean("allow_zero_length_clientid",
              l.allow_zero_length_clientid.value_or(c.allow_zero_length_clientid));
    o.string("auto_id_prefix", l.auto_id_prefix.value_or(c.auto_id_prefix));
    o.boolean("use_username_as_clientid", l.use_username_as_clientid);
    o.number("max_qos", l.max_qos.value_or(c.max_qos));
    o.number("max_topic_alias", l.max_topic_alias.value_or(c.limits.max_topic_alias));
    o.string("origin", l.origin.to_string());
    if (l.tls_enabled()) {
        o.raw("tls", tls_json(l.tls));
    } else {
        o.null("tls");
    }
    o.close();
    return out;
}

std::string limits_json(const limits& l) {
    std::string out;
    detail::json_object o{out};
    o.number("receive_maximum", l.receive_maximum);
    o.number("max_retained_messages", l.max_retained_messages);
    o.number("max_retained_bytes", l.max_retained_bytes);
    o.number("auth_failure_delay_ms", static_cast<std::uint64_t>(l.auth_failure_delay.count()));
    o.number("max_connections", l.max_connections);
    o.close();
    return out;
}

std::string_view version_name(protocol::protocol_version v) {
    switch (v) {
        case protocol::protocol_version::v3_1:
            return "mqttv31";
        case protocol::protocol_version::v5:
            return "mqttv50";
        default:
            break;
    }
    return "mqttv311";
}

// A `connection` block under its option names; passwords only as whether one is set.
std::string bridge_json(const bridge::bridge_config& b) {
    std::string out;
    detail::json_object o{out};
    o.string("connection", b.name);
    std::vector<std::string> addresses;
    for (const auto& a : b.remote.addresses) {
        const bool v6 = a.host.find(':') != std::string::npos;
        addresses.push_back((v6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port));
    }
    o.raw("addresses", string_array(addresses));
    std::string topics = "[";
    for (const auto& t : b.topics) {
        if (topics.size() > 1) topics += ',';
        detail::json_object to{topics};
        to.string("pattern", t.pattern);
        to.string("direction", bridge::to_string(t.dir));
        to.number("qos", static_cast<std::uint64_t>(t.qos));
        to.string("local_prefix", t.local_prefix);
        to.string("remote_prefix", t.remote_prefix);
        to.close();
    }
    o.raw("topics", topics + "]");
    o.string("local", "in-process");
    o.string("remote_clientid", b.remote.client_id);
    o.string("local_clientid", b.local.client_id);
    o.string("remote_username", b.remote.username.value_or(""));
    o.boolean("remote_password_set", b.remote.password.has_value());
    o.string("local_username", b.local.username.value_or(""));
    o.boolean("local_password_set", b.local.password.has_value());
    o.string("bridge_protocol_version", version_name(b.version));
    o.number("keepalive_interval", b.keepalive);
    o.boolean("cleansession", b.clean_session);
    o.boolean("local_cleansession", b.local_clean_session.value_or(b.clean_session));
    o.number("restart_timeout_base_ms", static_cast<std::uint64_t>(b.restart_base.count()));
    o.number("restart_timeout_max_ms", static_cast<std::uint64_t>(b.restart_max.count()));
    o.boolean("round_robin", b.round_robin);
    o.boolean("try_private", b.try_private);
    o.boolean("notifications", b.notifications);
    o.string("notification_topic", b.state_topic());
    o.boolean("notifications_local_only", b.notifications_local_only);
    const bool tls = !b.remote.addresses.empty() && b.remote.addresses.front().tls;
    if (tls) {
        std::string t;
        detail::json_object to{t};
        to.string("bridge_cafile", b.remote.tls.cafile);
        to.string("bridge_capath", b.remote.tls.capath);
        to.string("bridge_certfile", b.remote.tls.certfile);
        to.string("bridge_keyfile", b.remote.tls.keyfile);
        to.boolean("bridge_insecure", b.remote.tls.insecure);
        to.string("bridge_tls_version", net::to_string(b.remote.tls.min_version));
        to.close();
        o.raw("tls", t);
    } else {
        o.null("tls");
    }
    o.string("queue_dir", b.queue.dir);
    o.number("queue_max_bytes", b.queue.max_bytes);
    o.string("queue_full_policy", bridge::to_string(b.queue.policy));
    o.close();
    return out;
}

}  // namespace

std::string_view to_string(listener_protocol p) noexcept {
    return p == listener_protocol::websockets ? "websockets" : "mqtt";
}

std::string to_json(const config& c) {
    std::string out;
    detail::json_object o{out};
    o.raw("files", string_array(c.files));
    std::string listeners = "[";
    for (const auto& l : c.listeners) {
        if (listeners.size() > 1) listeners += ',';
        listeners += listener_json(c, l);
    }
    o.raw("listeners", listeners + "]");
    o.boolean("local_only", c.local_only);
    o.boolean("per_listener_settings", c.per_listener_settings);
    o.boolean("allow_anonymous", c.allow_anonymous);
    if (c.password_file.empty()) {
        o.null("password_file");
    } else {
        o.string("password_file", c.password_file);
    }
    if (c.acl_file.empty()) {
        o.null("acl_file");
    } else {
        o.string("acl_file", c.acl_file);
    }
    o.boolean("allow_zero_length_clientid", c.allow_zero_length_clientid);
    o.string("auto_id_prefix", c.auto_id_prefix);
    o.number("max_qos", c.max_qos);
    const auto& l = c.limits;
    o.number("max_inflight_messages", l.max_inflight);
    o.number("max_inflight_bytes", l.max_inflight_bytes);
    o.number("max_queued_messages", or_zero(l.max_queued_messages));
    o.number("max_queued_bytes", or_zero(l.max_queued_bytes));
    o.number("max_outbound_bytes", l.max_outbound_bytes);
    o.number("max_offline_sessions", or_zero(l.max_offline_sessions));
    o.number("max_packet_size", l.max_packet_size == largest_mqtt_packet ? 0 : l.max_packet_size);
    o.number("max_subscriptions", or_zero(l.max_subscriptions));
    o.number("max_topic_length", l.max_topic_length);
    o.number("max_topic_levels", l.max_topic_levels);
    o.number("max_client_id_length", l.max_client_id_length);
    o.number("max_publish_rate", l.max_publish_rate);
    o.number("memory_limit", or_zero(l.memory_limit));
    o.number("connect_timeout_ms", static_cast<std::uint64_t>(l.connect_timeout.count()));
    o.number("backpressure_timeout_ms",
             static_cast<std::uint64_t>(l.backpressure_timeout.count()));
    o.number("max_keepalive", l.max_keepalive);
    o.number("max_topic_alias", l.max_topic_alias);
    o.boolean("retain_available", l.retain_available);
    o.boolean("queue_qos0_messages", l.queue_qos0_messages);
    o.boolean("upgrade_outgoing_qos", l.upgrade_outgoing_qos);
    // Seconds; 0: sessions are kept until the client comes back (no expiration).
    o.number("persistent_client_expiration",
             static_cast<std::uint64_t>(l.persistent_client_expiration.count()));
    o.number("sys_interval", static_cast<std::uint64_t>(c.sys_interval.count()));
    o.number("threads", static_cast<std::uint64_t>(c.threads));
    o.boolean("persistence", c.persistence.enabled);
    o.string("persistence_location", c.persistence.location);
    o.string("persistence_file", c.persistence.file);
    o.string("persistence_sync", to_string(c.persistence.sync));
    o.number("autosave_interval",
             static_cast<std::uint64_t>(c.persistence.autosave_interval.count()));
    o.number("mqttsn_gateway_id", c.mqttsn.gateway_id);
    o.number("mqttsn_retry_interval", static_cast<std::uint64_t>(c.mqttsn.retry_interval.count()));
    o.number("mqttsn_retry_count", c.mqttsn.retry_count);
    o.number("mqttsn_max_buffered_messages", c.mqttsn.max_buffered_messages);
    o.number("mqttsn_max_inflight", c.mqttsn.max_inflight);
    o.number("mqttsn_receive_buffer", c.mqttsn.receive_buffer);
    if (c.metrics) {
        std::string m;
        detail::json_object mo{m};
        mo.number("port", c.metrics->port);
        mo.string("bind", c.metrics->bind);
        mo.string("origin", c.metrics->origin.to_string());
        mo.close();
        o.raw("metrics_listener", m);
    } else {
        o.null("metrics_listener");
    }
    std::string bridges = "[";
    for (const auto& b : c.bridges) {
        if (bridges.size() > 1) bridges += ',';
        bridges += bridge_json(b);
    }
    o.raw("bridges", bridges + "]");
    o.raw("log_type", string_array(c.log.types));
    if (c.log.verbosity) {
        o.key("log_verbosity");
        out += std::to_string(*c.log.verbosity);
    } else {
        o.null("log_verbosity");
    }
    o.string("log_dest", c.log.dest);
    o.string("log_format", c.log.json ? "json" : "text");
    o.boolean("connection_messages", c.log.connection_messages);
    o.boolean("log_timestamp", c.log.timestamp);
    o.raw("fixed_limits", limits_json(l));
    o.raw("warnings", string_array(c.warnings));
    o.close();
    out += '\n';
    return out;
}

}  // namespace mqtt::broker
