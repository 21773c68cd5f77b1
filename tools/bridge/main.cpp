// tern-bridge: relay messages between two brokers by topic rules.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mqtt/bridge/config.hpp"
#include "mqtt/bridge/runner.hpp"
#include "mqtt/cli/options.hpp"
#include "mqtt/client/cli_config.hpp"

namespace {

namespace bridge = mqtt::bridge;
using mqtt::protocol::protocol_version;

struct bridge_options {
    std::string config_file;
    std::string local_url = "mqtt://localhost:1883";
    std::vector<std::string> remote_urls;
    std::vector<std::string> topics;  // "PATTERN [in|out|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX]"
    std::string name = "bridge";
    std::string remote_id;
    std::string local_id;
    std::string remote_username, remote_password, local_username, local_password;
    protocol_version version = protocol_version::v3_1_1;
    std::uint16_t keepalive = 60;
    bool clean_session = false;
    std::string restart_timeout = "5:30";
    bool round_robin = false;
    bool no_try_private = false;
    bool notifications = false;
    std::string notification_topic;
    double stats_interval = 5;
    std::string queue_dir;
    std::string queue_max_bytes = "1G";
    std::string queue_full_policy = "block";
    std::string metrics_listener;  // [ADDR:]PORT
    mqtt::cli::tls_options tls;    // for the remote broker
    int verbosity = 0;
    mqtt::cli::output_format format = mqtt::cli::output_format::text;
};

constexpr const char* examples =
    "  tern-bridge --remote mqtt://central:1883 --topic 'sensors/# out 1 site1/ \"\"'\n"
    "  tern-bridge --local mqtt://127.0.0.1:1883 --remote mqtt://a:1883 --remote mqtt://b:1883 \\\n"
    "      -t 'cmd/# in 2' -t 'state/# both 1 \"\" site1/' -V 5 --json\n"
    "  tern-bridge -c bridges.conf -v\n";

void add_bridge_options(CLI::App& app, bridge_options& o) {
    auto* config =
        app.add_option("-c,--config", o.config_file,
                       "Read the bridges from FILE in Mosquitto's bridge syntax (connection, "
                       "address, topic, remote_clientid, ...) and again on SIGHUP; the flags below "
                       "then do not apply except --local, the local broker of every bridge "
                       "without local_address")
            ->type_name("FILE")
            ->check(CLI::ExistingFile.description(""));
    app.add_option("--local", o.local_url,
                   "Local broker as mqtt(s)://[USER[:PASSWORD]@]HOST[:PORT], or "
                   "ws(s)://[USER[:PASSWORD]@]HOST[:PORT][/PATH] for MQTT over WebSocket; "
                   "mqtts:// and wss:// are TLS with the TLS options below (with --config they "
                   "turn it on) (default: mqtt://localhost:1883)")
        ->type_name("URL");
    app.add_option("--remote", o.remote_urls,
                   "Remote broker as mqtt(s)://[USER[:PASSWORD]@]HOST[:PORT] or "
                   "ws(s)://[USER[:PASSWORD]@]HOST[:PORT][/PATH]; mqtts://, wss://, or any of "
                   "--cafile, --capath, --cert, turns TLS on (port 8883, 443 for wss://, by "
                   "default); repeat for fail-over addresses (credentials from the first); "
                   "required without --config")
        ->type_name("URL")
        ->excludes(config);
    app.add_option("-t,--topic", o.topics,
                   "Topic rule 'PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]' as "
                   "Mosquitto's topic option (\"\" for empty; default direction: out, QoS 0); "
                   "repeat for more")
        ->type_name("RULE")
        ->allow_extra_args(false)
        ->excludes(config);
    const auto flag_only = [&](CLI::Option* opt) { return opt->excludes(config); };
    flag_only(app.add_option("--name", o.name,
                             "Bridge name, in events and the default client ids (default: bridge)")
                  ->type_name("NAME"));
    flag_only(app.add_option("--remote-id", o.remote_id,
                             "Client id at the remote broker (default: HOSTNAME.NAME)")
                  ->type_name("ID"));
    flag_only(app.add_option("--local-id", o.local_id,
                             "Client id at the local broker (default: local.REMOTE_ID)")
                  ->type_name("ID"));
    flag_only(
        app.add_option("--remote-username", o.remote_username, "User name at the remote broker")
            ->type_name("USER"));
    flag_only(
        app.add_option("--remote-password", o.remote_password, "Password at the remote broker")
            ->type_name("PASSWORD"));
    flag_only(app.add_option("--local-username", o.local_username, "User name at the local broker")
                  ->type_name("USER"));
    flag_only(app.add_option("--local-password", o.local_password, "Password at the local broker")
                  ->type_name("PASSWORD"));
    static const std::map<std::string, protocol_version> versions{{"31", protocol_version::v3_1},
                                                                  {"311", protocol_version::v3_1_1},
                                                                  {"5", protocol_version::v5}};
    flag_only(app.add_option_function<std::string>(
                     "-V,--protocol-version",
                     [&o](const std::string& v) { o.version = versions.at(v); },
                     "MQTT version towards both brokers: 31, 311 (default) or 5")
                  ->type_name("VERSION")
                  ->check(CLI::IsMember({"31", "311", "5"}).description("")));
    flag_only(app.add_option("-k,--keepalive", o.keepalive,
                             "Keep-alive in seconds, both sides (default: 60)")
                  ->type_name("SECONDS")
                  ->check(CLI::Range(5, 65535).description("")));
    flag_only(app.add_flag("--clean-session", o.clean_session,
                           "Start clean sessions (default: persistent, so the brokers keep what "
                           "arrives for the bridge while it is away)"));
    flag_only(app.add_option("--restart-timeout", o.restart_timeout,
                             "Reconnect back-off in seconds as BASE[:MAX], jittered and doubling "
                             "from BASE up to MAX (default: 5:30)")
                  ->type_name("BASE[:MAX]"));
    flag_only(app.add_flag("--round-robin", o.round_robin,
                           "Treat the --remote addresses as equals (default: the first is the "
                           "main one, returned to after a fail-over)"));
    flag_only(app.add_flag("--no-try-private", o.no_try_private,
                           "Do not announce a bridge with protocol level 0x83/0x84 (MQTT 3.1 and "
                           "3.1.1)"));
    flag_only(app.add_flag("--notifications", o.notifications,
                           "Publish 1 (retained) to the state topic while the remote broker is "
                           "connected, 0 after (a will at the remote broker)"));
    flag_only(app.add_option("--notification-topic", o.notification_topic,
                             "State topic (default: $SYS/broker/connection/REMOTE_ID/state)")
                  ->type_name("TOPIC"));
    app.add_option("--queue-dir", o.queue_dir,
                   "Keep QoS 1/2 messages in an on-disk queue under DIR (DIR/NAME.local, "
                   "DIR/NAME.remote): acknowledged to their source once on disk, sent on in "
                   "order, kept across restarts; with --config, for bridges without queue_dir")
        ->type_name("DIR");
    app.add_option("--queue-max-bytes", o.queue_max_bytes,
                   "Bound of each on-disk queue, with K, M or G (default: 1G)")
        ->type_name("BYTES");
    app.add_option("--queue-full-policy", o.queue_full_policy,
                   "When a queue is full: block (stop reading the source, which keeps the "
                   "messages), drop-new or drop-oldest (default: block)")
        ->type_name("POLICY")
        ->check(CLI::IsMember({"block", "drop-new", "drop-oldest"}).description(""));
    app.add_option("--metrics-listener", o.metrics_listener,
                   "Serve Prometheus metrics (the tern_bridge_* families of tern-broker's "
                   "/metrics: connected sides, connects, messages forwarded, queued, dropped) "
                   "at http://ADDR:PORT/metrics, and /healthz; ADDR is numeric ([::1] for "
                   "IPv6), 127.0.0.1 when left out; PORT 0 picks a free port, named in the "
                   "metrics_listening event")
        ->type_name("[ADDR:]PORT");
    app.add_option("--stats-interval", o.stats_interval,
                   "Seconds between statistics events (default: 5)")
        ->type_name("SECONDS")
        ->check(CLI::Range(0.05, 86400.0).description(""));
    mqtt::cli::add_tls_options(app, o.tls);
    mqtt::cli::add_output_format(app, o.format);
    mqtt::cli::add_verbosity(app, o.verbosity, "-v,--verbose");
}

std::string hostname() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
    return buf;
}

