#pragma once

// tern-broker's configuration file, in Mosquitto's mosquitto.conf syntax so that users can
// bring their files. The parser is pure: text in, a config or one "FILE:LINE: what is
// wrong" error out; files named by include_dir come through a config_source, so tests give
// it a map of strings and the broker gives it the file system. man/tern.conf.5 documents
// every option that supported_options() lists.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mqtt/bridge/config.hpp"
#include "mqtt/broker/limits.hpp"
#include "mqtt/net/tls.hpp"

namespace mqtt::broker {

// Where a setting was read: "FILE:LINE", or empty for a built-in default.
struct config_origin {
    std::string file;
    int line = 0;
    std::string to_string() const;
};

enum class socket_domain { any, ipv4, ipv6 };

// What a listener speaks (Mosquitto's protocol option): MQTT over TCP, or MQTT over
// WebSocket (over TLS with certfile and keyfile: wss).
enum class listener_protocol { mqtt, websockets };
std::string_view to_string(listener_protocol p) noexcept;

struct listener_config {
    std::uint16_t port = 1883;  // 0: a free port (a Tern extension; the first log line names it)
    // As written: a numeric IPv4 or IPv6 address, or "localhost" (127.0.0.1 and ::1); empty:
    // every address of the domain (0.0.0.0 and ::).
    std::string bind;
    socket_domain domain = socket_domain::any;
    std::optional<std::size_t> max_connections;  // nullopt: no bound of its own (-1)
    // Only with per_listener_settings true; otherwise the global allow_anonymous,
    // password_file and acl_file apply. Empty file names: none for this listener.
    std::optional<bool> allow_anonymous;
    std::string password_file;
    std::string acl_file;
    config_origin password_file_origin;
    config_origin acl_file_origin;
    // allow_zero_length_clientid and auto_id_prefix with per_listener_settings true (unset:
    // true and the default prefix), and the first line of either, for errors.
    std::optional<bool> allow_zero_length_clientid;
    std::optional<std::string> auto_id_prefix;
    config_origin client_id_origin;
    // use_username_as_clientid (always per listener, as in Mosquitto): the client id is the
    // user name; a client without one is refused. Its line, for errors.
    bool use_username_as_clientid = false;
    config_origin use_username_as_clientid_origin;
    // max_qos and max_topic_alias of this listener block (nullopt: the broker's, config::max_qos
    // and limits::max_topic_alias, which lines before the first listener set when there is no
    // port/bind_address listener for them to belong to).
    std::optional<std::uint8_t> max_qos;
    std::optional<std::uint16_t> max_topic_alias;
    config_origin origin;  // the listener (or port / bind_address) line; empty: local-only
    // certfile, keyfile, cafile, ... of this listener block; TLS is on with certfile and
    // keyfile. tls_lines names the line of each TLS option given, for errors.
    net::tls_server_settings tls;
    std::vector<std::pair<std::string, config_origin>> tls_lines;
    listener_protocol protocol = listener_protocol::mqtt;
    // websockets_path (a Tern option): the only request path served; empty: any path.
    std::string websockets_path;
    config_origin websockets_path_origin;
    bool tls_enabled() const noexcept { return !tls.certfile.empty() && !tls.keyfile.empty(); }
    // `protocol mqttsn`: an MQTT-SN gateway on UDP instead of MQTT on TCP (docs/mqtt-sn.md).
    bool mqttsn = false;
};

// 127.0.0.1 and ::1 on port 1883.
inline listener_config local_only_listener() {
    listener_config l;
    l.bind = "localhost";
    return l;
}

// The numeric addresses a listener binds, in order ("localhost" is 127.0.0.1 and ::1).
std::vector<std::string> bind_addresses(const listener_config& l);

struct log_config {
    // From log_type: -1 none, 0 error and warning, 1 notice, information, subscribe and
    // unsubscribe, 2 debug or all. nullopt when no log_type line was given (tern-broker then
    // logs at its default level, or at the -v / --quiet level).
    std::optional<int> verbosity;
    std::vector<std::string> types;  // as given, in order
    std::string dest = "stderr";     // stderr, stdout or none
    bool connection_messages = true;
    bool timestamp = false;  // text lines start with an ISO 8601 UTC time
    bool json = false;       // --log-format json (command line only)
};

// When the store's records reach the disk (persistence_sync, a Tern option).
enum class sync_policy {
    always,    // fdatasync after every packet that changed durable state, before its ack
    batch,     // one fdatasync per event-loop turn (group commit), before the acks
    periodic,  // written at once, fdatasync every autosave_interval; acks are not held
};
std::string_view to_string(sync_policy p) noexcept;

// Mosquitto's persistence, persistence_location, persistence_file and autosave_interval,
// and Tern's persistence_sync (docs/persistence.md).
struct persistence_config {
    bool enabled = false;
    std::string location;  // directory of the store; empty: the current directory
    std::string file = "tern.db";
    sync_policy sync = sync_policy::batch;
    // periodic: seconds between syncs. Mosquitto's default of 30 minutes.
    std::chrono::seconds autosave_interval{1800};  // 0: no timed sync
};

// metrics_listener PORT [ADDRESS] (a Tern option): the HTTP endpoint with /metrics and
// /healthz (docs/metrics.md).
struct metrics_listener_config {
    std::uint16_t port = 0;          // 0: a free port (the log names it)
    std::string bind = "127.0.0.1";  // a numeric IPv4 or IPv6 address
    config_origin origin;
};

// The MQTT-SN gateway's options, the same for every MQTT-SN listener (docs/mqtt-sn.md).
struct mqttsn_config {
    std::uint8_t gateway_id = 1;                  // mqttsn_gateway_id
    std::chrono::seconds retry_interval{10};      // mqttsn_retry_interval (T_RETRY)
    unsigned retry_count = 3;                     // mqttsn_retry_count (N_RETRY)
    std::size_t max_buffered_messages = 100;      // mqttsn_max_buffered_messages
    std::uint16_t max_inflight = 1;               // mqttsn_max_inflight
    std::size_t receive_buffer = 4 << 20;         // mqttsn_receive_buffer; 0: the system's
    std::chrono::seconds advertise_interval{0};   // mqttsn_advertise; 0: none
    std::string advertise_host;
    std::uint16_t advertise_port = 0;
};

// The most event loops `threads` accepts.
inline constexpr std::size_t max_threads = 256;

// The default of `threads`: the cores this process may run on (its CPU affinity, so
// `taskset -c 0` gives 1), at least 1 and at most max_threads.
std::size_t default_threads() noexcept;

struct config {
    // Without listener, port or bind_address lines: the local-only listener (127.0.0.1 and
    // ::1 on port 1883, anonymous clients allowed), as Mosquitto 2 does.
    std::vector<listener_config> listeners{local_only_listener()};
    bool local_only = true;
    bool per_listener_settings = false;
    // Mosquitto 2: true in the local-only mode, false by default once listeners are
    // configured. With per_listener_settings every listener must have the same value.
    bool allow_anonymous = true;
    // Paths as written (relative ones from the working directory, as Mosquitto reads them);
    // empty when not set. Read by load_security() at start and on SIGHUP.
    std::string password_file;
    std::string acl_file;
    config_origin password_file_origin;
    config_origin acl_file_origin;
    // An empty client id: refused (false), or given one that starts with auto_id_prefix.
    // Per listener with per_listener_settings true.
    bool allow_zero_length_clientid = true;
    std::string auto_id_prefix = "tern-";
    std::uint8_t max_qos = 2;  // of listeners without their own
    broker::limits limits;
    std::chrono::seconds sys_interval{10};
    // threads: the broker's event loops (docs/broker.md, "Threading"); by default one per
    // core the process may run on (`threads 0` says the same).
    std::size_t threads = default_threads();
    config_origin threads_origin;
    persistence_config persistence;
    // mqttsn_predefined_topic lines: the predefined topic ids of every MQTT-SN client.
    std::map<std::uint16_t, std::string> mqttsn_predefined;
    mqttsn_config mqttsn;
    std::optional<metrics_listener_config> metrics;  // nullopt: no metrics listener
    // `connection` blocks: bridges the broker runs itself, their local side in-process
    // (docs/bridge.md). Parsed by the bridge's own parser (mqtt/bridge/config.hpp).
    std::vector<bridge::bridge_config> bridges;
    log_config log;
    std::vector<std::string> files;     // every file read, the main one first
    std::vector<std::string> warnings;  // "FILE:LINE: ..." for settings with no effect yet
};

struct config_error {
    std::string file;
    int line = 0;  // 0: about the file as a whole
    std::string message;
    bool unsupported = false;       // an option Mosquitto has that Tern does not implement yet
    std::string to_string() const;  // "FILE:LINE: message" (or "FILE: message")
};

// Either a config or the first error found.
struct config_result {
    std::optional<config> value;
    config_error error;
    explicit operator bool() const noexcept { return value.has_value(); }
};

// What the parser may read besides the text it is given: include_dir's directories and
// files. A function returns nullopt and sets `why` when it cannot.
struct config_source {
    // Names (not paths) of the regular files of a directory.
    std::function<std::optional<std::vector<std::string>>(const std::string& dir, std::string& why)>
        list_dir;
    std::function<std::optional<std::string>(const std::string& path, std::string& why)> read_file;
    // The host name, for the default remote client id of a bridge ("HOST.NAME", as
    // Mosquitto); unset: "localhost".
    std::function<std::string()> hostname;
};

// The real file system.
config_source filesystem_source();

// Parses `text` as the main configuration file `file_name`. Without a source, include_dir
// is an error.
config_result parse_config(std::string_view text, std::string_view file_name,
                           const config_source& source = {});
// Reads and parses the file `path` (and its include_dir files) from the file system.
config_result load_config_file(const std::string& path);

// The Mosquitto include_dir order: case-sensitive, each upper-case letter right before its
// lower-case one ("00.conf 01.conf A.conf a.conf B.conf b.conf").
bool include_order_less(std::string_view a, std::string_view b);

// "1h", "2d", "1w", "1m" (30 days), "1y" (365 days); nullopt when malformed or too large.
std::optional<std::chrono::seconds> parse_duration(std::string_view text);

// The options Tern accepts, and those Mosquitto has that Tern refuses as "not supported yet"
// (a trailing '*' means a prefix, e.g. "bridge_*"). Sorted.
std::vector<std::string_view> supported_options();
std::vector<std::string_view> unsupported_options();

// The listeners tern-broker opens: the config's, or with none the local-only pair on
// `cli_port` (default 1883). With listeners in the file a -p port is ignored, as Mosquitto 2
// does; the return value then says so (empty otherwise).
std::string apply_command_line_port(config& c, std::optional<std::uint16_t> cli_port);

// The effective configuration as one JSON object (tern-broker --print-config).
std::string to_json(const config& c);

}  // namespace mqtt::broker
