// The MQTT-SN client session (client::mqttsn::session) with exact datagrams and a stepped
// clock: CONNECT, REGISTER before a PUBLISH by name, short and predefined topic ids, QoS 0,
// 1 and 2 both ways, retransmission with DUP and the loss after N_RETRY, keep-alive PINGREQ,
// DISCONNECT. No sockets.

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "mqtt/cli/options.hpp"
#include "mqtt/client/mqttsn_cli.hpp"
#include "mqtt/client/mqttsn_session.hpp"
#include "packet_json.hpp"

using namespace std::chrono_literals;
namespace msn = mqtt::client::mqttsn;
namespace sn = mqtt::protocol::mqttsn;

namespace {

std::vector<std::uint8_t> from_hex(std::string_view s) {
    std::vector<std::uint8_t> out;
    std::string digits;
    for (char c : s)
        if (c != ' ') digits += c;
    for (std::size_t i = 0; i + 1 < digits.size(); i += 2)
        out.push_back(static_cast<std::uint8_t>(std::stoul(digits.substr(i, 2), nullptr, 16)));
    return out;
}

struct fixture {
    msn::clock::time_point now = msn::clock::time_point{} + 1000s;
    msn::session s;
    fixture() : s(config()) {}
    static msn::session_config config() {
        msn::session_config c;
        c.client_id = "c1";
        c.keep_alive = 30;
        c.retry_interval = 5s;
        c.retry_count = 2;
        c.predefined = {{7, "p/x"}};
        return c;
    }
    std::string sent() {
        std::string out;
        for (const auto& d : s.take_output(now)) {
            if (!out.empty()) out += " | ";
            out += mqtt::test::to_hex(
                std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
        }
        return out;
    }
    std::string exchange(std::string_view datagram) {
        s.on_datagram(from_hex(datagram), now);
        return sent();
    }
    void step(std::chrono::seconds by) {
        now += by;
        if (s.deadline() <= now) s.on_timer(now);
    }
};

}  // namespace

TEST_CASE("mqttsn client: CONNECT, SUBSCRIBE, PUBLISH by name, short name and predefined id") {
    fixture f;
    f.s.start(f.now);
    // CONNECT: Flags CleanSession, ProtocolId 1, Duration 30, "c1".
    CHECK(f.sent() == "08040401001e6331");
    CHECK_FALSE(f.s.connected());
    f.s.subscribe({"a/#", std::nullopt}, sn::qos::at_least_once);
    CHECK(f.sent().empty());                              // requests wait for CONNACK
    CHECK(f.exchange("03 05 00") == "0812200001612f23");  // SUBSCRIBE a/# QoS 1, MsgId 1
    auto ev = f.s.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(std::holds_alternative<msn::connected_event>(ev[0]));
    CHECK(f.exchange("08 13 20 00 00 00 01 00").empty());  // SUBACK QoS 1
    ev = f.s.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(std::get<msn::suback_event>(ev[0]).filter == "a/#");
    CHECK(std::get<msn::suback_event>(ev[0]).granted == sn::qos::at_least_once);

    // QoS 1 by name: REGISTER a/b (MsgId 2), then PUBLISH to the id of REGACK (5), MsgId 3.
    const auto t1 = f.s.publish({"a/b", std::nullopt}, "hi", sn::qos::at_least_once, false);
    CHECK(f.sent() == "090a00000002612f62");
    CHECK(f.exchange("07 0B 00 05 00 02 00") == "090c20000500036869");
    // No PUBACK: resent with DUP after T_RETRY, twice.
    f.step(5s);
    CHECK(f.sent() == "090ca0000500036869");
    CHECK(f.exchange("07 0D 00 05 00 03 00").empty());
    ev = f.s.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(std::get<msn::publish_done_event>(ev[0]).token == t1);
    CHECK(std::get<msn::publish_done_event>(ev[0]).msg_id == 3);
    // The same name again: no second REGISTER. QoS 0 to a short name and QoS 2 to a
    // predefined id (p/x is 7) go without one too.
    f.s.publish({"a/b", std::nullopt}, "1", sn::qos::at_most_once, false);
    f.s.publish({"ab", std::nullopt}, "2", sn::qos::at_most_once, true);
    f.s.publish({"p/x", 7}, "3", sn::qos::exactly_once, false);
    CHECK(f.sent() == "080c000005000031 | 080c126162000032 | 080c410007000433");
    CHECK(f.s.take_events().size() == 2);  // the QoS 0 ones are done once sent
    CHECK(f.exchange("04 0F 00 04") == "04100004");
    f.step(5s);
    CHECK(f.sent() == "04100004");  // PUBREL resent
    CHECK(f.exchange("04 0E 00 04").empty());
    CHECK(f.s.take_events().size() == 1);
    CHECK(f.s.pending() == 0);

    // Idle for the keep-alive: PINGREQ, PINGRESP.
    f.step(30s);
    CHECK(f.sent() == "0216");
    CHECK(f.exchange("02 17").empty());
    // DISCONNECT, answered: closed without an error.
    f.s.disconnect();
    CHECK(f.sent() == "0218");
    CHECK(f.exchange("02 18").empty());
    CHECK(f.s.closed());
    ev = f.s.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(std::get<msn::closed_event>(ev[0]).why.empty());
    CHECK(f.s.dropped() == 0);
}

TEST_CASE("mqttsn client: messages from the gateway, QoS 2 duplicates, unknown ids") {
    fixture f;
    f.s.start(f.now);
    CHECK(f.sent() == "08040401001e6331");
    CHECK(f.exchange("03 05 00").empty());
    // REGISTER q/r as topic id 9: REGACK. A QoS 2 PUBLISH on it: PUBREC, delivered once even
    // when repeated with DUP; PUBREL: PUBCOMP.
    CHECK(f.exchange("09 0A 00 09 00 01 71 2F 72") == "070b0009000100");
    CHECK(f.exchange("08 0C 40 00 09 00 04 7A") == "040f0004");
    CHECK(f.exchange("08 0C C0 00 09 00 04 7A") == "040f0004");
    CHECK(f.exchange("04 10 00 04") == "040e0004");
    // QoS 1 by predefined id 7 (p/x): PUBACK; QoS 0 to the short name "ab".
    CHECK(f.exchange("08 0C 21 00 07 00 05 79") == "070d0007000500");
    CHECK(f.exchange("08 0C 02 61 62 00 00 78").empty());
    auto ev = f.s.take_events();
    REQUIRE(ev.size() == 4);
    const auto& m = std::get<msn::message_event>(ev[1]);
    CHECK(m.topic == "q/r");
    CHECK(m.payload == "z");
    CHECK(m.qos == sn::qos::exactly_once);
    CHECK(std::get<msn::message_event>(ev[2]).topic == "p/x");
    CHECK(std::get<msn::message_event>(ev[3]).topic == "ab");
    // An id it does not know: PUBACK invalid topic id, nothing delivered.
    CHECK(f.exchange("08 0C 20 00 03 00 06 79") == "070d0003000602");
    CHECK(f.s.take_events().empty());
    // Malformed and unexpected datagrams are dropped.
    CHECK(f.exchange("05 16").empty());
    CHECK(f.exchange("07 0D 00 05 00 09 00").empty());  // a PUBACK for nothing
    CHECK(f.s.dropped() == 3);
    // The gateway's DISCONNECT closes with a reason.
    CHECK(f.exchange("02 18").empty());
    ev = f.s.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(std::get<msn::closed_event>(ev[0]).why == "the gateway sent DISCONNECT");
}

TEST_CASE("mqttsn client: no CONNACK after N_RETRY, a refused CONNECT, a refused REGISTER") {
    SUBCASE("lost") {
        fixture f;
        f.s.start(f.now);
        CHECK(f.sent() == "08040401001e6331");
        f.step(5s);
        CHECK(f.sent() == "08040401001e6331");
        f.step(5s);
        CHECK(f.sent() == "08040401001e6331");
        f.step(5s);
        CHECK(f.s.closed());
        auto ev = f.s.take_events();
        REQUIRE(ev.size() == 1);
        CHECK(std::get<msn::closed_event>(ev[0]).why.find("2 retransmissions") !=
              std::string::npos);
    }
    SUBCASE("refused") {
        fixture f;
        f.s.start(f.now);
        f.sent();
        CHECK(f.exchange("03 05 03").empty());
        CHECK(f.s.closed());
        auto ev = f.s.take_events();
        REQUIRE(ev.size() == 1);
        CHECK(std::get<msn::closed_event>(ev[0]).refused);
    }
    SUBCASE("REGISTER refused") {
        fixture f;
        f.s.start(f.now);
        f.sent();
        f.exchange("03 05 00");
        f.s.take_events();
        const auto t =
            f.s.publish({"long/topic", std::nullopt}, "x", sn::qos::at_least_once, false);
        CHECK(f.sent() == "100a000000016c6f6e672f746f706963");
        CHECK(f.exchange("07 0B 00 00 00 01 01").empty());  // congestion
        auto ev = f.s.take_events();
        REQUIRE(ev.size() == 1);
        CHECK(std::get<msn::publish_done_event>(ev[0]).token == t);
        CHECK(std::get<msn::publish_done_event>(ev[0]).code == sn::return_code::congestion);
        CHECK(f.s.pending() == 0);
    }
}

TEST_CASE("mqttsn client: mqttsn:// URLs, --sn-predefined and --qos-minus-one") {
    auto u = mqtt::cli::parse_url("mqttsn://127.0.0.1:1885/a/b");
    REQUIRE(u);
    CHECK(u->mqttsn);
    CHECK_FALSE(u->tls);
    CHECK(u->host == "127.0.0.1");
    CHECK(u->port == 1885);
    CHECK(u->topic == "a/b");
    // The tools without MQTT-SN (tern-bridge) refuse it.
    CHECK_THROWS_AS(mqtt::cli::require_url("--remote", "mqttsn://h/t"), CLI::ValidationError);
    mqtt::cli::client_options o;
    o.connection.url = "mqttsn://gw/s/t";
    mqtt::cli::finalize(o);
    CHECK(o.connection.mqttsn);
    CHECK(o.connection.url_topic == "s/t");
    CHECK(mqtt::cli::effective_port(o.connection) == 1883);

    mqtt::client::mqttsn_flags f;
    f.predefined = {"7:s/t", "65535:x/#"};
    f.qos_minus_one = true;
    const auto r = mqtt::client::to_mqttsn_request(f, o, {"s/t"});
    CHECK(r.predefined.size() == 2);
    CHECK(r.predefined.at(7) == "s/t");
    CHECK(r.predefined.at(65535) == "x/#");
    CHECK(r.qos_minus_one);
    CHECK_NOTHROW(mqtt::client::to_mqttsn_request(f, o, {"ab"}));  // a short name
    CHECK_THROWS_AS(mqtt::client::to_mqttsn_request(f, o, {"long/t"}), CLI::ValidationError);
    for (const char* bad : {"0:a", "65536:a", "7", "x:a", "7:", "7:a#b"}) {
        CAPTURE(bad);
        f.predefined = {bad};
        CHECK_THROWS_AS(mqtt::client::to_mqttsn_request(f, o, {"ab"}), CLI::ValidationError);
    }
    o.connection.tls = true;
    f.predefined.clear();
    CHECK_THROWS_AS(mqtt::client::to_mqttsn_request(f, o, {"ab"}), CLI::ValidationError);
    mqtt::client::mqttsn_flags none;
    CHECK_NOTHROW(mqtt::client::require_mqttsn_url(none));
    CHECK_THROWS_AS(mqtt::client::require_mqttsn_url(f), CLI::ValidationError);  // -1 without URL
}
