// mqtt::cli: the option groups every tool shares, URL parsing, cross-option checks and the
// exit status contract of run().

#include <doctest/doctest.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mqtt/cli/options.hpp"

namespace {

using mqtt::cli::exit_status;
using mqtt::protocol::protocol_version;
using mqtt::protocol::qos;

std::vector<const char*> argv_of(std::initializer_list<const char*> args) {
    std::vector<const char*> argv{"tern-test"};
    argv.insert(argv.end(), args);
    return argv;
}

void parse(CLI::App& app, std::initializer_list<const char*> args) {
    auto argv = argv_of(args);
    app.parse(static_cast<int>(argv.size()), argv.data());
}

// run() with stdout and stderr captured, so --help does not flood the test log.
struct run_result {
    int status;
    std::string out;
    std::string err;
};

run_result run(CLI::App& app, std::initializer_list<const char*> args,
               const std::function<exit_status()>& body) {
    std::ostringstream out, err;
    auto* old_out = std::cout.rdbuf(out.rdbuf());
    auto* old_err = std::cerr.rdbuf(err.rdbuf());
    auto argv = argv_of(args);
    const int status = mqtt::cli::run(app, static_cast<int>(argv.size()), argv.data(), body);
    std::cout.rdbuf(old_out);
    std::cerr.rdbuf(old_err);
    return {status, out.str(), err.str()};
}

}  // namespace

TEST_CASE("parse_url splits mqtt and mqtts URLs") {
    auto plain = mqtt::cli::parse_url("mqtt://broker.example");
    REQUIRE(plain);
    CHECK_FALSE(plain->tls);
    CHECK(plain->host == "broker.example");
    CHECK(plain->port == 0);
    CHECK(plain->topic.empty());

    auto full = mqtt::cli::parse_url("mqtts://alice:s3:cret@broker.example:8884/a/b/#");
    REQUIRE(full);
    CHECK(full->tls);
    CHECK(full->username == "alice");
    CHECK(full->password == "s3:cret");
    CHECK(full->host == "broker.example");
    CHECK(full->port == 8884);
    CHECK(full->topic == "a/b/#");

    auto v6 = mqtt::cli::parse_url("mqtt://[::1]:1884/t");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK(v6->port == 1884);
}

TEST_CASE("parse_url splits ws and wss URLs: the path is the request path, no topic") {
    auto plain = mqtt::cli::parse_url("ws://broker.example");
    REQUIRE(plain);
    CHECK(plain->websocket);
    CHECK_FALSE(plain->tls);
    CHECK(plain->host == "broker.example");
    CHECK(plain->port == 0);
    CHECK(plain->path == "/");
    CHECK(plain->topic.empty());

    auto full = mqtt::cli::parse_url("wss://alice:pw@[::1]:8443/mqtt/ws?x=1");
    REQUIRE(full);
    CHECK(full->websocket);
    CHECK(full->tls);
    CHECK(full->username == "alice");
    CHECK(full->password == "pw");
    CHECK(full->host == "::1");
    CHECK(full->port == 8443);
    CHECK(full->path == "/mqtt/ws?x=1");
    CHECK(full->topic.empty());

    auto mqtt_url = mqtt::cli::parse_url("mqtt://h/a/b");
    REQUIRE(mqtt_url);
    CHECK_FALSE(mqtt_url->websocket);
    CHECK(mqtt_url->path.empty());
    for (const char* bad : {"ws://", "ws://h:0/", "wss://:pw@h", "ws://h/a b", "wss//h"}) {
        CAPTURE(bad);
        CHECK_FALSE(mqtt::cli::parse_url(bad));
    }
}

TEST_CASE("parse_url rejects what is not an MQTT URL") {
    for (const char* bad : {"http://h", "h:1883", "mqtt://", "mqtt://h:0", "mqtt://h:65536",
                            "mqtt://h:", "mqtt://h:12x", "mqtt://:pw@h", "mqtt://[::1",
                            "mqtt://[::1]x", "mqtt:///topic"}) {
        CAPTURE(bad);
        CHECK_FALSE(mqtt::cli::parse_url(bad));
    }
}

