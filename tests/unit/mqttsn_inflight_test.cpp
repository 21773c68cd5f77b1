// The MQTT-SN gateway's in-flight window toward a client (mqttsn_max_inflight): QoS 1/2
// PUBLISHes beyond it wait in the session's queue until a PUBACK frees a slot (MQTT-SN 1.2
// clients expect one at a time). Exact datagrams against the broker engine.

#include <doctest/doctest.h>

#include <string>

#include "mqttsn_test_support.hpp"

using namespace tern_test;
using namespace tern_test::mqttsn;

TEST_CASE("mqttsn in-flight: one QoS 1 PUBLISH to the client at a time by default") {
    fixture f;
    CHECK(f.settings.max_inflight == 1);
    test_client pub(f.e, protocol_version::v3_1_1, f.now);
    pub.connect("pub");
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect(c);
    // SUBSCRIBE QoS 1 to a/b by name (MsgId 1): SUBACK with topic id 1.
    CHECK(f.exchange(c, "08 12 20 00 01 61 2F 62") == "0813200001000100");
    pub.publish("a/b", "x", qos::at_least_once);
    pub.publish("a/b", "y", qos::at_least_once);
    pub.publish("a/b", "z", qos::at_least_once);
    // Only x goes; y and z wait in the session's queue.
    CHECK(f.sent(c) == "080c200001000178");
    CHECK(c.unacknowledged() == 1);
    CHECK(c.session().inflight() == 1);
    // A QoS 0 message is not held back by the window.
    pub.publish("a/b", "0", qos::at_most_once);
    CHECK(f.sent(c) == "080c000001000030");
    // Each PUBACK (TopicId 1, MsgId, accepted) lets the next one go, in order.
    CHECK(f.exchange(c, "07 0D 00 01 00 01 00") == "080c200001000279");
    CHECK(f.exchange(c, "07 0D 00 01 00 02 00") == "080c20000100037a");
    CHECK(c.unacknowledged() == 1);
    CHECK(f.exchange(c, "07 0D 00 01 00 03 00").empty());
    CHECK(c.unacknowledged() == 0);
    CHECK(c.session().inflight() == 0);
}

TEST_CASE("mqttsn in-flight: mqttsn_max_inflight 3 sends three at once, QoS 2 too") {
    fixture f;
    f.settings.max_inflight = 3;
    test_client pub(f.e, protocol_version::v3_1_1, f.now);
    pub.connect("pub");
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect(c);
    // SUBSCRIBE QoS 2 to a/b (MsgId 1): SUBACK QoS 2, topic id 1.
    CHECK(f.exchange(c, "08 12 40 00 01 61 2F 62") == "0813400001000100");
    for (const char* m : {"a", "b", "c", "d"}) pub.publish("a/b", m, qos::exactly_once);
    CHECK(f.sent(c) == "080c400001000161 | 080c400001000262 | 080c400001000363");
    CHECK(c.unacknowledged() == 3);
    // PUBREC 1: PUBREL 1; the slot is still taken until PUBCOMP.
    CHECK(f.exchange(c, "04 0F 00 01") == "04100001");
    // PUBCOMP 1: the fourth goes.
    CHECK(f.exchange(c, "04 0E 00 01") == "080c400001000464");
}
