// tern-sub: subscribe to topic filters and print the messages that arrive.

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mqtt/cli/options.hpp"
#include "mqtt/client/cli_config.hpp"
#include "mqtt/client/connection.hpp"
#include "mqtt/client/mqttsn_cli.hpp"
#include "mqtt/client/sub.hpp"
#include "mqtt/format/format_string.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace {

struct sub_options {
    mqtt::cli::client_options client;
    std::vector<std::string> topics;
    std::vector<std::string> filter_out;
    mqtt::protocol::qos qos = mqtt::protocol::qos::at_most_once;
    unsigned count = 0;    // exit after this many messages; 0: never
    unsigned timeout = 0;  // exit after this many seconds; 0: never
    bool print_topic = false;
    bool no_stale = false;
    bool no_eol = false;
    bool exit_after_subscribe = false;
    bool retained_only = false;
    bool remove_retained = false;
    std::vector<std::string> unsubscribe;
    bool no_local = false;
    bool retain_as_published = false;
    int retain_handling = 0;
    std::uint32_t subscription_id = 0;
    bool pretty = false;
    std::string payload_format = "text";
    bool reconnect = false;
    mqtt::cli::will_options will;
    std::vector<std::vector<std::string>> property_args;  // -D
    mqtt::format::property_set props;
    std::string format;  // -F
    mqtt::client::mqttsn_flags sn;
};

constexpr const char* examples =
    "  tern-sub -t 'sensors/#'\n"
    "  tern-sub -v -t 'sensors/+/temp' -t alerts -q 1\n"
    "  tern-sub --json -C 10 -t 'sensors/#' -T sensors/debug\n"
    "  tern-sub --json -t 'sensors/#' | jq -r .payload\n"
    "  tern-sub -W 10 -C 1 -t status/ready\n"
    "  tern-sub --retained-only --remove-retained -t 'old/#' -W 5\n"
    "  tern-sub -c -i logger -x 3600 -q 1 --reconnect --json -t 'logs/#'\n"
    "  tern-sub --json --payload-format json --pretty -t 'sensors/#'\n"
    "  tern-sub -L 'mqttsn://gateway:1885/sensors/#' -q 1 --json\n";

void add_subscribe_options(CLI::App& app, sub_options& o) {
    app.add_option("-t,--topic", o.topics,
                   "Topic filter to subscribe to, wildcards + and # allowed; repeat for more")
        ->type_name("FILTER")
        ->allow_extra_args(false);
    app.add_option("-T,--filter-out", o.filter_out,
                   "Do not print messages whose topic matches FILTER; repeat for more")
        ->type_name("FILTER")
        ->allow_extra_args(false);
    mqtt::cli::add_qos_option(app, o.qos, "Maximum quality of service to subscribe with");
    app.add_option("-C,--count", o.count,
                   "Disconnect and exit after COUNT messages (default: 0, never)")
        ->type_name("COUNT");
    app.add_option("-W,--timeout", o.timeout,
                   "Disconnect and exit with status 27 once SECONDS have passed since the start, "
                   "unless -C or -E ended it first (default: 0, never)")
        ->type_name("SECONDS");
    app.add_flag("-v,--verbose", o.print_topic,
                 "Print the topic before each payload (text format)");
    app.add_flag("-R,--no-stale", o.no_stale,
                 "Do not print retained messages that were stored before we subscribed");
    app.add_flag("--retained-only", o.retained_only,
                 "Print only retained messages, and exit 0 at the first one that is not");
    app.add_flag("--remove-retained", o.remove_retained,
                 "Clear each retained message received (publish an empty retained message to "
                 "its topic); with --retained-only and -W, clears what a filter holds");
    app.add_option("-U,--unsubscribe", o.unsubscribe,
                   "Unsubscribe from FILTER (of a session kept with -c) after subscribing; "
                   "without -t, exit once the broker acknowledged; repeat for more")
        ->type_name("FILTER")
        ->allow_extra_args(false);
    app.add_flag("--no-local", o.no_local,
                 "MQTT 5.0: do not receive the messages this client id publishes");
    app.add_flag("--retain-as-published", o.retain_as_published,
                 "MQTT 5.0: keep the retain flag of live messages as the publisher set it");
    app.add_option("--retain-handling", o.retain_handling,
                   "MQTT 5.0: retained messages at subscribe time: 0 send (default), 1 send "
                   "only for a new subscription, 2 do not send")
        ->type_name("0|1|2")
        ->check(CLI::Range(0, 2).description(""));
    app.add_option("--subscription-id", o.subscription_id,
                   "MQTT 5.0 subscription identifier (1-268435455) the broker returns with "
                   "each matching message (same as -D subscribe subscription-identifier N)")
        ->type_name("N")
        ->check(CLI::Range(1, 268435455).description(""));
    app.add_option("-F,--format-string", o.format,
                   "Print each message with Mosquitto's format string: %t topic, %p payload, %x "
                   "hex payload, %l length, %q QoS, %r retain, %m packet id, %I %U times, %j %J "
                   "JSON, %A %C %D %E %F %P %R %S MQTT 5.0 properties, @ strftime, \\n \\t "
                   "escapes; flags, width and precision as in mosquitto_sub")
        ->type_name("FORMAT");
    app.add_flag("--pretty", o.pretty, "With --json: indent each object over several lines");
    app.add_option("--payload-format", o.payload_format,
                   "With --json: text (default) or json, which puts a payload that is JSON in "
                   "payload_json as a value")
        ->type_name("FORMAT")
        ->check(CLI::IsMember({"text", "json"}).description(""));
    app.add_flag("--reconnect", o.reconnect,
                 "When the connection is lost, reconnect with jittered exponential back-off "
                 "(0.25 s doubling up to 30 s), resume the session and subscribe again if the "
                 "broker lost it; without it a lost connection exits 1");
    app.add_flag("-N,--no-eol", o.no_eol, "Do not print a newline after each payload");
    app.add_flag("-E,--exit-after-subscribe", o.exit_after_subscribe,
                 "Exit once the broker acknowledged the subscriptions (to create a session)");
}

