#pragma once

// Command-line options shared by the Tern executables. Each tool's main() builds a CLI::App,
// calls the add_* functions for the groups it needs, then mqtt::cli::run(). The option
// structs are plain data that the engines take as they are; defining them once here keeps
// flags, defaults and help texts identical in every tool (and in the man pages and
// completions, which tests/tools/ checks against --help).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/protocol/types.hpp"

namespace CLI {
class App;
}

namespace mqtt::cli {

// Exit status of every Tern executable.
enum class exit_status : int {
    ok = 0,               // success; --help and --version too
    failure = 1,          // a runtime failure: connection refused, I/O error, ...
    usage = 2,            // bad command line: unknown flag, bad value, missing argument
    not_implemented = 3,  // the request is valid but this build cannot carry it out
};

enum class output_format { text, json };

// -h -p -L -i -I -u -P -k -V -c -x: the mosquitto_pub/mosquitto_sub-compatible connection flags.
struct connection_options {
    std::string host = "localhost";
    std::uint16_t port =
        0;            // 0: the transport's default (1883, 8883 with TLS, 80/443 over WebSocket)
    std::string url;  // -L as given; parse_url() splits it, finalize() applies it
    std::string client_id;  // empty: id_prefix + process id, or a broker-assigned id (MQTT 5.0)
    std::string id_prefix;
    std::string username;
    std::string password;
    std::uint16_t keepalive = 60;  // seconds; 0 disables keep-alive
    protocol::protocol_version version = protocol::protocol_version::v5;
    bool clean_session = true;         // -c clears it
    std::uint32_t session_expiry = 0;  // seconds (MQTT 5.0 Session Expiry Interval)
    bool tls = false;                  // set by an mqtts:// or wss:// URL or by any TLS option
    std::string url_topic;             // the topic part of an mqtt(s) -L, empty otherwise
    bool websocket = false;            // set by a ws:// or wss:// URL
    std::string websocket_path = "/";  // the request path of a ws(s):// URL
    bool mqttsn = false;               // set by an mqttsn:// URL (MQTT-SN over UDP)
};

struct tls_options {
    std::string cafile;
    std::string capath;
    std::string cert;
    std::string key;
    bool insecure = false;                // skip the server host name check
    std::string tls_version = "tlsv1.2";  // the lowest version accepted: tlsv1.2 or tlsv1.3

    bool requested() const { return !cafile.empty() || !capath.empty() || !cert.empty(); }
};

// What the client tools (tern-pub, tern-sub, tern-bench) share.
struct client_options {
    connection_options connection;
    tls_options tls;
    output_format format = output_format::text;
    int verbosity = 0;
};

// --will-topic --will-payload --will-qos --will-retain: the message the broker publishes for
// us when the connection ends without DISCONNECT.
struct will_options {
    std::string topic;  // empty: no will
    std::string payload;
    protocol::qos qos = protocol::qos::at_most_once;
    bool retain = false;
};

// The parts of mqtt://[username[:password]@]host[:port][/topic] (mqtts:// for TLS), or of
// ws://[username[:password]@]host[:port][/path] (wss:// for TLS): MQTT over WebSocket, where
// the path is the HTTP request path ("/" when none is given) and there is no topic; or of
// mqttsn://host[:port][/topic], MQTT-SN 1.2 over UDP (tern-pub, tern-sub and tern-bench only).
struct url_parts {
    bool tls = false;
    bool websocket = false;
    bool mqttsn = false;
    std::string path;  // ws(s) only
    std::string host;
    std::uint16_t port = 0;  // 0 when the URL names none
    std::string username;
    std::string password;
    std::string topic;
};

// Splits an MQTT URL; std::nullopt for another scheme, an empty host or a bad port.
std::optional<url_parts> parse_url(std::string_view url);
// parse_url() for the value of `option`; throws CLI::ValidationError when it fails or for an
// mqttsn:// URL (for the tools without MQTT-SN).
url_parts require_url(std::string_view option, std::string_view url);

// Sets up the help flag (--help only: -h is the host), --version printing
// "<tool> <mqtt::version_string>", one-line error messages and the exit status footer.
// `examples` is printed above the exit status section of --help.
void init_app(CLI::App& app, std::string_view tool, std::string_view examples);

void add_connection_options(CLI::App& app, connection_options& opts);
void add_tls_options(CLI::App& app, tls_options& opts);
// -q/--qos 0|1|2.
void add_qos_option(CLI::App& app, protocol::qos& target, std::string_view what);
// --format text|json and its shorthand --json, for what the tool prints on stdout.
void add_output_format(CLI::App& app, output_format& format);
// --log-format text|json, for the log lines of the long-running tools.
void add_log_format(CLI::App& app, output_format& format);
// A repeatable verbosity flag (e.g. "-v,--verbose" or "-d,--debug") and --quiet, which
// resets verbosity to -1 (errors only).
void add_verbosity(CLI::App& app, int& level, std::string_view flag);

// --will-topic, --will-payload, --will-qos, --will-retain (the last three need --will-topic).
void add_will_options(CLI::App& app, will_options& opts);
// -D,--property PACKET PROPERTY VALUE (Mosquitto's syntax; user-property takes a key and a
// value): each occurrence is one entry of `words`, checked later by the tool, which knows the
// packets it sends (`packets`, for the help text, e.g. "connect, publish, disconnect, will").
void add_property_option(CLI::App& app, std::vector<std::vector<std::string>>& words,
                         std::string_view packets);

// The connection, TLS, output format and verbosity groups at once; `verbosity_flag` as for
// add_verbosity().
void add_client_options(CLI::App& app, client_options& opts, std::string_view verbosity_flag);

// Applies -L (host, port, credentials, topic, TLS) and TLS options to the connection and checks
// the combinations a single option cannot: -x needs MQTT 5.0, -c needs -i before MQTT 5.0.
// Throws CLI::ValidationError, which run() reports as a usage error.
void finalize(connection_options& conn, const tls_options& tls);
inline void finalize(client_options& opts) {
    finalize(opts.connection, opts.tls);
}

// The port to connect to: the explicit one, or 1883 / 8883 with TLS (80 / 443 over WebSocket,
// the ws:// and wss:// defaults, as MQTT.js uses).
std::uint16_t effective_port(const connection_options& conn);

// Parses the command line, then calls `body` and returns its status. CLI11 errors (from
// parsing or thrown by body) print one message and return exit_status::usage; --help and
// --version return ok; any other exception prints "<tool>: error: ..." and returns failure.
int run(CLI::App& app, int argc, const char* const* argv, const std::function<exit_status()>& body);

// Prints "<tool>: <what> is not implemented in this build yet" on stderr and returns
// exit_status::not_implemented.
exit_status not_implemented(std::string_view tool, std::string_view what);

// The text of the "Exit status" section that every --help ends with.
std::string exit_status_help();

}  // namespace mqtt::cli
