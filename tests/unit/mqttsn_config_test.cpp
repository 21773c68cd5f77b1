// The MQTT-SN options of tern-broker's configuration file: `protocol mqttsn` in a listener
// block, a TCP listener sharing its port and address, and mqttsn_predefined_topic.

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <utility>

#include "mqtt/broker/config.hpp"

using namespace mqtt::broker;

namespace {

config parse_ok(std::string_view text) {
    auto r = parse_config(text, "t.conf");
    INFO(r.error.to_string());
    REQUIRE(r);
    return *r.value;
}

std::string parse_error(std::string_view text) {
    auto r = parse_config(text, "t.conf");
    REQUIRE_FALSE(r);
    return r.error.to_string();
}

}  // namespace

TEST_CASE("config: protocol mqttsn makes a listener an MQTT-SN gateway") {
    const auto c = parse_ok(
        "allow_anonymous true\n"
        "listener 1885 127.0.0.1\nprotocol mqttsn\n"
        "listener 1885 127.0.0.1\n"
        "listener 1886\nprotocol mqtt\n"
        "mqttsn_predefined_topic 1 a/b\nmqttsn_predefined_topic 65535 s/+\n");
    REQUIRE(c.listeners.size() == 3);
    CHECK(c.listeners[0].mqttsn);
    CHECK_FALSE(c.listeners[1].mqttsn);
    CHECK_FALSE(c.listeners[2].mqttsn);
    CHECK(c.mqttsn_predefined.size() == 2);
    CHECK(c.mqttsn_predefined.at(1) == "a/b");
    CHECK(c.mqttsn_predefined.at(65535) == "s/+");
    CHECK(to_json(c).find("\"protocol\":\"mqttsn\"") != std::string::npos);
}

