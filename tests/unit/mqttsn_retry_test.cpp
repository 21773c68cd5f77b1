// The MQTT-SN gateway's retransmission (T_RETRY, N_RETRY) and sleeping clients, with exact
// datagrams and a stepped clock against the broker engine (MQTT-SN 1.2, 6.13 and 6.14).

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "mqttsn_test_support.hpp"

using namespace tern_test;
using namespace tern_test::mqttsn;
using namespace std::chrono_literals;

namespace {

std::string will_payload(test_client& watcher) {
    const auto in = watcher.received();
    if (in.size() != 1) return "(" + std::to_string(in.size()) + " packets)";
    const auto* p = std::get_if<publish_packet>(&in[0]);
    return p != nullptr && p->topic == "w/t" ? p->payload : "(not the Will)";
}

}  // namespace

TEST_CASE(
    "mqttsn retry: a QoS 1 PUBLISH is resent with DUP every T_RETRY, then the client is lost") {
    fixture f;  // T_RETRY 10 s, N_RETRY 3
    test_client watcher(f.e, protocol_version::v3_1_1, f.now);
    watcher.connect("watcher");
    watcher.subscribe("w/t", qos::at_most_once);
    test_client pub(f.e, protocol_version::v3_1_1, f.now);
    pub.connect("pub");
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect_with_will(c, "00 3C");  // keep-alive 60 s: it does not run out first
    // SUBSCRIBE QoS 1 to a/b by name (MsgId 1): SUBACK with topic id 1.
    CHECK(f.exchange(c, "08 12 20 00 01 61 2F 62") == "0813200001000100");

    const auto t0 = f.now;
    pub.publish("a/b", "x", qos::at_least_once);
    CHECK(f.sent(c) == "080c200001000178");
    CHECK(c.unacknowledged() == 1);
    CHECK(c.deadline() == t0 + 10s);
    // Not before T_RETRY.
    f.now = t0 + 9s;
    c.on_timer(f.now);
    CHECK(f.sent(c).empty());
    // Then three times, DUP set (Flags 0xA0), T_RETRY apart.
    for (int i = 1; i <= 3; ++i) {
        f.now = t0 + i * 10s;
        CHECK(c.deadline() == f.now);
        c.on_timer(f.now);
        CHECK(f.sent(c) == "080ca00001000178");
        CHECK_FALSE(c.closed());
    }
    CHECK(c.retransmitted() == 3);
    CHECK(watcher.received().empty());
    // The engine's counters ($SYS, /metrics) follow.
    CHECK(f.e.stats().mqttsn_retransmissions == 3);
    CHECK(f.e.stats().mqttsn_clients == 1);
    CHECK(f.e.stats().mqttsn_clients_lost == 0);
    // A datagram that does not decode is dropped and counted; the client stays.
    c.on_datagram(from_hex("05 04"), f.now);
    CHECK(f.e.stats().mqttsn_datagrams_malformed == 1);
    CHECK_FALSE(c.closed());
    // No PUBACK after the third: the client is lost, as at a keep-alive expiry (Will).
    f.now = t0 + 40s;
    c.on_timer(f.now);
    CHECK(c.closed());
    CHECK(c.lost());
    CHECK(f.e.stats().mqttsn_clients_lost == 1);
    CHECK(f.sent(c) == "0218");
    CHECK(will_payload(watcher) == "bye");
}

