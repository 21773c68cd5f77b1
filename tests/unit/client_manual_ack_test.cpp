// The client session's manual acknowledgement (session_config::manual_ack), which the bridge
// uses to hold a source's PUBACK/PUBREC until the destination has the message.

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "client_test_wire.hpp"
#include "mqtt/client/session.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"

namespace {

using namespace mqtt::protocol;
namespace client = mqtt::client;
using client::clock;
using namespace std::chrono_literals;

struct held_peer {
    explicit held_peer(protocol_version v) : version(v) {
        client::session_config cfg;
        cfg.connect.version = v;
        cfg.connect.client_id = "bridge";
        cfg.manual_ack = true;
        s = std::make_unique<client::session>(cfg);
        s->start(now);
        (void)sent();
        feed(connack_packet{});
        REQUIRE(s->state() == client::session_state::connected);
        (void)s->take_events();
    }
    void feed(const packet& p) { tern_test::feed_packet(*s, p, version, now); }
    std::vector<packet> sent() { return tern_test::take_sent(*s, version); }
    // The one message event, or a failed check.
    client::message_event message() {
        auto ev = s->take_events();
        REQUIRE(ev.size() == 1);
        REQUIRE(std::holds_alternative<client::message_event>(ev[0]));
        return std::get<client::message_event>(ev[0]);
    }
    void reconnect(bool session_present) {
        s->on_transport_closed({});
        (void)s->take_events();
        s->reconnect(now);
        (void)sent();
        connack_packet ack;
        ack.session_present = session_present;
        feed(ack);
        (void)s->take_events();
    }
    protocol_version version;
    clock::time_point now = clock::time_point{} + 1000s;
    std::unique_ptr<client::session> s;
};

publish_packet msg(std::string payload, qos q, std::uint16_t id, bool dup = false) {
    publish_packet p;
    p.topic = "t";
    p.payload = std::move(payload);
    p.qos_level = q;
    p.packet_id = id;
    p.dup = dup;
    return p;
}

}  // namespace

TEST_CASE("client session manual_ack: QoS 1 PUBACK waits for acknowledge()") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(v);
        held_peer h(v);
        h.feed(msg("zero", qos::at_most_once, 0));
        CHECK(h.message().ack_token == 0);  // QoS 0: nothing to hold
        h.feed(msg("one", qos::at_least_once, 7));
        const auto m = h.message();
        CHECK(m.message.payload == "one");
        CHECK(m.ack_token != 0);
        CHECK(h.sent().empty());
        CHECK(h.s->held() == 1);
        // A resend before the acknowledgement is not a second delivery.
        h.feed(msg("one", qos::at_least_once, 7, true));
        CHECK(h.s->take_events().empty());
        CHECK(h.sent().empty());
        CHECK(h.s->acknowledge(m.ack_token));
        auto out = h.sent();
        REQUIRE(out.size() == 1);
        CHECK(std::get<puback_packet>(out[0]).packet_id == 7);
        CHECK_FALSE(h.s->acknowledge(m.ack_token));  // once only
        CHECK(h.sent().empty());
        CHECK(h.s->held() == 0);
    }
}

TEST_CASE("client session manual_ack: QoS 2 PUBREC waits, then exactly once") {
    held_peer h(protocol_version::v5);
    h.feed(msg("two", qos::exactly_once, 9));
    const auto m = h.message();
    CHECK(h.sent().empty());
    h.feed(msg("two", qos::exactly_once, 9, true));
    CHECK(h.s->take_events().empty());
    CHECK(h.sent().empty());
    // Acknowledged out of order with a second message: each gets its own PUBREC.
    h.feed(msg("three", qos::exactly_once, 10));
    const auto m2 = h.message();
    CHECK(h.s->acknowledge(m2.ack_token));
    CHECK(std::get<pubrec_packet>(h.sent().at(0)).packet_id == 10);
    CHECK(h.s->acknowledge(m.ack_token));
    CHECK(std::get<pubrec_packet>(h.sent().at(0)).packet_id == 9);
    // Acknowledged now: a late resend gets PUBREC again and no delivery.
    h.feed(msg("two", qos::exactly_once, 9, true));
    CHECK(h.s->take_events().empty());
    CHECK(std::get<pubrec_packet>(h.sent().at(0)).packet_id == 9);
    h.feed(pubrel_packet{9, reason_code::success, {}});
    CHECK(std::get<pubcomp_packet>(h.sent().at(0)).code == reason_code::success);
}

