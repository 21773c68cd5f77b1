// max_inflight_bytes: the payload bytes of outbound QoS 1/2 messages in flight per connection,
// with max_inflight_messages (whichever is reached first). Messages past it wait in the
// session's queue, in order, and go as PUBACK / PUBREC let bytes go; one message larger than
// the bound goes alone; 0 is no limit. Driven packet by packet, for 3.1.1 and 5.0.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::limits;

namespace {

const protocol_version both[] = {protocol_version::v3_1_1, protocol_version::v5};

limits bytes_cap(std::size_t cap) {
    limits l;
    l.max_inflight_bytes = cap;
    return l;
}

// A payload of `n` bytes that says which message it is.
std::string payload(int which, std::size_t n) {
    std::string p = std::to_string(which) + ":";
    p.resize(n, 'x');
    return p;
}

std::vector<publish_packet> publishes(const std::vector<packet>& in) {
    std::vector<publish_packet> out;
    for (const auto& p : in) out.push_back(as<publish_packet>(p));
    return out;
}

int which(const publish_packet& p) {
    return std::stoi(p.payload.substr(0, p.payload.find(':')));
}

// An engine with `l`, a subscriber "s" to "t" at `q` (a persistent session if asked) and a
// publisher "p", both connected.
struct sub_and_pub {
    engine e;
    test_client sub;
    test_client pub;
    sub_and_pub(const limits& l, protocol_version v, clock::time_point& now, qos q,
                bool persistent = false)
        : e{l}, sub{e, v, now}, pub{e, v, now} {
        if (persistent) {
            sub.connect_persistent("s");
        } else {
            sub.connect("s");
        }
        sub.subscribe("t", q);
        pub.connect("p");
    }
};

}  // namespace

TEST_CASE(
    "max_inflight_bytes 3000: three 1000-byte messages in flight, the fourth after a PUBACK") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        sub_and_pub fx{bytes_cap(3000), v, now, qos::at_least_once};
        auto& [e, sub, pub] = fx;
        for (int i = 0; i < 5; ++i) pub.publish("t", payload(i, 1000), qos::at_least_once);
        const auto first = publishes(sub.received());
        REQUIRE(first.size() == 3);
        for (int i = 0; i < 3; ++i) CHECK(which(first[i]) == i);
        CHECK(sub.session().inflight() == 3);
        CHECK(sub.session().queued() == 2);  // waiting, not dropped
        CHECK(sub.session().durable()->inflight_bytes == 3000);
        CHECK(e.stats().dropped_queue_full == 0);

        sub.send(puback_packet{first[0].packet_id, reason_code::success, {}});
        const auto next = publishes(sub.received());
        REQUIRE(next.size() == 1);
        CHECK(which(next[0]) == 3);
        CHECK(sub.session().queued() == 1);

        // An unknown id frees nothing.
        sub.send(puback_packet{first[0].packet_id, reason_code::success, {}});
        CHECK(sub.received().empty());

        sub.send(puback_packet{first[1].packet_id, reason_code::success, {}});
        sub.send(puback_packet{first[2].packet_id, reason_code::success, {}});
        const auto last = publishes(sub.received());
        REQUIRE(last.size() == 1);
        CHECK(which(last[0]) == 4);
        sub.send(puback_packet{next[0].packet_id, reason_code::success, {}});
        sub.send(puback_packet{last[0].packet_id, reason_code::success, {}});
        CHECK(sub.session().inflight() == 0);
        CHECK(sub.session().queued() == 0);
        CHECK(sub.session().durable()->inflight_bytes == 0);
    }
}

TEST_CASE("max_inflight_bytes: a message larger than the bound goes alone, in its turn") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        sub_and_pub fx{bytes_cap(3000), v, now, qos::at_least_once};
        auto& [e, sub, pub] = fx;
        // Nothing in flight: the 5000-byte message goes at once, and nothing with it.
        pub.publish("t", payload(0, 5000), qos::at_least_once);
        pub.publish("t", payload(1, 10), qos::at_least_once);
        auto in = publishes(sub.received());
        REQUIRE(in.size() == 1);
        CHECK(which(in[0]) == 0);
        CHECK(sub.session().queued() == 1);
        sub.send(puback_packet{in[0].packet_id, reason_code::success, {}});
        in = publishes(sub.received());
        REQUIRE(in.size() == 1);
        CHECK(which(in[0]) == 1);

        // 10 bytes in flight: the next 5000-byte one waits until they are acknowledged, and
        // a small one behind it waits its turn (order is kept, MQTT-4.6.0-6).
        pub.publish("t", payload(2, 5000), qos::at_least_once);
        pub.publish("t", payload(3, 10), qos::at_least_once);
        CHECK(sub.received().empty());
        CHECK(sub.session().queued() == 2);
        sub.send(puback_packet{in[0].packet_id, reason_code::success, {}});
        in = publishes(sub.received());
        REQUIRE(in.size() == 1);
        CHECK(which(in[0]) == 2);
        sub.send(puback_packet{in[0].packet_id, reason_code::success, {}});
        in = publishes(sub.received());
        REQUIRE(in.size() == 1);
        CHECK(which(in[0]) == 3);
    }
}

TEST_CASE("max_inflight_bytes 0 is no limit (max_inflight_messages still applies)") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        engine e;  // max_inflight_bytes 0, max_inflight_messages 100
        test_client sub{e, v, now};
        sub.connect("s");
        sub.subscribe("t", qos::at_least_once);
        test_client pub{e, v, now};
        pub.connect("p");
        for (int i = 0; i < 50; ++i) pub.publish("t", payload(i, 20'000), qos::at_least_once);
        CHECK(sub.received().size() == 50);
        CHECK(sub.session().inflight() == 50);
        CHECK(sub.session().queued() == 0);
    }
}

