// The MQTT-SN gateway's Will updates (MQTT-SN 1.2, 5.4.22 to 5.4.25) with exact datagrams
// against the broker engine: WILLTOPICUPD and WILLMSGUPD replace the Will held by the
// client's session, an empty WILLTOPICUPD deletes it, and what is published when the
// client is lost is the updated Will.

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "mqttsn_test_support.hpp"

using namespace tern_test;
using namespace tern_test::mqttsn;
using namespace std::chrono_literals;

namespace {

// The client is lost: 1.5 x its keep-alive (10 s) without a datagram.
void lose(fixture& f, mqttsn_client& c) {
    f.now += 16s;
    REQUIRE(c.deadline() <= f.now);
    c.on_timer(f.now);
    REQUIRE(c.closed());
    CHECK(f.sent(c) == "0218");
}

std::vector<publish_packet> publishes(test_client& t) {
    std::vector<publish_packet> out;
    for (auto& p : t.received())
        if (auto* pp = std::get_if<publish_packet>(&p)) out.push_back(*pp);
    return out;
}

}  // namespace

TEST_CASE("mqttsn will: WILLTOPICUPD and WILLMSGUPD replace the Will that is published") {
    fixture f;
    test_client watcher(f.e, protocol_version::v3_1_1, f.now);
    watcher.connect("watcher", 0);
    watcher.subscribe("w/#", qos::at_least_once);
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect_with_will(c, "00 0A");  // "bye" on w/t, QoS 0, keep-alive 10 s
    // WILLTOPICUPD QoS 1, Retain, "w/u": WILLTOPICRESP accepted; the message stays "bye".
    CHECK(f.exchange(c, "06 1A 30 77 2F 75") == "031b00");
    auto* ds = c.session().durable();
    REQUIRE(ds != nullptr);
    REQUIRE(ds->will());
    CHECK(ds->will()->topic == "w/u");
    CHECK(ds->will()->payload == "bye");
    CHECK(ds->will()->qos_level == qos::at_least_once);
    CHECK(ds->will()->retain);
    // WILLMSGUPD "ciao": WILLMSGRESP accepted; topic and flags stay.
    CHECK(f.exchange(c, "06 1C 63 69 61 6F") == "031d00");
    CHECK(ds->will()->topic == "w/u");
    CHECK(ds->will()->payload == "ciao");
    CHECK(ds->will()->qos_level == qos::at_least_once);
    // QoS -1 is refused (not supported), the Will unchanged; a topic filter does not even
    // decode (dropped as malformed).
    CHECK(f.exchange(c, "06 1A 60 77 2F 76") == "031b03");
    CHECK(f.exchange(c, "06 1A 00 77 2F 23").empty());
    CHECK(f.e.stats().mqttsn_datagrams_malformed == 1);
    CHECK(ds->will()->topic == "w/u");
    CHECK(watcher.received().empty());

    lose(f, c);
    const auto in = publishes(watcher);
    REQUIRE(in.size() == 1);
    CHECK(in[0].topic == "w/u");
    CHECK(in[0].payload == "ciao");
    CHECK(in[0].qos_level == qos::at_least_once);
    // Retained: a later subscriber gets it with RETAIN set.
    test_client late(f.e, protocol_version::v3_1_1, f.now);
    late.connect("late", 0);
    late.subscribe("w/u", qos::at_most_once);
    const auto retained = late.after_suback();
    REQUIRE(retained.size() == 1);
    const auto* r = std::get_if<publish_packet>(&retained[0]);
    REQUIRE(r != nullptr);
    CHECK(r->retain);
    CHECK(r->payload == "ciao");
}

TEST_CASE("mqttsn will: the empty WILLTOPICUPD deletes the Will") {
    fixture f;
    test_client watcher(f.e, protocol_version::v3_1_1, f.now);
    watcher.connect("watcher", 0);
    watcher.subscribe("#", qos::at_most_once);
    mqttsn_client c(f.e, f.settings, f.now, "p");
    f.connect_with_will(c, "00 0A");
    CHECK(f.exchange(c, "02 1A") == "031b00");
    REQUIRE(c.session().durable() != nullptr);
    CHECK_FALSE(c.session().durable()->will());
    // Deleting again is accepted too.
    CHECK(f.exchange(c, "02 1A") == "031b00");
    lose(f, c);
    CHECK(publishes(watcher).empty());
}

TEST_CASE("mqttsn will: a Will given after CONNECT, message first, and the limits") {
    fixture f;
    mqtt::broker::limits l;
    l.max_topic_levels = 3;
    engine e(l);
    test_client watcher(e, protocol_version::v3_1_1, f.now);
    watcher.connect("watcher", 0);
    watcher.subscribe("#", qos::at_most_once);
    mqttsn_client c(e, f.settings, f.now, "p");
    // CONNECT without the Will flag, keep-alive 10 s.
    CHECK(f.exchange(c, "09 04 04 01 00 0A 61 62 63") == "030500");
    // WILLMSGUPD with no Will: kept for the topic that follows (accepted), no Will yet.
    CHECK(f.exchange(c, "05 1C 6F 66 66") == "031d00");
    CHECK_FALSE(c.session().durable()->will());
    // Over max_topic_levels (4 levels): refused.
    CHECK(f.exchange(c, "0A 1A 00 61 2F 62 2F 63 2F 64") == "031b03");
    CHECK_FALSE(c.session().durable()->will());
    // WILLTOPICUPD QoS 0 "s/1": the Will is "off" on s/1.
    CHECK(f.exchange(c, "06 1A 00 73 2F 31") == "031b00");
    REQUIRE(c.session().durable()->will());
    CHECK(c.session().durable()->will()->payload == "off");
    lose(f, c);
    const auto in = publishes(watcher);
    REQUIRE(in.size() == 1);
    CHECK(in[0].topic == "s/1");
    CHECK(in[0].payload == "off");
    CHECK_FALSE(in[0].retain);
}

TEST_CASE("mqttsn will: updates before CONNECT, and DISCONNECT publishes no Will") {
    fixture f;
    test_client watcher(f.e, protocol_version::v3_1_1, f.now);
    watcher.connect("watcher", 0);
    watcher.subscribe("#", qos::at_most_once);
    // From an address without a client: dropped.
    bytes reply;
    CHECK(mqttsn_handle_unattached(f.e, f.settings, from_hex("06 1A 00 73 2F 31"), f.now, reply) ==
          mqttsn_unattached::dropped);
    mqttsn_client c(f.e, f.settings, f.now, "p");
    // While the CONNECT waits for its Will: only WILLTOPIC / WILLMSG are taken.
    CHECK(f.exchange(c, "09 04 0C 01 00 0A 61 62 63") == "0206");
    CHECK(f.exchange(c, "06 1A 00 73 2F 31").empty());
    CHECK(f.exchange(c, "05 1C 6F 66 66").empty());
    CHECK(c.dropped() == 2);
    CHECK(f.exchange(c, "06 07 00 77 2F 74") == "0208");
    CHECK(f.exchange(c, "05 09 62 79 65") == "030500");
    CHECK(f.exchange(c, "06 1A 00 73 2F 31") == "031b00");
    // A DISCONNECT: the updated Will is not published either.
    CHECK(f.exchange(c, "02 18") == "0218");
    CHECK(c.closed());
    CHECK(publishes(watcher).empty());
}
