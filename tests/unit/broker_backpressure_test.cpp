// Back-pressure instead of loss: a QoS 1/2 publisher feeding an online subscriber whose
// queue is over the high-water mark stops being read (input_paused()) until that
// subscriber drains below the low-water mark, closes, or is taken over.

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::limits;
using namespace std::chrono_literals;

namespace {

// Queue of 8 (congested above 4, drained at 2 or fewer), 2 in flight.
limits small_queue() {
    limits l;
    l.max_queued_messages = 8;
    l.max_inflight = 2;
    return l;
}

// Acknowledges every PUBLISH the subscriber was sent; returns how many.
std::size_t ack_all(test_client& sub) {
    std::size_t n = 0;
    for (const auto& p : sub.received()) {
        if (const auto* pub = std::get_if<publish_packet>(&p)) {
            sub.send(puback_packet{pub->packet_id, reason_code::success, {}});
            ++n;
        }
    }
    return n;
}

struct fixture {
    clock::time_point now = test_epoch();
    engine e{small_queue()};
    test_client sub{e, protocol_version::v3_1_1, now};
    test_client pub{e, protocol_version::v3_1_1, now};
    test_client other{e, protocol_version::v3_1_1, now};

    fixture() {
        sub.connect("sub");
        sub.subscribe("t", qos::at_least_once);
        pub.connect("pub");
        other.connect("other");
        other.subscribe("u", qos::at_least_once);
    }
    // 2 go in flight, the rest queue: the 7th puts the queue at 5, over the mark.
    void congest() {
        for (int i = 0; i < 6; ++i) pub.publish("t", "m", qos::at_least_once);
        REQUIRE_FALSE(pub.session().input_paused());
        pub.publish("t", "m", qos::at_least_once);
    }
};

}  // namespace

TEST_CASE("backpressure: a congested subscriber pauses its QoS 1 publisher until it acks") {
    fixture f;
    f.congest();
    CHECK(f.pub.session().input_paused());
    CHECK(f.pub.session().throttled_by() == 1);
    CHECK(f.sub.session().throttling() == 1);
    // Nothing lost: the message was queued, and the publisher got its PUBACK.
    CHECK(f.sub.session().queued() == 5);
    CHECK(f.e.stats().dropped_queue_full == 0);
    std::size_t pubacks = 0;
    for (const auto& p : f.pub.received()) pubacks += std::holds_alternative<puback_packet>(p);
    CHECK(pubacks == 7);
    // Nobody else is held up.
    CHECK_FALSE(f.sub.session().input_paused());
    CHECK_FALSE(f.other.session().input_paused());
    f.other.publish("u", "x", qos::at_least_once);
    CHECK_FALSE(f.other.session().input_paused());

    // Two acks let two more out (queue 3: still above the low-water mark of 2).
    const int wakes = f.pub.wakes();
    CHECK(ack_all(f.sub) == 2);
    CHECK(f.sub.session().queued() == 3);
    CHECK(f.pub.session().input_paused());
    // Two more: queue 1, the publisher is woken and read again.
    CHECK(ack_all(f.sub) == 2);
    CHECK(f.sub.session().queued() == 1);
    CHECK_FALSE(f.pub.session().input_paused());
    CHECK(f.pub.wakes() > wakes);
    CHECK(f.sub.session().throttling() == 0);
    // Everything arrives.
    std::size_t delivered = 4;
    for (int i = 0; i < 5 && f.sub.session().inflight() != 0; ++i) delivered += ack_all(f.sub);
    CHECK(delivered == 7);
    CHECK(f.e.stats().dropped_queue_full == 0);
}

TEST_CASE("backpressure: the slow subscriber going away releases the publisher") {
    fixture f;
    f.congest();
    REQUIRE(f.pub.session().input_paused());
    const int wakes = f.pub.wakes();
    SUBCASE("connection lost") {
        f.sub.lose_connection();
    }
    SUBCASE("connection object destroyed") {
        f.sub.drop();
    }
    SUBCASE("taken over by a new connection") {
        test_client again{f.e, protocol_version::v3_1_1, f.now};
        again.connect("sub");
    }
    SUBCASE("keep-alive timeout") {
        f.now += 91s;
        f.pub.session().on_timer(f.now);  // the paused publisher itself is not timed out
        CHECK_FALSE(f.pub.session().closing());
        f.sub.session().on_timer(f.now);
        CHECK(f.sub.session().closing());
    }
    CHECK_FALSE(f.pub.session().input_paused());
    CHECK(f.pub.session().throttled_by() == 0);
    CHECK(f.pub.wakes() > wakes);
}

TEST_CASE("backpressure: a paused publisher that goes away is forgotten") {
    fixture f;
    f.congest();
    REQUIRE(f.sub.session().throttling() == 1);
    f.pub.lose_connection();
    CHECK(f.sub.session().throttling() == 0);
    CHECK(ack_all(f.sub) == 2);  // draining touches no dangling publisher
    f.pub.drop();
    CHECK(ack_all(f.sub) == 2);
}

TEST_CASE("backpressure: a paused publisher is not timed out for its silence") {
    fixture f;
    f.congest();
    f.now += 200s;
    f.pub.session().on_timer(f.now);
    CHECK_FALSE(f.pub.session().closing());
    // Once released its keep-alive counts again, from the time it was last checked.
    f.sub.lose_connection();
    REQUIRE_FALSE(f.pub.session().input_paused());
    CHECK(f.pub.session().deadline() == f.now + 90s);
}

