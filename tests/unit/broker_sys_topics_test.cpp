// The $SYS/broker/... topics (broker::sys_topics), driven with a hand-set clock: values,
// the interval, disabled at 0, retained from no client, only changes published, load averages.

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <string>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/sys_topics.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::sys_topics;
using namespace std::chrono_literals;

namespace {

// Every retained $SYS/broker/ message, topic -> payload.
std::map<std::string, std::string> retained_sys(const engine& e) {
    std::map<std::string, std::string> out;
    e.retained().match("$SYS/broker/#", [&](const mqtt::broker::message_ptr& m) {
        CHECK(m->retain);
        out[std::string{m->topic}] = m->payload;
        return true;
    });
    return out;
}

std::string value(const engine& e, const std::string& topic) {
    auto all = retained_sys(e);
    auto it = all.find("$SYS/broker/" + topic);
    return it == all.end() ? std::string{"<none>"} : it->second;
}

}  // namespace

TEST_CASE("sys_topics: publishes every value at start, retained, with the counts") {
    auto now = test_epoch();
    engine e;
    test_client a{e, protocol_version::v3_1_1, now};
    a.connect_persistent("a");
    a.subscribe("x/#", qos::at_least_once);
    test_client b{e, protocol_version::v5, now};
    b.connect("b");
    b.lose_connection();  // clean: ends
    test_client off{e, protocol_version::v3_1_1, now};
    off.connect_persistent("off");
    off.lose_connection();  // persistent: stays offline
    a.publish("x/1", "hello", qos::at_most_once);
    a.received();

    sys_topics sys{e, 10s, now, "tern-broker 9.9"};
    CHECK(sys.next_due() == now);
    CHECK(sys.on_timer(now) == 32);
    CHECK(sys.next_due() == now + 10s);
    CHECK(value(e, "version") == "tern-broker 9.9");
    CHECK(value(e, "uptime") == "0 seconds");
    CHECK(value(e, "clients/connected") == "1");
    CHECK(value(e, "clients/disconnected") == "1");
    CHECK(value(e, "clients/total") == "2");
    CHECK(value(e, "clients/maximum") == "2");  // a with b, then a with off
    CHECK(value(e, "messages/received") == "1");
    CHECK(value(e, "messages/sent") == "1");
    CHECK(value(e, "publish/messages/dropped") == "0");
    // Bytes are counted by the net layer (no sockets here).
    CHECK(value(e, "bytes/received") == "0");
    CHECK(value(e, "bytes/sent") == "0");
    CHECK(value(e, "load/bytes/sent/5min") == "0.00");
    CHECK(value(e, "subscriptions/count") == "1");
    CHECK(value(e, "limits/memory/refused") == "0");
    CHECK(value(e, "limits/topic/refused") == "0");
    CHECK(value(e, "limits/rate/paused") == "0");
    CHECK(value(e, "limits/memory/output") == "0");
    CHECK(std::stoul(value(e, "limits/memory/bytes")) > 0);  // the retained $SYS messages
    CHECK(value(e, "load/messages/received/1min") == "0.00");
    CHECK(value(e, "load/messages/sent/15min") == "0.00");
    // Its own topics are retained too, and counted.
    CHECK(std::stoul(value(e, "retained messages/count")) == retained_sys(e).size());

    SUBCASE("a late subscriber gets them with RETAIN set, `#` does not") {
        test_client c{e, protocol_version::v3_1_1, now};
        c.connect("c");
        c.subscribe("#", qos::at_most_once);
        CHECK(c.after_suback().empty());
        c.subscribe("$SYS/broker/uptime", qos::at_most_once, 2);
        const auto got = c.after_suback();
        REQUIRE(got.size() == 1);
        CHECK(as<publish_packet>(got[0]).retain);
        CHECK(as<publish_packet>(got[0]).payload == "0 seconds");
    }
}

TEST_CASE("sys_topics: the interval, only changed values, disabled at 0") {
    auto now = test_epoch();
    engine e;
    sys_topics sys{e, 5s, now, "v"};
    test_client c{e, protocol_version::v3_1_1, now};
    c.connect("c");
    c.subscribe("$SYS/broker/#", qos::at_most_once);
    CHECK(c.after_suback().empty());  // nothing before the first due time

    CHECK(sys.on_timer(now) > 0);
    const auto first = c.received();
    CHECK(first.size() == 32);
    // Before the interval: nothing.
    CHECK(sys.on_timer(now + 4s) == 0);
    CHECK(c.received().empty());
    // At it: only what changed, here the uptime (and messages/sent, which counts the
    // deliveries of $SYS messages to this subscriber, and its load averages).
    now += 5s;
    CHECK(sys.on_timer(now) > 0);
    std::map<std::string, std::string> got;
    for (const auto& p : c.received()) {
        const auto& pub = as<publish_packet>(p);
        got[pub.topic] = pub.payload;
    }
    CHECK(got["$SYS/broker/uptime"] == "5 seconds");
    CHECK(got.count("$SYS/broker/version") == 0);
    CHECK(got.count("$SYS/broker/clients/connected") == 0);
    CHECK(got.count("$SYS/broker/messages/received") == 0);
    // A stalled loop skips slots instead of publishing a burst.
    CHECK(sys.on_timer(now + 23s) > 0);
    CHECK(sys.next_due() == now + 25s);

    SUBCASE("0 disables") {
        engine e0;
        sys_topics off{e0, 0s, now, "v"};
        CHECK_FALSE(off.enabled());
        CHECK(off.next_due() == clock::time_point::max());
        CHECK(off.on_timer(now + 100s) == 0);
        CHECK(e0.retained().size() == 0);
    }
}

TEST_CASE("sys_topics: load averages decay towards the per-minute rate") {
    auto now = test_epoch();
    engine e;
    sys_topics sys{e, 10s, now, "v"};
    sys.on_timer(now);  // no subscribers: $SYS deliveries do not add to messages/sent
    // 60 messages received in each 10 s interval: 360 per minute.
    auto& st = e.stats();
    for (int i = 1; i <= 6; ++i) {
        st.messages_received += 60;
        now += 10s;
        sys.on_timer(now);
    }
    // After one minute at a constant rate r: avg = r * (1 - exp(-60 / window)).
    const auto& l = sys.received_load();
    CHECK(l.m1 == doctest::Approx(360 * (1 - std::exp(-1.0))).epsilon(1e-9));
    CHECK(l.m5 == doctest::Approx(360 * (1 - std::exp(-60.0 / 300))).epsilon(1e-9));
    CHECK(l.m15 == doctest::Approx(360 * (1 - std::exp(-60.0 / 900))).epsilon(1e-9));
    CHECK(value(e, "load/messages/received/1min") == "227.56");
    CHECK(value(e, "load/messages/sent/1min") == "0.00");
    // Then idle for a minute: each average falls by exp(-60 / window).
    const auto busy = l;
    for (int i = 0; i < 6; ++i) {
        now += 10s;
        sys.on_timer(now);
    }
    CHECK(sys.received_load().m1 == doctest::Approx(busy.m1 * std::exp(-1.0)).epsilon(1e-9));
    CHECK(sys.received_load().m15 ==
          doctest::Approx(busy.m15 * std::exp(-60.0 / 900)).epsilon(1e-9));
}
