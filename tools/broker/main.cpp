// tern-broker: the MQTT broker.

#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <string>

#include "mqtt/cli/options.hpp"
#include "mqtt/net/server.hpp"
#include "mqtt/version.hpp"

namespace {

struct broker_options {
    std::uint16_t port = 1883;  // 0: pick a free port
    std::string config_file;
    int verbosity = 0;
    mqtt::cli::output_format log_format = mqtt::cli::output_format::text;
};

constexpr const char* examples =
    "  tern-broker                      listen on port 1883 of 127.0.0.1 and ::1\n"
    "  tern-broker -p 0 -v              pick a free port, log every connection\n"
    "  tern-broker -p 1884 --quiet      another port, log errors only\n";

void add_broker_options(CLI::App& app, broker_options& o) {
    app.add_option("-p,--port", o.port,
                   "TCP port to listen on, on 127.0.0.1 and ::1 (default: 1883; 0 picks a free "
                   "port, which the first log line names)")
        ->type_name("PORT")
        ->check(CLI::Range(0, 65535).description(""));
    app.add_option("-c,--config", o.config_file, "Read the configuration from FILE")
        ->type_name("FILE")
        ->check(CLI::ExistingFile.description(""));
    mqtt::cli::add_verbosity(app, o.verbosity, "-v,--verbose");
    mqtt::cli::add_log_format(app, o.log_format);
}

// Listens on 127.0.0.1 and ::1; the first line on stderr names what was bound, so scripts
// started with -p 0 can read the port.
mqtt::cli::exit_status run_broker(const broker_options& o) {
    if (!o.config_file.empty()) {
        return mqtt::cli::not_implemented("tern-broker", "the configuration file (-c)");
    }
    if (o.log_format == mqtt::cli::output_format::json) {
        return mqtt::cli::not_implemented("tern-broker", "--log-format json");
    }
    mqtt::net::server_options so;
    so.listeners = {{"127.0.0.1", o.port}, {"::1", o.port}};
    so.handle_signals = true;
    so.verbosity = o.verbosity;
    so.log = [](int, std::string_view line) { std::cerr << "tern-broker: " << line << std::endl; };
    auto server = mqtt::net::server::create(std::move(so));
    if (!server) {
        std::cerr << "tern-broker: error: cannot listen on port " << o.port << ": "
                  << server.error().message() << '\n';
        return mqtt::cli::exit_status::failure;
    }
    std::string bound;
    for (const auto& a : (*server)->local_addresses()) bound += (bound.empty() ? "" : ", ") + a;
    std::cerr << "tern-broker " << mqtt::version_string << " listening on " << bound << std::endl;
    for (const auto& w : (*server)->warnings()) std::cerr << "tern-broker: " << w << std::endl;
    (*server)->run();
    return mqtt::cli::exit_status::ok;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "The Tern MQTT broker: MQTT 3.1, 3.1.1 and 5.0 clients on one port. Logs go "
        "to standard error."};
    broker_options opts;
    mqtt::cli::init_app(app, "tern-broker", examples);
    add_broker_options(app, opts);
    return mqtt::cli::run(app, argc, argv, [&] { return run_broker(opts); });
}
