#include "mqtt/cli/options.hpp"

#include <CLI/CLI.hpp>
#include <charconv>
#include <iostream>
#include <map>
#include <memory>

#include "mqtt/protocol/utf8.hpp"
#include "mqtt/version.hpp"

namespace mqtt::cli {

namespace {

constexpr const char* connection_group = "Connection";
constexpr const char* tls_group = "TLS";
constexpr const char* output_group = "Output";

std::optional<std::uint16_t> parse_port(std::string_view s) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    if (value == 0 || value > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

// "host", "host:port", "[v6addr]" or "[v6addr]:port" into parts; false if malformed.
bool split_host_port(std::string_view hp, url_parts& out) {
    std::string_view port;
    if (!hp.empty() && hp.front() == '[') {
        auto close = hp.find(']');
        if (close == std::string_view::npos) return false;
        out.host = std::string(hp.substr(1, close - 1));
        auto rest = hp.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return false;
            port = rest.substr(1);
            if (port.empty()) return false;
        }
    } else {
        auto colon = hp.rfind(':');
        out.host = std::string(hp.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = hp.substr(colon + 1);
            if (port.empty()) return false;
        }
    }
    if (out.host.empty()) return false;
    if (!port.empty()) {
        auto p = parse_port(port);
        if (!p) return false;
        out.port = *p;
    }
    return true;
}

const std::map<std::string, protocol::protocol_version>& version_names() {
    using protocol::protocol_version;
    static const std::map<std::string, protocol_version> names{
        {"31", protocol_version::v3_1},    {"mqttv31", protocol_version::v3_1},
        {"311", protocol_version::v3_1_1}, {"mqttv311", protocol_version::v3_1_1},
        {"5", protocol_version::v5},       {"mqttv5", protocol_version::v5},
    };
    return names;
}

// An option taking one word of `names` (lower-case keys; the argument is matched in any case)
// and storing its value in `target`.
template <class T>
CLI::Option* add_choice(CLI::App& app, const std::string& name,
                        const std::map<std::string, T>& names, T& target, const std::string& what) {
    std::vector<std::string> words;
    for (const auto& entry : names) words.push_back(entry.first);
    return app
        .add_option_function<std::string>(
            name,
            [&names, &target](const std::string& word) {
                target = names.at(CLI::detail::to_lower(word));  // IsMember checked it
            },
            what)
        ->check(CLI::IsMember(words, CLI::ignore_case).description(""));
}

void add_format_option(CLI::App& app, output_format& format, const std::string& name,
                       const std::string& what) {
    static const std::map<std::string, output_format> names{{"text", output_format::text},
                                                            {"json", output_format::json}};
    add_choice(app, name, names, format, what + ": text (default) or json")
        ->type_name("FORMAT")
        ->group(output_group);
}

// Greedy word wrap; the CLI11 formatter indents what follows each '\n'.
std::string wrap(std::string_view text, std::size_t width) {
    std::string out;
    std::size_t line = 0;
    while (!text.empty()) {
        auto space = text.find(' ');
        auto word = text.substr(0, space);
        text = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
        if (line > 0 && line + 1 + word.size() > width) {
            out += '\n';
            line = 0;
        } else if (line > 0) {
            out += ' ';
            ++line;
        }
        out += word;
        line += word.size();
    }
    return out;
}

// CLI11's formatter, with descriptions wrapped to fit 100 columns and without the
// "Needs:"/"Excludes:" lists, which the descriptions state in words.
class help_formatter : public CLI::Formatter {
  public:
    static constexpr std::size_t name_width = 34;
    static constexpr std::size_t total_width = 100;

    help_formatter() { column_width(name_width); }