TEST_CASE("connection options parse mosquitto_pub-style flags") {
    CLI::App app;
    mqtt::cli::init_app(app, "tern-test", "");
    mqtt::cli::connection_options conn;
    mqtt::cli::add_connection_options(app, conn);

    SUBCASE("defaults") {
        parse(app, {});
        CHECK(conn.host == "localhost");
        CHECK(conn.port == 0);
        CHECK(conn.keepalive == 60);
        CHECK(conn.version == protocol_version::v5);
        CHECK(conn.clean_session);
        CHECK(conn.session_expiry == 0);
    }
    SUBCASE("every short flag") {
        parse(app, {"-h", "b", "-p", "1884", "-i", "me", "-u", "u", "-P", "p", "-k", "0", "-V",
                    "311", "-c", "-x", "30"});
        CHECK(conn.host == "b");
        CHECK(conn.port == 1884);
        CHECK(conn.client_id == "me");
        CHECK(conn.username == "u");
        CHECK(conn.password == "p");
        CHECK(conn.keepalive == 0);
        CHECK(conn.version == protocol_version::v3_1_1);
        CHECK_FALSE(conn.clean_session);
        CHECK(conn.session_expiry == 30);
    }
    SUBCASE("protocol version spellings") {
        parse(app, {"--protocol-version", "MQTTv31"});
        CHECK(conn.version == protocol_version::v3_1);
    }
    SUBCASE("bad values are usage errors") {
        CHECK_THROWS_AS(parse(app, {"-V", "4"}), CLI::ValidationError);
        CHECK_THROWS_AS(parse(app, {"-p", "0"}), CLI::ValidationError);
        CHECK_THROWS_AS(parse(app, {"-k", "70000"}), CLI::ValidationError);
        CHECK_THROWS_AS(parse(app, {"-L", "http://x"}), CLI::ValidationError);
    }
    SUBCASE("-L excludes -h, -i excludes -I") {
        CHECK_THROWS_AS(parse(app, {"-L", "mqtt://a", "-h", "b"}), CLI::ExcludesError);
        CHECK_THROWS_AS(parse(app, {"-i", "a", "-I", "b"}), CLI::ExcludesError);
    }
}

TEST_CASE("finalize applies the URL and checks option combinations") {
    mqtt::cli::connection_options conn;
    mqtt::cli::tls_options tls;

    SUBCASE("URL fields") {
        conn.url = "mqtts://alice:pw@b:9/x/y";
        mqtt::cli::finalize(conn, tls);
        CHECK(conn.host == "b");
        CHECK(conn.port == 9);
        CHECK(conn.username == "alice");
        CHECK(conn.password == "pw");
        CHECK(conn.tls);
        CHECK(conn.url_topic == "x/y");
    }
    SUBCASE("ws and wss URLs: WebSocket, their path, ports 80 and 443 by default") {
        conn.url = "ws://b/mqtt";
        mqtt::cli::finalize(conn, tls);
        CHECK(conn.websocket);
        CHECK_FALSE(conn.tls);
        CHECK(conn.websocket_path == "/mqtt");
        CHECK(conn.url_topic.empty());
        CHECK(mqtt::cli::effective_port(conn) == 80);
        conn.url = "wss://b";
        mqtt::cli::finalize(conn, tls);
        CHECK(conn.tls);
        CHECK(conn.websocket_path == "/");
        CHECK(mqtt::cli::effective_port(conn) == 443);
        conn.url = "wss://b:9001";
        mqtt::cli::finalize(conn, tls);
        CHECK(mqtt::cli::effective_port(conn) == 9001);
    }
    SUBCASE("default ports") {
        mqtt::cli::finalize(conn, tls);
        CHECK(mqtt::cli::effective_port(conn) == 1883);
        tls.cafile = "ca.pem";
        mqtt::cli::finalize(conn, tls);
        CHECK(mqtt::cli::effective_port(conn) == 8883);
        conn.port = 1;
        CHECK(mqtt::cli::effective_port(conn) == 1);
    }
    SUBCASE("session expiry needs MQTT 5.0") {
        conn.session_expiry = 10;
        conn.version = protocol_version::v3_1_1;
        CHECK_THROWS_AS(mqtt::cli::finalize(conn, tls), CLI::ValidationError);
        conn.version = protocol_version::v5;
        CHECK_NOTHROW(mqtt::cli::finalize(conn, tls));
    }
    SUBCASE("a kept session needs a client id before MQTT 5.0") {
        conn.clean_session = false;
        conn.version = protocol_version::v3_1;
        CHECK_THROWS_AS(mqtt::cli::finalize(conn, tls), CLI::ValidationError);
        conn.client_id = "me";
        CHECK_NOTHROW(mqtt::cli::finalize(conn, tls));
    }
    SUBCASE("a password needs a user name before MQTT 5.0") {
        conn.password = "pw";
        conn.version = protocol_version::v3_1_1;
        CHECK_THROWS_AS(mqtt::cli::finalize(conn, tls), CLI::ValidationError);
        conn.version = protocol_version::v5;
        CHECK_NOTHROW(mqtt::cli::finalize(conn, tls));
    }
}