TEST_CASE("config: MQTT-SN timers, buffer, gateway id and ADVERTISE") {
    const auto d = parse_ok("allow_anonymous true\n");
    CHECK(d.mqttsn.gateway_id == 1);
    CHECK(d.mqttsn.retry_interval == std::chrono::seconds(10));
    CHECK(d.mqttsn.retry_count == 3);
    CHECK(d.mqttsn.max_buffered_messages == 100);
    CHECK(d.mqttsn.max_inflight == 1);
    CHECK(d.mqttsn.receive_buffer == 4u << 20);
    CHECK(d.mqttsn.advertise_interval.count() == 0);
    const auto c = parse_ok(
        "allow_anonymous true\nmqttsn_retry_interval 2\nmqttsn_retry_count 0\n"
        "mqttsn_max_buffered_messages 7\nmqttsn_gateway_id 255\nmqttsn_max_inflight 65535\n"
        "mqttsn_advertise 900 255.255.255.255 1884\nmqttsn_receive_buffer 0\n");
    CHECK(c.mqttsn.retry_interval == std::chrono::seconds(2));
    CHECK(c.mqttsn.retry_count == 0);
    CHECK(c.mqttsn.max_buffered_messages == 7);
    CHECK(c.mqttsn.max_inflight == 65535);
    CHECK(c.mqttsn.receive_buffer == 0);
    CHECK(parse_ok("mqttsn_receive_buffer 1073741824\n").mqttsn.receive_buffer == 1u << 30);
    CHECK(c.mqttsn.gateway_id == 255);
    CHECK(c.mqttsn.advertise_interval == std::chrono::seconds(900));
    CHECK(c.mqttsn.advertise_host == "255.255.255.255");
    CHECK(c.mqttsn.advertise_port == 1884);
    const auto json = to_json(c);
    for (std::string_view part : {"\"mqttsn_retry_interval\":2", "\"mqttsn_retry_count\":0",
                                  "\"mqttsn_max_buffered_messages\":7", "\"mqttsn_gateway_id\":255",
                                  "\"mqttsn_max_inflight\":65535", "\"mqttsn_receive_buffer\":0"}) {
        CAPTURE(part);
        CHECK(json.find(part) != std::string::npos);
    }
    // The numbers go through the parser every option uses (parse_number): its two messages.
    const std::pair<std::string_view, std::string_view> bad[] = {
        {"mqttsn_retry_interval 0\n", "mqttsn_retry_interval: 0 is out of range (1 to 3600)"},
        {"mqttsn_retry_interval 3601\n", "mqttsn_retry_interval: 3601 is out of range (1 to 3600)"},
        {"mqttsn_retry_count 101\n", "mqttsn_retry_count: 101 is out of range (0 to 100)"},
        {"mqttsn_retry_count -1\n", "mqttsn_retry_count: '-1' is not a whole number"},
        {"mqttsn_retry_count +1\n", "mqttsn_retry_count: '+1' is not a whole number"},
        {"mqttsn_gateway_id 256\n", "mqttsn_gateway_id: 256 is out of range (0 to 255)"},
        {"mqttsn_max_buffered_messages x\n",
         "mqttsn_max_buffered_messages: 'x' is not a whole number"},
        {"mqttsn_advertise 0 127.0.0.1 1884\n",
         "mqttsn_advertise SECONDS: 0 is out of range (1 to 65535)"},
        {"mqttsn_advertise 60 127.0.0.1 0\n",
         "mqttsn_advertise PORT: 0 is out of range (1 to 65535)"},
        {"mqttsn_advertise 60 127.0.0.1 p\n", "mqttsn_advertise PORT: 'p' is not a whole number"},
        {"mqttsn_max_inflight 0\n", "mqttsn_max_inflight: 0 is out of range (1 to 65535)"},
        {"mqttsn_max_inflight 65536\n", "mqttsn_max_inflight: 65536 is out of range (1 to 65535)"},
        {"mqttsn_receive_buffer 1073741825\n",
         "mqttsn_receive_buffer: 1073741825 is out of range (0 to 1073741824)"},
        {"mqttsn_receive_buffer 4M\n", "mqttsn_receive_buffer: '4M' is not a whole number"},
        {"mqttsn_receive_buffer 99999999999999999999\n",
         "mqttsn_receive_buffer: 99999999999999999999 is out of range (0 to 1073741824)"},
    };
    for (const auto& [text, message] : bad) {
        CAPTURE(text);
        CHECK(parse_error(text) == "t.conf:1: " + std::string{message});
    }
    CHECK(parse_error("mqttsn_advertise 60 127.0.0.1\n").find("mqttsn_advertise") != std::string::npos);
}

TEST_CASE("config: MQTT-SN errors") {
    // Two MQTT-SN listeners on one port and address.
    CHECK(parse_error("allow_anonymous true\nlistener 1885\nprotocol mqttsn\n"
                      "listener 1885\nprotocol mqttsn\n")
              .find("already defined at t.conf:2") != std::string::npos);
    // A TCP listener first, then the same port and address again (as MQTT-SN or not).
    CHECK(parse_error("allow_anonymous true\nlistener 1885\nlistener 1885\nprotocol mqttsn\n")
              .find("already defined") != std::string::npos);
    // Outside a listener block.
    CHECK(parse_error("protocol mqttsn\n").find("only in a listener block") != std::string::npos);
    CHECK(parse_error("mqttsn_predefined_topic 0 a\n").find("1 to 65535") != std::string::npos);
    CHECK(parse_error("mqttsn_predefined_topic 65536 a\n").find("1 to 65535") != std::string::npos);
    CHECK(parse_error("mqttsn_predefined_topic x a\n").find("1 to 65535") != std::string::npos);
    CHECK(parse_error("mqttsn_predefined_topic 1 a#\n").find("not a valid topic") !=
          std::string::npos);
    CHECK(parse_error("mqttsn_predefined_topic 1 a\nmqttsn_predefined_topic 1 b\n")
              .find("defined twice") != std::string::npos);
    CHECK(
        parse_error("listener 1885\nprotocol http\n").find("expected mqtt, websockets or mqttsn") !=
        std::string::npos);
}
