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
    o.number("max_outbound_bytes", l.max_outbound_bytes);
    o.number("max_retained_messages", l.max_retained_messages);
    o.number("max_retained_bytes", l.max_retained_bytes);
    o.number("auth_failure_delay_ms", static_cast<std::uint64_t>(l.auth_failure_delay.count()));
    o.number("max_connections", l.max_connections);
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
    const auto& l = c.limits;
    o.number("max_inflight_messages", l.max_inflight);
    o.number("max_queued_messages", or_zero(l.max_queued_messages));
    o.number("max_queued_bytes", or_zero(l.max_queued_bytes));
    o.number("max_offline_sessions", or_zero(l.max_offline_sessions));
    o.number("max_packet_size", l.max_packet_size == largest_mqtt_packet ? 0 : l.max_packet_size);
    o.number("max_subscriptions", or_zero(l.max_subscriptions));
    o.number("max_topic_length", l.max_topic_length);
    o.number("max_topic_levels", l.max_topic_levels);
    o.number("max_client_id_length", l.max_client_id_length);
    o.number("max_publish_rate", l.max_publish_rate);
    o.number("memory_limit", or_zero(l.memory_limit));
    o.number("connect_timeout_ms", static_cast<std::uint64_t>(l.connect_timeout.count()));
    o.number("max_keepalive", l.max_keepalive);
    o.number("max_topic_alias", l.max_topic_alias);
    o.boolean("retain_available", l.retain_available);
    o.boolean("queue_qos0_messages", l.queue_qos0_messages);
    o.boolean("upgrade_outgoing_qos", l.upgrade_outgoing_qos);
    // Seconds; 0: sessions are kept until the client comes back (no expiration).
    o.number("persistent_client_expiration",
             static_cast<std::uint64_t>(l.persistent_client_expiration.count()));
    o.number("sys_interval", static_cast<std::uint64_t>(c.sys_interval.count()));
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