TEST_CASE("mqttsn retry: REGACK, PUBACK, PUBREC and PUBCOMP stop it, N_RETRY 0 loses at once") {
    fixture f;
    f.settings.retry_interval = 5s;
    test_client pub(f.e, protocol_version::v3_1_1, f.now);
    pub.connect("pub");
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect(c);
    // SUBSCRIBE QoS 2 to a/# (MsgId 1): SUBACK QoS 2, topic id 0.
    CHECK(f.exchange(c, "08 12 40 00 01 61 2F 23") == "0813400000000100");

    // A QoS 2 message on a/c: REGISTER a/c (topic id 1, MsgId 1), resent while unanswered.
    pub.publish("a/c", "x", qos::exactly_once);
    CHECK(f.sent(c) == "090a00010001612f63");
    f.now += 5s;
    c.on_timer(f.now);
    CHECK(f.sent(c) == "090a00010001612f63");
    // REGACK: the held PUBLISH QoS 2 (MsgId 1); a second REGACK is dropped.
    CHECK(f.exchange(c, "07 0B 00 01 00 01 00") == "080c400001000178");
    CHECK(f.exchange(c, "07 0B 00 01 00 01 00").empty());
    CHECK(c.dropped() == 1);
    CHECK(c.unacknowledged() == 1);
    f.now += 5s;
    c.on_timer(f.now);
    CHECK(f.sent(c) == "080cc00001000178");  // DUP
    // PUBREC: PUBREL, itself resent until PUBCOMP.
    CHECK(f.exchange(c, "04 0F 00 01") == "04100001");
    f.now += 5s;
    c.on_timer(f.now);
    CHECK(f.sent(c) == "04100001");
    CHECK(f.exchange(c, "04 0E 00 01").empty());
    CHECK(c.unacknowledged() == 0);
    CHECK(c.session().inflight() == 0);
    CHECK(c.retransmitted() == 3);

    // QoS 1 on the now registered a/c (MsgId 2): a PUBACK in time, nothing resent.
    pub.publish("a/c", "y", qos::at_least_once);
    CHECK(f.sent(c) == "080c200001000279");
    CHECK(f.exchange(c, "07 0D 00 01 00 02 00").empty());
    CHECK(c.unacknowledged() == 0);
    CHECK(c.deadline() > f.now + 60s);  // only the keep-alive (1.5 x 60 s) is left
    f.advance(c, 30s);
    CHECK(f.sent(c).empty());
    CHECK(c.retransmitted() == 3);

    SUBCASE("N_RETRY 0: lost at the first T_RETRY") {
        mqttsn_settings s = f.settings;
        s.retry_count = 0;
        mqttsn_client d(f.e, s, f.now, "q");
        CHECK(f.exchange(d, "09 04 04 01 00 3C 64 65 66") == "030500");  // "def"
        CHECK(f.exchange(d, "08 12 20 00 01 61 2F 23") == "0813200000000100");
        pub.publish("a/b", "z", qos::at_least_once);
        CHECK(f.sent(d) == "090a00010001612f62");  // REGISTER a/b
        f.now += 5s;
        d.on_timer(f.now);
        CHECK(d.lost());
        CHECK(d.retransmitted() == 0);
    }
}

TEST_CASE(
    "mqttsn sleep: deliveries held while asleep, sent at PINGREQ, PINGRESP once acknowledged") {
    fixture f;
    f.settings.max_buffered = 2;
    f.settings.max_inflight = 20;  // several QoS 1 held at once (the window: mqttsn_inflight_test)
    test_client watcher(f.e, protocol_version::v3_1_1, f.now);
    watcher.connect("watcher");
    watcher.subscribe("w/t", qos::at_most_once);
    test_client pub(f.e, protocol_version::v3_1_1, f.now);
    pub.connect("pub");
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect_with_will(c, "00 0A");                                         // keep-alive 10 s
    CHECK(f.exchange(c, "08 12 20 00 01 61 2F 23") == "0813200000000100");   // a/# QoS 1
    CHECK(f.exchange(c, "09 0A 00 00 00 02 61 2F 62") == "070b0001000200");  // a/b is id 1

    // DISCONNECT with a Duration of 60 s: DISCONNECT back, asleep.
    CHECK(f.exchange(c, "04 18 00 3C") == "0218");
    CHECK(c.asleep());
    pub.publish("a/b", "1", qos::at_most_once);
    pub.publish("a/b", "2", qos::at_least_once);
    pub.publish("a/c", "3", qos::at_least_once);  // a new topic: a REGISTER, held too
    CHECK(f.sent(c).empty());
    CHECK(c.buffered() == 3);
    // 50 s of sleep: far past 1.5 x the keep-alive, within 1.5 x the Duration. The session
    // stays, nothing is sent, nothing is retransmitted.
    f.advance(c, 50s);
    CHECK_FALSE(c.closed());
    CHECK(f.e.find("abc") != nullptr);
    CHECK(f.sent(c).empty());

    // PINGREQ with the client id: what was held, in order; no PINGRESP while a REGISTER
    // and two PUBLISHes are unanswered.
    CHECK(f.exchange(c, "05 16 61 62 63") ==
          "080c000001000031 | 080c200001000132 | 090a00020001612f63");
    CHECK(c.awake());
    CHECK(f.exchange(c, "07 0D 00 01 00 01 00").empty());
    CHECK(f.exchange(c, "07 0B 00 02 00 01 00") == "080c200002000233");
    // The last PUBACK: PINGRESP, asleep again.
    CHECK(f.exchange(c, "07 0D 00 02 00 02 00") == "0217");
    CHECK(c.asleep());
    CHECK(watcher.received().empty());

    // Three QoS 0 messages for a buffer of two: one dropped and counted.
    pub.publish("a/b", "4", qos::at_most_once);
    pub.publish("a/b", "5", qos::at_most_once);
    pub.publish("a/b", "6", qos::at_most_once);
    CHECK(f.sent(c).empty());
    CHECK(c.buffered() == 2);
    CHECK(c.buffer_dropped() == 1);
    // A PINGREQ without the client id wakes it too; QoS 0 only: PINGRESP at once.
    CHECK(f.exchange(c, "02 16") == "080c000001000034 | 080c000001000035 | 0217");
    CHECK(c.asleep());

    // CONNECT while asleep: active again (CONNACK), PINGREQ answered by the session.
    CHECK(f.exchange(c, "09 04 04 01 00 0A 61 62 63") == "030500");
    CHECK_FALSE(c.asleep());
    CHECK_FALSE(c.awake());
    CHECK(f.exchange(c, "02 16") == "0217");
    pub.publish("a/b", "7", qos::at_most_once);
    CHECK(f.sent(c) == "080c000001000037");

    // Asleep for 2 s and silent past 1.5 x that: lost, the Will goes out.
    CHECK(f.exchange(c, "04 18 00 02") == "0218");
    f.advance(c, 2s);
    CHECK_FALSE(c.closed());
    f.advance(c, 2s);
    CHECK(c.closed());
    CHECK(c.lost());
    CHECK(will_payload(watcher) == "bye");
}

