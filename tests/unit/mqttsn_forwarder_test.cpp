// The forwarder encapsulation at the MQTT-SN gateway (MQTT-SN 1.2, 5.5), with exact
// datagrams: what mqttsn_open() finds in a forwarder's datagram, what mqttsn_wrap() sends
// back, and two wireless nodes behind one forwarder as two clients of the engine.

#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "mqttsn_test_support.hpp"

using namespace tern_test;
using namespace tern_test::mqttsn;
using mqtt::broker::mqttsn_open;
using mqtt::broker::mqttsn_wrap;

namespace {

const std::string node1{"\x00\x01", 2};
const std::string node2{"\x00\x02", 2};

std::string opened_message(const mqtt::broker::mqttsn_envelope& e) {
    return hex(bytes(e.message.begin(), e.message.end()));
}

// The node's datagram as the forwarder sends it: Length 5 (header only), 0xFE, Ctrl, id.
bytes wrapped(const std::string& node, std::string_view message_hex) {
    return mqttsn_wrap(node, from_hex(message_hex));
}

// Gives `c` the message a forwarder relayed and returns what goes back, wrapped.
std::string relay(fixture& f, mqttsn_client& c, const bytes& datagram) {
    auto e = mqttsn_open(datagram);
    REQUIRE(e.has_value());
    REQUIRE(e->node.has_value());
    c.on_datagram(e->message, f.now);
    std::string out;
    for (const auto& d : c.take_output(f.now)) {
        if (!out.empty()) out += " | ";
        out += hex(mqttsn_wrap(*e->node, d));
    }
    return out;
}

}  // namespace

TEST_CASE("mqttsn forwarder: mqttsn_open and mqttsn_wrap") {
    // Not wrapped: the datagram itself, no node (even when it does not decode: the client
    // judges it).
    auto plain = from_hex("09 04 04 01 00 3C 61 62 63");
    auto e = mqttsn_open(plain);
    REQUIRE(e.has_value());
    CHECK_FALSE(e->node.has_value());
    CHECK(opened_message(*e) == "09040401003c616263");
    const auto short_one = from_hex("05 16");
    CHECK(mqttsn_open(short_one)->message.size() == 2);
    CHECK(mqttsn_open(bytes{}).has_value());

    // Length 5, 0xFE, Ctrl (radius 1), Wireless Node Id 00 01, then CONNECT "abc".
    auto w = from_hex("05 FE 01 00 01 09 04 04 01 00 3C 61 62 63");
    e = mqttsn_open(w);
    REQUIRE(e.has_value());
    REQUIRE(e->node.has_value());
    CHECK(*e->node == node1);
    CHECK(opened_message(*e) == "09040401003c616263");
    // The 3-octet Length form, a 3-octet node id.
    const auto long_form = from_hex("01 00 08 FE 00 0A 0B 0C 02 16");
    e = mqttsn_open(long_form);  // e->message points into the datagram
    REQUIRE(e.has_value());
    CHECK(*e->node == std::string("\x0a\x0b\x0c"));
    CHECK(opened_message(*e) == "0216");
    // An empty node id is a node too (not the forwarder itself).
    const auto no_id = from_hex("03 FE 00 02 16");
    e = mqttsn_open(no_id);
    REQUIRE(e.has_value());
    REQUIRE(e->node.has_value());
    CHECK(e->node->empty());
    CHECK(opened_message(*e) == "0216");

    // Malformed: the wrapped message does not decode, nothing wrapped, nested, short.
    CHECK_FALSE(mqttsn_open(from_hex("05 FE 00 00 01 05 16")).has_value());
    CHECK_FALSE(mqttsn_open(from_hex("05 FE 00 00 01")).has_value());
    CHECK_FALSE(mqttsn_open(from_hex("05 FE 00 00 01 05 FE 00 00 02 02 16")).has_value());
    CHECK_FALSE(mqttsn_open(from_hex("02 FE")).has_value());
    CHECK_FALSE(mqttsn_open(from_hex("09 FE 00 00 01 02 16")).has_value());

    // Back to the node: Ctrl 0, its id, the message.
    CHECK(hex(wrapped(node1, "03 05 00")) == "05fe000001030500");
    CHECK(hex(wrapped(std::string("\x0a\x0b\x0c"), "02 17")) == "06fe000a0b0c0217");
}

TEST_CASE("mqttsn forwarder: two nodes behind one forwarder are two clients") {
    fixture f;
    test_client sub(f.e, protocol_version::v3_1_1, f.now);
    sub.connect("sub", 0);
    sub.subscribe("fw/#", qos::at_least_once);
    mqttsn_client n1(f.e, f.settings, f.now, "127.0.0.1:5000/node/0001");
    mqttsn_client n2(f.e, f.settings, f.now, "127.0.0.1:5000/node/0002");
    // CONNECT "n1" and "n2": each CONNACK goes back wrapped for its node.
    CHECK(relay(f, n1, wrapped(node1, "08 04 04 01 00 3C 6E 31")) == "05fe000001030500");
    CHECK(relay(f, n2, wrapped(node2, "08 04 04 01 00 3C 6E 32")) == "05fe000002030500");
    // Topic ids are per node: both REGISTER a topic and both get id 1.
    CHECK(relay(f, n1, wrapped(node1, "0A 0A 00 00 00 01 66 77 2F 61")) ==
          "05fe000001070b0001000100");
    CHECK(relay(f, n2, wrapped(node2, "0A 0A 00 00 00 01 66 77 2F 62")) ==
          "05fe000002070b0001000100");
    // n1 publishes "hi" at QoS 1 on its id 1 (fw/a): PUBACK to n1, fw/a to the subscriber.
    CHECK(relay(f, n1, wrapped(node1, "09 0C 20 00 01 00 02 68 69")) == "05fe000001070d0001000200");
    auto in = sub.received();
    REQUIRE(in.size() == 1);
    const auto* p = std::get_if<publish_packet>(&in[0]);
    REQUIRE(p != nullptr);
    CHECK(p->topic == "fw/a");
    CHECK(p->payload == "hi");
    CHECK(n1.client_id() == "n1");
    CHECK(n2.client_id() == "n2");
}
