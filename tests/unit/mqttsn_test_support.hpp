#pragma once

// Helpers of the MQTT-SN gateway tests: datagrams as hex strings, and an engine with a
// clock set by hand.

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <string_view>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/mqttsn_gateway.hpp"
#include "packet_json.hpp"

namespace tern_test::mqttsn {

using mqtt::broker::engine;
using mqtt::broker::mqttsn_client;
using mqtt::broker::mqttsn_settings;
using mqtt::broker::mqttsn_unattached;

inline bytes from_hex(std::string_view s) {
    bytes out;
    std::string digits;
    for (char c : s)
        if (c != ' ') digits += c;
    for (std::size_t i = 0; i + 1 < digits.size(); i += 2)
        out.push_back(static_cast<std::uint8_t>(std::stoul(digits.substr(i, 2), nullptr, 16)));
    return out;
}

inline std::string hex(const bytes& b) {
    return mqtt::test::to_hex(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

// What the gateway sent, one hex string per datagram, joined by " | ".
inline std::string sent(mqttsn_client& c, clock::time_point now) {
    std::string out;
    for (const auto& d : c.take_output(now)) {
        if (!out.empty()) out += " | ";
        out += hex(d);
    }
    return out;
}

struct fixture {
    clock::time_point now = clock::time_point{} + std::chrono::seconds(1000);
    engine e;
    mqttsn_settings settings;
    fixture() { settings.predefined = {{1, "t/pre"}, {2, "sensors/+"}}; }

    std::string exchange(mqttsn_client& c, std::string_view datagram) {
        c.on_datagram(from_hex(datagram), now);
        return mqttsn::sent(c, now);
    }
    std::string sent(mqttsn_client& c) { return mqttsn::sent(c, now); }
    // CONNECT "abc", clean, keep-alive 60: CONNACK accepted.
    void connect(mqttsn_client& c) {
        REQUIRE(exchange(c, "09 04 04 01 00 3C 61 62 63") == "030500");
    }
    // CONNECT "abc" with keep-alive `keep_alive_hex` (two octets) and the Will "bye" on w/t.
    void connect_with_will(mqttsn_client& c, std::string_view keep_alive_hex) {
        REQUIRE(exchange(c, "09 04 0C 01 " + std::string{keep_alive_hex} + " 61 62 63") == "0206");
        REQUIRE(exchange(c, "06 07 00 77 2F 74") == "0208");
        REQUIRE(exchange(c, "05 09 62 79 65") == "030500");
    }
    // Time passes in steps, the timer running whenever the client's deadline comes, as
    // the UDP driver's tick does.
    void advance(mqttsn_client& c, std::chrono::seconds by,
                 std::chrono::seconds step = std::chrono::seconds(1)) {
        const auto end = now + by;
        while (now < end && !c.closed()) {
            now += step;
            e.on_timer(now);
            if (c.deadline() <= now) c.on_timer(now);
        }
    }
};

}  // namespace tern_test::mqttsn