TEST_CASE("mqttsn sleep: no retransmission while asleep, the unacknowledged go again at the wake") {
    fixture f;
    test_client pub(f.e, protocol_version::v3_1_1, f.now);
    pub.connect("pub");
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect(c);
    CHECK(f.exchange(c, "08 12 20 00 01 61 2F 62") == "0813200001000100");  // a/b: id 1
    pub.publish("a/b", "x", qos::at_least_once);
    CHECK(f.sent(c) == "080c200001000178");
    // Asleep before its PUBACK, for 100 s: 60 s pass, six T_RETRY, nothing sent, not lost.
    CHECK(f.exchange(c, "04 18 00 64") == "0218");
    f.advance(c, 60s);
    CHECK_FALSE(c.closed());
    CHECK(f.sent(c).empty());
    // The wake resends it (DUP); it is retransmitted while awake; its PUBACK: PINGRESP.
    CHECK(f.exchange(c, "02 16") == "080ca00001000178");
    f.advance(c, 10s);
    CHECK(f.sent(c) == "080ca00001000178");
    // A second PINGREQ while awake: the unacknowledged go again.
    CHECK(f.exchange(c, "02 16") == "080ca00001000178");
    CHECK(f.exchange(c, "07 0D 00 01 00 01 00") == "0217");
    CHECK(c.asleep());
    // DISCONNECT without a Duration while asleep: the session ends, no Will.
    CHECK(f.exchange(c, "02 18") == "0218");
    CHECK(c.closed());
    CHECK_FALSE(c.lost());
}

TEST_CASE("mqttsn sleep: the client id a datagram from a new address claims") {
    using mqtt::broker::mqttsn_claimed_client_id;
    // PINGREQ with the client id "zz" and CONNECT "abc": a sleeping client of that id may
    // move to the sender's address (the UDP driver does the move).
    CHECK(mqttsn_claimed_client_id(from_hex("04 16 7A 7A")) == "zz");
    CHECK(mqttsn_claimed_client_id(from_hex("09 04 04 01 00 3C 61 62 63")) == "abc");
    // Anything else claims nothing: PINGREQ without an id, PUBLISH, SEARCHGW, a malformed
    // datagram.
    CHECK(mqttsn_claimed_client_id(from_hex("02 16")).empty());
    CHECK(mqttsn_claimed_client_id(from_hex("08 0C 61 00 01 00 00 7A")).empty());
    CHECK(mqttsn_claimed_client_id(from_hex("03 01 01")).empty());
    CHECK(mqttsn_claimed_client_id(from_hex("05 16 7A")).empty());
}