// `tls`: TLS even for mqtt:// or ws:// (the TLS flags turn it on, as in tern-pub).
bridge::address url_address(const mqtt::cli::url_parts& u, bool tls) {
    const bool on = u.tls || tls;
    const auto port = u.websocket ? (on ? 443 : 80) : (on ? 8883 : 1883);
    return {u.host, u.port != 0 ? u.port : std::uint16_t(port), on, u.websocket,
            u.websocket ? u.path : std::string{}};
}

std::chrono::milliseconds seconds_ms(double s) {
    return std::chrono::milliseconds{static_cast<long long>(std::llround(s * 1000))};
}

void parse_restart(const std::string& text, bridge::bridge_config& b) {
    const auto colon = text.find(':');
    try {
        std::size_t used = 0;
        const double base = std::stod(text.substr(0, colon), &used);
        double max = base;
        if (colon != std::string::npos) max = std::stod(text.substr(colon + 1));
        if (!(base > 0) || !(max >= base) || max > 86400) throw std::invalid_argument(text);
        b.restart_base = seconds_ms(base);
        b.restart_max = seconds_ms(max);
    } catch (const std::exception&) {
        throw CLI::ValidationError("--restart-timeout",
                                   "expected BASE[:MAX] seconds with 0 < BASE <= MAX: " + text);
    }
}

