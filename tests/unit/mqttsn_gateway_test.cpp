// The MQTT-SN gateway's per-client state machine against the broker engine, with exact
// datagrams both ways and MQTT 3.1.1 clients (broker_test_client.hpp) on the other side.
// No sockets; the clock is set by hand.

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "mqttsn_test_support.hpp"

using namespace tern_test;
using namespace tern_test::mqttsn;
using namespace std::chrono_literals;

namespace {

publish_packet only_publish(const std::vector<packet>& in) {  // a copy: `in` is often a temporary
    REQUIRE(in.size() == 1);
    const auto* p = std::get_if<publish_packet>(&in[0]);
    REQUIRE(p != nullptr);
    return *p;
}

}  // namespace

TEST_CASE("mqttsn gateway: CONNECT, REGISTER, PUBLISH QoS 1 reaches an MQTT subscriber") {
    fixture f;
    test_client sub(f.e, protocol_version::v3_1_1, f.now);
    sub.connect("sub");
    sub.subscribe("a/b", qos::at_least_once);

    mqttsn_client c(f.e, f.settings, f.now, "127.0.0.1:1");
    f.connect(c);
    CHECK(c.client_id() == "abc");
    // REGISTER a/b, MsgId 1: topic id 1.
    CHECK(f.exchange(c, "09 0A 00 00 00 01 61 2F 62") == "070b0001000100");
    // PUBLISH QoS 1 to topic id 1, MsgId 5: PUBACK with the topic id and MsgId.
    CHECK(f.exchange(c, "09 0C 20 00 01 00 05 68 69") == "070d0001000500");
    const auto& p = only_publish(sub.received());
    CHECK(p.topic == "a/b");
    CHECK(p.payload == "hi");
    CHECK(p.qos_level == qos::at_least_once);
    // Registering the same name again gives the same id.
    CHECK(f.exchange(c, "09 0A 00 00 00 02 61 2F 62") == "070b0001000200");
    // An unknown topic id: PUBACK invalid topic id, whatever the QoS.
    CHECK(f.exchange(c, "09 0C 00 00 09 00 00 68 69") == "070d0009000002");
    CHECK(sub.received().empty());
    CHECK(c.dropped() == 0);
}

TEST_CASE("mqttsn gateway: over max_publish_rate, PUBACK rejected: congestion") {
    fixture f;
    auto l = f.e.config();
    l.max_publish_rate = 2;
    f.e.reload_limits(l);
    test_client sub(f.e, protocol_version::v3_1_1, f.now);
    sub.connect("sub");
    sub.subscribe("a/b", qos::at_least_once);
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect(c);
    CHECK(f.exchange(c, "09 0A 00 00 00 01 61 2F 62") == "070b0001000100");
    // A burst of two is allowed; then the session reads no more for half a second, and a
    // datagram cannot wait: PUBACK congestion, at QoS 1 and 0, nothing published.
    CHECK(f.exchange(c, "09 0C 20 00 01 00 05 68 69") == "070d0001000500");
    CHECK(f.exchange(c, "09 0C 20 00 01 00 06 68 69") == "070d0001000600");
    CHECK(f.exchange(c, "09 0C 20 00 01 00 07 68 69") == "070d0001000701");
    CHECK(f.exchange(c, "09 0C 00 00 01 00 00 68 69") == "070d0001000001");
    CHECK(sub.received().size() == 2);
    // A second later the client's retry is accepted.
    f.advance(c, 1s);
    CHECK(f.exchange(c, "09 0C 20 00 01 00 07 68 69") == "070d0001000700");
    CHECK(only_publish(sub.received()).payload == "hi");
    CHECK(c.dropped() == 0);
}

TEST_CASE("mqttsn gateway: QoS 2 from the client, delivered once") {
    fixture f;
    test_client sub(f.e, protocol_version::v3_1_1, f.now);
    sub.connect("sub");
    sub.subscribe("a/b", qos::exactly_once);
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect(c);
    CHECK(f.exchange(c, "09 0A 00 00 00 01 61 2F 62") == "070b0001000100");
    CHECK(f.exchange(c, "09 0C 40 00 01 00 07 68 69") == "040f0007");
    // The same PUBLISH again (PUBREC lost), DUP set: PUBREC again, no second delivery.
    CHECK(f.exchange(c, "09 0C C0 00 01 00 07 68 69") == "040f0007");
    CHECK(f.exchange(c, "04 10 00 07") == "040e0007");
    const auto in = sub.received();
    REQUIRE(in.size() == 1);
    CHECK(std::get<publish_packet>(in[0]).payload == "hi");
}