TEST_CASE("max_inflight_bytes with max_inflight_messages: whichever is reached first") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        limits l = bytes_cap(1000);
        l.max_inflight = 2;
        sub_and_pub fx{l, v, now, qos::at_least_once};
        auto& [e, sub, pub] = fx;
        // Small messages: the count is reached first.
        for (int i = 0; i < 3; ++i) pub.publish("t", payload(i, 100), qos::at_least_once);
        auto in = publishes(sub.received());
        REQUIRE(in.size() == 2);
        for (const auto& p : in) sub.send(puback_packet{p.packet_id, reason_code::success, {}});
        in = publishes(sub.received());
        REQUIRE(in.size() == 1);
        CHECK(which(in[0]) == 2);
        sub.send(puback_packet{in[0].packet_id, reason_code::success, {}});
        // Large ones: the bytes are reached first (one slot of the two stays free).
        for (int i = 3; i < 6; ++i) pub.publish("t", payload(i, 600), qos::at_least_once);
        in = publishes(sub.received());
        REQUIRE(in.size() == 1);
        CHECK(which(in[0]) == 3);
        CHECK(sub.session().inflight() == 1);
        CHECK(sub.session().queued() == 2);
    }
}

TEST_CASE("max_inflight_bytes: a QoS 2 message stops counting at PUBREC, its slot at PUBCOMP") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        sub_and_pub fx{bytes_cap(2000), v, now, qos::exactly_once};
        auto& [e, sub, pub] = fx;
        for (int i = 0; i < 4; ++i) pub.publish("t", payload(i, 1000), qos::exactly_once);
        const auto first = publishes(sub.received());
        REQUIRE(first.size() == 2);
        CHECK(sub.session().queued() == 2);
        // PUBREC: the payload is let go (only PUBREL / PUBCOMP are left), the next one goes
        // behind the PUBREL.
        sub.send(pubrec_packet{first[0].packet_id, reason_code::success, {}});
        auto in = sub.received();
        REQUIRE(in.size() == 2);
        CHECK(as<pubrel_packet>(in[0]).packet_id == first[0].packet_id);
        CHECK(which(as<publish_packet>(in[1])) == 2);
        CHECK(sub.session().inflight() == 3);  // the first still holds its slot
        CHECK(sub.session().durable()->inflight_bytes == 2000);
        sub.send(pubcomp_packet{first[0].packet_id, reason_code::success, {}});
        CHECK(sub.received().empty());  // the bytes, not the count, hold the fourth
        CHECK(sub.session().inflight() == 2);
        // A refusing PUBREC (5.0) ends the exchange and lets its bytes go too.
        if (is_v5(v)) {
            sub.send(pubrec_packet{first[1].packet_id, reason_code::unspecified_error, {}});
        } else {
            sub.send(pubrec_packet{first[1].packet_id, reason_code::success, {}});
        }
        in = sub.received();
        REQUIRE_FALSE(in.empty());
        CHECK(which(as<publish_packet>(in.back())) == 3);
        CHECK(sub.session().queued() == 0);
    }
}

TEST_CASE("max_inflight_bytes: what was in flight before a reconnect counts, resent first") {
    for (const auto v : both) {
        CAPTURE(v);
        auto now = test_epoch();
        sub_and_pub fx{bytes_cap(3000), v, now, qos::at_least_once, true};
        auto& [e, sub, pub] = fx;
        for (int i = 0; i < 3; ++i) pub.publish("t", payload(i, 1000), qos::at_least_once);
        const auto first = publishes(sub.received());
        REQUIRE(first.size() == 3);
        sub.lose_connection();
        for (int i = 3; i < 5; ++i) pub.publish("t", payload(i, 1000), qos::at_least_once);

        sub.new_connection();
        CHECK(sub.connect_persistent("s").session_present);
        const auto resent = publishes(sub.rest_after_connack());
        REQUIRE(resent.size() == 3);  // the three again, with DUP; the queued two wait
        for (int i = 0; i < 3; ++i) {
            CHECK(which(resent[i]) == i);
            CHECK(resent[i].dup);
        }
        CHECK(sub.session().queued() == 2);
        CHECK(sub.session().durable()->inflight_bytes == 3000);
        sub.send(puback_packet{resent[0].packet_id, reason_code::success, {}});
        const auto next = publishes(sub.received());
        REQUIRE(next.size() == 1);
        CHECK(which(next[0]) == 3);
        CHECK_FALSE(next[0].dup);
    }
}

TEST_CASE("max_inflight_bytes: a reload applies from the next delivery") {
    auto now = test_epoch();
    sub_and_pub fx{bytes_cap(1000), protocol_version::v5, now, qos::at_least_once};
    auto& [e, sub, pub] = fx;
    for (int i = 0; i < 4; ++i) pub.publish("t", payload(i, 1000), qos::at_least_once);
    auto in = publishes(sub.received());
    REQUIRE(in.size() == 1);
    e.reload_limits(bytes_cap(0));  // no limit any more: the next acknowledgement drains all
    sub.send(puback_packet{in[0].packet_id, reason_code::success, {}});
    in = publishes(sub.received());
    REQUIRE(in.size() == 3);
    CHECK(which(in[2]) == 3);
}