TEST_CASE("client session manual_ack: 5.0 refusal code, held messages across reconnects") {
    SUBCASE("a refusal ends the QoS 2 exchange") {
        held_peer h(protocol_version::v5);
        h.feed(msg("x", qos::exactly_once, 3));
        const auto m = h.message();
        CHECK(h.s->acknowledge(m.ack_token, reason_code::quota_exceeded));
        CHECK(std::get<pubrec_packet>(h.sent().at(0)).code == reason_code::quota_exceeded);
        h.feed(msg("y", qos::exactly_once, 3));  // the id is free again: a new message
        CHECK(h.message().message.payload == "y");
    }
    SUBCASE("kept session: the broker's resend is not delivered twice, the ack goes later") {
        held_peer h(protocol_version::v3_1_1);
        h.feed(msg("one", qos::at_least_once, 5));
        const auto m = h.message();
        h.reconnect(true);
        h.feed(msg("one", qos::at_least_once, 5, true));
        CHECK(h.s->take_events().empty());
        CHECK(h.s->acknowledge(m.ack_token));
        CHECK(std::get<puback_packet>(h.sent().at(0)).packet_id == 5);
    }
    SUBCASE("session not kept: old tokens are void, the same id is a new message") {
        held_peer h(protocol_version::v5);
        h.feed(msg("old", qos::exactly_once, 5));
        const auto m = h.message();
        h.reconnect(false);
        CHECK(h.s->held() == 0);
        h.feed(msg("new", qos::exactly_once, 5));
        const auto n = h.message();
        CHECK(n.message.payload == "new");
        CHECK_FALSE(h.s->acknowledge(m.ack_token));  // must not acknowledge "new"
        CHECK(h.sent().empty());
        CHECK(h.s->acknowledge(n.ack_token));
        CHECK(std::get<pubrec_packet>(h.sent().at(0)).packet_id == 5);
    }
    SUBCASE("acknowledged while disconnected: QoS 2 resend answered, not delivered") {
        held_peer h(protocol_version::v5);
        h.feed(msg("q2", qos::exactly_once, 8));
        const auto m = h.message();
        h.s->on_transport_closed({});
        (void)h.s->take_events();
        CHECK(h.s->acknowledge(m.ack_token));
        CHECK(h.sent().empty());
        h.s->reconnect(h.now);
        (void)h.sent();
        connack_packet ack;
        ack.session_present = true;
        h.feed(ack);
        (void)h.s->take_events();
        h.feed(msg("q2", qos::exactly_once, 8, true));
        CHECK(h.s->take_events().empty());
        CHECK(std::get<pubrec_packet>(h.sent().at(0)).packet_id == 8);
    }
}

TEST_CASE("client session: set_credentials changes the next CONNECT only, a held message stays") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(v);
        held_peer h(v);
        h.feed(msg("one", qos::at_least_once, 3));
        const auto m = h.message();
        h.s->set_credentials("new-user", "new-secret");
        CHECK(h.sent().empty());  // nothing sent on the current connection
        h.s->on_transport_closed({});
        (void)h.s->take_events();
        h.s->reconnect(h.now);
        auto out = h.sent();
        REQUIRE(out.size() == 1);
        const auto* c = std::get_if<connect_packet>(&out[0]);
        REQUIRE(c);
        CHECK(c->username == "new-user");
        CHECK(c->password == "new-secret");
        CHECK(c->client_id == "bridge");
        CHECK_FALSE(c->clean_start);  // the session is resumed, not started anew
        connack_packet ack;
        ack.session_present = true;
        h.feed(ack);
        (void)h.s->take_events();
        // The message held before is still acknowledged with its packet id.
        CHECK(h.s->acknowledge(m.ack_token));
        out = h.sent();
        REQUIRE(out.size() == 1);
        const auto* puback = std::get_if<puback_packet>(&out[0]);
        REQUIRE(puback);
        CHECK(puback->packet_id == 3);
    }
}