TEST_CASE("QoS, output format and verbosity options") {
    CLI::App app;
    mqtt::cli::init_app(app, "tern-test", "");
    qos level = qos::at_most_once;
    mqtt::cli::output_format format = mqtt::cli::output_format::text;
    int verbosity = 0;
    mqtt::cli::add_qos_option(app, level, "QoS");
    mqtt::cli::add_output_format(app, format);
    mqtt::cli::add_verbosity(app, verbosity, "-v,--verbose");

    SUBCASE("values") {
        parse(app, {"-q", "2", "--format", "JSON", "-v", "-v"});
        CHECK(level == qos::exactly_once);
        CHECK(format == mqtt::cli::output_format::json);
        CHECK(verbosity == 2);
    }
    SUBCASE("--json and --quiet") {
        parse(app, {"--json", "--quiet"});
        CHECK(format == mqtt::cli::output_format::json);
        CHECK(verbosity == -1);
    }
    SUBCASE("errors") {
        CHECK_THROWS_AS(parse(app, {"-q", "3"}), CLI::ValidationError);
        CHECK_THROWS_AS(parse(app, {"--format", "xml"}), CLI::ValidationError);
        CHECK_THROWS_AS(parse(app, {"-v", "--quiet"}), CLI::ExcludesError);
    }
}

TEST_CASE("run() maps outcomes onto the documented exit status") {
    CLI::App app{"A test tool."};
    mqtt::cli::init_app(app, "tern-test", "  tern-test\n");
    int verbosity = 0;
    mqtt::cli::add_verbosity(app, verbosity, "-v,--verbose");
    auto ok = [] { return exit_status::ok; };

    auto help = run(app, {"--help"}, ok);
    CHECK(help.status == 0);
    CHECK(help.out.find("Exit status:") != std::string::npos);
    CHECK(help.out.find("-h,") == std::string::npos);  // -h is the host, never help

    auto version = run(app, {"--version"}, ok);
    CHECK(version.status == 0);
    CHECK(version.out.rfind("tern-test ", 0) == 0);

    auto usage = run(app, {"--nope"}, ok);
    CHECK(usage.status == 2);
    CHECK(usage.err.rfind("tern-test: ", 0) == 0);

    auto not_implemented =
        run(app, {}, [] { return mqtt::cli::not_implemented("tern-test", "testing"); });
    CHECK(not_implemented.status == 3);
    CHECK(not_implemented.err == "tern-test: testing is not implemented in this build yet\n");

    auto failure = run(app, {}, []() -> exit_status { throw std::runtime_error("disk on fire"); });
    CHECK(failure.status == 1);
    CHECK(failure.err == "tern-test: error: disk on fire\n");

    auto late_usage = run(app, {}, []() -> exit_status { throw CLI::RequiredError("--topic"); });
    CHECK(late_usage.status == 2);
}

TEST_CASE("will options and -D keep each occurrence's words together") {
    CLI::App app;
    mqtt::cli::will_options will;
    std::vector<std::vector<std::string>> props;
    mqtt::cli::add_will_options(app, will);
    mqtt::cli::add_property_option(app, props, "connect or publish");
    parse(app,
          {"-D", "publish", "user-property", "k", "v", "-D", "connect", "receive-maximum", "5",
           "--will-topic", "w/t", "--will-payload", "bye", "--will-qos", "1", "--will-retain"});
    REQUIRE(props.size() == 2);
    CHECK(props[0] == std::vector<std::string>{"publish", "user-property", "k", "v"});
    CHECK(props[1] == std::vector<std::string>{"connect", "receive-maximum", "5"});
    CHECK(will.topic == "w/t");
    CHECK(will.payload == "bye");
    CHECK(will.qos == qos::at_least_once);
    CHECK(will.retain);

    CLI::App app2;
    mqtt::cli::will_options will2;
    mqtt::cli::add_will_options(app2, will2);
    CHECK_THROWS_AS(parse(app2, {"--will-payload", "x"}), CLI::RequiresError);
    CLI::App app3;
    std::vector<std::vector<std::string>> props3;
    mqtt::cli::add_property_option(app3, props3, "publish");
    // Too few words reach the tool, whose parser (format::add_property_arg) says what -D takes.
    parse(app3, {"-D", "publish", "content-type", "-D", "publish", "content-type", "a"});
    REQUIRE(props3.size() == 2);
    CHECK(props3[0].size() == 2);
    CHECK(props3[1].size() == 3);
}
