#include "mqtt/bench/merge.hpp"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "mqtt/bench/histogram.hpp"
#include "mqtt/bench/report.hpp"

namespace mqtt::bench {
namespace {

using json = nlohmann::json;

// The parameters that make two runs the same measurement; the others (host, port, counts of
// clients, topics) may differ between the machines.
constexpr std::initializer_list<const char*> same_parameters = {"qos", "size", "protocol_version"};

void add_counts(json& into, const json& from, std::initializer_list<const char*> keys) {
    for (const char* k : keys)
        into[k] = into.at(k).get<std::uint64_t>() + from.at(k).get<std::uint64_t>();
}

void add_reals(json& into, const json& from, std::initializer_list<const char*> keys) {
    for (const char* k : keys) into[k] = into.at(k).get<double>() + from.at(k).get<double>();
}

void max_reals(json& into, const json& from, std::initializer_list<const char*> keys) {
    for (const char* k : keys)
        into[k] = std::max(into.at(k).get<double>(), from.at(k).get<double>());
}

// Adds `from` into `into`; throws json exceptions for missing fields, returns false with
// `why` for a histogram it cannot read.
bool add_report(json& into, const json& from, std::vector<histogram>& hists, std::string& why) {
    add_counts(into["parameters"], from.at("parameters"), {"publishers", "subscribers", "clients"});
    add_reals(into["parameters"], from.at("parameters"), {"rate", "connect_rate"});
    // Reports written before --threads ran on one.
    into["parameters"]["threads"] = into["parameters"].value("threads", std::uint64_t{0}) +
                                    from.at("parameters").value("threads", std::uint64_t{1});
    max_reals(into["seconds"], from.at("seconds"),
              {"wall", "connect", "publish", "ack", "receive"});
    add_counts(into["connections"], from.at("connections"), {"attempted", "succeeded", "failed"});
    add_reals(into["connections"], from.at("connections"), {"per_second"});
    add_counts(
        into["messages"], from.at("messages"),
        {"published", "acked", "refused", "expected", "received", "unique", "lost", "duplicates",
         "out_of_order", "foreign", "measured_published", "measured_acked", "measured_received"});
    add_reals(into["rates"], from.at("rates"),
              {"headline", "published_msg_s", "published_bytes_s", "acked_msg_s", "acked_bytes_s",
               "received_msg_s", "received_bytes_s"});
    add_reals(into["cpu"], from.at("cpu"), {"user_s", "system_s", "utilization"});
    const char* names[] = {"latency", "ack_latency", "connect_latency"};
    for (std::size_t i = 0; i < 3; ++i) {
        auto h = histogram::from_json(from.at("histograms").at(names[i]));
        if (!h) {
            why = std::string("histograms.") + names[i] + " is not a histogram";
            return false;
        }
        hists[i].merge(*h);
    }
    into["timed_out"] = into.at("timed_out").get<bool>() || from.at("timed_out").get<bool>();
    return true;
}

}  // namespace

json merge_reports(const std::vector<named_report>& inputs, std::string& why) {
    why.clear();
    if (inputs.empty()) {
        why = "nothing to merge";
        return nullptr;
    }
    const auto& first = inputs.front().report;
    json merged;
    std::vector<histogram> hists(3);
    auto publishers = json::array();
    auto errors = json::array();
    for (std::size_t run = 0; run < inputs.size(); ++run) {
        const auto& [name, r] = inputs[run];
        std::string bad;
        (void)headline_of(r, bad);  // the schema and the fields the verdicts read
        if (!bad.empty()) {
            why = name + ": " + bad;
            return nullptr;
        }
        try {
            if (r.at("scenario") != first.at("scenario")) {
                why = name + ": scenario " + r.at("scenario").get<std::string>() + " is not " +
                      first.at("scenario").get<std::string>() + " as in " + inputs[0].name;
                return nullptr;
            }
            for (const char* k : same_parameters)
                if (r.at("parameters").at(k) != first.at("parameters").at(k)) {
                    why = name + ": parameters." + k + " " + r["parameters"][k].dump() +
                          " differs from " + first["parameters"][k].dump() + " in " +
                          inputs[0].name;
                    return nullptr;
                }
            if (run == 0) {
                merged = r;
                for (const char* k : {"publishers", "subscribers", "clients", "threads"})
                    merged["parameters"][k] = std::uint64_t{0};
                for (const char* k : {"rate", "connect_rate"}) merged["parameters"][k] = 0.0;
                for (auto& [k, v] : merged["seconds"].items()) v = 0.0;
                for (auto& [k, v] : merged["connections"].items())
                    if (k != "latency_ns") v = v.is_number_float() ? json(0.0) : json(0);
                for (auto& [k, v] : merged["messages"].items())
                    v = v.is_number_float() ? json(0.0) : json(std::uint64_t{0});
                for (auto& [k, v] : merged["rates"].items()) v = 0.0;
                for (auto& [k, v] : merged["cpu"].items()) v = 0.0;
                merged["timed_out"] = false;
            }
            if (!add_report(merged, r, hists, why)) {
                why = name + ": " + why;
                return nullptr;
            }
            for (auto p : r.at("per_publisher")) {
                p["run"] = run;
                publishers.push_back(std::move(p));
            }
            for (const auto& e : r.at("errors"))
                errors.push_back(name + ": " + e.get<std::string>());
        } catch (const json::exception& e) {
            why = name + ": a field is missing or has the wrong type (" + e.what() + ")";
            return nullptr;
        }
    }
    auto& m = merged["messages"];
    const auto expected = m["expected"].get<std::uint64_t>();
    m["loss_percent"] = expected ? 100.0 * static_cast<double>(m["lost"].get<std::uint64_t>()) /
                                       static_cast<double>(expected)
                                 : 0.0;
    merged["histograms"] = {{"latency", hists[0].to_json()},
                            {"ack_latency", hists[1].to_json()},
                            {"connect_latency", hists[2].to_json()}};
    merged["latency_ns"] = percentiles_json(hists[0]);
    merged["ack_latency_ns"] = percentiles_json(hists[1]);
    merged["connections"]["latency_ns"] = percentiles_json(hists[2]);
    merged["per_publisher"] = std::move(publishers);
    merged["errors"] = std::move(errors);
    auto files = json::array();
    for (const auto& in : inputs) files.push_back(in.name);
    merged["merged"] = {{"runs", inputs.size()}, {"files", std::move(files)}};
    return merged;
}

}  // namespace mqtt::bench