// "[ADDR:]PORT" -> address (default 127.0.0.1) and port; a bad one is a usage error.
std::pair<std::string, std::uint16_t> parse_metrics_listener(const std::string& text) {
    std::string host = "127.0.0.1";
    std::string port = text;
    if (text.starts_with('[')) {
        const auto close = text.find("]:");
        if (close == std::string::npos) {
            port.clear();
        } else {
            host = text.substr(1, close - 1);
            port = text.substr(close + 2);
        }
    } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    const bool digits =
        !port.empty() && port.size() <= 5 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (host.empty() || !digits || std::stoul(port) > 65535) {
        const std::string why = "expected [ADDR:]PORT, a numeric address and a port 0 to 65535: ";
        throw CLI::ValidationError("--metrics-listener", why + text);
    }
    return {host, static_cast<std::uint16_t>(std::stoul(port))};
}

bridge::queue_settings queue_from_flags(const bridge_options& o) {
    bridge::queue_settings q;
    q.dir = o.queue_dir;
    auto n = bridge::parse_byte_size(o.queue_max_bytes);
    if (!n)
        throw CLI::ValidationError("--queue-max-bytes",
                                   "bytes with K, M or G, at least 64K: " + o.queue_max_bytes);
    q.max_bytes = *n;
    q.policy = bridge::parse_full_policy(o.queue_full_policy).value_or(bridge::full_policy::block);
    return q;
}

bridge::bridge_config from_flags(const bridge_options& o, const mqtt::cli::url_parts& local) {
    bridge::bridge_config b;
    b.queue = queue_from_flags(o);
    b.name = o.name;
    for (const auto& url : o.remote_urls) {
        auto u = mqtt::cli::require_url("--remote", url);
        b.remote.addresses.push_back(url_address(u, o.tls.requested()));
        if (&url == &o.remote_urls.front()) {
            if (!u.username.empty()) b.remote.username = u.username;
            if (!u.password.empty()) b.remote.password = u.password;
        }
    }
    b.local.addresses.push_back(url_address(local, false));
    b.remote.tls = b.local.tls = mqtt::client::to_tls_settings(o.tls);
    if (!local.username.empty()) b.local.username = local.username;
    if (!local.password.empty()) b.local.password = local.password;
    if (!o.remote_username.empty()) b.remote.username = o.remote_username;
    if (!o.remote_password.empty()) b.remote.password = o.remote_password;
    if (!o.local_username.empty()) b.local.username = o.local_username;
    if (!o.local_password.empty()) b.local.password = o.local_password;
    for (const auto& t : o.topics) {
        auto r = bridge::parse_rule(t);
        if (!r.rule) throw CLI::ValidationError("--topic", "'" + t + "': " + r.error);
        b.topics.push_back(std::move(*r.rule));
    }
    b.remote.client_id = o.remote_id.empty() ? hostname() + "." + o.name : o.remote_id;
    b.local.client_id = o.local_id.empty() ? "local." + b.remote.client_id : o.local_id;
    b.version = o.version;
    b.keepalive = o.keepalive;
    b.clean_session = o.clean_session;
    parse_restart(o.restart_timeout, b);
    b.round_robin = o.round_robin;
    b.try_private = !o.no_try_private;
    b.notifications = o.notifications;
    b.notification_topic = o.notification_topic;
    return b;
}

