// tern-broker: the MQTT broker.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mqtt/bridge/runner.hpp"
#include "mqtt/broker/config.hpp"
#include "mqtt/broker/log_event.hpp"
#include "mqtt/broker/security.hpp"
#include "mqtt/cli/options.hpp"
#include "mqtt/net/server.hpp"
#include "mqtt/store/shards.hpp"
#include "mqtt/store/store_file.hpp"
#include "mqtt/version.hpp"
#include "passwd.hpp"

namespace {

using mqtt::broker::config;
using mqtt::broker::log_event;
using mqtt::broker::log_level;
namespace log_kind = mqtt::broker::log_kind;

struct broker_options {
    std::uint16_t port = 1883;  // 0: pick a free port
    bool port_given = false;
    std::string config_file;
    int verbosity = 0;
    bool verbosity_given = false;
    mqtt::cli::output_format log_format = mqtt::cli::output_format::text;
    bool print_config = false;
    std::string check_store;
};

constexpr const char* examples =
    "  tern-broker                          listen on port 1883 of 127.0.0.1 and ::1\n"
    "  tern-broker -p 0 -v                  pick a free port, log every connection\n"
    "  tern-broker -p 1884 --quiet          another port, log errors only\n"
    "  tern-broker -c tern.conf             listeners and limits from a mosquitto.conf-style file\n"
    "  tern-broker -c tern.conf --print-config    check a file, print the result as JSON\n"
    "  tern-broker -v --log-format json     one JSON object per log line\n"
    "  tern-broker passwd -c pw alice       a password_file with user alice (see passwd --help)\n";

void add_broker_options(CLI::App& app, broker_options& o) {
    app.add_option("-p,--port", o.port,
                   "TCP port to listen on, on 127.0.0.1 and ::1 (default: 1883; 0 picks a free "
                   "port, which the first log line names); ignored when the configuration file "
                   "defines listeners")
        ->type_name("PORT")
        ->check(CLI::Range(0, 65535).description(""));
    app.add_option("-c,--config", o.config_file,
                   "Read the configuration from FILE, in mosquitto.conf syntax (see tern.conf(5)); "
                   "an invalid or unsupported line exits with status 2 naming FILE:LINE")
        ->type_name("FILE")
        ->check(CLI::ExistingFile.description(""));
    app.add_flag("--print-config", o.print_config,
                 "Print the effective configuration as JSON on standard output and exit");
    app.add_option("--check-store", o.check_store,
                   "Verify the persistence store in DIR (its file tern.db, or persistence_file "
                   "of -c FILE), or the store file PATH, print a JSON report on standard output "
                   "and exit: 0 intact or missing, 1 damaged (the broker would cut or skip the "
                   "damage and start), 2 unreadable; the stores of the other threads (NAME.shardK) "
                   "in DIR are reported under \"shards\", and \"commit_pending\": true when a "
                   "start that changed the number of threads stopped before its new files were "
                   "all in place (the next start finishes it)")
        ->type_name("DIR");
    mqtt::cli::add_verbosity(app, o.verbosity, "-v,--verbose");
    mqtt::cli::add_log_format(app, o.log_format);
}

// Every log record of the process goes through here: filtered by level and by
// connection_messages, formatted by the one log formatter, written to the log destination.
class log_sink {
  public:
    void configure(const config& c, int verbosity, bool json) {
        verbosity_ = verbosity;
        connection_messages_ = c.log.connection_messages;
        style_.json = json;
        style_.timestamp = c.log.timestamp;
        out_ = c.log.dest == "stdout" ? stdout : c.log.dest == "none" ? nullptr : stderr;
    }
    int verbosity() const { return verbosity_; }

