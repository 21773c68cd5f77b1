// tern-bench: load a broker with a scenario and report throughput and latency.

#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/merge.hpp"
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
    std::vector<std::string> files;  // merge
    mqtt::cli::client_options client;
    mqtt::bench::bench_config run;
    mqtt::bench::thresholds limits;
    double min_rate = 0, max_p99 = 0, max_loss = 0, max_regression = 10;
    std::string baseline_file;
    bool progress = false;
    std::string histogram_file;
};

constexpr const char* examples =
    "  tern-bench pairs                           10 publisher/subscriber pairs, 10000 "
    "messages each\n"
    "  tern-bench fanin -h 127.0.0.1 --publishers 4 -q 1 --count 100000 --json\n"
    "  tern-bench fanout --subscribers 100 -q 1 --size 256 --rate 5000 --duration 30\n"
    "  tern-bench pairs --clients 50 -q 1 --rate-per-client 10 --duration 60   50 x 10 msg/s\n"
    "  tern-bench pub -q 1 --min-rate 10000 --max-p99 5   exit 4 when slower\n"
    "  tern-bench conn --clients 1000 --connect-rate 500\n"
    "  tern-bench conn --clients 19500 --connect-rate 10000 --source 127.0.0.1,127.0.0.2\n"
    "  tern-bench shared --subscribers 4 -q 1 --count 50000   one group of 4 shares the load\n"
    "  tern-bench reqresp --publishers 8 -q 1 --rate 2000 --duration 10   round trips\n"
    "  tern-bench pairs -q 1 --json --baseline main.json --max-regression 15\n"
    "  tern-bench pairs --clients 20 -q 1 --threads 2   the clients on two threads\n"
    "  tern-bench pairs -L mqttsn://127.0.0.1:1885 -q 1 --count 2000   over an MQTT-SN gateway\n"
    "  tern-bench merge --json a.json b.json > all.json   runs of two machines as one\n";

