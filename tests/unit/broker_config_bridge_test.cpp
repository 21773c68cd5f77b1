// `connection` blocks in tern-broker's configuration: parsed by the bridge's parser, errors
// at the FILE:LINE of the broker's file (include_dir files too), the local side in-process,
// --print-config.

#include <doctest/doctest.h>

#include <map>
#include <string>

#include "mqtt/broker/config.hpp"

using namespace mqtt::broker;

namespace {

config parse_ok(std::string_view text, const config_source& source = {}) {
    auto r = parse_config(text, "t.conf", source);
    INFO(r.error.to_string());
    REQUIRE(r);
    return *r.value;
}

config_error parse_error(std::string_view text, const config_source& source = {}) {
    auto r = parse_config(text, "t.conf", source);
    REQUIRE_FALSE(r);
    return r.error;
}

}  // namespace

TEST_CASE("config bridge: connection blocks become bridges with an in-process local side") {
    config_source src;
    src.hostname = [] { return std::string{"site1"}; };
    const auto c = parse_ok(
        "listener 1883\n"
        "allow_anonymous true\n"
        "connection central\n"
        "address 10.0.0.1:1884, 10.0.0.2\n"
        "topic sensors/# out 1 site1/ central/site1/\n"
        "topic cmd/# in 2\n"
        "bridge_protocol_version mqttv50\n"
        "remote_username u\n"
        "remote_password p\n"
        "max_keepalive 30\n"  // a broker option between bridge options stays the broker's
        "connection second\n"
        "address 10.0.0.3\n"
        "remote_clientid other\n"
        "topic # both 0\n",
        src);
    REQUIRE(c.bridges.size() == 2);
    const auto& b = c.bridges[0];
    CHECK(b.name == "central");
    REQUIRE(b.remote.addresses.size() == 2);
    CHECK(b.remote.addresses[0].host == "10.0.0.1");
    CHECK(b.remote.addresses[0].port == 1884);
    CHECK(b.remote.addresses[1].port == 1883);
    REQUIRE(b.local.addresses.size() == 1);
    CHECK(b.local.addresses[0].in_process);
    CHECK(b.topics.size() == 2);
    CHECK(b.version == mqtt::protocol::protocol_version::v5);
    CHECK(b.remote.username == "u");
    CHECK(b.remote.client_id == "site1.central");
    CHECK(b.local.client_id == "local.site1.central");
    CHECK(c.limits.max_keepalive == 30);
    CHECK(c.bridges[1].remote.client_id == "other");
    CHECK(c.bridges[1].local.addresses[0].in_process);

    const auto json = to_json(c);
    for (std::string_view part :
         {"\"bridges\":[{\"connection\":\"central\"", "\"addresses\":[\"10.0.0.1:1884\",\"10.0.0.2:1883\"]",
          "\"pattern\":\"sensors/#\",\"direction\":\"out\",\"qos\":1,\"local_prefix\":\"site1/\","
          "\"remote_prefix\":\"central/site1/\"",
          "\"local\":\"in-process\"", "\"remote_password_set\":true",
          "\"bridge_protocol_version\":\"mqttv50\"", "\"connection\":\"second\""}) {
        CAPTURE(part);
        CHECK(json.find(part) != std::string::npos);
    }
    CHECK(json.find("\"p\"") == std::string::npos);  // no password in the output
    CHECK(parse_ok("max_keepalive 30\n").bridges.empty());
    CHECK(to_json(parse_ok("max_keepalive 30\n")).find("\"bridges\":[]") != std::string::npos);
}

TEST_CASE("config bridge: errors name the broker file's line") {
    // The bridge parser's own checks, at the line of the broker's file.
    auto e = parse_error("max_keepalive 30\nconnection b\naddress 10.0.0.1\n\ntopic # sideways\n");
    CHECK(e.to_string() == "t.conf:5: topic: invalid direction 'sideways' (in, out or both)");
    e = parse_error("max_keepalive 30\nconnection b\ntopic # out\n");
    CHECK(e.to_string() == "t.conf:2: bridge 'b' has no address");
    e = parse_error("address 10.0.0.1\n");
    CHECK(e.to_string() == "t.conf:1: 'address' before any 'connection' line");
    e = parse_error("connection b\naddress 10.0.0.1\ntopic #\nkeepalive_interval 1\n");
    CHECK(e.line == 4);
    CHECK(e.message.find("keepalive_interval") != std::string::npos);
    e = parse_error("connection b\naddress 10.0.0.1\ntopic #\nbridge_psk 00\n");
    CHECK(e.line == 4);
    CHECK(e.message.find("TLS-PSK") != std::string::npos);
    e = parse_error("connection b\naddress 10.0.0.1\ntopic #\nconnection b\naddress x\ntopic #\n");
    CHECK(e.to_string() == "t.conf:4: duplicate connection name 'b'");
    // The local side is the broker itself.
    e = parse_error("connection b\naddress 10.0.0.1\ntopic #\nlocal_address 127.0.0.1:1883\n");
    CHECK(e.line == 4);
    CHECK(e.message.find("in-process") != std::string::npos);
    // A broker error before the bridge lines is found first, as it comes first.
    e = parse_error("bogus 1\nconnection b\n");
    CHECK(e.line == 1);
}

TEST_CASE("config bridge: lines from include_dir keep their file and line") {
    std::map<std::string, std::string> files{
        {"d/a.conf", "connection b\naddress 10.0.0.1\n"},
        {"d/b.conf", "# the rules\ntopic # out 3\n"}};
    config_source src;
    src.list_dir = [&](const std::string&, std::string&) {
        return std::optional<std::vector<std::string>>{{"a.conf", "b.conf"}};
    };
    src.read_file = [&](const std::string& p, std::string&) {
        return std::optional<std::string>{files.at(p)};
    };
    const auto e = parse_error("max_keepalive 30\ninclude_dir d\n", src);
    CHECK(e.file == "d/b.conf");
    CHECK(e.line == 2);
    CHECK(e.message.find("topic:") == 0);
    files["d/b.conf"] = "topic # out 1\n";
    const auto c = parse_ok("include_dir d\n", src);
    REQUIRE(c.bridges.size() == 1);
    CHECK(c.bridges[0].remote.client_id == "localhost.b");  // no hostname function
}