    void operator()(const log_event& e) const {
        // Errors show even with --quiet (verbosity -1); the rest up to the chosen level.
        if (e.verbosity > verbosity_ && e.level != log_level::error) return;
        const bool connection = e.event == log_kind::connect || e.event == log_kind::disconnect;
        if (connection && !connection_messages_) return;
        write(e);
    }
    void write(const log_event& e) const {
        if (!out_) return;
        const auto line =
            mqtt::broker::format_log_line(e, style_, std::chrono::system_clock::now());
        std::fwrite(line.data(), 1, line.size(), out_);
        std::fflush(out_);
    }
    void say(log_level level, std::string_view kind, std::string_view msg) const {
        log_event e;
        e.verbosity = level == log_level::info || level == log_level::debug ? 1 : 0;
        e.level = level;
        e.event = kind;
        e.msg = msg;
        (*this)(e);
    }

  private:
    int verbosity_ = 0;
    bool connection_messages_ = true;
    mqtt::broker::log_style style_;
    std::FILE* out_ = stderr;
};

// -v / --quiet win over log_type, as Mosquitto's -v does.
int effective_verbosity(const broker_options& o, const config& c) {
    if (o.verbosity_given) return o.verbosity;
    return c.log.verbosity.value_or(0);
}

std::optional<config> load(const broker_options& o, const log_sink& sink) {
    if (o.config_file.empty()) return config{};
    auto r = mqtt::broker::load_config_file(o.config_file);
    if (!r) {
        sink.say(log_level::error, log_kind::error, r.error.to_string());
        return std::nullopt;
    }
    return std::move(*r.value);
}

std::vector<mqtt::net::listen_address> listen_addresses(const config& c) {
    std::vector<mqtt::net::listen_address> out;
    for (std::size_t i = 0; i < c.listeners.size(); ++i) {
        const auto& l = c.listeners[i];
        if (l.mqttsn) continue;  // mqttsn_listen_addresses()
        std::shared_ptr<const mqtt::net::tls_server_settings> tls;
        if (l.tls_enabled()) tls = std::make_shared<mqtt::net::tls_server_settings>(l.tls);
        const bool ws = l.protocol == mqtt::broker::listener_protocol::websockets;
        for (const auto& host : mqtt::broker::bind_addresses(l)) {
            out.push_back({host, l.port, i, l.max_connections, tls, ws, l.websockets_path});
        }
    }
    return out;
}

// The mqttsn_* options as the gateways take them (the same for every MQTT-SN listener).
mqtt::broker::mqttsn_settings mqttsn_settings_of(const config& c) {
    mqtt::broker::mqttsn_settings s;
    s.predefined = c.mqttsn_predefined;
    s.gateway_id = c.mqttsn.gateway_id;
    s.retry_interval = c.mqttsn.retry_interval;
    s.retry_count = c.mqttsn.retry_count;
    s.max_buffered = c.mqttsn.max_buffered_messages;
    s.max_inflight = c.mqttsn.max_inflight;
    s.receive_buffer = c.mqttsn.receive_buffer;
    s.advertise_interval = c.mqttsn.advertise_interval;
    s.advertise_host = c.mqttsn.advertise_host;
    s.advertise_port = c.mqttsn.advertise_port;
    return s;
}

// The listeners with `protocol mqttsn`: MQTT-SN gateways on UDP.
std::vector<mqtt::net::mqttsn_listen_address> mqttsn_listen_addresses(const config& c) {
    std::vector<mqtt::net::mqttsn_listen_address> out;
    for (std::size_t i = 0; i < c.listeners.size(); ++i) {
        const auto& l = c.listeners[i];
        if (!l.mqttsn) continue;
        for (const auto& host : mqtt::broker::bind_addresses(l)) {
            mqtt::net::mqttsn_listen_address a;
            a.settings = mqttsn_settings_of(c);
            a.settings.security_slot = mqtt::broker::needs_listener_slots(c) ? i + 1 : 0;
            a.max_connections = l.max_connections;
            a.group = i;
            a.host = host;
            a.port = l.port;
            out.push_back(std::move(a));
        }
    }
    return out;
}

// ---- SIGHUP

bool same_listeners(const config& a, const config& b) {
    if (a.listeners.size() != b.listeners.size()) return false;
    for (std::size_t i = 0; i < a.listeners.size(); ++i) {
        if (bind_addresses(a.listeners[i]) != bind_addresses(b.listeners[i]) ||
            a.listeners[i].port != b.listeners[i].port ||
            a.listeners[i].tls_enabled() != b.listeners[i].tls_enabled() ||
            a.listeners[i].mqttsn != b.listeners[i].mqttsn ||
            a.listeners[i].protocol != b.listeners[i].protocol ||
            a.listeners[i].websockets_path != b.listeners[i].websockets_path) {
            return false;
        }
    }
    return true;
}

// The options a reload cannot apply to a running broker, by name, when they changed.
std::vector<std::string> needs_restart(const config& a, const config& b) {
    std::vector<std::string> out;
    const auto& x = a.limits;
    const auto& y = b.limits;
    const auto check = [&](bool same, const char* name) {
        if (!same) out.emplace_back(name);
    };
    check(same_listeners(a, b),
          "listener/port/bind_address/socket_domain/TLS on or off/protocol/websockets_path");
    // Announced to clients in CONNACK or taken per connection at its start (the rest of the
    // limits are reloaded: reloadable_changes).
    check(x.max_inflight == y.max_inflight, "max_inflight_messages");
    check(x.max_packet_size == y.max_packet_size, "max_packet_size");
    check(x.retain_available == y.retain_available, "retain_available");
    check(x.max_topic_alias == y.max_topic_alias, "max_topic_alias");
    check(a.sys_interval == b.sys_interval, "sys_interval");
    check(a.threads == b.threads, "threads");
    const auto metrics_at = [](const config& c) {
        return c.metrics ? c.metrics->bind + " " + std::to_string(c.metrics->port) : "";
    };
    check(metrics_at(a) == metrics_at(b), "metrics_listener");
    const auto& p = a.persistence;
    const auto& q = b.persistence;
    check(p.enabled == q.enabled && p.location == q.location && p.file == q.file &&
              p.sync == q.sync && p.autosave_interval == q.autosave_interval,
          "persistence options");
    check(a.log.dest == b.log.dest, "log_dest");
    // The gateways' ADVERTISE runs from their start; the system's default receive buffer
    // is what a new socket has (the rest of mqttsn_*: mqttsn_changes).
    const auto& m = a.mqttsn;
    const auto& n = b.mqttsn;
    check(m.advertise_interval == n.advertise_interval && m.advertise_host == n.advertise_host &&
              m.advertise_port == n.advertise_port,
          "mqttsn_advertise");
    check(n.receive_buffer != 0 || m.receive_buffer == 0, "mqttsn_receive_buffer 0");
    return out;
}

// The mqttsn_* options a reload applies to the running gateways (server::set_mqttsn), by
// name, when they changed.
std::vector<std::string> mqttsn_changes(const config& a, const config& b) {
    std::vector<std::string> out;
    const auto check = [&](bool same, const char* name) {
        if (!same) out.emplace_back(name);
    };
    const auto& m = a.mqttsn;
    const auto& n = b.mqttsn;
    check(m.gateway_id == n.gateway_id, "mqttsn_gateway_id");
    check(m.retry_interval == n.retry_interval, "mqttsn_retry_interval");
    check(m.retry_count == n.retry_count, "mqttsn_retry_count");
    check(m.max_buffered_messages == n.max_buffered_messages, "mqttsn_max_buffered_messages");
    check(m.max_inflight == n.max_inflight, "mqttsn_max_inflight");
    check(m.receive_buffer == n.receive_buffer || n.receive_buffer == 0, "mqttsn_receive_buffer");
    check(a.mqttsn_predefined == b.mqttsn_predefined, "mqttsn_predefined_topic");
    return out;
}

// The limits a reload applies (mqtt::broker::copy_reloadable), by name, when they changed.
std::vector<std::string> reloadable_changes(const mqtt::broker::limits& x,
                                            const mqtt::broker::limits& y) {
    std::vector<std::string> out;
    const auto check = [&](bool same, const char* name) {
        if (!same) out.emplace_back(name);
    };
    check(x.max_queued_messages == y.max_queued_messages, "max_queued_messages");
    check(x.max_queued_bytes == y.max_queued_bytes, "max_queued_bytes");
    check(x.max_outbound_bytes == y.max_outbound_bytes, "max_outbound_bytes");
    check(x.max_inflight_bytes == y.max_inflight_bytes, "max_inflight_bytes");
    check(x.max_subscriptions == y.max_subscriptions, "max_subscriptions");
    check(x.max_topic_length == y.max_topic_length, "max_topic_length");
    check(x.max_topic_levels == y.max_topic_levels, "max_topic_levels");
    check(x.max_client_id_length == y.max_client_id_length, "max_client_id_length");
    check(x.max_publish_rate == y.max_publish_rate, "max_publish_rate");
    check(x.memory_limit == y.memory_limit, "memory_limit");
    check(x.connect_timeout == y.connect_timeout, "connect_timeout_ms");
    check(x.backpressure_timeout == y.backpressure_timeout, "backpressure_timeout_ms");
    check(x.persistent_client_expiration == y.persistent_client_expiration,
          "persistent_client_expiration");
    check(x.max_keepalive == y.max_keepalive, "max_keepalive");
    check(x.max_offline_sessions == y.max_offline_sessions, "max_offline_sessions");
    check(x.queue_qos0_messages == y.queue_qos0_messages, "queue_qos0_messages");
    check(x.upgrade_outgoing_qos == y.upgrade_outgoing_qos, "upgrade_outgoing_qos");
    return out;
}

struct running {
    const broker_options& opts;
    log_sink& sink;
    config current;
    int engine_verbosity = 1;  // the most detail the engine was started with
    mqtt::net::server* server = nullptr;
};

// The TLS files of the `connection` blocks, loaded once: the first error.
std::string check_bridge_tls(const config& c) {
    for (const auto& b : c.bridges)
        if (auto error = mqtt::bridge::check_tls(b); !error.empty())
            return "bridge '" + b.name + "', " + error;
    return {};
}

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
    return out;
}

