// tern-bench: load a broker with a scenario and report throughput and latency.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/report.hpp"
#include "mqtt/bench/runner.hpp"
#include "mqtt/cli/options.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace {

// Distinct from 1 (the run itself failed): the run worked and its figures missed a limit.
constexpr int exit_threshold = 4;

struct bench_options {
    std::string scenario;
    mqtt::cli::client_options client;
    mqtt::bench::bench_config run;
    mqtt::bench::thresholds limits;
    double min_rate = 0, max_p99 = 0, max_loss = 0;
    bool progress = false;
    std::string histogram_file;
};

constexpr const char* examples =
    "  tern-bench pairs                           10 publisher/subscriber pairs, 10000 "
    "messages each\n"
    "  tern-bench fanin -h 127.0.0.1 --publishers 4 -q 1 --count 100000 --json\n"
    "  tern-bench fanout --subscribers 100 -q 1 --size 256 --rate 5000 --duration 30\n"
    "  tern-bench pub -q 1 --min-rate 10000 --max-p99 5   exit 4 when slower\n"
    "  tern-bench conn --clients 1000 --connect-rate 500\n";

void add_load_options(CLI::App& app, bench_options& o) {
    auto& r = o.run;
    app.add_option("scenario", o.scenario,
                   "What to run (required): pub (publishers only, publish-to-ack latency), sub "
                   "(subscribers only, for publishers elsewhere), fanin (many publishers, one "
                   "subscriber), fanout (one publisher, many subscribers), pairs (publisher/"
                   "subscriber pairs), conn (open connections, hold them, close them)")
        ->type_name("SCENARIO")
        ->check(CLI::IsMember({"pub", "sub", "fanin", "fanout", "pairs", "conn"}).description(""));
    const char* load = "Load";
    app.add_option("--publishers", r.publishers,
                   "Publishing connections (default: pub 1, fanin 4, fanout 1)")
        ->type_name("N")
        ->check(CLI::PositiveNumber.description(""))
        ->group(load);
    app.add_option("--subscribers", r.subscribers,
                   "Subscribing connections (default: sub 1, fanin 1, fanout 10)")
        ->type_name("N")
        ->check(CLI::PositiveNumber.description(""))
        ->group(load);
    app.add_option("--clients", r.clients,
                   "Pairs for pairs (default: 10), connections for conn "
                   "(default: 100)")
        ->type_name("N")
        ->check(CLI::PositiveNumber.description(""))
        ->group(load);
    app.add_option("-t,--topic", r.topic,
                   "Topic template of the publishers; %i is the "
                   "publisher's index (default: tern-bench/SCENARIO/%i)")
        ->type_name("TEMPLATE")
        ->group(load);
    app.add_option("--filter", r.filter,
                   "Topic filter template of the subscribers; %i is the "
                   "subscriber's index (default: matches the topics)")
        ->type_name("TEMPLATE")
        ->group(load);
    mqtt::cli::add_qos_option(app, r.qos, "Quality of service of publishes and subscriptions");
    app.get_option("--qos")->group(load);
    app.add_option("--size", r.size, "Payload size, at least 28 (default: 64)")
        ->type_name("BYTES")
        ->check(CLI::Range(0, 268435455).description(""))
        ->group(load);
    auto* count = app.add_option("--count", r.count,
                                 "Messages per publisher (sub: per subscriber; default: 10000)")
                      ->type_name("N")
                      ->check(CLI::PositiveNumber.description(""))
                      ->group(load);
    app.add_option("--duration", r.duration, "Publish for SECONDS instead of --count messages")
        ->type_name("SECONDS")
        ->check(CLI::PositiveNumber.description(""))
        ->group(load)
        ->excludes(count);
    app.add_option("--warmup", r.warmup,
                   "Leave the first SECONDS of publishing out of the "
                   "rates and latencies (default: 0)")
        ->type_name("SECONDS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->group(load);
    app.add_option("--inflight", r.inflight,
                   "Unacknowledged QoS 1/2 messages per publisher "
                   "(default: 64)")
        ->type_name("N")
        ->check(CLI::Range(1, 65535).description(""))
        ->group(load);
    app.add_option("--rate", r.rate,
                   "Open loop: publish MSGS per second in total, latency "
                   "counted from the intended send time (default: 0, as "
                   "fast as the windows allow)")
        ->type_name("MSGS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->group(load);
    app.add_option("--connect-rate", r.connect_rate,
                   "Open at most CONNS connections per second "
                   "(default: 0, all at once)")
        ->type_name("CONNS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->group(load);
    app.add_option("--hold", r.hold, "conn: keep the connections open SECONDS (default: 1)")
        ->type_name("SECONDS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->group(load);
    app.add_option("--drain", r.drain,
                   "Wait up to SECONDS after publishing for the last "
                   "messages; later ones count as lost (default: 5)")
        ->type_name("SECONDS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->group(load);
    app.add_option("--time-limit", r.time_limit,
                   "Stop the whole run after SECONDS and exit 1 "
                   "(default: duration or hold + drain + 120, or 300)")
        ->type_name("SECONDS")
        ->check(CLI::PositiveNumber.description(""))
        ->group(load);
}

void add_threshold_options(CLI::App& app, bench_options& o) {
    const char* group = "Thresholds";
    app.add_option("--min-rate", o.min_rate,
                   "Fail below MSGS per second received (pub: acked, "
                   "or published at QoS 0; conn: connections)")
        ->type_name("MSGS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->group(group);
    app.add_option("--max-p99", o.max_p99,
                   "Fail when the p99 latency (end to end; pub: to the "
                   "ack; conn: connect) is above MS milliseconds")
        ->type_name("MS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->group(group);
    app.add_option("--max-loss", o.max_loss,
                   "Fail when more than PERCENT of the deliveries are "
                   "lost (at QoS 1 and 2 any loss fails)")
        ->type_name("PERCENT")
        ->check(CLI::Range(0.0, 100.0).description(""))
        ->group(group);
    app.add_option("--histogram", o.histogram_file,
                   "Write the full percentile distribution of the latency --max-p99 checks to "
                   "FILE, in HdrHistogram's text layout (milliseconds)")
        ->type_name("FILE")
        ->group("Output");
    app.add_flag("--progress", o.progress,
                 "Show the live progress line on stderr even when it "
                 "is not a terminal")
        ->group("Output");
}

void check_template(const std::string& option, const std::string& pattern, bool filter) {
    const auto t = mqtt::bench::expand_template(pattern, 0);
    const bool ok =
        !mqtt::protocol::validate_utf8(t) && (filter ? mqtt::protocol::is_valid_topic_filter(t)
                                                     : mqtt::protocol::is_valid_topic_name(t));
    if (!ok)
        throw CLI::ValidationError(
            option,
            "not a valid topic " + std::string(filter ? "filter" : "name") + ": " + pattern);
}

// From the command line to the run's configuration; usage errors throw.
void prepare(const CLI::App& app, bench_options& o) {
    auto& r = o.run;
    if (!mqtt::bench::parse_scenario(o.scenario, r.scenario))
        throw CLI::RequiredError("A scenario (pub, sub, fanin, fanout, pairs or conn)");
    mqtt::cli::finalize(o.client);
    const auto& c = o.client.connection;
    r.host = c.host;
    r.port = mqtt::cli::effective_port(c);
    if (c.tls) {
        const auto& t = o.client.tls;
        mqtt::net::tls_client_settings tls;
        tls.cafile = t.cafile;
        tls.capath = t.capath;
        tls.certfile = t.cert;
        tls.keyfile = t.key;
        tls.insecure = t.insecure;
        tls.min_version =
            mqtt::net::parse_tls_version(t.tls_version).value_or(mqtt::net::tls_version::tls1_2);
        r.tls = std::move(tls);
    }
    r.connect.version = c.version;
    r.connect.clean_start = c.clean_session;
    r.connect.keep_alive = c.keepalive;
    if (!c.username.empty()) r.connect.username = c.username;
    if (!c.password.empty()) r.connect.password = c.password;
    if (!c.id_prefix.empty()) r.client_id_prefix = c.id_prefix;
    if (!c.client_id.empty()) r.client_id_prefix = c.client_id;
    if (r.topic.empty() && !c.url_topic.empty()) r.topic = c.url_topic;
    if (const auto why = mqtt::bench::apply_scenario_defaults(r); !why.empty())
        throw CLI::ValidationError(o.scenario, why);
    if (r.publishers) check_template("--topic", r.topic, false);
    if (r.subscribers) check_template("--filter", r.filter, true);
    if (app.count("--min-rate")) o.limits.min_rate = o.min_rate;
    if (app.count("--max-p99")) o.limits.max_p99_ms = o.max_p99;
    if (app.count("--max-loss")) o.limits.max_loss_percent = o.max_loss;
    r.progress = o.progress || ::isatty(STDERR_FILENO);
}

mqtt::cli::exit_status run_bench(bench_options& o) {
    const auto results = mqtt::bench::run(o.run, o.run.progress ? &std::cerr : nullptr,
                                          o.client.verbosity > 0 ? &std::cerr : nullptr);
    const auto failed = mqtt::bench::check(results, o.limits);
    if (o.client.format == mqtt::cli::output_format::json)
        std::cout << mqtt::bench::to_json(results, o.limits, failed).dump() << std::endl;
    else
        mqtt::bench::print_summary(std::cout, results, failed);
    if (!o.histogram_file.empty()) {
        std::ofstream out(o.histogram_file);
        mqtt::bench::write_percentile_distribution(out, mqtt::bench::headline_latency(results));
        if (!out.flush()) {
            std::cerr << "tern-bench: error: cannot write " << o.histogram_file << "\n";
            return mqtt::cli::exit_status::failure;
        }
    }
    for (const auto& e : results.errors) std::cerr << "tern-bench: error: " << e << "\n";
    if (results.timed_out) std::cerr << "tern-bench: error: the run hit --time-limit\n";
    for (const auto& v : failed) std::cerr << "tern-bench: " << v.name << ": " << v.message << "\n";
    if (!results.errors.empty() || results.timed_out) return mqtt::cli::exit_status::failure;
    if (!failed.empty()) return static_cast<mqtt::cli::exit_status>(exit_threshold);
    return mqtt::cli::exit_status::ok;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Load an MQTT broker with a scenario and report message rates, end-to-end latency "
        "percentiles, loss and the bench's own CPU time, as text or one JSON object."};
    bench_options opts;
    mqtt::cli::init_app(app, "tern-bench", examples);
    app.footer(std::string("Examples:\n") + examples + "\n" + mqtt::cli::exit_status_help() +
               "  4  a threshold was missed (--min-rate, --max-p99, --max-loss), or messages "
               "were lost at QoS 1 or 2 or duplicated at QoS 2\n");
    add_load_options(app, opts);
    mqtt::cli::add_client_options(app, opts.client, "-v,--verbose");
    add_threshold_options(app, opts);
    return mqtt::cli::run(app, argc, argv, [&] {
        // Checked here rather than with required(): CLI11 reports a missing option before an
        // unknown one, which would hide the typo that caused it.
        if (opts.scenario.empty())
            throw CLI::RequiredError("A scenario (pub, sub, fanin, fanout, pairs or conn)");
        prepare(app, opts);
        return run_bench(opts);
    });
}
