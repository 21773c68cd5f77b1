// tern-broker: the MQTT broker.

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "mqtt/cli/options.hpp"

namespace {

struct broker_options {
    std::uint16_t port = 1883;  // 0: pick a free port
    std::string config_file;
    int verbosity = 0;
    mqtt::cli::output_format log_format = mqtt::cli::output_format::text;
};

constexpr const char* examples =
    "  tern-broker                      listen on 127.0.0.1:1883\n"
    "  tern-broker -p 0 -v              pick a free port, log every connection\n"
    "  tern-broker -c tern.conf --log-format json\n";

void add_broker_options(CLI::App& app, broker_options& o) {
    app.add_option("-p,--port", o.port,
                   "TCP port to listen on, on 127.0.0.1 unless the configuration file sets "
                   "listeners (default: 1883; 0 picks a free port and logs it)")
        ->type_name("PORT")
        ->check(CLI::Range(0, 65535).description(""));
    app.add_option("-c,--config", o.config_file, "Read the configuration from FILE")
        ->type_name("FILE")
        ->check(CLI::ExistingFile.description(""));
    mqtt::cli::add_verbosity(app, o.verbosity, "-v,--verbose");
    mqtt::cli::add_log_format(app, o.log_format);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "The Tern MQTT broker: MQTT 3.1, 3.1.1 and 5.0 clients on one port. Logs go "
        "to standard error."};
    broker_options opts;
    mqtt::cli::init_app(app, "tern-broker", examples);
    add_broker_options(app, opts);
    return mqtt::cli::run(app, argc, argv,
                          [&] { return mqtt::cli::not_implemented("tern-broker", "the broker"); });
}