// password_file and acl_file, read again; nullptr (after logging why) when one is bad.
std::shared_ptr<const mqtt::broker::security_policy> load_security(const config& c,
                                                                   const log_sink& sink) {
    auto sec = mqtt::broker::load_security(c);
    for (const auto& w : sec.warnings) sink.say(log_level::warning, log_kind::warning, w);
    if (!sec.value) sink.say(log_level::error, log_kind::error, sec.error);
    return sec.value;
}

// per_listener_settings true: each listener's allow_anonymous, password_file and acl_file,
// by listener index; without it, when a listener has options that are always its own
// (use_username_as_clientid), every listener's policy is `broker`'s with those options;
// otherwise an empty map. nullopt (after logging why) when one is bad.
using listener_policies = std::map<std::size_t, std::shared_ptr<const mqtt::broker::security_policy>>;
std::optional<listener_policies> load_listener_security(
    const config& c, const std::shared_ptr<const mqtt::broker::security_policy>& broker,
    const log_sink& sink, bool slots_anyway = false) {
    listener_policies out;
    if (!c.per_listener_settings) {
        if (!mqtt::broker::needs_listener_slots(c) && !slots_anyway) return out;
        for (std::size_t i = 0; i < c.listeners.size(); ++i)
            out[i] = mqtt::broker::with_listener_options(*broker, c.listeners[i]);
        return out;
    }
    for (std::size_t i = 0; i < c.listeners.size(); ++i) {
        auto sec = mqtt::broker::load_security(c, c.listeners[i]);
        for (const auto& w : sec.warnings) sink.say(log_level::warning, log_kind::warning, w);
        if (!sec.value) {
            sink.say(log_level::error, log_kind::error, sec.error);
            return std::nullopt;
        }
        out[i] = std::move(sec.value);
    }
    return out;
}