// What one option cannot check alone: usage errors (exit 2), or for AUTH properties, not
// implemented (exit 3).
std::optional<mqtt::cli::exit_status> check_extras(sub_options& o,
                                                   mqtt::client::connection_config& cfg) {
    using mqtt::format::property_target;
    const bool v5 = mqtt::protocol::is_v5(o.client.connection.version);
    std::optional<mqtt::client::option_error> err;
    if (!v5 &&
        (o.no_local || o.retain_as_published || o.retain_handling != 0 || o.subscription_id != 0))
        err = mqtt::client::option_error{"--no-local", "subscription options need MQTT 5.0 (-V 5)"};
    if (!err)
        err = mqtt::client::parse_property_args(
            o.property_args,
            {property_target::connect, property_target::subscribe, property_target::unsubscribe,
             property_target::disconnect, property_target::will},
            o.client.connection.version, o.props);
    if (!err && o.subscription_id != 0 && !o.props.subscribe.subscription_identifiers.empty())
        err = mqtt::client::option_error{"--subscription-id",
                                         "given with -D subscribe subscription-identifier too"};
    if (!err) err = mqtt::client::apply_connect_extras(cfg, o.will, o.props);
    if ((o.pretty || o.payload_format != "text") &&
        o.client.format != mqtt::cli::output_format::json)
        err = mqtt::client::option_error{"--pretty", "--pretty and --payload-format need --json"};
    if (!err && !o.format.empty()) {
        if (auto why = mqtt::format::check_format_string(o.format); !why.empty())
            err = mqtt::client::option_error{"--format-string", why};
        else if (o.client.format == mqtt::cli::output_format::json)
            err = mqtt::client::option_error{"--format-string", "not with --json"};
    }
    if (!err) return std::nullopt;
    if (err->not_implemented) return mqtt::cli::not_implemented("tern-sub", err->message);
    throw CLI::ValidationError(err->option, err->message);
}

