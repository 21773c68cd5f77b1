// Delivery and session policy from mqtt::broker::limits (the mosquitto.conf options of the
// same names): max_keepalive, retain_available, upgrade_outgoing_qos.

#include <doctest/doctest.h>

#include <chrono>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::limits;
using namespace std::chrono_literals;

namespace {

connack_packet connect_ka(test_client& c, std::uint16_t keep_alive) {
    connect_packet p;
    p.client_id = "k";
    p.keep_alive = keep_alive;
    return c.connect_with(p);
}

limits keepalive_60() {
    limits l;
    l.max_keepalive = 60;
    return l;
}

limits no_retain() {
    limits l;
    l.retain_available = false;
    return l;
}

}  // namespace

TEST_CASE("limits: max_keepalive, 5.0: Server Keep Alive (MQTT-3.2.2-21)") {
    auto now = test_epoch();
    engine e{keepalive_60()};
    test_client c{e, protocol_version::v5, now};
    SUBCASE("more than the maximum") {
        const auto ack = connect_ka(c, 100);
        CHECK(ack.code == reason_code::success);
        CHECK(ack.props.server_keep_alive == 60);
        CHECK(c.session().deadline() == now + 90s);
    }
    SUBCASE("0 (none) is given the maximum") {
        CHECK(connect_ka(c, 0).props.server_keep_alive == 60);
        CHECK(c.session().deadline() == now + 90s);
    }
    SUBCASE("within the maximum: no Server Keep Alive") {
        CHECK_FALSE(connect_ka(c, 30).props.server_keep_alive.has_value());
        CHECK(c.session().deadline() == now + 45s);
    }
}

TEST_CASE("limits: max_keepalive, 3.1.1: refused with CONNACK 0x02 like Mosquitto 2") {
    auto now = test_epoch();
    engine e{keepalive_60()};
    SUBCASE("more than the maximum") {
        test_client c{e, protocol_version::v3_1_1, now};
        connect_packet p;
        p.version = protocol_version::v3_1_1;
        p.client_id = "k";
        p.keep_alive = 61;
        c.send(p);
        CHECK(c.received_bytes() == bytes{0x20, 0x02, 0x00, 0x02});
        CHECK(c.session().closing());
    }
    SUBCASE("0") {
        test_client c{e, protocol_version::v3_1_1, now};
        CHECK(connect_ka(c, 0).code == reason_code::client_identifier_not_valid);
    }
    SUBCASE("the maximum itself is fine") {
        test_client c{e, protocol_version::v3_1_1, now};
        CHECK(connect_ka(c, 60).code == reason_code::success);
    }
}

TEST_CASE("limits: retain_available = false") {
    auto now = test_epoch();
    engine e{no_retain()};
    test_client sub{e, protocol_version::v3_1_1, now};
    sub.connect("sub");
    sub.subscribe("t", qos::at_most_once);
    SUBCASE("5.0: CONNACK Retain Available 0, a retained PUBLISH gets DISCONNECT 0x9A") {
        test_client c{e, protocol_version::v5, now};
        const auto ack = c.connect("p5");
        CHECK(ack.props.retain_available == 0);
        c.publish("t", "r", qos::at_most_once, true);
        const auto in = c.received();
        REQUIRE(in.size() == 1);
        CHECK(as<disconnect_packet>(in[0]).code == reason_code::retain_not_supported);
        CHECK(c.session().closing());
        CHECK(sub.received().empty());
    }
    SUBCASE("5.0: a Will with RETAIN is refused with CONNACK 0x9A") {
        test_client c{e, protocol_version::v5, now};
        connect_packet p;
        p.client_id = "w";
        p.will = will_message{"w", "x", qos::at_most_once, true, {}};
        CHECK(c.connect_with(p).code == reason_code::retain_not_supported);
    }
    SUBCASE("3.1.1: the RETAIN flag is ignored") {
        test_client c{e, protocol_version::v3_1_1, now};
        c.connect("p3");
        c.publish("t", "r", qos::at_most_once, true);
        const auto in = sub.received();
        REQUIRE(in.size() == 1);
        CHECK_FALSE(as<publish_packet>(in[0]).retain);
        CHECK(e.retained().size() == 0);
        test_client late{e, protocol_version::v3_1_1, now};
        late.connect("late");
        late.subscribe("t", qos::at_most_once);
        CHECK(late.after_suback().empty());
    }
}

TEST_CASE("limits: upgrade_outgoing_qos delivers at the granted QoS") {
    for (const bool upgrade : {false, true}) {
        CAPTURE(upgrade);
        auto now = test_epoch();
        limits l;
        l.upgrade_outgoing_qos = upgrade;
        engine e{l};
        test_client sub{e, protocol_version::v5, now};
        sub.connect("sub");
        sub.subscribe("t", qos::exactly_once);
        test_client pub{e, protocol_version::v5, now};
        pub.connect("pub");
        pub.publish("t", "m", qos::at_most_once);
        const auto in = sub.received();
        REQUIRE(in.size() == 1);
        CHECK(as<publish_packet>(in[0]).qos_level ==
              (upgrade ? qos::exactly_once : qos::at_most_once));
    }
}

TEST_CASE("limits: a reload takes the limits read where they are used, not those announced") {
    limits running;
    limits file;
    file.max_queued_messages = 5;
    file.max_client_id_length = 30;
    file.memory_limit = 1000;
    file.upgrade_outgoing_qos = true;
    file.max_packet_size = 100;        // told to 5.0 clients in CONNACK
    file.retain_available = false;     // likewise
    file.max_inflight = 7;             // taken by a connection at its start
    engine e{running};
    e.reload_limits(file);
    CHECK(e.config().max_queued_messages == 5);
    CHECK(e.config().max_client_id_length == 30);
    CHECK(e.config().memory_limit == 1000);
    CHECK(e.config().upgrade_outgoing_qos);
    CHECK(e.config().max_packet_size == limits{}.max_packet_size);
    CHECK(e.config().retain_available);
    CHECK(e.config().max_inflight == limits{}.max_inflight);
}