// Applies what can change under a running broker (logging, max_connections, passwords,
// ACL, allow_anonymous, most limits) and names the rest; a file with an error changes
// nothing.
void reload(running& r) {
    if (r.opts.config_file.empty()) {
        r.sink.say(log_level::notice, log_kind::reload,
                   "SIGHUP: no configuration file (-c), nothing to reload");
        return;
    }
    auto loaded = mqtt::broker::load_config_file(r.opts.config_file);
    if (!loaded) {
        r.sink.say(log_level::error, log_kind::reload,
                   "reload failed, keeping the running configuration: " + loaded.error.to_string());
        return;
    }
    config next = std::move(*loaded.value);
    auto security = load_security(next, r.sink);
    // Listeners that have a policy slot keep one, so that it follows the new files.
    auto per_listener =
        security ? load_listener_security(next, security, r.sink,
                                          mqtt::broker::needs_listener_slots(r.current))
                 : std::nullopt;
    if (!security || !per_listener) {
        r.sink.say(log_level::error, log_kind::reload,
                   "reload failed, keeping the running configuration");
        return;
    }
    mqtt::broker::apply_command_line_port(
        next, r.opts.port_given ? std::optional{r.opts.port} : std::nullopt);
    auto restart = needs_restart(r.current, next);
    std::vector<std::string> applied;
    std::vector<std::string> tls_failed;
    int verbosity = effective_verbosity(r.opts, next);
    if (verbosity > r.engine_verbosity) {
        restart.emplace_back("log_type (more detail than at start)");
        verbosity = r.engine_verbosity;
    }
    if (verbosity != r.sink.verbosity() || next.log.types != r.current.log.types) {
        applied.emplace_back("log_type");
    }
    if (next.log.connection_messages != r.current.log.connection_messages) {
        applied.emplace_back("connection_messages");
    }
    if (next.log.timestamp != r.current.log.timestamp) applied.emplace_back("log_timestamp");
    if (auto changed = reloadable_changes(r.current.limits, next.limits); !changed.empty()) {
        r.server->set_limits(next.limits);
        applied.insert(applied.end(), changed.begin(), changed.end());
    }
    if (auto changed = mqttsn_changes(r.current, next); !changed.empty()) {
        auto s = mqttsn_settings_of(next);
        if (s.receive_buffer == 0) s.receive_buffer = r.current.mqttsn.receive_buffer;
        r.server->set_mqttsn(s);
        applied.insert(applied.end(), changed.begin(), changed.end());
    }
    r.server->set_security(std::move(security));
    if (!next.password_file.empty()) applied.emplace_back("password_file");
    if (!next.acl_file.empty()) applied.emplace_back("acl_file");
    if (next.per_listener_settings != r.current.per_listener_settings) {
        restart.emplace_back("per_listener_settings");
    } else if (next.per_listener_settings && same_listeners(r.current, next)) {
        for (auto& [i, p] : *per_listener) r.server->set_listener_security(i, std::move(p));
        applied.emplace_back("allow_anonymous, password_file and acl_file of each listener");
    } else if (next.per_listener_settings) {
        restart.emplace_back("per-listener security of changed listeners");
    } else if (!per_listener->empty() && same_listeners(r.current, next)) {
        for (auto& [i, p] : *per_listener) r.server->set_listener_security(i, std::move(p));
    } else if (!per_listener->empty()) {
        restart.emplace_back("use_username_as_clientid of changed listeners");
    }
    if (same_listeners(r.current, next)) {
        for (std::size_t i = 0; i < next.listeners.size(); ++i) {
            if (next.listeners[i].use_username_as_clientid ==
                r.current.listeners[i].use_username_as_clientid) {
                continue;
            }
            applied.push_back("use_username_as_clientid of " +
                              next.listeners[i].origin.to_string());
        }
    }
    if (next.allow_anonymous != r.current.allow_anonymous) applied.emplace_back("allow_anonymous");
    // The bridges as tern-bridge reloads them (each matched by its connection name); TLS
    // files that cannot be loaded keep the running bridges.
    if (const auto error = check_bridge_tls(next); !error.empty()) {
        tls_failed.push_back("bridges not reloaded, the running ones stay (" + error + ")");
        next.bridges = r.current.bridges;
    } else if (!next.bridges.empty() || !r.current.bridges.empty()) {
        r.server->set_bridges(next.bridges);
        applied.emplace_back("connection blocks (bridges)");
    }
    if (same_listeners(r.current, next)) {
        // Certificates, keys, CAs and CRLs are read again: renewed files take effect for new
        // connections; open ones keep theirs. A file that fails keeps the running settings.
        for (std::size_t i = 0; i < next.listeners.size(); ++i) {
            if (!next.listeners[i].tls_enabled()) continue;
            const auto error = r.server->set_tls(i, next.listeners[i].tls);
            if (error.empty()) {
                applied.push_back("TLS of " + next.listeners[i].origin.to_string());
            } else {
                tls_failed.push_back("TLS of " + next.listeners[i].origin.to_string() +
                                     " not reloaded, the running files stay (" + error + ")");
                next.listeners[i].tls = r.current.listeners[i].tls;
            }
        }
        for (std::size_t i = 0; i < next.listeners.size(); ++i) {
            const auto max = next.listeners[i].max_connections;
            if (max == r.current.listeners[i].max_connections) continue;
            r.server->set_max_connections(i, max);
            applied.push_back("max_connections of " + next.listeners[i].origin.to_string());
        }
    }
    next.log.dest = r.current.log.dest;  // not reloaded
    r.sink.configure(next, verbosity, r.opts.log_format == mqtt::cli::output_format::json);
    std::string msg = "reloaded " + r.opts.config_file + ": ";
    msg += applied.empty() ? "nothing to apply" : "applied " + join(applied);
    if (!restart.empty()) msg += "; changed but needing a restart: " + join(restart);
    if (!tls_failed.empty()) msg += "; " + join(tls_failed);
    const bool clean = restart.empty() && tls_failed.empty();
    r.sink.say(clean ? log_level::notice : log_level::warning, log_kind::reload, msg);
    // What was not applied stays as it runs, so the next reload compares with that.
    auto kept_limits = r.current.limits;
    mqtt::broker::copy_reloadable(next.limits, kept_limits);
    const auto kept_sys = r.current.sys_interval;
    const auto kept_threads = r.current.threads;
    const auto kept_metrics = r.current.metrics;
    auto kept_mqttsn = next.mqttsn;
    kept_mqttsn.advertise_interval = r.current.mqttsn.advertise_interval;
    kept_mqttsn.advertise_host = r.current.mqttsn.advertise_host;
    kept_mqttsn.advertise_port = r.current.mqttsn.advertise_port;
    if (kept_mqttsn.receive_buffer == 0) kept_mqttsn.receive_buffer = r.current.mqttsn.receive_buffer;
    auto kept_listeners = r.current.listeners;
    if (same_listeners(r.current, next)) kept_listeners = next.listeners;
    r.current = std::move(next);
    r.current.limits = kept_limits;
    r.current.sys_interval = kept_sys;
    r.current.threads = kept_threads;
    r.current.metrics = kept_metrics;
    r.current.listeners = std::move(kept_listeners);
    r.current.mqttsn = std::move(kept_mqttsn);
}