TEST_CASE("backpressure: what is not throttled") {
    fixture f;
    SUBCASE("QoS 0: dropped for a slow subscriber, never pausing the publisher") {
        for (int i = 0; i < 50; ++i) f.pub.publish("t", "m", qos::at_most_once);
        CHECK_FALSE(f.pub.session().input_paused());
    }
    SUBCASE("a persistent offline session: bounded queue, drops counted") {
        test_client away{f.e, protocol_version::v3_1_1, f.now};
        away.connect_persistent("away");
        away.subscribe("t", qos::at_least_once);
        away.lose_connection();
        f.sub.lose_connection();
        for (int i = 0; i < 12; ++i) f.pub.publish("t", "m", qos::at_least_once);
        CHECK_FALSE(f.pub.session().input_paused());
        CHECK(f.e.stats().dropped_queue_full == 4);
    }
    SUBCASE("a client publishing to its own congested subscription") {
        for (int i = 0; i < 10; ++i) f.sub.publish("t", "m", qos::at_least_once);
        CHECK_FALSE(f.sub.session().input_paused());
    }
    SUBCASE("a congested subscriber publishing to another congested one: no wait cycle") {
        f.congest();  // pub waits for sub
        REQUIRE(f.pub.session().input_paused());
        f.pub.received();  // the PUBACKs
        f.pub.subscribe("p", qos::at_least_once);
        // sub fills pub's queue, but sub holds pub paused: pausing sub too would leave
        // both waiting for each other's acknowledgements for ever.
        for (int i = 0; i < 7; ++i) f.sub.publish("p", "m", qos::at_least_once);
        CHECK(f.pub.session().queued() == 5);
        CHECK_FALSE(f.sub.session().input_paused());
        CHECK(f.sub.session().throttling() == 1);
    }
}

TEST_CASE("backpressure: a subscriber that acknowledges nothing for backpressure_timeout "
          "releases its publishers, then drops its excess until it drains") {
    fixture f;  // backpressure_timeout: the default 10 s
    const int moves = f.sub.deadline_moves();
    f.congest();
    REQUIRE(f.pub.session().input_paused());
    // The driver is told: the hold's end (10 s) comes before the keep-alive's (90 s).
    CHECK(f.sub.deadline_moves() == moves + 1);
    CHECK(f.sub.deadline_told() == f.now + 10s);  // already in deadline() when told
    CHECK(f.sub.session().deadline() == f.now + 10s);
    f.now += 9s;
    f.sub.session().on_timer(f.now);  // early: nothing happens
    CHECK(f.pub.session().input_paused());
    f.now += 1s;
    const int wakes = f.pub.wakes();
    f.sub.session().on_timer(f.now);
    CHECK_FALSE(f.pub.session().input_paused());
    CHECK(f.pub.wakes() > wakes);
    CHECK(f.sub.session().throttling() == 0);
    CHECK_FALSE(f.sub.session().closing());  // only the hold ends, not the connection
    CHECK(f.e.stats().backpressure_timeouts == 1);
    CHECK(f.sub.session().deadline() == f.now - 10s + 90s);  // the keep-alive again
    // Until it drains it pauses nobody: the queue fills to its bound (8), the rest is dropped.
    for (int i = 0; i < 5; ++i) f.pub.publish("t", "m", qos::at_least_once);
    CHECK_FALSE(f.pub.session().input_paused());
    CHECK(f.sub.session().queued() == 8);
    CHECK(f.e.stats().dropped_queue_full == 2);
    // Once it has drained (to the low-water mark), congestion pauses publishers again.
    for (int i = 0; i < 5 && f.sub.session().queued() > 1; ++i) ack_all(f.sub);
    REQUIRE(f.sub.session().queued() <= 2);
    for (int i = 0; i < 8 && !f.pub.session().input_paused(); ++i) {
        f.pub.publish("t", "m", qos::at_least_once);
    }
    CHECK(f.pub.session().input_paused());
    CHECK(f.e.stats().dropped_queue_full == 2);
}

TEST_CASE("backpressure: each acknowledgement restarts backpressure_timeout") {
    fixture f;
    f.congest();
    f.now += 9s;
    CHECK(ack_all(f.sub) == 2);  // queue 3: still over the low-water mark
    REQUIRE(f.pub.session().input_paused());
    CHECK(f.sub.session().deadline() == f.now + 10s);
    f.now += 9s;
    f.sub.session().on_timer(f.now);
    CHECK(f.pub.session().input_paused());
    f.now += 1s;
    f.sub.session().on_timer(f.now);
    CHECK_FALSE(f.pub.session().input_paused());
    CHECK(f.e.stats().backpressure_timeouts == 1);
}

TEST_CASE("backpressure: backpressure_timeout 0 holds publishers while the subscriber is connected") {
    clock::time_point now = test_epoch();
    limits l = small_queue();
    l.backpressure_timeout = 0s;
    engine e{l};
    test_client sub{e, protocol_version::v3_1_1, now};
    test_client pub{e, protocol_version::v3_1_1, now};
    sub.connect("sub");
    sub.subscribe("t", qos::at_least_once);
    pub.connect("pub");
    for (int i = 0; i < 7; ++i) pub.publish("t", "m", qos::at_least_once);
    REQUIRE(pub.session().input_paused());
    CHECK(sub.session().deadline() == now + 90s);  // the keep-alive's, nothing earlier
    now += 89s;
    sub.session().on_timer(now);
    CHECK(pub.session().input_paused());
    CHECK(e.stats().backpressure_timeouts == 0);
}
