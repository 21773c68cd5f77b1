// tern-pub: publish a message, a file or lines of standard input to one topic.

#include <CLI/CLI.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "mqtt/cli/options.hpp"
#include "mqtt/client/cli_config.hpp"
#include "mqtt/client/connection.hpp"
#include "mqtt/client/mqttsn_cli.hpp"
#include "mqtt/client/pub.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace {

struct pub_options {
    mqtt::cli::client_options client;
    std::string topic;
    std::string message;
    std::string file;
    bool stdin_line = false;  // one message per line of standard input
    bool stdin_file = false;  // all of standard input as one message
    bool null_message = false;
    bool json_in = false;  // one JSON message per line of standard input
    mqtt::protocol::qos qos = mqtt::protocol::qos::at_most_once;
    bool retain = false;
    unsigned repeat = 1;
    double repeat_delay = 0;  // seconds
    double rate = 0;          // messages per second; 0: no limit
    bool reconnect = false;
    mqtt::cli::will_options will;
    std::vector<std::vector<std::string>> property_args;  // -D
    mqtt::format::property_set props;
    mqtt::client::mqttsn_flags sn;
};

constexpr const char* examples =
    "  tern-pub -t sensors/temp -m 21.5\n"
    "  tern-pub -h broker.example -p 1884 -q 1 -r -t status -m online\n"
    "  tern-pub -L mqtt://alice:secret@localhost/sensors/temp -m 21.5\n"
    "  tern-pub -L mqttsn://gateway:1885/sensors/temp -q 1 -m 21.5\n"
    "  tern-pub -L mqttsn://gateway:1885/s/t --sn-predefined 7:s/t --qos-minus-one -m 1\n"
    "  tail -f app.log | tern-pub -t logs/app -l\n"
    "  tail -f app.log | tern-pub -t logs/app -l -q 1 --reconnect\n"
    "  tern-pub -t a/b -l -q 1 --json < lines | jq -c 'select(.reason_code >= 128)'\n"
    "  tern-pub -t cmd -m go -D publish user-property origin cli -D publish "
    "message-expiry-interval 60\n"
    "  echo '{\"topic\":\"a/b\",\"payload\":\"hi\",\"qos\":1}' | tern-pub --json-in\n"
    "  tern-sub --json -t 'in/#' | tern-pub --json-in -h other-broker\n";

void add_publish_options(CLI::App& app, pub_options& o) {
    app.add_option("-t,--topic", o.topic, "Topic to publish to (or give it in --url)")
        ->type_name("TOPIC");
    mqtt::cli::add_qos_option(app, o.qos, "Quality of service of the message");
    app.add_flag("-r,--retain", o.retain,
                 "Ask the broker to retain the message for new subscribers");
    app.add_option("--repeat", o.repeat, "Publish the message COUNT times (default: 1)")
        ->type_name("COUNT")
        ->check(CLI::PositiveNumber.description(""));
    app.add_option("--repeat-delay", o.repeat_delay,
                   "Seconds to wait between repeated messages (default: 0)")
        ->type_name("SECONDS")
        ->check(CLI::NonNegativeNumber.description(""));
    app.add_option("--rate", o.rate,
                   "Publish at most N messages per second (-l, --json-in, --repeat; default: no "
                   "limit)")
        ->type_name("N")
        ->check(CLI::PositiveNumber.description(""));
    app.add_flag("--reconnect", o.reconnect,
                 "On a lost connection, back off (jittered, from 0.25 s doubling up to 30 s), "
                 "reconnect, resume the session and resend unacknowledged QoS 1/2 messages; "
                 "a first connection the broker does not answer (not up yet) is retried the "
                 "same way. Without it a lost connection exits 1. Works with the line modes "
                 "only (stdin-line, json-in)");

    // The payload sources exclude one another; main() requires one of them.
    const char* group = "Message";
    const std::vector<CLI::Option*> sources{
        app.add_option("-m,--message", o.message, "Payload given on the command line")
            ->type_name("TEXT"),
        app.add_option("-f,--file", o.file, "Send the content of FILE as one message")
            ->type_name("FILE")
            ->check(CLI::ExistingFile.description("")),
        app.add_flag("-l,--stdin-line", o.stdin_line,
                     "Send each line of standard input as a separate message"),
        app.add_flag("-s,--stdin-file", o.stdin_file, "Send all of standard input as one message"),
        app.add_flag("-n,--null-message", o.null_message, "Send a zero-length message"),
        app.add_flag("--json-in", o.json_in,
                     "Read one message per line of standard input as a JSON object: topic, "
                     "payload or payload_base64, and optional qos, retain and properties "
                     "(tern-sub --json's shape; -t, -q, -r and -D publish are defaults); stops "
                     "at the first bad line, exit 1"),
    };
    for (auto* a : sources) {
        a->group(group);
        for (auto* b : sources)
            if (a != b) a->excludes(b);
    }
}