// ---- start

// --check-store: the report of store::load_file as one JSON line. Given a directory, the
// other shards' files there (threads > 1: NAME.shardK) are reported too, under "shards".
mqtt::cli::exit_status check_store(const broker_options& o, const config& c, const log_sink& sink) {
    std::error_code ec;
    std::string path = o.check_store;
    std::vector<std::string> others;
    bool commit_pending = false;
    if (std::filesystem::is_directory(path, ec)) {
        // A set of new files a start left half replaced: the next start finishes it first,
        // so the files read here are not yet what the broker would load.
        commit_pending = std::filesystem::exists(
            std::filesystem::path{path} / mqtt::store::store_set_commit_name(c.persistence.file),
            ec);
        for (const auto k : mqtt::store::shard_files(path, c.persistence.file)) {
            others.push_back(
                (std::filesystem::path{path} / mqtt::store::shard_file(c.persistence.file, k))
                    .string());
        }
        path = (std::filesystem::path{path} / c.persistence.file).string();
    }
    auto loaded = mqtt::store::load_file(path);
    if (!loaded) {
        sink.say(log_level::error, log_kind::error,
                 "cannot read the store " + path + ": " + loaded.error().message());
        return mqtt::cli::exit_status::usage;
    }
    bool clean = loaded->report.clean();
    std::string out = mqtt::store::report_json(path, *loaded);
    out.pop_back();  // the closing brace: the other shards' reports go before it
    out += ",\"shards\":[";
    for (std::size_t i = 0; i < others.size(); ++i) {
        auto l = mqtt::store::load_file(others[i]);
        if (!l) {
            sink.say(log_level::error, log_kind::error,
                     "cannot read the store " + others[i] + ": " + l.error().message());
            return mqtt::cli::exit_status::usage;
        }
        clean = clean && l->report.clean();
        if (i != 0) out += ',';
        out += mqtt::store::report_json(others[i], *l);
    }
    out += "]";
    if (commit_pending) out += ",\"commit_pending\":true";
    out += "}";
    std::cout << out << '\n' << std::flush;
    return clean ? mqtt::cli::exit_status::ok : mqtt::cli::exit_status::failure;
}

