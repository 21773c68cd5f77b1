// tern-sub: subscribe to topic filters and print the messages that arrive.

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "mqtt/cli/options.hpp"
#include "mqtt/client/cli_config.hpp"
#include "mqtt/client/sub.hpp"
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
};

constexpr const char* examples =
    "  tern-sub -t 'sensors/#'\n"
    "  tern-sub -v -t 'sensors/+/temp' -t alerts -q 1\n"
    "  tern-sub --json -C 10 -t 'sensors/#' -T sensors/debug\n"
    "  tern-sub --json -t 'sensors/#' | jq -r .payload\n"
    "  tern-sub -W 10 -C 1 -t status/ready\n";

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
                 "Print only retained messages, and exit at the first one that is not");
    app.add_flag("-N,--no-eol", o.no_eol, "Do not print a newline after each payload");
    app.add_flag("-E,--exit-after-subscribe", o.exit_after_subscribe,
                 "Exit once the broker acknowledged the subscriptions (to create a session)");
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
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Subscribe to MQTT topic filters and print the messages that arrive, as text "
        "or JSON lines. The flags follow mosquitto_sub's."};
    sub_options opts;
    mqtt::cli::init_app(app, "tern-sub", examples);
    mqtt::cli::add_client_options(app, opts.client, "-d,--debug");
    add_subscribe_options(app, opts);
    return mqtt::cli::run(app, argc, argv, [&] {
        mqtt::cli::finalize(opts.client);
        if (!opts.client.connection.url_topic.empty())
            opts.topics.push_back(opts.client.connection.url_topic);
        if (opts.topics.empty()) throw CLI::RequiredError("--topic (or a topic in --url)");
        for (const auto* list : {&opts.topics, &opts.filter_out})
            for (const auto& f : *list)
                if (mqtt::protocol::validate_utf8(f) || !mqtt::protocol::is_valid_topic_filter(f))
                    throw CLI::ValidationError("--topic", "not a valid topic filter: " + f);
        if (opts.client.connection.tls) return mqtt::cli::not_implemented("tern-sub", "TLS");
        if (opts.retained_only) return mqtt::cli::not_implemented("tern-sub", "--retained-only");
        std::ios::sync_with_stdio(false);
        return static_cast<mqtt::cli::exit_status>(
            mqtt::client::run_sub(to_request(opts), std::cout, std::cerr));
    });
}