TEST_CASE("client session: application packet ids, PUBREC reported, PUBREL restored") {
    const auto v = protocol_version::v5;
    const auto now = clock::time_point{} + 1000s;
    client::session_config cfg;
    cfg.connect.version = v;
    cfg.connect.client_id = "bridge";
    cfg.keep_unacknowledged = true;
    cfg.first_auto_id = 32769;
    cfg.report_pubrec = true;

    SUBCASE("ids below first_auto_id are the application's, with DUP kept") {
        client::session s(cfg);
        s.start(now);
        (void)tern_test::take_sent(s, v);
        tern_test::feed_packet(s, connack_packet{}, v, now);
        (void)s.take_events();
        auto auto_id = s.publish(msg("a", qos::at_least_once, 0), now);
        REQUIRE(auto_id);
        CHECK(*auto_id == 32769);
        auto mine = s.publish_with_id(msg("b", qos::exactly_once, 0, true), 7, now);
        REQUIRE(mine);
        CHECK(*mine == 7);
        CHECK(!s.publish_with_id(msg("c", qos::at_least_once, 0), 7, now));      // in use
        CHECK(!s.publish_with_id(msg("c", qos::at_least_once, 0), 40000, now));  // not ours
        CHECK(!s.publish_with_id(msg("c", qos::at_most_once, 0), 8, now));
        auto sent = tern_test::take_sent(s, v);
        REQUIRE(sent.size() == 2);
        const auto& p = std::get<publish_packet>(sent[1]);
        CHECK(p.packet_id == 7);
        CHECK(p.dup);
        // PUBREC is reported (received) before the PUBCOMP's done event.
        tern_test::feed_packet(s, pubrec_packet{7, reason_code::success, {}}, v, now);
        auto ev = s.take_events();
        REQUIRE(ev.size() == 1);
        const auto& rec = std::get<client::publish_done_event>(ev[0]);
        CHECK(rec.packet_id == 7);
        CHECK(rec.received);
        tern_test::feed_packet(s, pubcomp_packet{7, reason_code::success, {}}, v, now);
        ev = s.take_events();
        REQUIRE(ev.size() == 1);
        CHECK(!std::get<client::publish_done_event>(ev[0]).received);
    }
    SUBCASE("a restored PUBREL goes at CONNACK when the session is kept") {
        client::session s(cfg);
        REQUIRE(s.restore_released(5));
        CHECK(!s.restore_released(5));
        s.start(now);
        (void)tern_test::take_sent(s, v);
        connack_packet ack;
        ack.session_present = true;
        tern_test::feed_packet(s, ack, v, now);
        (void)s.take_events();
        auto sent = tern_test::take_sent(s, v);
        REQUIRE(sent.size() == 1);
        CHECK(std::get<pubrel_packet>(sent[0]).packet_id == 5);
        tern_test::feed_packet(s, pubcomp_packet{5, reason_code::success, {}}, v, now);
        auto ev = s.take_events();
        REQUIRE(ev.size() == 1);
        CHECK(std::get<client::publish_done_event>(ev[0]).packet_id == 5);
        CHECK(s.unacknowledged() == 0);
    }
    SUBCASE("...and is done at once when the broker forgot the session") {
        client::session s(cfg);
        REQUIRE(s.restore_released(5));
        s.start(now);
        (void)tern_test::take_sent(s, v);
        tern_test::feed_packet(s, connack_packet{}, v, now);
        auto ev = s.take_events();
        REQUIRE(ev.size() == 2);  // connected, done
        CHECK(std::get<client::publish_done_event>(ev[1]).packet_id == 5);
        CHECK(tern_test::take_sent(s, v).empty());
    }
}