mqtt::cli::exit_status run_broker(const broker_options& o) {
    const bool json = o.log_format == mqtt::cli::output_format::json;
    log_sink sink;
    sink.configure(config{}, o.verbosity_given ? o.verbosity : 0, json);
    auto cfg = load(o, sink);
    if (!cfg) return mqtt::cli::exit_status::usage;
    if (!o.check_store.empty()) return check_store(o, *cfg, sink);
    const auto port_note = mqtt::broker::apply_command_line_port(
        *cfg, o.port_given ? std::optional{o.port} : std::nullopt);
    const int verbosity = effective_verbosity(o, *cfg);
    // Certificate and key files are read now, so a missing one stops the start (or
    // --print-config) with its FILE:LINE rather than a listener that refuses everyone.
    for (const auto& l : cfg->listeners) {
        if (!l.tls_enabled()) continue;
        if (const auto error = mqtt::net::check_tls_settings(l.tls); !error.empty()) {
            sink.say(log_level::error, log_kind::error, error);
            return mqtt::cli::exit_status::usage;
        }
    }
    if (const auto error = check_bridge_tls(*cfg); !error.empty()) {
        sink.say(log_level::error, log_kind::error, error);
        return mqtt::cli::exit_status::usage;
    }
    auto security = load_security(*cfg, sink);
    if (!security) return mqtt::cli::exit_status::usage;
    auto per_listener = load_listener_security(*cfg, security, sink);
    if (!per_listener) return mqtt::cli::exit_status::usage;
    if (o.print_config) {
        cfg->log.verbosity = verbosity;
        cfg->log.json = json;
        if (!port_note.empty()) cfg->warnings.push_back(port_note);
        std::cout << mqtt::broker::to_json(*cfg) << std::flush;
        return mqtt::cli::exit_status::ok;
    }
    sink.configure(*cfg, verbosity, json);
    running state{o, sink, *cfg, std::max(verbosity, 1), nullptr};
    mqtt::net::server_options so;
    so.listeners = listen_addresses(*cfg);
    so.mqttsn_listeners = mqttsn_listen_addresses(*cfg);
    so.limits = cfg->limits;
    so.sys_interval = cfg->sys_interval;
    so.threads = cfg->threads;
    so.security = std::move(security);
    so.listener_security = std::move(*per_listener);
    so.handle_signals = true;
    // Connection lines are always produced, so a reload can turn them on.
    so.verbosity = state.engine_verbosity;
    so.events = [&sink](const log_event& e) { sink(e); };
    so.on_reload = [&state] { reload(state); };
    so.persistence = cfg->persistence;
    so.bridges = cfg->bridges;
    if (cfg->metrics) {
        so.metrics = mqtt::net::listen_address{cfg->metrics->bind, cfg->metrics->port};
    }
    std::string failed;
    auto server = mqtt::net::server::create(std::move(so), &failed);
    if (!server) {
        if (failed.starts_with("bridge ")) {  // a queue_dir that cannot be used
            sink.say(log_level::error, log_kind::error, failed);
            return mqtt::cli::exit_status::usage;
        }
        const bool store = failed.starts_with("store ");
        sink.say(log_level::error, log_kind::error,
                 (store ? "cannot write the " : "cannot listen on ") + failed + ": " +
                     server.error().message());
        return mqtt::cli::exit_status::failure;
    }
    state.server = server->get();
    std::string bound;
    for (const auto& a : (*server)->local_addresses()) bound += (bound.empty() ? "" : ", ") + a;
    for (const auto& a : (*server)->mqttsn_addresses())
        bound += (bound.empty() ? "MQTT-SN " : ", MQTT-SN ") + a;
    log_event start;
    start.verbosity = -1;  // even with --quiet: scripts read the port from it
    start.event = log_kind::start;
    const auto msg = "listening on " + bound + " (Tern " + std::string{mqtt::version_string} + ")";
    start.msg = msg;
    sink(start);
    if (const auto m = (*server)->metrics_address(); !m.empty()) {
        log_event metrics = start;  // like the start line: scripts read the port from it
        const auto line = "metrics on http://" + m + "/metrics";
        metrics.msg = line;
        sink(metrics);
    }
    for (const auto& w : (*server)->warnings()) sink.say(log_level::warning, log_kind::warning, w);
    for (const auto& w : cfg->warnings) sink.say(log_level::warning, log_kind::warning, w);
    if (!port_note.empty()) sink.say(log_level::warning, log_kind::warning, port_note);
    (*server)->run();
    return mqtt::cli::exit_status::ok;
}

}  // namespace

int main(int argc, char** argv) {
    // A file size limit (ulimit -f) makes a store write fail with EFBIG, which the store
    // reports and survives (publishes refused until it can write), instead of killing us.
    std::signal(SIGXFSZ, SIG_IGN);
    CLI::App app{
        "The Tern MQTT broker: MQTT 3.1, 3.1.1 and 5.0 clients over TCP, TLS and WebSocket, on "
        "several IPv4 and IPv6 listeners. Logs go to standard error; SIGHUP reloads the "
        "configuration file."};
    broker_options opts;
    mqtt::cli::init_app(app, "tern-broker", examples);
    add_broker_options(app, opts);
    tern_broker::passwd_options passwd;
    auto* passwd_cmd = tern_broker::add_passwd_command(app, passwd);
    return mqtt::cli::run(app, argc, argv, [&] {
        if (*passwd_cmd)
            return static_cast<mqtt::cli::exit_status>(tern_broker::run_passwd(passwd));
        opts.port_given = app.count("--port") > 0;
        opts.verbosity_given = app.count("--verbose") + app.count("--quiet") > 0;
        return run_broker(opts);
    });
}