TEST_CASE("mqttsn gateway: short and predefined topic ids, QoS -1 without a connection") {
    fixture f;
    test_client sub(f.e, protocol_version::v3_1_1, f.now);
    sub.connect("sub");
    sub.subscribe("#", qos::at_most_once);
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect(c);
    // QoS 0 to the short name "ab" (TopicIdType 0b10): no answer.
    CHECK(f.exchange(c, "09 0C 02 61 62 00 00 68 69").empty());
    CHECK(only_publish(sub.received()).topic == "ab");
    // QoS 0 to predefined topic id 1 (t/pre).
    CHECK(f.exchange(c, "08 0C 01 00 01 00 00 7A").empty());
    CHECK(only_publish(sub.received()).topic == "t/pre");
    // Predefined topic id 9 is not configured.
    CHECK(f.exchange(c, "08 0C 01 00 09 00 00 7A") == "070d0009000002");

    // QoS -1 from an address without a client: predefined and short only.
    bytes reply;
    CHECK(mqttsn_handle_unattached(f.e, f.settings, from_hex("08 0C 61 00 01 00 00 7A"), f.now,
                                   reply) == mqttsn_unattached::answered);
    CHECK(reply.empty());
    const auto& p = only_publish(sub.received());
    CHECK(p.topic == "t/pre");
    CHECK(p.payload == "z");
    CHECK(mqttsn_handle_unattached(f.e, f.settings, from_hex("08 0C 62 78 79 00 00 7A"), f.now,
                                   reply) == mqttsn_unattached::answered);
    CHECK(only_publish(sub.received()).topic == "xy");
    // A normal topic id, an unknown predefined one, QoS 0, or garbage: dropped.
    for (auto d : {"08 0C 60 00 01 00 00 7A", "08 0C 61 00 09 00 00 7A",
                   "08 0C 01 00 01 00 00 7A", "05 16", "02 16"})
        CHECK(mqttsn_handle_unattached(f.e, f.settings, from_hex(d), f.now, reply) ==
              mqttsn_unattached::dropped);
    CHECK(sub.received().empty());
    // SEARCHGW: GWINFO with the gateway id; CONNECT: a new client.
    CHECK(mqttsn_handle_unattached(f.e, f.settings, from_hex("03 01 01"), f.now, reply) ==
          mqttsn_unattached::answered);
    CHECK(hex(reply) == "030201");
    CHECK(mqttsn_handle_unattached(f.e, f.settings, from_hex("09 04 04 01 00 3C 61 62 63"),
                                   f.now, reply) == mqttsn_unattached::new_client);
}

TEST_CASE("mqttsn gateway: SUBSCRIBE, REGISTER from the gateway held until REGACK, PUBACK") {
    fixture f;
    f.settings.max_inflight = 20;  // two QoS 1 deliveries at once (the window: mqttsn_inflight_test)
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect(c);
    CHECK(f.exchange(c, "09 0A 00 00 00 01 61 2F 62") == "070b0001000100");  // a/b is id 1
    // SUBSCRIBE QoS 1 to a/# (MsgId 2): SUBACK QoS 1, topic id 0 (a wildcard filter).
    CHECK(f.exchange(c, "08 12 20 00 02 61 2F 23") == "0813200000000200");
    // SUBSCRIBE to predefined id 2 (sensors/+) and short "ab": their ids come back.
    CHECK(f.exchange(c, "07 12 01 00 03 00 02") == "0813000002000300");
    CHECK(f.exchange(c, "07 12 02 00 04 61 62") == "0813000000000400");
    // An unknown predefined id: SUBACK invalid topic id.
    CHECK(f.exchange(c, "07 12 01 00 05 00 09") == "0813000009000502");

    test_client pub(f.e, protocol_version::v3_1_1, f.now);
    pub.connect("pub");
    publish_packet p;
    p.topic = "a/c";
    p.payload = "x";
    p.qos_level = qos::at_least_once;
    p.packet_id = 1;
    pub.send(p);
    CHECK(!pub.received().empty());  // PUBACK
    // a/c has no id for this client: REGISTER (topic id 2, MsgId 1) and nothing else yet.
    CHECK(f.sent(c) == "090a0002000161" "2f63");
    // A second message on a/c waits too.
    p.packet_id = 2;
    p.payload = "y";
    pub.send(p);
    CHECK(f.sent(c).empty());
    // REGACK: both PUBLISHes (QoS 1, topic id 2, the session's packet ids 1 and 2).
    CHECK(f.exchange(c, "07 0B 00 02 00 01 00") == "080c200002000178 | 080c200002000279");
    CHECK(c.session().inflight() == 2);
    CHECK(f.exchange(c, "07 0D 00 02 00 01 00").empty());
    CHECK(f.exchange(c, "07 0D 00 02 00 02 00").empty());
    CHECK(c.session().inflight() == 0);
    // A registered name goes out at once with its id; a short name as itself.
    p.topic = "a/b";
    p.qos_level = qos::at_most_once;
    p.packet_id = 0;
    pub.send(p);
    CHECK(f.sent(c) == "080c000001000079");
    p.topic = "ab";
    pub.send(p);
    CHECK(f.sent(c) == "080c026162000079");
    p.topic = "sensors/1";
    pub.send(p);
    // sensors/1 matches the predefined filter but is a new name: REGISTER, id 3.
    CHECK(f.sent(c) == "0f0a00030002" "73656e736f72732f31");
    // UNSUBSCRIBE a/# (MsgId 6): UNSUBACK.
    CHECK(f.exchange(c, "08 14 00 00 06 61 2F 23") == "04150006");
}

