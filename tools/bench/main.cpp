// tern-bench: load a broker with a scenario and report throughput and latency.

#include <CLI/CLI.hpp>
#include <string>

#include "mqtt/cli/options.hpp"

namespace {

struct bench_options {
    std::string scenario;
    mqtt::cli::client_options client;
    unsigned clients = 10;
    unsigned messages = 1000;  // per publisher
    unsigned size = 64;        // payload bytes
    unsigned duration = 0;     // seconds; 0: until every message is delivered
    mqtt::protocol::qos qos = mqtt::protocol::qos::at_most_once;
};

constexpr const char* examples =
    "  tern-bench pubsub                         10 publishers, 10 subscribers, 1000 messages "
    "each\n"
    "  tern-bench fanout --clients 100 -q 1 --size 256\n"
    "  tern-bench connect --clients 1000 -p 1884 --json\n";

void add_bench_options(CLI::App& app, bench_options& o) {
    app.add_option("scenario", o.scenario,
                   "What to measure (required): pubsub (publisher/subscriber pairs), fanout (one "
                   "publisher, "
                   "many subscribers), fanin (many publishers, one subscriber), connect "
                   "(connections per second)")
        ->type_name("SCENARIO")
        ->check(CLI::IsMember({"pubsub", "fanout", "fanin", "connect"}).description(""));
    app.add_option("--clients", o.clients, "Number of simulated clients (default: 10)")
        ->type_name("N")
        ->check(CLI::PositiveNumber.description(""));
    app.add_option("--messages", o.messages, "Messages each publisher sends (default: 1000)")
        ->type_name("N")
        ->check(CLI::PositiveNumber.description(""));
    app.add_option("--size", o.size, "Payload size in bytes (default: 64)")
        ->type_name("BYTES")
        ->check(CLI::Range(0u, 268435455u).description(""));
    app.add_option("--duration", o.duration,
                   "Stop after SECONDS instead of after --messages (default: 0, off)")
        ->type_name("SECONDS");
    mqtt::cli::add_qos_option(app, o.qos, "Quality of service of publishes and subscriptions");
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Load an MQTT broker with a scenario and report message rates and latency "
        "percentiles, as text or JSON."};
    bench_options opts;
    mqtt::cli::init_app(app, "tern-bench", examples);
    add_bench_options(app, opts);
    mqtt::cli::add_client_options(app, opts.client, "-v,--verbose");
    return mqtt::cli::run(app, argc, argv, [&] {
        // Checked here rather than with required(): CLI11 reports a missing option before an
        // unknown one, which would hide the typo that caused it.
        if (opts.scenario.empty())
            throw CLI::RequiredError("A scenario (pubsub, fanout, fanin or connect)");
        mqtt::cli::finalize(opts.client);
        return mqtt::cli::not_implemented("tern-bench", "benchmarking");
    });
}
