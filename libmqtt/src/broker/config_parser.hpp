#pragma once

// The configuration parser's private state and its option table (config_options.cpp), shared
// with the line driver (config.cpp).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/broker/config.hpp"

namespace mqtt::broker::detail {

struct parse_state {
    config cfg;
    std::string file;  // the file being read
    int line = 0;
    bool in_main_file = true;
    // Listener options before the first `listener` line go to the default listener (the
    // one of `port` and `bind_address`, or the local-only one).
    listener_config default_listener;
    bool default_explicit = false;                           // port or bind_address given
    std::vector<listener_config> listeners;                  // from `listener` lines
    std::map<std::string, config_origin, std::less<>> seen;  // scope/option -> first line
    std::optional<config_origin> allow_anonymous_origin;
    std::optional<config_origin>
        client_id_option_origin;  // allow_zero_length_clientid, auto_id_prefix
    std::optional<config_origin> log_dest_origin;
    const config_source* source = nullptr;
    std::optional<config_error> error;
    // The lines of the bridge options (`connection` blocks), as written, and where each
    // was read; handed to the bridge's parser at the end (config_bridge.cpp).
    std::string bridge_text;
    std::vector<config_origin> bridge_origins;

    listener_config& current_listener() {
        return listeners.empty() ? default_listener : listeners.back();
    }
    config_origin here() const { return {file, line}; }
    // Records the error (the first one wins) and returns false, for `return fail(...)`.
    bool fail(std::string message, bool unsupported = false);
};

// The words of a line after the option name, and the rest of the line as written (for
// values that may hold spaces, such as include_dir's directory).
struct option_args {
    std::vector<std::string_view> words;
    std::string_view rest;
};

enum class option_scope {
    global,    // one value for the broker
    listener,  // the current listener block (the default listener before the first one)
    security,  // per listener with per_listener_settings true, global otherwise
};

struct option_spec {
    std::string_view name;
    option_scope scope;
    int min_words;
    int max_words;
    bool repeatable;  // may appear again in the same scope (checked by the handler if needed)
    bool (*handle)(parse_state&, const option_args&);
};

const std::vector<option_spec>& option_table();

// Shared by the option handlers of every config_*.cpp.
std::string quoted(std::string_view s);
// A decimal number without sign, spaces or suffix, within [min, max]; or the error.
std::optional<std::uint64_t> parse_number(parse_state& st, std::string_view option,
                                          std::string_view text, std::uint64_t min,
                                          std::uint64_t max);
// true or false; or the error.
std::optional<bool> parse_bool(parse_state& st, std::string_view option, std::string_view text);

// The broker-wide limits, sys_interval and threads (config_limits.cpp).
bool on_max_inflight_messages(parse_state& st, const option_args& a);
bool on_max_queued_messages(parse_state& st, const option_args& a);
bool on_max_offline_sessions(parse_state& st, const option_args& a);
bool on_max_queued_bytes(parse_state& st, const option_args& a);
bool on_max_outbound_bytes(parse_state& st, const option_args& a);
bool on_max_packet_size(parse_state& st, const option_args& a);
bool on_message_size_limit(parse_state& st, const option_args& a);
bool on_max_inflight_bytes(parse_state& st, const option_args& a);
bool on_max_subscriptions(parse_state& st, const option_args& a);
bool on_max_topic_length(parse_state& st, const option_args& a);
bool on_max_topic_levels(parse_state& st, const option_args& a);
bool on_max_client_id_length(parse_state& st, const option_args& a);
bool on_max_publish_rate(parse_state& st, const option_args& a);
bool on_connect_timeout_ms(parse_state& st, const option_args& a);
bool on_backpressure_timeout_ms(parse_state& st, const option_args& a);
bool on_memory_limit(parse_state& st, const option_args& a);
bool on_max_keepalive(parse_state& st, const option_args& a);
bool on_retain_available(parse_state& st, const option_args& a);
bool on_queue_qos0_messages(parse_state& st, const option_args& a);
bool on_upgrade_outgoing_qos(parse_state& st, const option_args& a);
bool on_persistent_client_expiration(parse_state& st, const option_args& a);
bool on_sys_interval(parse_state& st, const option_args& a);
bool on_threads(parse_state& st, const option_args& a);

// MQTT-SN (config_mqttsn.cpp): `protocol mqttsn` in a listener block, and the global
// mqttsn_* options.
bool on_protocol_mqttsn(parse_state& st);
bool on_mqttsn_predefined_topic(parse_state& st, const option_args& a);
bool on_mqttsn_advertise(parse_state& st, const option_args& a);
bool on_mqttsn_gateway_id(parse_state& st, const option_args& a);
bool on_mqttsn_max_buffered_messages(parse_state& st, const option_args& a);
bool on_mqttsn_max_inflight(parse_state& st, const option_args& a);
bool on_mqttsn_receive_buffer(parse_state& st, const option_args& a);
bool on_mqttsn_retry_count(parse_state& st, const option_args& a);
bool on_mqttsn_retry_interval(parse_state& st, const option_args& a);

// The TLS options of a listener block (config_tls.cpp).
bool on_certfile(parse_state& st, const option_args& a);
bool on_keyfile(parse_state& st, const option_args& a);
bool on_cafile(parse_state& st, const option_args& a);
bool on_capath(parse_state& st, const option_args& a);
bool on_crlfile(parse_state& st, const option_args& a);
bool on_require_certificate(parse_state& st, const option_args& a);
bool on_use_identity_as_username(parse_state& st, const option_args& a);
bool on_use_subject_as_username(parse_state& st, const option_args& a);
bool on_tls_version(parse_state& st, const option_args& a);
bool on_ciphers(parse_state& st, const option_args& a);
bool on_ciphers_tls1_3(parse_state& st, const option_args& a);
// The checks of one listener's TLS options once its block is complete; false and the error
// (at the offending line) when they do not fit together.
bool check_listener_tls(parse_state& st, const listener_config& l);
// websockets_path needs protocol websockets in the same listener block.
bool check_listener_protocol(parse_state& st, const listener_config& l);
// Reads the .conf files of `dir` in include order, as if they stood at the current line.
bool include_directory(parse_state& st, const std::string& dir);
const std::vector<std::string_view>& unsupported_option_names();

// The bridge options (config_bridge.cpp): `connection` and what may follow it, parsed by the
// bridge's own parser. Sorted.
const std::vector<std::string_view>& bridge_option_names();
// Whether a line starting with `name` belongs to the bridge parser (the names above, and any
// other bridge_* option, which that parser refuses with its reason).
bool is_bridge_option(std::string_view name);
// Keeps the line for the bridge parser.
bool on_bridge_line(parse_state& st, std::string_view name, std::string_view line);
// Parses the kept lines into cfg.bridges, with errors at their FILE:LINE.
bool finish_bridges(parse_state& st);

}  // namespace mqtt::broker::detail