TEST_CASE("mqttsn gateway: Will exchange, keep-alive expiry publishes the Will") {
    fixture f;
    test_client sub(f.e, protocol_version::v3_1_1, f.now);
    sub.connect("sub", 0);
    sub.subscribe("w/t", qos::at_most_once);
    mqttsn_client c(f.e, f.settings, f.now, "p");
    // CONNECT with the Will flag, keep-alive 10 s: WILLTOPICREQ, WILLTOPIC, WILLMSGREQ, WILLMSG.
    CHECK(f.exchange(c, "09 04 0C 01 00 0A 61 62 63") == "0206");
    CHECK(f.exchange(c, "06 07 00 77 2F 74") == "0208");
    CHECK(f.exchange(c, "05 09 62 79 65") == "030500");
    CHECK(f.exchange(c, "02 16") == "0217");  // PINGREQ, PINGRESP
    // 1.5 x keep-alive without a datagram: the session closes, the Will goes out.
    f.now += 16s;
    CHECK(c.deadline() <= f.now);
    c.on_timer(f.now);
    CHECK(c.closed());
    CHECK(f.sent(c) == "0218");
    const auto& p = only_publish(sub.received());
    CHECK(p.topic == "w/t");
    CHECK(p.payload == "bye");
}

TEST_CASE("mqttsn gateway: DISCONNECT, malformed and unexpected datagrams") {
    fixture f;
    mqttsn_client c(f.e, f.settings, f.now, "p");
    // Before CONNECT: a PUBLISH QoS 1 is dropped, as is a malformed datagram.
    CHECK(f.exchange(c, "09 0C 20 00 01 00 05 68 69").empty());
    CHECK(f.exchange(c, "05 16").empty());
    CHECK(c.dropped() == 2);
    f.connect(c);
    // A repeated CONNECT (lost CONNACK) is answered again.
    CHECK(f.exchange(c, "09 04 04 01 00 3C 61 62 63") == "030500");
    CHECK(f.exchange(c, "03 1B 00").empty());  // WILLTOPICRESP from a client: dropped
    CHECK(c.dropped() == 3);
    CHECK(f.exchange(c, "04 1A 00 61") == "031b00");  // WILLTOPICUPD: a Will on "a"
    CHECK(f.exchange(c, "02 18") == "0218");
    CHECK(c.closed());
    CHECK(f.e.find("abc") == nullptr);
}

TEST_CASE("mqttsn gateway: refused CONNECT") {
    fixture f;
    auto policy = std::make_shared<mqtt::broker::security_policy>();
    policy->allow_anonymous = false;
    f.e.set_security(policy);
    mqttsn_client c(f.e, f.settings, f.now, "p");
    CHECK(f.exchange(c, "09 04 04 01 00 3C 61 62 63") == "030503");
    CHECK(c.closed());
    bytes reply;
    CHECK(mqttsn_handle_unattached(f.e, f.settings, from_hex("08 0C 61 00 01 00 00 7A"), f.now,
                                   reply) == mqttsn_unattached::dropped);
}
