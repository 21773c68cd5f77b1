#include "mqtt/bench/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "mqtt/version.hpp"

namespace mqtt::bench {
namespace {

double per_second(std::uint64_t n, double seconds) {
    return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

double loss_percent(const run_results& r) {
    return r.expected ? 100.0 * static_cast<double>(r.lost) / static_cast<double>(r.expected) : 0.0;
}

bool has_subscribers(const run_results& r) {
    return r.config.subscribers > 0;
}

std::string format_double(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

std::string format_ns(std::uint64_t ns) {
    char buf[64];
    if (ns < 10'000)
        std::snprintf(buf, sizeof buf, "%llu ns", static_cast<unsigned long long>(ns));
    else if (ns < 10'000'000)
        std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(ns) / 1e3);
    else
        std::snprintf(buf, sizeof buf, "%.2f ms", static_cast<double>(ns) / 1e6);
    return buf;
}

nlohmann::json parameters_json(const bench_config& c) {
    return {{"host", c.host},
            {"port", c.port},
            {"protocol_version", c.mqttsn ? std::string("mqttsn-1.2")
                                          : std::string(protocol::to_string(c.connect.version))},
            {"qos", static_cast<int>(c.qos)},
            {"publishers", c.publishers},
            {"subscribers", c.subscribers},
            {"clients", c.clients},
            {"topic", c.topic},
            {"filter", c.filter},
            {"size", c.size},
            {"count", c.count},
            {"duration_s", c.duration},
            {"warmup_s", c.warmup},
            {"inflight", c.inflight},
            {"rate", c.rate},
            {"rate_per_client", c.rate_per_client},
            {"connect_rate", c.connect_rate},
            {"hold_s", c.hold},
            {"drain_s", c.drain},
            {"time_limit_s", c.time_limit},
            {"keep_alive_s", c.connect.keep_alive},
            {"threads", c.threads}};
}

}  // namespace

double headline_rate(const run_results& r) {
    if (r.config.scenario == scenario::conn)
        return per_second(r.connect_succeeded, r.connect_seconds);
    if (has_subscribers(r)) return per_second(r.measured_received, r.receive_seconds);
    if (r.config.qos != protocol::qos::at_most_once)
        return per_second(r.measured_acked, r.ack_seconds);
    return per_second(r.measured_published, r.publish_seconds);
}

const histogram& headline_latency(const run_results& r) {
    if (r.config.scenario == scenario::conn) return r.connect_latency;
    if (has_subscribers(r)) return r.latency;
    return r.ack_latency;
}

headline_figures headline_of(const run_results& r) {
    headline_figures h;
    h.scenario = r.config.scenario;
    h.qos = r.config.qos;
    h.rate = headline_rate(r);
    h.latency = headline_latency(r);
    h.expected = r.expected;
    h.lost = r.lost;
    h.duplicates = r.duplicates;
    return h;
}

headline_figures headline_of(const nlohmann::json& report, std::string& why) {
    headline_figures h;
    why.clear();
    const auto fail = [&](std::string what) {
        why = std::move(what);
        return headline_figures{};
    };
    if (!report.is_object() || report.value("schema", "") != schema_version)
        return fail(std::string("not a ") + schema_version + " report");
    try {
        if (!parse_scenario(report.at("scenario").get<std::string>(), h.scenario))
            return fail("unknown scenario " + report.at("scenario").dump());
        const auto q = report.at("parameters").at("qos").get<int>();
        if (q < 0 || q > 2) return fail("parameters.qos is not 0, 1 or 2");
        h.qos = static_cast<protocol::qos>(q);
        h.rate = report.at("rates").at("headline").get<double>();
        const char* which = h.scenario == scenario::conn ? "connect_latency"
                            : report.at("parameters").at("subscribers").get<unsigned>() > 0
                                ? "latency"
                                : "ack_latency";
        auto latency = histogram::from_json(report.at("histograms").at(which));
        if (!latency) return fail(std::string("histograms.") + which + " is not a histogram");
        h.latency = std::move(*latency);
        const auto& m = report.at("messages");
        h.expected = m.at("expected").get<std::uint64_t>();
        h.lost = m.at("lost").get<std::uint64_t>();
        h.duplicates = m.at("duplicates").get<std::uint64_t>();
    } catch (const nlohmann::json::exception& e) {
        return fail(std::string("a field is missing or has the wrong type (") + e.what() + ")");
    }
    return h;
}

std::string baseline_mismatch(const baseline& b, bench::scenario s, protocol::qos q) {
    if (b.figures.scenario == s && b.figures.qos == q) return {};
    return b.file + " is a " + std::string(to_string(b.figures.scenario)) + " run at QoS " +
           std::to_string(static_cast<int>(b.figures.qos)) + ", this is " +
           std::string(to_string(s)) + " at QoS " + std::to_string(static_cast<int>(q));
}

namespace {

void check_baseline(const headline_figures& h, const baseline& b, std::vector<violation>& out) {
    const double allowed = b.max_regression_percent;
    const auto& base = b.figures;
    if (base.rate > 0) {
        const double change = 100.0 * (h.rate - base.rate) / base.rate;
        if (-change > allowed)
            out.push_back({"regression-rate",
                           "rate " + format_double(h.rate) + "/s is " + format_double(-change) +
                               "% below the baseline's " + format_double(base.rate) + "/s (" +
                               b.file + ", --max-regression " + format_double(allowed) + ")"});
    }
    if (base.latency.count() > 0 && h.latency.count() > 0) {
        const auto was = static_cast<double>(base.latency.percentile(99));
        const auto now = static_cast<double>(h.latency.percentile(99));
        const double change = was > 0 ? 100.0 * (now - was) / was : 0.0;
        if (change > allowed)
            out.push_back({"regression-p99", "p99 latency " + format_double(now / 1e6) +
                                                 " ms is " + format_double(change) +
                                                 "% above the baseline's " +
                                                 format_double(was / 1e6) + " ms (" + b.file +
                                                 ", --max-regression " + format_double(allowed) +
                                                 ")"});
    }
}

double loss_percent(const headline_figures& h) {
    return h.expected ? 100.0 * static_cast<double>(h.lost) / static_cast<double>(h.expected)
                      : 0.0;
}

}  // namespace

std::vector<violation> check(const headline_figures& h, const thresholds& t) {
    std::vector<violation> out;
    if (t.min_rate && h.rate < *t.min_rate)
        out.push_back({"min-rate", "rate " + format_double(h.rate) + "/s is below --min-rate " +
                                       format_double(*t.min_rate)});
    if (t.max_p99_ms) {
        const double p99 = static_cast<double>(h.latency.percentile(99)) / 1e6;
        if (h.latency.count() == 0)
            out.push_back({"max-p99", "no latency was measured to check --max-p99 against"});
        else if (p99 > *t.max_p99_ms)
            out.push_back({"max-p99", "p99 latency " + format_double(p99) +
                                          " ms is above --max-p99 " +
                                          format_double(*t.max_p99_ms)});
    }
    const auto loss = loss_percent(h);
    if (t.max_loss_percent && loss > *t.max_loss_percent)
        out.push_back({"max-loss", "loss " + format_double(loss) + "% is above --max-loss " +
                                       format_double(*t.max_loss_percent)});
    if (h.qos != protocol::qos::at_most_once && h.lost > 0)
        out.push_back({"qos-loss", std::to_string(h.lost) + " of " + std::to_string(h.expected) +
                                       " deliveries lost at QoS " +
                                       std::to_string(static_cast<int>(h.qos))});
    if (h.qos == protocol::qos::exactly_once && h.duplicates > 0)
        out.push_back(
            {"qos-duplicates", std::to_string(h.duplicates) + " duplicate deliveries at QoS 2"});
    if (t.baseline) check_baseline(h, *t.baseline, out);
    return out;
}

std::vector<violation> check(const run_results& r, const thresholds& t) {
    return check(headline_of(r), t);
}

void set_verdict(nlohmann::json& report, const thresholds& t,
                 const std::vector<violation>& failed) {
    nlohmann::json limits = nlohmann::json::object();
    if (t.min_rate) limits["min_rate"] = *t.min_rate;
    if (t.max_p99_ms) limits["max_p99_ms"] = *t.max_p99_ms;
    if (t.max_loss_percent) limits["max_loss_percent"] = *t.max_loss_percent;
    if (t.baseline) {
        const auto& b = *t.baseline;
        limits["baseline"] = {{"file", b.file},
                              {"headline_rate", b.figures.rate},
                              {"p99_ns", b.figures.latency.percentile(99)}};
        limits["max_regression_percent"] = b.max_regression_percent;
    }
    auto violations = nlohmann::json::array();
    for (const auto& v : failed) violations.push_back({{"name", v.name}, {"message", v.message}});
    const bool ok = report.value("errors", nlohmann::json::array()).empty() &&
                    !report.value("timed_out", false);
    report["status"] = !ok ? "error" : failed.empty() ? "ok" : "threshold";
    report["thresholds"] = {{"limits", std::move(limits)}, {"violations", std::move(violations)}};
}

nlohmann::json to_json(const run_results& r, const thresholds& t,
                       const std::vector<violation>& failed) {
    const auto size = static_cast<double>(r.config.size);
    const auto pub_rate = per_second(r.measured_published, r.publish_seconds);
    const auto ack_rate = per_second(r.measured_acked, r.ack_seconds);
    const auto recv_rate = per_second(r.measured_received, r.receive_seconds);
    const auto wall = r.wall_seconds;
    auto publishers = nlohmann::json::array();
    for (const auto& p : r.per_publisher)
        publishers.push_back({{"index", p.index},
                              {"published", p.published},
                              {"acked", p.acked},
                              {"expected", p.expected},
                              {"received", p.received},
                              {"lost", p.lost},
                              {"duplicates", p.duplicates},
                              {"out_of_order", p.out_of_order}});
    nlohmann::json report = {
        {"schema", schema_version},
        {"tool", "tern-bench"},
        {"version", version_string},
        {"scenario", std::string(to_string(r.config.scenario))},
        {"parameters", parameters_json(r.config)},
        {"seconds",
         {{"wall", wall},
          {"connect", r.connect_seconds},
          {"publish", r.publish_seconds},
          {"ack", r.ack_seconds},
          {"receive", r.receive_seconds}}},
        {"connections",
         {{"attempted", r.connect_attempted},
          {"succeeded", r.connect_succeeded},
          {"failed", r.connect_failed},
          {"per_second", per_second(r.connect_succeeded, r.connect_seconds)},
          {"latency_ns", percentiles_json(r.connect_latency)}}},
        {"messages",
         {{"published", r.published},
          {"acked", r.acked},
          {"refused", r.refused},
          {"expected", r.expected},
          {"received", r.received},
          {"unique", r.unique},
          {"lost", r.lost},
          {"loss_percent", loss_percent(r)},
          {"duplicates", r.duplicates},
          {"out_of_order", r.out_of_order},
          {"foreign", r.foreign},
          {"measured_published", r.measured_published},
          {"measured_acked", r.measured_acked},
          {"measured_received", r.measured_received}}},
        {"rates",
         {{"headline", headline_rate(r)},
          {"published_msg_s", pub_rate},
          {"published_bytes_s", pub_rate * size},
          {"acked_msg_s", ack_rate},
          {"acked_bytes_s", ack_rate * size},
          {"received_msg_s", recv_rate},
          {"received_bytes_s", recv_rate * size}}},
        {"latency_ns", percentiles_json(r.latency)},
        {"ack_latency_ns", percentiles_json(r.ack_latency)},
        {"histograms",
         {{"latency", r.latency.to_json()},
          {"ack_latency", r.ack_latency.to_json()},
          {"connect_latency", r.connect_latency.to_json()}}},
        {"per_publisher", std::move(publishers)},
        {"cpu",
         {{"user_s", r.cpu_user_seconds},
          {"system_s", r.cpu_system_seconds},
          {"utilization", wall > 0 ? (r.cpu_user_seconds + r.cpu_system_seconds) / wall : 0.0}}},
        {"timed_out", r.timed_out},
        {"errors", r.errors},
    };
    if (r.config.scenario == scenario::shared)
        report["shared"] = {{"group", r.config.share_group},
                            {"received_per_subscriber", r.per_subscriber_unique}};
    if (r.config.scenario == scenario::reqresp)
        report["reqresp"] = {{"response_topic", std::string(response_topic_template)},
                             {"answered_per_responder", r.per_subscriber_unique}};
    set_verdict(report, t, failed);
    return report;
}

void print_summary(std::ostream& out, const run_results& r, const std::vector<violation>& failed) {
    const auto& c = r.config;
    char line[256];
    out << "tern-bench " << to_string(c.scenario) << ": " << c.host << ":" << c.port << ", "
        << (c.mqttsn ? std::string("MQTT-SN 1.2 over UDP")
                     : "MQTT " + std::string(protocol::to_string(c.connect.version)))
        << ", QoS " << static_cast<int>(c.qos) << ", "
        << c.publishers << " publisher(s), " << c.subscribers << " subscriber(s)";
    if (c.scenario == scenario::conn) out << ", " << c.clients << " connection(s)";
    out << ", " << c.size << "-byte payloads\n";
    // With --connect-rate, the rate asked beside the rate got: below it, something other than
    // the pacing (the bench, the kernel, the broker) held the connections back.
    char asked[48] = "";
    if (c.connect_rate > 0) std::snprintf(asked, sizeof asked, " of %.0f/s asked", c.connect_rate);
    std::snprintf(line, sizeof line,
                  "  connections  %llu/%llu in %.3f s (%.0f/s%s)  connect p50 %s  p99 %s  max %s\n",
                  static_cast<unsigned long long>(r.connect_succeeded),
                  static_cast<unsigned long long>(r.connect_attempted), r.connect_seconds,
                  per_second(r.connect_succeeded, r.connect_seconds), asked,
                  format_ns(r.connect_latency.percentile(50)).c_str(),
                  format_ns(r.connect_latency.percentile(99)).c_str(),
                  format_ns(r.connect_latency.max()).c_str());
    out << line;
    if (c.scenario != scenario::conn) {
        std::snprintf(
            line, sizeof line,
            "  messages     published %llu  acked %llu  received %llu  lost %llu "
            "(%.4g%%)  duplicates %llu  out of order %llu\n",
            static_cast<unsigned long long>(r.published), static_cast<unsigned long long>(r.acked),
            static_cast<unsigned long long>(r.unique), static_cast<unsigned long long>(r.lost),
            loss_percent(r), static_cast<unsigned long long>(r.duplicates),
            static_cast<unsigned long long>(r.out_of_order));
        out << line;
        std::snprintf(
            line, sizeof line,
            "  rates        published %.0f/s  acked %.0f/s  received %.0f/s  "
            "(%.2f MB/s received)\n",
            per_second(r.measured_published, r.publish_seconds),
            per_second(r.measured_acked, r.ack_seconds),
            per_second(r.measured_received, r.receive_seconds),
            per_second(r.measured_received, r.receive_seconds) * static_cast<double>(c.size) / 1e6);
        out << line;
        if (c.scenario == scenario::reqresp) {
            out << "  responders answered";
            for (const auto n : r.per_subscriber_unique) out << " " << n;
            out << " (end to end below is the round trip)\n";
        }
        if (c.scenario == scenario::shared) {
            out << "  group $share/" << c.share_group << ": per member";
            for (const auto n : r.per_subscriber_unique) out << " " << n;
            out << "\n";
        }
        for (const auto* h : {&r.latency, &r.ack_latency}) {
            if (h->count() == 0) continue;
            out << (h == &r.latency ? "  end to end " : "  pub to ack ") << " p50 "
                << format_ns(h->percentile(50)) << "  p90 " << format_ns(h->percentile(90))
                << "  p99 " << format_ns(h->percentile(99)) << "  p99.9 "
                << format_ns(h->percentile(99.9)) << "  p99.99 " << format_ns(h->percentile(99.99))
                << "  max " << format_ns(h->max()) << "\n";
        }
    }
    std::snprintf(line, sizeof line, "  bench cpu    %.2f s user + %.2f s system in %.2f s wall%s\n",
                  r.cpu_user_seconds, r.cpu_system_seconds, r.wall_seconds,
                  c.threads > 1 ? (" on " + std::to_string(c.threads) + " threads").c_str() : "");
    out << line;
    if (r.timed_out) out << "  TIMED OUT: the run hit --time-limit\n";
    for (const auto& e : r.errors) out << "  error: " << e << "\n";
    for (const auto& v : failed) out << "  FAILED " << v.name << ": " << v.message << "\n";
}

void print_merged_summary(std::ostream& out, const nlohmann::json& m,
                          const std::vector<violation>& failed) {
    const auto& p = m.at("parameters");
    const auto& msgs = m.at("messages");
    const auto& rates = m.at("rates");
    const auto& c = m.at("connections");
    const auto u = [](const nlohmann::json& v) { return v.get<unsigned long long>(); };
    char line[256];
    out << "tern-bench merge of " << m.at("merged").at("runs").get<std::size_t>() << " "
        << m.at("scenario").get<std::string>() << " runs: MQTT "
        << p.at("protocol_version").get<std::string>() << ", QoS " << p.at("qos").get<int>()
        << ", " << u(p.at("publishers")) << " publisher(s), " << u(p.at("subscribers"))
        << " subscriber(s), " << u(p.at("size")) << "-byte payloads\n";
    std::snprintf(line, sizeof line, "  connections  %llu/%llu (%.0f/s in total)\n",
                  u(c.at("succeeded")), u(c.at("attempted")), c.at("per_second").get<double>());
    out << line;
    std::snprintf(line, sizeof line,
                  "  messages     published %llu  acked %llu  received %llu  lost %llu "
                  "(%.4g%%)  duplicates %llu  out of order %llu\n",
                  u(msgs.at("published")), u(msgs.at("acked")), u(msgs.at("unique")),
                  u(msgs.at("lost")), msgs.at("loss_percent").get<double>(),
                  u(msgs.at("duplicates")), u(msgs.at("out_of_order")));
    out << line;
    std::snprintf(line, sizeof line,
                  "  rates        published %.0f/s  acked %.0f/s  received %.0f/s  "
                  "(sums of the runs' rates)\n",
                  rates.at("published_msg_s").get<double>(), rates.at("acked_msg_s").get<double>(),
                  rates.at("received_msg_s").get<double>());
    out << line;
    for (const char* name : {"latency", "ack_latency"}) {
        const auto h = histogram::from_json(m.at("histograms").at(name));
        if (!h || h->count() == 0) continue;
        out << (std::string(name) == "latency" ? "  end to end " : "  pub to ack ") << " p50 "
            << format_ns(h->percentile(50)) << "  p90 " << format_ns(h->percentile(90)) << "  p99 "
            << format_ns(h->percentile(99)) << "  p99.9 " << format_ns(h->percentile(99.9))
            << "  p99.99 " << format_ns(h->percentile(99.99)) << "  max " << format_ns(h->max())
            << "\n";
    }
    for (const auto& e : m.at("errors")) out << "  error: " << e.get<std::string>() << "\n";
    for (const auto& v : failed) out << "  FAILED " << v.name << ": " << v.message << "\n";
}

void write_percentile_distribution(std::ostream& out, const histogram& h) {
    char line[160];
    const auto row = [&](double percentile) {
        const auto value = h.percentile(percentile * 100);
        // The count at or below the value: what HdrHistogram prints as TotalCount.
        const auto count = static_cast<unsigned long long>(
            std::ceil(percentile * static_cast<double>(h.count()) - 1e-9));
        const double inverse = percentile < 1 ? 1 / (1 - percentile) : 0;
        if (percentile < 1)
            std::snprintf(line, sizeof line, "%12.3f %14.12f %10llu %14.2f\n",
                          static_cast<double>(value) / 1e6, percentile, std::max(count, 1ull),
                          inverse);
        else
            std::snprintf(line, sizeof line, "%12.3f %14.12f %10llu\n",
                          static_cast<double>(h.max()) / 1e6, 1.0,
                          static_cast<unsigned long long>(h.count()));
        out << line;
    };
    out << "       Value     Percentile TotalCount 1/(1-Percentile)\n\n";
    if (h.count() > 0) {
        // Five steps per halving: 0, 10, .. 40, 50, 55, .. 70, 75, 77.5, .. until one sample
        // is what is left of the distance to 100 %.
        for (int half = 0; half < 40; ++half) {
            const double lo = 1 - std::ldexp(1.0, -half);
            const double step = std::ldexp(1.0, -half - 1) / 5;
            if ((1 - lo) * static_cast<double>(h.count()) < 1) break;
            for (int k = 0; k < 5; ++k) row(lo + k * step);
        }
        row(1);
    }
    std::snprintf(line, sizeof line, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n",
                  h.mean() / 1e6, h.stddev() / 1e6);
    out << line;
    std::snprintf(line, sizeof line, "#[Max     = %12.3f, Total count    = %12llu]\n",
                  static_cast<double>(h.max()) / 1e6, static_cast<unsigned long long>(h.count()));
    out << line;
    std::snprintf(line, sizeof line, "#[Buckets = %12zu, SubBuckets     = %12llu]\n",
                  histogram::bucket_count(),
                  static_cast<unsigned long long>(1ull << histogram::sub_bucket_bits));
    out << line;
}

}  // namespace mqtt::bench
