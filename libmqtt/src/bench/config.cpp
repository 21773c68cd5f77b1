#include "mqtt/bench/config.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <thread>
#include <utility>

#include "mqtt/bench/payload.hpp"

namespace mqtt::bench {
namespace {

constexpr std::array<std::pair<scenario, std::string_view>, 8> names{{
    {scenario::pub, "pub"},
    {scenario::sub, "sub"},
    {scenario::fanin, "fanin"},
    {scenario::fanout, "fanout"},
    {scenario::pairs, "pairs"},
    {scenario::conn, "conn"},
    {scenario::shared, "shared"},
    {scenario::reqresp, "reqresp"},
}};

struct shape {
    unsigned publishers;
    unsigned subscribers;
    const char* topic;
    const char* filter;
};

shape default_shape(scenario s) {
    switch (s) {
        case scenario::pub:
            return {1, 0, "tern-bench/pub/%i", ""};
        case scenario::sub:
            return {0, 1, "", "tern-bench/#"};
        case scenario::fanin:
            return {4, 1, "tern-bench/fanin/%i", "tern-bench/fanin/#"};
        case scenario::fanout:
            return {1, 10, "tern-bench/fanout", "tern-bench/fanout"};
        case scenario::pairs:
            return {10, 10, "tern-bench/pairs/%i", "tern-bench/pairs/%i"};
        case scenario::conn:
            return {0, 0, "", ""};
        case scenario::shared:
            return {1, 4, "tern-bench/shared/%i", "tern-bench/shared/#"};
        case scenario::reqresp:
            return {4, 1, "tern-bench/req/%i", "tern-bench/req/#"};
    }
    return {0, 0, "", ""};
}

// The filter that matches a --topic template given without --filter: pairs subscriber i
// takes publisher i's topic; elsewhere a level holding %i or %c becomes '+', so one filter
// matches every publisher.
std::string filter_for(std::string_view topic, scenario s) {
    if (s == scenario::pairs) return std::string(topic);
    std::string out;
    std::size_t start = 0;
    while (true) {
        const auto end = topic.find('/', start);
        const auto level = topic.substr(start, end == std::string_view::npos ? end : end - start);
        const bool per_client = level.find("%i") != std::string_view::npos ||
                                level.find("%c") != std::string_view::npos;
        out += per_client ? std::string_view("+") : level;
        if (end == std::string_view::npos) break;
        out += '/';
        start = end + 1;
    }
    return out;
}

}  // namespace

std::string_view to_string(scenario s) noexcept {
    for (const auto& [value, name] : names)
        if (value == s) return name;
    return "?";
}

bool parse_scenario(std::string_view name, scenario& out) noexcept {
    for (const auto& [value, n] : names)
        if (n == name) {
            out = value;
            return true;
        }
    return false;
}

std::string shared_filter(const bench_config& c, std::string_view filter) {
    return "$share/" + c.share_group + "/" + std::string(filter);
}

std::string expand_template(std::string_view pattern, unsigned index,
                            std::string_view client_id) {
    std::string out;
    out.reserve(pattern.size() + 8);
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        const char next = i + 1 < pattern.size() ? pattern[i + 1] : '\0';
        if (pattern[i] == '%' && next == 'i') {
            out += std::to_string(index);
            ++i;
        } else if (pattern[i] == '%' && next == 'c') {
            out += client_id;
            ++i;
        } else {
            out += pattern[i];
        }
    }
    return out;
}

std::string apply_scenario_defaults(bench_config& c) {
    const auto s = default_shape(c.scenario);
    const auto name = std::string(to_string(c.scenario));
    if (c.mqttsn && (c.scenario == scenario::shared || c.scenario == scenario::reqresp))
        return name + " is not supported over MQTT-SN (mqttsn://): MQTT-SN 1.2 has no " +
               (c.scenario == scenario::shared ? "shared subscriptions"
                                               : "Response Topic or Correlation Data") +
               " (pub, sub, fanin, fanout, pairs and conn are supported)";
    switch (c.scenario) {
        case scenario::pairs:
            if (c.publishers || c.subscribers)
                return "pairs takes --clients, not --publishers/--subscribers";
            if (!c.clients) c.clients = s.publishers;
            c.publishers = c.subscribers = c.clients;
            break;
        case scenario::conn:
            if (c.publishers || c.subscribers)
                return "conn takes --clients, not --publishers/--subscribers";
            if (!c.clients) c.clients = 100;
            break;
        case scenario::pub:
            if (c.subscribers) return "pub has no subscribers (see fanin, fanout, pairs)";
            if (c.clients) return "pub takes --publishers, not --clients";
            if (!c.publishers) c.publishers = s.publishers;
            break;
        case scenario::sub:
            if (c.publishers)
                return "sub has no publishers of its own: run tern-bench pub beside it";
            if (c.clients) return "sub takes --subscribers, not --clients";
            if (!c.subscribers) c.subscribers = s.subscribers;
            if (!c.count && c.duration <= 0) return "sub needs --count or --duration";
            break;
        case scenario::reqresp:
            if (c.connect.version != protocol::protocol_version::v5)
                return "reqresp needs MQTT 5.0 (Response Topic and Correlation Data)";
            [[fallthrough]];
        case scenario::fanin:
        case scenario::fanout:
        case scenario::shared:
            if (c.clients) return name + " takes --publishers and --subscribers, not --clients";
            if (!c.publishers) c.publishers = s.publishers;
            if (!c.subscribers) c.subscribers = s.subscribers;
            break;
    }
    if (c.filter.empty()) c.filter = c.topic.empty() ? s.filter : filter_for(c.topic, c.scenario);
    if (c.topic.empty()) c.topic = s.topic;
    if (c.scenario != scenario::conn && c.scenario != scenario::sub && !c.count && c.duration <= 0)
        c.count = 10'000;
    if (c.rate_per_client > 0) {
        if (c.rate > 0) return "--rate (total) and --rate-per-client exclude each other";
        if (!c.publishers) return name + " has no publishers to pace (--rate-per-client)";
        // Each publisher's share_of() the total is then exactly rate_per_client.
        c.rate = c.rate_per_client * c.publishers;
    }
    if (c.publishers && c.size < compact_header_size)
        return "--size must be at least " + std::to_string(compact_header_size) +
               " (the bench header: run id, publisher, sequence)";
    // Below the full header there is no send time: no latency, and no warm-up to leave out.
    if (c.publishers && c.size < payload_header_size && c.warmup > 0)
        return "--warmup needs --size " + std::to_string(payload_header_size) +
               " or more (the send time in the payload)";
    if (c.publishers && c.size < payload_header_size && c.scenario == scenario::reqresp)
        return "reqresp needs --size " + std::to_string(payload_header_size) + " or more";
    if (c.warmup > 0 && c.duration > 0 && c.warmup >= c.duration)
        return "--warmup must be shorter than --duration";
    for (const auto& a : c.sources) {
        boost::system::error_code ec;
        (void)boost::asio::ip::make_address(a, ec);
        if (ec) return "--source " + a + ": not an IP address";
    }
    // A loop without clients would only idle.
    if (c.threads == 0) c.threads = std::max(1u, std::thread::hardware_concurrency());
    const unsigned connections =
        c.scenario == scenario::conn ? c.clients : c.publishers + c.subscribers;
    c.threads = std::clamp(c.threads, 1u, std::max(1u, connections));
    if (c.time_limit <= 0) {
        const double run = c.scenario == scenario::conn ? c.hold : c.duration;
        c.time_limit = run > 0 ? run + c.drain + 120 : 300;
    }
    return {};
}

}  // namespace mqtt::bench