    std::string make_description(const CLI::App* app) const override {
        return wrap(app->get_description(), total_width) + "\n";
    }
    std::string make_option_opts(const CLI::Option* opt) const override {
        if (!opt->nonpositional() || opt->get_type_size() == 0) return {};
        return " " + opt->get_type_name();
    }
    std::string make_option_desc(const CLI::Option* opt) const override {
        return wrap(opt->get_description(), total_width - name_width);
    }
};

}  // namespace

std::optional<url_parts> parse_url(std::string_view url) {
    url_parts out;
    static constexpr struct {
        std::string_view prefix;
        bool tls;
        bool websocket;
    } schemes[] = {{"mqtt://", false, false},
                   {"mqtts://", true, false},
                   {"ws://", false, true},
                   {"wss://", true, true}};
    bool known = false;
    if (constexpr std::string_view sn = "mqttsn://"; url.starts_with(sn)) {
        url.remove_prefix(sn.size());
        out.mqttsn = true;
        known = true;
    }
    for (const auto& s : schemes) {
        if (known) break;
        if (!url.starts_with(s.prefix)) continue;
        url.remove_prefix(s.prefix.size());
        out.tls = s.tls;
        out.websocket = s.websocket;
        known = true;
        break;
    }
    if (!known) return std::nullopt;
    auto slash = url.find('/');
    auto authority = url.substr(0, slash);
    if (out.websocket) {
        out.path = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
        if (out.path.find_first_of(" \t\r\n") != std::string::npos) return std::nullopt;
    } else if (slash != std::string_view::npos) {
        out.topic = std::string(url.substr(slash + 1));
    }
    auto at = authority.rfind('@');
    if (at != std::string_view::npos) {
        auto userinfo = authority.substr(0, at);
        auto colon = userinfo.find(':');
        out.username = std::string(userinfo.substr(0, colon));
        if (colon != std::string_view::npos) out.password = std::string(userinfo.substr(colon + 1));
        if (out.username.empty()) return std::nullopt;
        authority.remove_prefix(at + 1);
    }
    if (!split_host_port(authority, out)) return std::nullopt;
    return out;
}

url_parts require_url(std::string_view option, std::string_view url) {
    auto parts = parse_url(url);
    if (!parts)
        throw CLI::ValidationError(std::string(option),
                                   "not an mqtt(s):// or ws(s):// URL: " + std::string(url));
    if (parts->mqttsn)
        throw CLI::ValidationError(std::string(option),
                                   "mqttsn:// works with tern-pub, tern-sub and tern-bench only: " +
                                       std::string(url));
    return *parts;
}

void init_app(CLI::App& app, std::string_view tool, std::string_view examples) {
    std::string name(tool);
    app.name(name);
    app.set_help_flag("--help", "Print this help and exit");
    app.set_version_flag("--version", name + " " + version_string,
                         "Print \"" + name + " <version>\" and exit");
    app.failure_message([name](const CLI::App*, const CLI::Error& e) {
        return name + ": " + e.what() + "\nTry '" + name + " --help' for more information.\n";
    });
    app.formatter(std::make_shared<help_formatter>());
    app.footer("Examples:\n" + std::string(examples) + "\n" + exit_status_help());
}

void add_connection_options(CLI::App& app, connection_options& opts) {
    using protocol::protocol_version;
    app.add_option("-h,--host", opts.host, "Broker host name or address (default: localhost)")
        ->type_name("HOST")
        ->group(connection_group);
    app.add_option("-p,--port", opts.port, "Broker port (default: 1883, or 8883 with TLS)")
        ->type_name("PORT")
        ->check(CLI::Range(1, 65535).description(""))
        ->group(connection_group);
    app.add_option("-L,--url", opts.url,
                   "Broker and topic as one URL: mqtt(s)://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC; "
                   "or MQTT over WebSocket: ws(s)://[USER[:PASSWORD]@]HOST[:PORT][/PATH] (PATH: "
                   "the HTTP request path, default /; port 80, or 443 for wss); or MQTT-SN over "
                   "UDP: mqttsn://HOST[:PORT]/TOPIC (port 1883); mqtts:// and wss:// turn TLS "
                   "on; not with -h or -p")
        ->type_name("URL")
        ->check(CLI::Validator(
            [](std::string& s) {
                return parse_url(s) ? std::string{}
                                    : "not an mqtt(s)://, ws(s):// or mqttsn:// URL";
            },
            ""))
        ->excludes("--host")
        ->excludes("--port")
        ->group(connection_group);
    auto* id = app.add_option("-i,--id", opts.client_id,
                              "Client identifier (default: ID-PREFIX followed by the process id, "
                              "or one the broker assigns under MQTT 5.0)")
                   ->type_name("ID")
                   ->group(connection_group);
    app.add_option("-I,--id-prefix", opts.id_prefix,
                   "Prefix for a generated client identifier (default: tern-<tool>-); not with -i")
        ->type_name("PREFIX")
        ->excludes(id)
        ->group(connection_group);
    app.add_option("-u,--username", opts.username, "User name to authenticate with")
        ->type_name("USER")
        ->group(connection_group);
    app.add_option("-P,--pw", opts.password, "Password to authenticate with")
        ->type_name("PASSWORD")
        ->group(connection_group);
    app.add_option("-k,--keepalive", opts.keepalive,
                   "Keep-alive interval in seconds, 0 disables it (default: 60)")
        ->type_name("SECONDS")
        ->check(CLI::Range(0, 65535).description(""))
        ->group(connection_group);
    add_choice(app, "-V,--protocol-version", version_names(), opts.version,
               "MQTT version: 31 (3.1), 311 (3.1.1) or 5 (5.0, the default); "
               "mqttv31, mqttv311 and mqttv5 work too")
        ->type_name("VERSION")
        ->group(connection_group);
    app.add_flag_callback(
           "-c,--disable-clean-session", [&opts] { opts.clean_session = false; },
           "Resume the session stored by the broker for this client id instead of starting clean")
        ->group(connection_group);
    app.add_option("-x,--session-expiry", opts.session_expiry,
                   "MQTT 5.0 session expiry interval in seconds (default: 0, the session ends "
                   "with the connection)")
        ->type_name("SECONDS")
        ->group(connection_group);
}

void add_tls_options(CLI::App& app, tls_options& opts) {
    app.add_option("--cafile", opts.cafile,
                   "PEM file of trusted CA certificates; turns TLS on (without --cafile and "
                   "--capath, TLS trusts the system's CA certificates)")
        ->type_name("FILE")
        ->check(CLI::ExistingFile.description(""))
        ->group(tls_group);
    app.add_option("--capath", opts.capath,
                   "Directory of trusted CA certificates (hashed names); turns TLS on")
        ->type_name("DIR")
        ->check(CLI::ExistingDirectory.description(""))
        ->group(tls_group);
    auto* cert =
        app.add_option("--cert", opts.cert, "PEM client certificate for mutual TLS; needs --key")
            ->type_name("FILE")
            ->check(CLI::ExistingFile.description(""))
            ->group(tls_group);
    auto* key = app.add_option("--key", opts.key, "PEM private key of --cert")
                    ->type_name("FILE")
                    ->check(CLI::ExistingFile.description(""))
                    ->group(tls_group);
    cert->needs(key);
    key->needs(cert);
    app.add_flag("--insecure", opts.insecure,
                 "Do not check that the server certificate names the host (-h or the URL's "
                 "host, which is also sent as SNI); the chain is still checked (testing only)")
        ->group(tls_group);
    app.add_option("--tls-version", opts.tls_version,
                   "Lowest TLS version to accept: tlsv1.2 (default) or tlsv1.3")
        ->type_name("VERSION")
        ->check(CLI::IsMember({"tlsv1.2", "tlsv1.3"}).description(""))
        ->group(tls_group);
}

void add_qos_option(CLI::App& app, protocol::qos& target, std::string_view what) {
    using enum protocol::qos;
    static const std::map<std::string, protocol::qos> names{
        {"0", at_most_once}, {"1", at_least_once}, {"2", exactly_once}};
    add_choice(app, "-q,--qos", names, target,
               std::string(what) +
                   ": 0 (at most once, the default), 1 (at least once) or 2 (exactly once)")
        ->type_name("QOS");
}

void add_output_format(CLI::App& app, output_format& format) {
    add_format_option(app, format, "--format", "Output format");
    app.add_flag_callback(
           "--json", [&format] { format = output_format::json; },
           "Same as --format json: one JSON object per line")
        ->group(output_group);
}

void add_log_format(CLI::App& app, output_format& format) {
    add_format_option(app, format, "--log-format", "Log line format");
}

void add_verbosity(CLI::App& app, int& level, std::string_view flag) {
    auto* verbose =
        app.add_flag_function(
               std::string(flag), [&level](std::int64_t n) { level = static_cast<int>(n); },
               "Print more detail; repeat for even more")
            ->group(output_group);
    app.add_flag_callback(
           "--quiet", [&level] { level = -1; },
           "Print errors only; not with " + std::string(flag.substr(0, flag.find(','))))
        ->excludes(verbose)
        ->group(output_group);
}

void add_will_options(CLI::App& app, will_options& opts) {
    constexpr const char* will_group = "Will";
    auto* topic = app.add_option("--will-topic", opts.topic,
                                 "Topic of the will: the message the broker publishes for this "
                                 "client when its connection ends without DISCONNECT")
                      ->type_name("TOPIC")
                      ->group(will_group);
    app.add_option("--will-payload", opts.payload, "Payload of the will (default: empty)")
        ->type_name("TEXT")
        ->needs(topic)
        ->group(will_group);
    using enum protocol::qos;
    static const std::map<std::string, protocol::qos> names{
        {"0", at_most_once}, {"1", at_least_once}, {"2", exactly_once}};
    add_choice(app, "--will-qos", names, opts.qos, "Quality of service of the will: 0, 1 or 2")
        ->type_name("QOS")
        ->needs(topic)
        ->group(will_group);
    app.add_flag("--will-retain", opts.retain, "Ask the broker to retain the will")
        ->needs(topic)
        ->group(will_group);
}

void add_property_option(CLI::App& app, std::vector<std::vector<std::string>>& words,
                         std::string_view packets) {
    app.add_option("-D,--property", words,
                   "MQTT 5.0 property of a packet, with Mosquitto's names: PACKET is one of " +
                       std::string(packets) +
                       "; e.g. -D publish message-expiry-interval 60, -D publish user-property "
                       "KEY VALUE, -D connect session-expiry-interval 3600; repeat for more")
        ->type_name("PACKET PROPERTY VALUE")
        ->expected(3, 4)
        ->group(connection_group);
}

void add_client_options(CLI::App& app, client_options& opts, std::string_view verbosity_flag) {
    add_connection_options(app, opts.connection);
    add_tls_options(app, opts.tls);
    add_output_format(app, opts.format);
    add_verbosity(app, opts.verbosity, verbosity_flag);
}

void finalize(connection_options& conn, const tls_options& tls) {
    using protocol::protocol_version;
    if (!conn.url.empty()) {
        auto parsed = parse_url(conn.url);
        if (!parsed)
            throw CLI::ValidationError("--url",
                                       "not an mqtt(s)://, ws(s):// or mqttsn:// URL: " + conn.url);
        const auto& parts = *parsed;
        conn.host = parts.host;
        if (parts.port != 0) conn.port = parts.port;
        if (!parts.username.empty()) {
            conn.username = parts.username;
            conn.password = parts.password;
        }
        conn.tls = conn.tls || parts.tls;
        conn.url_topic = parts.topic;
        conn.websocket = parts.websocket;
        if (parts.websocket) conn.websocket_path = parts.path;
        conn.mqttsn = parts.mqttsn;
    }
    if (tls.requested()) conn.tls = true;
    // UTF-8 Encoded Strings in CONNECT (the password is Binary Data): a broker closes the
    // connection on one that is not well-formed, with no word of why.
    for (const auto& [flag, value] :
         {std::pair{"--id", &conn.client_id}, std::pair{"--id-prefix", &conn.id_prefix},
          std::pair{"--username", &conn.username}}) {
        if (protocol::validate_utf8(*value))
            throw CLI::ValidationError(flag, "not valid UTF-8 (MQTT strings must be)");
    }
    const bool v5 = conn.version == protocol_version::v5;
    if (conn.session_expiry != 0 && !v5)
        throw CLI::ValidationError("--session-expiry", "needs MQTT 5.0 (-V 5)");
    if (!conn.clean_session && conn.client_id.empty() && !v5)
        throw CLI::ValidationError("--disable-clean-session",
                                   "needs a client id (-i) before MQTT 5.0");
    if (!conn.password.empty() && conn.username.empty() && !v5)
        throw CLI::ValidationError("--pw", "needs a user name (-u) before MQTT 5.0");
}

std::uint16_t effective_port(const connection_options& conn) {
    if (conn.port != 0) return conn.port;
    if (conn.websocket) return conn.tls ? 443 : 80;
    return conn.tls ? 8883 : 1883;
}

int run(CLI::App& app, int argc, const char* const* argv,
        const std::function<exit_status()>& body) {
    try {
        app.parse(argc, argv);
        return static_cast<int>(body());
    } catch (const CLI::ParseError& e) {
        // --help and --version arrive here too, with exit code 0.
        const int code = app.exit(e);
        return static_cast<int>(code == 0 ? exit_status::ok : exit_status::usage);
    } catch (const std::exception& e) {
        std::cerr << app.get_name() << ": error: " << e.what() << '\n';
        return static_cast<int>(exit_status::failure);
    }
}

exit_status not_implemented(std::string_view tool, std::string_view what) {
    std::cerr << tool << ": " << what << " is not implemented in this build yet\n";
    return exit_status::not_implemented;
}

std::string exit_status_help() {
    return "Exit status:\n"
           "  0  success (also after --help and --version)\n"
           "  1  runtime failure: connection refused or lost, TLS failure (\"certificate "
           "verify failed: REASON\"), I/O or protocol error\n"
           "  2  usage error: unknown option, bad value or missing argument\n"
           "  3  not implemented: the request is valid but this build cannot carry it out\n";
}

}  // namespace mqtt::cli