mqtt::client::sub_request to_request(const sub_options& o) {
    mqtt::client::sub_request r;
    r.connection = mqtt::client::to_connection_config(o.client, "tern-sub-");
    r.connection.handle_signals = true;
    r.topics = o.topics;
    r.filter_out = o.filter_out;
    r.qos = o.qos;
    r.json = o.client.format == mqtt::cli::output_format::json;
    r.print_topic = o.print_topic;
    r.no_eol = o.no_eol;
    r.skip_retained = o.no_stale;
    r.exit_after_subscribe = o.exit_after_subscribe;
    r.count = o.count;
    r.timeout = o.timeout;
    r.verbosity = o.client.verbosity;
    r.unsubscribe = o.unsubscribe;
    r.retained_only = o.retained_only;
    r.remove_retained = o.remove_retained;
    r.options.no_local = o.no_local;
    r.options.retain_as_published = o.retain_as_published;
    r.options.retain = static_cast<mqtt::protocol::retain_handling>(o.retain_handling);
    r.subscribe_props = o.props.subscribe;
    if (o.subscription_id != 0)
        r.subscribe_props.subscription_identifiers.assign(1, o.subscription_id);
    r.unsubscribe_props = o.props.unsubscribe;
    r.disconnect_props = o.props.disconnect;
    r.json_options.pretty = o.pretty;
    r.json_options.payload_as_json = o.payload_format == "json";
    r.reconnect = o.reconnect;
    r.format = o.format;
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Subscribe to MQTT topic filters and print the messages that arrive, as text "
        "or JSON lines. The flags follow mosquitto_sub's."};
    sub_options opts;
    mqtt::cli::init_app(app, "tern-sub", examples);
    app.footer(std::string("Examples:\n") + examples + "\n" + mqtt::cli::exit_status_help() +
               "  27  -W: the time ran out\n" + mqtt::client::connack_exit_status_help());
    mqtt::cli::add_client_options(app, opts.client, "-d,--debug");
    mqtt::cli::add_property_option(app, opts.property_args,
                                   "connect, subscribe, unsubscribe, disconnect or will");
    mqtt::cli::add_will_options(app, opts.will);
    add_subscribe_options(app, opts);
    mqtt::client::add_mqttsn_options(app, opts.sn, false);
    return mqtt::cli::run(app, argc, argv, [&] {
        mqtt::cli::finalize(opts.client);
        if (!opts.client.connection.url_topic.empty())
            opts.topics.push_back(opts.client.connection.url_topic);
        if (opts.topics.empty() && opts.unsubscribe.empty())
            throw CLI::RequiredError("--topic or --unsubscribe (or a topic in --url)");
        for (const auto* list : {&opts.topics, &opts.filter_out, &opts.unsubscribe})
            for (const auto& f : *list)
                if (mqtt::protocol::validate_utf8(f) || !mqtt::protocol::is_valid_topic_filter(f))
                    throw CLI::ValidationError("--topic", "not a valid topic filter: " + f);
        std::ios::sync_with_stdio(false);
        if (opts.client.connection.mqttsn) {
            for (const char* flag :
                 {"--unsubscribe", "--retained-only", "--remove-retained", "--reconnect",
                  "--property", "--will-topic", "--no-local", "--retain-as-published",
                  "--retain-handling", "--subscription-id"})
                if (app.count(flag) > 0)
                    throw CLI::ValidationError(flag, "not available over MQTT-SN");
            if (opts.topics.empty()) throw CLI::RequiredError("--topic (or a topic in --url)");
            if ((opts.pretty || opts.payload_format != "text") &&
                opts.client.format != mqtt::cli::output_format::json)
                throw CLI::ValidationError("--pretty", "--pretty and --payload-format need --json");
            if (!opts.format.empty()) {
                if (auto why = mqtt::format::check_format_string(opts.format); !why.empty())
                    throw CLI::ValidationError("--format-string", why);
            }
            const auto sn = mqtt::client::to_mqttsn_request(opts.sn, opts.client, opts.topics);
            return static_cast<mqtt::cli::exit_status>(
                mqtt::client::run_mqttsn_sub(to_request(opts), sn, std::cout, std::cerr));
        }
        mqtt::client::require_mqttsn_url(opts.sn);
        // A reconnecting client needs a name to resume its session under.
        auto& conn = opts.client.connection;
        if (opts.reconnect && conn.client_id.empty() && conn.id_prefix.empty())
            conn.id_prefix = "tern-sub-";
        auto request = to_request(opts);
        if (auto status = check_extras(opts, request.connection)) return *status;
        request.subscribe_props = opts.props.subscribe;
        if (opts.subscription_id != 0)
            request.subscribe_props.subscription_identifiers.assign(1, opts.subscription_id);
        request.unsubscribe_props = opts.props.unsubscribe;
        request.disconnect_props = opts.props.disconnect;
        return static_cast<mqtt::cli::exit_status>(
            mqtt::client::run_sub(request, std::cout, std::cerr));
    });
}