// The TLS files of every bridge, loaded once to see that they can be: the first error.
std::string check_tls(const std::vector<bridge::bridge_config>& bridges) {
    for (const auto& b : bridges)
        if (auto error = bridge::check_tls(b); !error.empty())
            return "bridge '" + b.name + "', " + error;
    return {};
}

// The -c file, at start and on SIGHUP. With a file the TLS flags are the local broker's
// (the remote ones are in it).
bridge::reload_result load_file(const bridge_options& opts, const mqtt::cli::url_parts& local) {
    std::ifstream in(opts.config_file, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return {{}, opts.config_file + ": cannot read the file"};
    auto r = bridge::parse_config(text.str(), opts.config_file, hostname(),
                                  url_address(local, opts.tls.requested()), queue_from_flags(opts));
    if (r.error) return {{}, r.error->to_string()};
    for (auto& b : r.bridges) b.local.tls = mqtt::client::to_tls_settings(opts.tls);
    if (auto error = check_tls(r.bridges); !error.empty()) return {{}, error};
    return {std::move(r.bridges), {}};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Relay messages between a local and a remote MQTT broker by topic rules, in either "
        "direction, with topic prefixes; a QoS 1 or 2 message is acknowledged to the broker it "
        "came from only once the other broker has it."};
    bridge_options opts;
    mqtt::cli::init_app(app, "tern-bridge", examples);
    add_bridge_options(app, opts);
    return mqtt::cli::run(app, argc, argv, [&] {
        const auto local = mqtt::cli::require_url("--local", opts.local_url);
        std::vector<bridge::bridge_config> bridges;
        if (!opts.config_file.empty()) {
            auto r = load_file(opts, local);
            if (!r.error.empty()) {
                std::cerr << "tern-bridge: " << r.error << '\n';
                return mqtt::cli::exit_status::usage;
            }
            bridges = std::move(r.bridges);
        } else {
            if (opts.remote_urls.empty()) throw CLI::RequiredError("--remote (or --config)");
            if (opts.topics.empty()) throw CLI::RequiredError("--topic (or --config)");
            bridges.push_back(from_flags(opts, local));
            const auto& b = bridges.back();
            const bool tls = std::any_of(b.local.addresses.begin(), b.local.addresses.end(),
                                         [](const auto& a) { return a.tls; }) ||
                             std::any_of(b.remote.addresses.begin(), b.remote.addresses.end(),
                                         [](const auto& a) { return a.tls; });
            if (opts.tls.insecure && !tls)
                throw CLI::ValidationError("--insecure",
                                           "needs TLS (an mqtts:// URL, --cafile or --capath)");
            if (auto error = check_tls(bridges); !error.empty()) {
                std::cerr << "tern-bridge: " << error << '\n';
                return mqtt::cli::exit_status::usage;
            }
        }
        bridge::run_options ro;
        ro.json = opts.format == mqtt::cli::output_format::json;
        ro.verbosity = opts.verbosity;
        ro.stats_interval = seconds_ms(opts.stats_interval);
        if (!opts.metrics_listener.empty())
            std::tie(ro.metrics_host, ro.metrics_port) =
                parse_metrics_listener(opts.metrics_listener);
        if (!opts.config_file.empty()) ro.reload = [&] { return load_file(opts, local); };
        if (bridge::run(std::move(bridges), ro, std::cout, std::cerr) != 0)
            return mqtt::cli::exit_status::usage;  // a queue_dir or metrics port unusable
        return mqtt::cli::exit_status::ok;
    });
}