void add_load_options(CLI::App& app, bench_options& o) {
    auto& r = o.run;
    app.add_option("scenario", o.scenario,
                   "What to run (required): pub (publishers only, publish-to-ack latency), sub "
                   "(subscribers only, for publishers elsewhere), fanin (many publishers, one "
                   "subscriber), fanout (one publisher, many subscribers), pairs (publisher/"
                   "subscriber pairs), conn (open connections, hold them, close them), shared "
                   "(publishers to an MQTT shared subscription group: each message to one "
                   "member), reqresp (MQTT 5.0 request/response round trips: requesters "
                   "publish, responders answer on the Response Topic); merge "
                   "FILE... adds up the --json reports of runs made at the same time on several "
                   "machines. With an mqttsn:// URL (-L) the clients speak MQTT-SN 1.2 over UDP "
                   "to a gateway: pub, sub, fanin, fanout, pairs and conn")
        ->type_name("SCENARIO")
        ->check(CLI::IsMember(
                    {"pub", "sub", "fanin", "fanout", "pairs", "conn", "shared", "reqresp",
                     "merge"})
                    .description(""));
    app.add_option("files", o.files, "merge: the --json reports to merge")->type_name("FILE");
    const char* load = "Load";
    app.add_option("--publishers", r.publishers,
                   "Publishing connections (default: pub 1, fanin 4, fanout 1, shared 1; "
                   "reqresp: requesters, 4)")
        ->type_name("N")
        ->check(CLI::PositiveNumber.description(""))
        ->group(load);
    app.add_option("--subscribers", r.subscribers,
                   "Subscribing connections (default: sub 1, fanin 1, fanout 10, shared 4; "
                   "reqresp: responders, 1)")
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
                   "Topic template of the publishers; %i is the publisher's index, %c its "
                   "client id (default: tern-bench/SCENARIO/%i)")
        ->type_name("TEMPLATE")
        ->group(load);
    app.add_option("--filter", r.filter,
                   "Topic filter template of the subscribers; %i is the subscriber's index, "
                   "%c its client id (pairs: its publisher's) (default: matches the topics)")
        ->type_name("TEMPLATE")
        ->group(load);
    app.add_option("--group", r.share_group,
                   "shared: the shared subscription group; subscribers send "
                   "$share/GROUP/FILTER (default: tern-bench)")
        ->type_name("NAME")
        ->group(load);
    mqtt::cli::add_qos_option(app, r.qos, "Quality of service of publishes and subscriptions");
    app.get_option("--qos")->group(load);
    app.add_option("--size", r.size,
                   "Payload size, at least 16; below 28 no latency is measured (default: 64)")
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
                   "(default: 64; over MQTT-SN always 1)")
        ->type_name("N")
        ->check(CLI::Range(1, 65535).description(""))
        ->group(load);
    auto* rate = app.add_option("--rate", r.rate,
                                "Open loop: publish MSGS per second in total, shared evenly by "
                                "the publishers, latency counted from the intended send time "
                                "(default: 0, as fast as the windows allow)")
                     ->type_name("MSGS")
                     ->check(CLI::NonNegativeNumber.description(""))
                     ->group(load);
    app.add_option("--rate-per-client", r.rate_per_client,
                   "Open loop: publish MSGS per second from each publisher (the total is MSGS "
                   "times the publishers; reqresp: each requester)")
        ->type_name("MSGS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->excludes(rate)
        ->group(load);
    app.add_option("--connect-rate", r.connect_rate,
                   "Open at most CONNS connections per second "
                   "(default: 0, all at once)")
        ->type_name("CONNS")
        ->check(CLI::NonNegativeNumber.description(""))
        ->group(load);
    app.add_option("--source", r.sources,
                   "Open the connections from these local addresses, taken in turn "
                   "(comma-separated or repeated; default: the one the route picks). Each "
                   "source address has its own ephemeral ports; Linux's connect() slows down "
                   "once one holds half of net.ipv4.ip_local_port_range to the same broker "
                   "port, so on loopback give one 127.0.0.x per 10,000 connections")
        ->type_name("ADDR")
        ->delimiter(',')
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
    app.add_option("--threads", r.threads,
                   "Run the clients on N event loops, each on a thread of its own, spread "
                   "round-robin over them; the figures are added up at the end (default: 1; "
                   "0: one per core; at most one per connection)")
        ->type_name("N")
        ->check(CLI::Range(0, 1024).description(""))
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
    auto* baseline = app.add_option("--baseline", o.baseline_file,
                                    "Compare with FILE, the --json report of an earlier run of the "
                                    "same scenario and QoS: fail when the rate is lower or the p99 "
                                    "latency higher by more than --max-regression")
                         ->type_name("FILE")
                         ->group(group);
    app.add_option("--max-regression", o.max_regression,
                   "Percent by which --baseline may be worse (default: 10)")
        ->type_name("PERCENT")
        ->check(CLI::NonNegativeNumber.description(""))
        ->needs(baseline)
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

// A --json report from FILE; usage errors throw, naming `option`.
nlohmann::json read_report(const std::string& option, const std::string& file) {
    std::ifstream in(file);
    if (!in) throw CLI::ValidationError(option, "cannot read " + file);
    std::stringstream text;
    text << in.rdbuf();
    if (!nlohmann::json::accept(text.str()))
        throw CLI::ValidationError(option, file + " is not JSON");
    return nlohmann::json::parse(text.str());
}

void set_thresholds(const CLI::App& app, bench_options& o) {
    if (app.count("--min-rate")) o.limits.min_rate = o.min_rate;
    if (app.count("--max-p99")) o.limits.max_p99_ms = o.max_p99;
    if (app.count("--max-loss")) o.limits.max_loss_percent = o.max_loss;
    if (o.baseline_file.empty()) return;
    std::string why;
    mqtt::bench::baseline b;
    b.file = o.baseline_file;
    b.figures = mqtt::bench::headline_of(read_report("--baseline", b.file), why);
    if (!why.empty()) throw CLI::ValidationError("--baseline", b.file + ": " + why);
    b.max_regression_percent = o.max_regression;
    o.limits.baseline = std::move(b);
}

// From the command line to the run's configuration; usage errors throw.
void prepare(const CLI::App& app, bench_options& o) {
    auto& r = o.run;
    if (!mqtt::bench::parse_scenario(o.scenario, r.scenario))
        throw CLI::RequiredError("A scenario (pub, sub, fanin, fanout, pairs, conn, shared, reqresp or merge)");
    if (!o.files.empty())
        throw CLI::ValidationError("FILE", "only merge takes files: " + o.files.front());
    mqtt::cli::finalize(o.client);
    const auto& c = o.client.connection;
    if (c.mqttsn) {
        if (c.tls) throw CLI::ValidationError("--url", "mqttsn:// has no TLS");
        if (!c.username.empty() || !c.password.empty())
            throw CLI::ValidationError("--username", "MQTT-SN 1.2 has no user name or password");
        if (app.count("--inflight"))
            throw CLI::ValidationError("--inflight",
                                       "an MQTT-SN 1.2 client has one QoS 1/2 message "
                                       "outstanding, not a window");
        r.mqttsn = true;
    }
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
    if (c.websocket) r.websocket_path = c.websocket_path;
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
    if (r.scenario == mqtt::bench::scenario::shared) {
        const auto& g = r.share_group;
        if (g.empty() || g.find_first_of("/+#") != std::string::npos ||
            mqtt::protocol::validate_utf8(g))
            throw CLI::ValidationError("--group", "not a valid share name: " + g);
    } else if (app.count("--group")) {
        throw CLI::ValidationError("--group", "only the shared scenario takes a group");
    }
    set_thresholds(app, o);
    if (o.limits.baseline)
        if (const auto why = mqtt::bench::baseline_mismatch(*o.limits.baseline, r.scenario, r.qos);
            !why.empty())
            throw CLI::ValidationError("--baseline", why);
    r.progress = o.progress || ::isatty(STDERR_FILENO);
}

bool write_histogram(const bench_options& o, const mqtt::bench::histogram& h) {
    if (o.histogram_file.empty()) return true;
    std::ofstream out(o.histogram_file);
    mqtt::bench::write_percentile_distribution(out, h);
    if (out.flush()) return true;
    std::cerr << "tern-bench: error: cannot write " << o.histogram_file << "\n";
    return false;
}

mqtt::cli::exit_status verdict(bool errors, const std::vector<mqtt::bench::violation>& failed) {
    for (const auto& v : failed) std::cerr << "tern-bench: " << v.name << ": " << v.message << "\n";
    if (errors) return mqtt::cli::exit_status::failure;
    if (!failed.empty()) return static_cast<mqtt::cli::exit_status>(exit_threshold);
    return mqtt::cli::exit_status::ok;
}

// merge FILE...: usage errors (a file that cannot be read, is not a report or does not go
// with the others) throw; the merged run's errors exit 1 and its thresholds 4, as for a run.
mqtt::cli::exit_status run_merge(const CLI::App& app, bench_options& o) {
    if (o.files.empty()) throw CLI::RequiredError("merge: the FILEs to merge");
    std::vector<mqtt::bench::named_report> inputs;
    for (const auto& f : o.files) inputs.push_back({f, read_report("FILE", f)});
    std::string why;
    auto merged = mqtt::bench::merge_reports(inputs, why);
    if (!why.empty()) throw CLI::ValidationError("FILE", why);
    set_thresholds(app, o);
    const auto figures = mqtt::bench::headline_of(merged, why);
    if (o.limits.baseline)
        if (const auto bad = mqtt::bench::baseline_mismatch(*o.limits.baseline, figures.scenario,
                                                             figures.qos);
            !bad.empty())
            throw CLI::ValidationError("--baseline", bad);
    const auto failed = mqtt::bench::check(figures, o.limits);
    mqtt::bench::set_verdict(merged, o.limits, failed);
    if (o.client.format == mqtt::cli::output_format::json)
        std::cout << merged.dump() << std::endl;
    else
        mqtt::bench::print_merged_summary(std::cout, merged, failed);
    if (!write_histogram(o, figures.latency)) return mqtt::cli::exit_status::failure;
    for (const auto& e : merged["errors"]) std::cerr << "tern-bench: error: " << e.get<std::string>() << "\n";
    return verdict(merged["status"] == "error", failed);
}

mqtt::cli::exit_status run_bench(bench_options& o) {
    const auto results = mqtt::bench::run(o.run, o.run.progress ? &std::cerr : nullptr,
                                          o.client.verbosity > 0 ? &std::cerr : nullptr);
    const auto failed = mqtt::bench::check(results, o.limits);
    if (o.client.format == mqtt::cli::output_format::json)
        std::cout << mqtt::bench::to_json(results, o.limits, failed).dump() << std::endl;
    else
        mqtt::bench::print_summary(std::cout, results, failed);
    if (!write_histogram(o, mqtt::bench::headline_latency(results)))
        return mqtt::cli::exit_status::failure;
    for (const auto& e : results.errors) std::cerr << "tern-bench: error: " << e << "\n";
    if (results.timed_out) std::cerr << "tern-bench: error: the run hit --time-limit\n";
    return verdict(!results.errors.empty() || results.timed_out, failed);
}

// glibc gives freed memory back to the kernel as soon as more than 128 KiB is free at the top
// of a heap (its threshold adapts up to twice the largest block freed, but no further), and
// serves blocks of 128 KiB or more from mmap() until one is freed. A bench that passes
// 1 MiB payloads through its buffers then frees and faults in fresh pages for nearly every
// message (240 page faults per 1 MiB message, each page zeroed by the kernel). A load
// generator may keep what it used: up to 32 MiB blocks come from the heap and up to 64 MiB
// of free heap is kept.
void keep_freed_memory() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

}  // namespace

int main(int argc, char** argv) {
    keep_freed_memory();
    CLI::App app{
        "Load an MQTT broker (or an MQTT-SN gateway) with a scenario and report message rates, end-to-end latency "
        "percentiles, loss and the bench's own CPU time, as text or one JSON object."};
    bench_options opts;
    mqtt::cli::init_app(app, "tern-bench", examples);
    app.footer(std::string("Examples:\n") + examples + "\n" + mqtt::cli::exit_status_help() +
               "  4  a threshold was missed (--min-rate, --max-p99, --max-loss, --baseline), or "
               "messages were lost at QoS 1 or 2 or duplicated at QoS 2\n");
    add_load_options(app, opts);
    mqtt::cli::add_client_options(app, opts.client, "-v,--verbose");
    add_threshold_options(app, opts);
    return mqtt::cli::run(app, argc, argv, [&] {
        // Checked here rather than with required(): CLI11 reports a missing option before an
        // unknown one, which would hide the typo that caused it.
        if (opts.scenario.empty())
            throw CLI::RequiredError("A scenario (pub, sub, fanin, fanout, pairs, conn, shared, reqresp or merge)");
        if (opts.scenario == "merge") return run_merge(app, opts);
        prepare(app, opts);
        return run_bench(opts);
    });
}
