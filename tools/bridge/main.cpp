// tern-bridge: relay messages between two brokers.

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "mqtt/cli/options.hpp"

namespace {

struct bridge_options {
    std::string config_file;
    std::string local_url = "mqtt://localhost:1883";
    std::string remote_url;
    std::vector<std::string> topics;  // "PATTERN [in|out|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX]"
    mqtt::cli::tls_options tls;       // for the remote broker
    int verbosity = 0;
    mqtt::cli::output_format log_format = mqtt::cli::output_format::text;
};

constexpr const char* examples =
    "  tern-bridge --remote mqtt://cloud.example -t 'sensors/# out 1'\n"
    "  tern-bridge --remote mqtts://cloud.example --cafile ca.pem -t 'cmd/# in 1 site1/ '\n"
    "  tern-bridge -c bridge.conf -v\n";

void add_bridge_options(CLI::App& app, bridge_options& o) {
    auto* config =
        app.add_option("-c,--config", o.config_file, "Read the bridge definition from FILE")
            ->type_name("FILE")
            ->check(CLI::ExistingFile.description(""));
    app.add_option("--local", o.local_url,
                   "Local broker as mqtt(s)://[USER[:PASSWORD]@]HOST[:PORT] "
                   "(default: mqtt://localhost:1883)")
        ->type_name("URL");
    app.add_option("--remote", o.remote_url,
                   "Remote broker as mqtt(s)://[USER[:PASSWORD]@]HOST[:PORT]; required "
                   "without --config")
        ->type_name("URL")
        ->excludes(config);
    app.add_option("-t,--topic", o.topics,
                   "Topic to relay, as 'PATTERN [in|out|both] [QOS] [LOCAL_PREFIX "
                   "REMOTE_PREFIX]' (default direction: out, QoS 0); repeat for more")
        ->type_name("SPEC")
        ->allow_extra_args(false);
    mqtt::cli::add_tls_options(app, o.tls);
    mqtt::cli::add_verbosity(app, o.verbosity, "-v,--verbose");
    mqtt::cli::add_log_format(app, o.log_format);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Relay messages between a local and a remote MQTT broker, in either direction, "
        "with optional topic prefixes."};
    bridge_options opts;
    mqtt::cli::init_app(app, "tern-bridge", examples);
    add_bridge_options(app, opts);
    return mqtt::cli::run(app, argc, argv, [&] {
        if (opts.config_file.empty()) {
            if (opts.remote_url.empty()) throw CLI::RequiredError("--remote (or --config)");
            if (opts.topics.empty()) throw CLI::RequiredError("--topic (or --config)");
            mqtt::cli::require_url("--remote", opts.remote_url);
        }
        mqtt::cli::require_url("--local", opts.local_url);
        return mqtt::cli::not_implemented("tern-bridge", "bridging");
    });
}