// Counted on the command line rather than read from the struct: -m "" is a payload too.
bool has_payload_source(const CLI::App& app) {
    for (const char* name : {"-m", "-f", "-l", "-s", "-n", "--json-in"})
        if (app.count(name) > 0) return true;
    return false;
}

// -D and the will: usage errors (exit 2) or, for AUTH properties, not implemented (exit 3).
std::optional<mqtt::cli::exit_status> check_extras(pub_options& o, mqtt::client::pub_request& r) {
    using mqtt::format::property_target;
    auto err =
        mqtt::client::parse_property_args(o.property_args,
                                          {property_target::connect, property_target::publish,
                                           property_target::disconnect, property_target::will},
                                          o.client.connection.version, o.props);
    if (!err) err = mqtt::client::apply_connect_extras(r.connection, o.will, o.props);
    if (!err && o.props.publish.topic_alias && o.json_in)
        err = mqtt::client::option_error{"--property",
                                         "topic-alias with --json-in: lines have "
                                         "different topics"};
    if (!err) return std::nullopt;
    if (err->not_implemented) return mqtt::cli::not_implemented("tern-pub", err->message);
    throw CLI::ValidationError(err->option, err->message);
}

mqtt::client::pub_request to_request(const pub_options& o) {
    using mqtt::client::payload_source;
    mqtt::client::pub_request r;
    r.connection = mqtt::client::to_connection_config(o.client, "tern-pub-");
    r.connection.handle_signals = true;
    r.topic = o.topic;
    r.qos = o.qos;
    r.retain = o.retain;
    r.source = !o.file.empty()  ? payload_source::file
               : o.stdin_line   ? payload_source::stdin_lines
               : o.stdin_file   ? payload_source::stdin_all
               : o.null_message ? payload_source::empty
               : o.json_in      ? payload_source::json_lines
                                : payload_source::message;
    r.message = o.message;
    r.file = o.file;
    r.repeat = o.repeat;
    r.repeat_delay = o.repeat_delay;
    r.verbosity = o.client.verbosity;
    r.rate = o.rate;
    r.reconnect = o.reconnect;
    r.json = o.client.format == mqtt::cli::output_format::json;
    r.props = o.props.publish;
    r.disconnect_props = o.props.disconnect;
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Publish MQTT messages to a broker: one message, a file, or lines of standard "
        "input. The payload comes from exactly one of -m, -f, -l, -s, -n or --json-in. The flags "
        "follow mosquitto_pub's."};
    pub_options opts;
    mqtt::cli::init_app(app, "tern-pub", examples);
    app.footer(std::string("Examples:\n") + examples + "\n" + mqtt::cli::exit_status_help() +
               mqtt::client::connack_exit_status_help());
    mqtt::cli::add_client_options(app, opts.client, "-d,--debug");
    mqtt::cli::add_property_option(app, opts.property_args, "connect, publish, disconnect or will");
    mqtt::cli::add_will_options(app, opts.will);
    add_publish_options(app, opts);
    mqtt::client::add_mqttsn_options(app, opts.sn, true);
    return mqtt::cli::run(app, argc, argv, [&] {
        mqtt::cli::finalize(opts.client);
        if (opts.topic.empty()) opts.topic = opts.client.connection.url_topic;
        if (opts.topic.empty() && !opts.json_in)
            throw CLI::RequiredError("--topic (or a topic in --url)");
        if (!has_payload_source(app))
            throw CLI::RequiredError("One of -m, -f, -l, -s, -n or --json-in");
        if (opts.reconnect && !opts.stdin_line && !opts.json_in)
            throw CLI::ValidationError("--reconnect", "works with -l and --json-in only");
        if (!opts.topic.empty() && (mqtt::protocol::validate_utf8(opts.topic) ||
                                    !mqtt::protocol::is_valid_topic_name(opts.topic)))
            throw CLI::ValidationError("--topic", "not a valid topic name: " + opts.topic);
        if (opts.client.connection.mqttsn) {
            for (const char* flag : {"--json-in", "--reconnect", "--property", "--will-topic"})
                if (app.count(flag) > 0)
                    throw CLI::ValidationError(flag, "not available over MQTT-SN");
            const auto sn = mqtt::client::to_mqttsn_request(opts.sn, opts.client, {opts.topic});
            return static_cast<mqtt::cli::exit_status>(
                mqtt::client::run_mqttsn_pub(to_request(opts), sn, std::cout, std::cerr));
        }
        mqtt::client::require_mqttsn_url(opts.sn);
        // A reconnecting client needs a name to resume its session under.
        auto& conn = opts.client.connection;
        if (opts.reconnect && conn.client_id.empty() && conn.id_prefix.empty())
            conn.id_prefix = "tern-pub-";
        auto request = to_request(opts);
        if (auto status = check_extras(opts, request)) return *status;
        request.props = opts.props.publish;
        request.disconnect_props = opts.props.disconnect;
        return static_cast<mqtt::cli::exit_status>(mqtt::client::run_pub(request, std::cout, std::cerr));
    });
}
