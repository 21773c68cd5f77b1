// Authentication and ACLs in the broker engine, driven by packets and a hand-set clock: the
// exact CONNACK, SUBACK, PUBACK and PUBREC codes (Mosquitto 2's, but for 5.0 CONNACK 0x86 for
// bad credentials and SUBACK 0x87 / 0x80 for a filter the client could read nothing under),
// the password check asked of the driver (take_auth_request / on_auth_result), the refusal
// delay, and ACL checks on subscribe, publish, delivery, retained messages and Wills.

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string_view>
#include <utility>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/security.hpp"

using namespace tern_test;
using mqtt::broker::acl_file;
using mqtt::broker::engine;
using mqtt::broker::password_file;
using mqtt::broker::security_policy;
using mqtt::broker::session_state;
using namespace std::chrono_literals;

namespace {

// alice / secret and bob / hunter2, written by mosquitto_passwd 2.0.11 (-c -b).
constexpr std::string_view passwords =
    "alice:$7$101$aYimq97iKyOmUASV$Bwkpowd42EWikslw+IcK08PGwcu8Kx6VPkuJKtY2QZrnEnP+eLkeTEKCCSGG"
    "a5bvLIB3LjOt1RfJCkwraYDp/g==\n"
    "bob:$7$101$XKeFYdiZrnL7IbI+$yfUeB2jZBK0/w7pIbp6yOKHB0dcdchZJEgHupJ07pcMRq25TatrVN0FwupitIzc"
    "TBIqnWyGL7vNxDJjaOUGIfQ==\n";

std::shared_ptr<const security_policy> policy(bool anonymous, bool with_passwords,
                                              std::string_view acl = {}) {
    auto p = std::make_shared<security_policy>();
    p->allow_anonymous = anonymous;
    if (with_passwords) {
        p->passwords = std::make_shared<const password_file>(password_file::parse(passwords, "pw"));
    }
    if (!acl.empty()) {
        auto parsed = acl_file::parse(acl, "acl");
        REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
        p->acl = std::make_shared<const acl_file>(std::move(*parsed.value));
    }
    return p;
}

connect_packet connect_as(protocol_version v, std::string id, std::optional<std::string> user,
                          std::optional<std::string> password = std::nullopt) {
    connect_packet c;
    c.version = v;
    c.client_id = std::move(id);
    c.username = std::move(user);
    c.password = std::move(password);
    return c;
}

// What a driver does: take the request, check it (here on this thread), answer.
void answer_auth(test_client& c, clock::time_point now) {
    auto r = c.session().take_auth_request();
    REQUIRE(r.has_value());
    CHECK_FALSE(c.session().take_auth_request().has_value());  // handed out once
    c.session().on_auth_result(r->passwords->check(r->username, r->password), now);
}

// A client with a user name and its password, past the check, CONNACK 0 expected.
void login(test_client& c, std::string id, std::string user, std::string password,
           clock::time_point now) {
    connect_packet p = connect_as(c.version(), std::move(id), std::move(user), std::move(password));
    c.send(p);
    answer_auth(c, now);
    auto in = c.received();
    REQUIRE(!in.empty());
    CHECK(as<connack_packet>(in[0]).code == reason_code::success);
}

}  // namespace

TEST_CASE("auth: anonymous clients with allow_anonymous false get CONNACK 5 / 0x87") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(to_string(v));
        engine e;
        e.set_security(policy(false, true));
        auto now = test_epoch();
        test_client c{e, v, now};
        connect_packet p = connect_as(v, "anon", std::nullopt);
        c.send(p);
        // Refused at once: there is no password to guess.
        const auto out = c.received_bytes();
        if (v == protocol_version::v5) {
            CHECK(out == bytes{0x20, 0x03, 0x00, 0x87, 0x00});
        } else {
            CHECK(out == bytes{0x20, 0x02, 0x00, 0x05});
        }
        CHECK(c.session().closing());
        CHECK(e.stats().auth_failures == 1);
        CHECK(e.find_session("anon") == nullptr);
    }
}

TEST_CASE("auth: allow_anonymous true lets anonymous clients in, a password_file or not") {
    engine e;
    e.set_security(policy(true, true));
    auto now = test_epoch();
    test_client c{e, protocol_version::v3_1_1, now};
    c.connect("anon");
    CHECK(c.session().state() == session_state::connected);
}

TEST_CASE("auth: the right password, checked off the session by the driver") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(to_string(v));
        engine e;
        e.set_security(policy(false, true));
        auto now = test_epoch();
        test_client c{e, v, now};
        connect_packet p = connect_as(v, "a1", "alice", "secret");
        c.send(p);
        CHECK(c.session().state() == session_state::authenticating);
        CHECK(c.session().input_paused());  // later packets wait in the driver
        CHECK_FALSE(c.session().has_output());
        auto r = c.session().take_auth_request();
        REQUIRE(r.has_value());
        CHECK(r->username == "alice");
        CHECK(r->password == "secret");
        c.session().on_auth_result(r->passwords->check(r->username, r->password), now);
        auto in = c.received();
        REQUIRE(in.size() == 1);
        CHECK(as<connack_packet>(in[0]).code == reason_code::success);
        CHECK(c.session().state() == session_state::connected);
        CHECK_FALSE(c.session().input_paused());
        REQUIRE(e.find_session("a1") != nullptr);
        REQUIRE(e.find_session("a1")->username() != nullptr);
        CHECK(*e.find_session("a1")->username() == "alice");
    }
}

TEST_CASE("auth: a wrong password is refused with CONNACK 5 / 0x86 after the delay") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(to_string(v));
        engine e;
        e.set_security(policy(true, true));  // anonymous allowed: a bad password still fails
        auto now = test_epoch();
        test_client c{e, v, now};
        connect_packet p = connect_as(v, "a1", "alice", "Secret");
        c.send(p);
        answer_auth(c, now);
        // Nothing yet: the refusal waits auth_failure_delay (1 s).
        CHECK_FALSE(c.session().has_output());
        CHECK_FALSE(c.session().closing());
        CHECK(c.session().deadline() == now + 1s);
        c.session().on_timer(now + 999ms);
        CHECK_FALSE(c.session().has_output());
        c.session().on_timer(now + 1s);
        const auto out = c.received_bytes();
        if (v == protocol_version::v5) {
            CHECK(out == bytes{0x20, 0x03, 0x00, 0x86, 0x00});  // Bad User Name or Password
        } else {
            CHECK(out == bytes{0x20, 0x02, 0x00, 0x05});
        }
        CHECK(c.session().closing());
        CHECK(e.stats().auth_failures == 1);
        CHECK(e.stats().connects_rejected == 1);
        CHECK(e.find_session("a1") == nullptr);
    }
}

TEST_CASE("auth: unknown users and a user name without a password are refused") {
    // Both are bad credentials: 5.0 0x86 Bad User Name or Password, 3.1.1 5 (not 4, as
    // Mosquitto), after the delay.
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(to_string(v));
        const bytes refused = v == protocol_version::v5 ? bytes{0x20, 0x03, 0x00, 0x86, 0x00}
                                                        : bytes{0x20, 0x02, 0x00, 0x05};
        engine e;
        e.set_security(policy(true, true));
        auto now = test_epoch();
        test_client unknown{e, v, now};
        unknown.send(connect_as(v, "m1", "mallory", "secret"));
        answer_auth(unknown, now);
        CHECK_FALSE(unknown.session().has_output());
        unknown.session().on_timer(now + 1s);
        CHECK(unknown.received_bytes() == refused);

        test_client no_password{e, v, now};
        no_password.send(connect_as(v, "a1", "alice"));
        CHECK_FALSE(no_password.session().take_auth_request().has_value());  // nothing to check
        CHECK(no_password.session().state() == session_state::authenticating);
        no_password.session().on_timer(now + 1s);
        CHECK(no_password.received_bytes() == refused);
        CHECK(e.stats().auth_failures == 2);
    }
}

TEST_CASE("auth: a user name without a password_file follows allow_anonymous (Mosquitto 2)") {
    auto now = test_epoch();
    {
        engine e;
        e.set_security(policy(true, false));
        test_client c{e, protocol_version::v3_1_1, now};
        const auto ack =
            c.connect_with(connect_as(protocol_version::v3_1_1, "c", "anyone", "anything"));
        CHECK(ack.code == reason_code::success);
    }
    {
        // No password_file to say the credentials are wrong: not authorised (5 / 0x87), at once.
        engine e;
        e.set_security(policy(false, false));
        test_client c{e, protocol_version::v3_1_1, now};
        c.send(connect_as(protocol_version::v3_1_1, "c", "anyone", "anything"));
        CHECK(c.received_bytes() == bytes{0x20, 0x02, 0x00, 0x05});
        test_client c5{e, protocol_version::v5, now};
        c5.send(connect_as(protocol_version::v5, "c5", "anyone", "anything"));
        CHECK(c5.received_bytes() == bytes{0x20, 0x03, 0x00, 0x87, 0x00});
    }
}

TEST_CASE("auth: a password check that never answers ends at the connect timeout") {
    engine e;
    e.set_security(policy(false, true));
    auto now = test_epoch();
    test_client c{e, protocol_version::v5, now};
    c.send(connect_as(protocol_version::v5, "a1", "alice", "secret"));
    REQUIRE(c.session().take_auth_request().has_value());
    CHECK(c.session().deadline() == now + 10s);
    c.session().on_timer(now + 10s);
    CHECK(c.session().closing());
    CHECK_FALSE(c.session().has_output());
    // A late answer changes nothing.
    c.session().on_auth_result(true, now + 11s);
    CHECK_FALSE(c.session().has_output());
}

namespace {

constexpr std::string_view acl_rules =
    "topic read public/#\n"
    "user alice\n"
    "topic readwrite alice/#\n"
    "topic write public/#\n"
    "topic readwrite will/alice\n"
    "topic read clients/#\n"
    "user bob\n"
    "topic read alice/#\n"
    "pattern readwrite clients/%c/#\n";

}  // namespace

TEST_CASE("acl: a denied PUBLISH is acknowledged with 0x87 in 5.0, success before, and dropped") {
    engine e;
    e.set_security(policy(false, true, acl_rules));
    auto now = test_epoch();
    test_client alice{e, protocol_version::v5, now};
    login(alice, "a1", "alice", "secret", now);
    test_client bob5{e, protocol_version::v5, now};
    login(bob5, "b5", "bob", "hunter2", now);
    test_client bob3{e, protocol_version::v3_1_1, now};
    login(bob3, "b3", "bob", "hunter2", now);
    // alice may read alice/# and clients/#: "#" is granted (each delivery is checked).
    CHECK(alice.subscribe("#", qos::exactly_once) == std::vector{reason_code::granted_qos_2});

    bob5.publish("alice/x", "no", qos::at_least_once, false, 7);
    CHECK(bob5.received_bytes() == bytes{0x40, 0x03, 0x00, 0x07, 0x87});
    bob5.publish("alice/x", "no", qos::exactly_once, false, 8);
    CHECK(bob5.received_bytes() == bytes{0x50, 0x03, 0x00, 0x08, 0x87});
    bob3.publish("alice/x", "no", qos::at_least_once, false, 9);
    CHECK(bob3.received_bytes() == bytes{0x40, 0x02, 0x00, 0x09});
    bob3.publish("alice/x", "no", qos::exactly_once, false, 10);
    CHECK(bob3.received_bytes() == bytes{0x50, 0x02, 0x00, 0x0A});  // PUBREC, then PUBREL works
    bob3.send(pubrel_packet{10, reason_code::success, {}});
    CHECK(bob3.received_bytes() == bytes{0x70, 0x02, 0x00, 0x0A});
    CHECK(alice.received().empty());  // none of them was routed
    CHECK(e.stats().dropped_acl == 4);

    // Allowed: the pattern for bob's own client id.
    bob5.publish("clients/b5/state", "yes", qos::at_least_once, false, 11);
    CHECK(bob5.received_bytes() == bytes{0x40, 0x02, 0x00, 0x0B});
    const auto got = alice.received();
    REQUIRE(got.size() == 1);
    CHECK(as<publish_packet>(got[0]).topic == "clients/b5/state");
}

TEST_CASE(
    "acl: SUBACK 0x87 (5.0) / 0x80 (3.1.1) for a filter the client could read nothing under") {
    engine e;
    e.set_security(policy(true, true, acl_rules));
    auto now = test_epoch();
    test_client alice{e, protocol_version::v5, now};
    login(alice, "a1", "alice", "secret", now);
    alice.publish("public/kept", "r", qos::at_most_once, true);
    alice.publish("alice/kept", "r", qos::at_most_once, true);
    for (auto v : {protocol_version::v5, protocol_version::v3_1_1}) {
        CAPTURE(to_string(v));
        const bool v5 = v == protocol_version::v5;
        const std::uint8_t no = v5 ? 0x87 : 0x80;
        test_client bob{e, v, now};
        const std::string id = v5 ? "b5" : "b3";
        login(bob, id, "bob", "hunter2", now);
        // bob reads alice/# and, by the pattern, clients/<its id>/#; nothing under public/.
        subscribe_packet sp;
        sp.packet_id = 0x1234;
        const std::string filters[] = {
            "alice/#",           "public/#",         "#",
            "$share/g/public/x", "$share/g/alice/+", "clients/" + id + "/+",
            "alice/kept",        "clients/other/#"};
        for (const auto& f : filters) sp.subscriptions.push_back({f, {qos::at_least_once}});
        bob.send(sp);
        const auto out = bob.received_bytes();
        // SUBACK: granted QoS 1 for alice/#, 0x87/0x80 for public/#, 1 for # (alice/x lies
        // in it), refused for the shared public/x, 1 for the shared alice/+, 1 for its
        // clients/ topics, 1 for alice/kept, refused for another client's; then the retained
        // alice/kept twice (alice/# and alice/kept; "#" too), never public/kept.
        const bytes suback =
            v5 ? bytes{0x90, 0x0B, 0x12, 0x34, 0x00, 0x01, no, 0x01, no, 0x01, 0x01, 0x01, no}
               : bytes{0x90, 0x0A, 0x12, 0x34, 0x01, no, 0x01, no, 0x01, 0x01, 0x01, no};
        REQUIRE(out.size() >= suback.size());
        CHECK(bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(suback.size())) ==
              suback);
        bob.send(sp);  // the same again, to read the retained messages decoded
        auto in = bob.received();
        REQUIRE(!in.empty());
        CHECK(as<suback_packet>(in[0]).codes.size() == 8);
        for (std::size_t i = 1; i < in.size(); ++i) {
            CHECK(as<publish_packet>(in[i]).topic == "alice/kept");
        }
        CHECK(in.size() > 1);
        const auto* ds = e.find_session(id);
        REQUIRE(ds != nullptr);
        CHECK(ds->subscriptions.contains("alice/#"));
        CHECK_FALSE(ds->subscriptions.contains("public/#"));
        CHECK_FALSE(ds->subscriptions.contains("$share/g/public/x"));
        CHECK(ds->subscriptions.contains("$share/g/alice/+"));
    }
}

TEST_CASE("acl: a refused SUBSCRIBE ends an earlier grant, a SIGHUP revokes nothing") {
    // Anonymous clients (pub) may write everywhere; bob reads news/# or, later, other/#.
    constexpr std::string_view reads_news = "topic write #\nuser bob\ntopic read news/#\n";
    constexpr std::string_view reads_other = "topic write #\nuser bob\ntopic read other/#\n";
    engine e;
    e.set_security(policy(true, true, reads_news));
    auto now = test_epoch();
    test_client pub{e, protocol_version::v3_1_1, now};
    pub.connect("pub");
    test_client bob{e, protocol_version::v5, now};
    login(bob, "b", "bob", "hunter2", now);
    CHECK(bob.subscribe("news/#", qos::at_most_once) == std::vector{reason_code::success});
    // New rules (SIGHUP) without news/: the subscription stays, its deliveries are refused.
    e.set_security(policy(true, true, reads_other));
    CHECK(e.find_session("b")->subscriptions.contains("news/#"));
    pub.publish("news/1", "x");
    CHECK(bob.received().empty());
    // Rules that allow it again: the same subscription delivers, nothing to subscribe again.
    e.set_security(policy(true, true, reads_news));
    pub.publish("news/2", "y");
    auto got = bob.received();
    REQUIRE(got.size() == 1);
    CHECK(as<publish_packet>(got[0]).topic == "news/2");
    // Subscribing again under rules that refuse it: 0x87, and the old subscription is gone.
    e.set_security(policy(true, true, reads_other));
    CHECK(bob.subscribe("news/#", qos::at_most_once) == std::vector{reason_code::not_authorized});
    CHECK_FALSE(e.find_session("b")->subscriptions.contains("news/#"));
    e.set_security(policy(true, true, reads_news));
    pub.publish("news/3", "z");
    CHECK(bob.received().empty());
    // Without an acl_file every filter is granted.
    e.set_security(policy(true, true));
    CHECK(bob.subscribe("anything/#", qos::at_most_once) == std::vector{reason_code::success});
}

TEST_CASE("acl: every delivery is checked against the subscriber's read rules") {
    engine e;
    e.set_security(policy(true, true, acl_rules));
    auto now = test_epoch();
    test_client alice{e, protocol_version::v3_1_1, now};
    login(alice, "a1", "alice", "secret", now);
    test_client bob{e, protocol_version::v3_1_1, now};
    login(bob, "b1", "bob", "hunter2", now);
    test_client anon{e, protocol_version::v3_1_1, now};
    anon.connect("n1");
    // "#" holds topics each may read, so it is granted; deliveries are checked one by one.
    CHECK(bob.subscribe("#", qos::at_most_once) == std::vector{reason_code::success});
    CHECK(anon.subscribe("#", qos::at_most_once) == std::vector{reason_code::success});
    alice.publish("alice/news", "1");
    alice.publish("public/news", "2");
    auto b = bob.received();
    REQUIRE(b.size() == 1);  // bob reads alice/#, not public/#
    CHECK(as<publish_packet>(b[0]).topic == "alice/news");
    auto n = anon.received();
    REQUIRE(n.size() == 1);  // anonymous clients read public/#
    CHECK(as<publish_packet>(n[0]).topic == "public/news");

    // Retained messages sent on subscribe are checked too.
    alice.publish("alice/kept", "r", qos::at_most_once, true);
    alice.publish("public/kept", "r", qos::at_most_once, true);
    (void)bob.received();
    (void)anon.received();
    test_client anon2{e, protocol_version::v3_1_1, now};
    anon2.connect("n2");
    CHECK(anon2.subscribe("+/kept", qos::at_most_once) == std::vector{reason_code::success});
    const auto retained = anon2.after_suback();
    REQUIRE(retained.size() == 1);
    CHECK(as<publish_packet>(retained[0]).topic == "public/kept");

    // A new ACL (SIGHUP) applies to connected clients at once.
    e.set_security(
        policy(true, true, "user alice\ntopic write #\nuser bob\ntopic read public/#\n"));
    alice.publish("alice/news", "3");
    alice.publish("public/news", "4");
    b = bob.received();
    REQUIRE(b.size() == 1);
    CHECK(as<publish_packet>(b[0]).topic == "public/news");
}

TEST_CASE("acl: a Will its client may not write is not published") {
    engine e;
    e.set_security(policy(true, true, acl_rules));
    auto now = test_epoch();
    test_client watcher{e, protocol_version::v3_1_1, now};
    login(watcher, "w", "alice", "secret", now);
    CHECK(watcher.subscribe("will/#", qos::at_most_once) == std::vector{reason_code::success});
    for (const char* topic : {"will/alice", "will/other"}) {
        CAPTURE(topic);
        test_client c{e, protocol_version::v3_1_1, now};
        connect_packet p =
            connect_as(protocol_version::v3_1_1, std::string{"wc-"} + topic, "alice", "secret");
        will_message w;
        w.topic = topic;
        w.payload = "gone";
        p.will = w;
        c.send(p);
        answer_auth(c, now);
        CHECK(as<connack_packet>(c.received().at(0)).code == reason_code::success);
        c.lose_connection();
        const auto got = watcher.received();
        if (std::string_view{topic} == "will/alice") {
            REQUIRE(got.size() == 1);
            CHECK(as<publish_packet>(got[0]).topic == "will/alice");
        } else {
            CHECK(got.empty());
        }
    }
    CHECK(e.stats().dropped_acl == 1);
}

TEST_CASE("auth: use_identity_as_username takes the certificate's name, not CONNECT's") {
    engine e;
    e.set_security(policy(false, true, acl_rules));
    auto now = test_epoch();
    // The certificate says alice; CONNECT claims bob with a wrong password. No password
    // check is asked for (the handshake verified the certificate), and the ACL sees alice.
    test_client cert{e, protocol_version::v5, now};
    cert.session().use_certificate_username("alice");
    cert.send(connect_as(protocol_version::v5, "c1", "bob", "wrong"));
    CHECK_FALSE(cert.session().take_auth_request().has_value());
    auto in = cert.received();
    REQUIRE(!in.empty());
    CHECK(as<connack_packet>(in[0]).code == reason_code::success);
    cert.publish("alice/x", "mine", qos::at_least_once, false, 3);
    // alice may write alice/#: accepted (0x10, no subscriber matched), not refused (0x87).
    CHECK(cert.received_bytes() == bytes{0x40, 0x03, 0x00, 0x03, 0x10});
    cert.publish("clients/other/x", "no", qos::at_least_once, false, 4);
    CHECK(cert.received_bytes() == bytes{0x40, 0x03, 0x00, 0x04, 0x87});
    CHECK(e.stats().dropped_acl == 1);

    // Without a CONNECT user name at all, allow_anonymous false: still alice, still in.
    test_client anon{e, protocol_version::v3_1_1, now};
    anon.session().use_certificate_username("alice");
    anon.send(connect_as(protocol_version::v3_1_1, "c2", std::nullopt));
    in = anon.received();
    REQUIRE(!in.empty());
    CHECK(as<connack_packet>(in[0]).code == reason_code::success);

    // A certificate without the name: refused as not authorised (CONNACK 5 in 3.1.1, 0x87
    // in 5.0: no identity, rather than a wrong one), whatever CONNECT's password.
    test_client none{e, protocol_version::v3_1_1, now};
    none.session().use_certificate_username(std::nullopt);
    none.send(connect_as(protocol_version::v3_1_1, "c3", "alice", "secret"));
    CHECK(none.received_bytes() == bytes{0x20, 0x02, 0x00, 0x05});
    test_client none5{e, protocol_version::v5, now};
    none5.session().use_certificate_username(std::nullopt);
    none5.send(connect_as(protocol_version::v5, "c4", "alice", "secret"));
    CHECK(none5.received_bytes() == bytes{0x20, 0x03, 0x00, 0x87, 0x00});
    CHECK(e.stats().auth_failures == 2);
}

TEST_CASE("auth: per-listener policies (security slots) apply to their own clients") {
    engine e;
    e.set_security(policy(true, false));                // slot 0: anonymous, no ACL
    e.set_security(policy(false, true, acl_rules), 2);  // slot 2: passwords and the ACL
    auto now = test_epoch();
    // Slot 2 refuses anonymous clients and asks for a password...
    test_client anon{e, protocol_version::v3_1_1, now};
    anon.session().set_security_slot(2);
    anon.send(connect_as(protocol_version::v3_1_1, "a", std::nullopt));
    CHECK(anon.received_bytes() == bytes{0x20, 0x02, 0x00, 0x05});
    test_client bob{e, protocol_version::v5, now};
    bob.session().set_security_slot(2);
    login(bob, "b", "bob", "hunter2", now);
    bob.publish("alice/x", "no", qos::at_least_once, false, 1);
    CHECK(bob.received_bytes() == bytes{0x40, 0x03, 0x00, 0x01, 0x87});  // its ACL applies
    // ...while slot 0 and a slot never set (falling back to 0) let anyone do anything.
    for (std::size_t slot : {0u, 7u}) {
        CAPTURE(slot);
        test_client open{e, protocol_version::v5, now};
        open.session().set_security_slot(slot);
        open.send(connect_as(protocol_version::v5, "o" + std::to_string(slot), std::nullopt));
        auto in = open.received();
        REQUIRE(!in.empty());
        CHECK(as<connack_packet>(in[0]).code == reason_code::success);
        open.publish("alice/x", "yes", qos::at_least_once, false, 2);
        CHECK(open.received_bytes() == bytes{0x40, 0x03, 0x00, 0x02, 0x10});
    }
    // Replacing slot 2's policy (SIGHUP) re-checks its connected clients at once.
    e.set_security(policy(false, true, "user bob\ntopic write alice/#\n"), 2);
    bob.publish("alice/x", "now", qos::at_least_once, false, 3);
    CHECK(bob.received_bytes() == bytes{0x40, 0x03, 0x00, 0x03, 0x10});
}

TEST_CASE("auth: allow_zero_length_clientid and auto_id_prefix, per security slot") {
    engine e;
    auto open = std::make_shared<security_policy>();  // slot 0: the defaults
    auto strict = std::make_shared<security_policy>();
    strict->allow_zero_length_clientid = false;  // slot 1
    auto prefixed = std::make_shared<security_policy>();
    prefixed->auto_id_prefix = "east-";  // slot 2
    e.set_security(open);
    e.set_security(strict, 1);
    e.set_security(prefixed, 2);
    auto now = test_epoch();
    // Slot 1 refuses an empty client id before any authentication: 3.1.1 CONNACK 2,
    // 5.0 0x85 Client Identifier not valid, and the connection closes.
    test_client old{e, protocol_version::v3_1_1, now};
    old.session().set_security_slot(1);
    old.send(connect_as(protocol_version::v3_1_1, "", std::nullopt));
    CHECK(old.received_bytes() == bytes{0x20, 0x02, 0x00, 0x02});
    CHECK(old.session().closing());
    test_client v5{e, protocol_version::v5, now};
    v5.session().set_security_slot(1);
    v5.send(connect_as(protocol_version::v5, "", std::nullopt));
    CHECK(v5.received_bytes() == bytes{0x20, 0x03, 0x00, 0x85, 0x00});
    CHECK(v5.session().closing());
    CHECK(e.stats().connects_rejected == 2);
    CHECK(e.stats().auth_failures == 0);
    CHECK(e.stored_session_count() == 0);
    // A client id of its own is fine there.
    test_client named{e, protocol_version::v5, now};
    named.session().set_security_slot(1);
    named.connect("named");
    // Slot 2 assigns ids with its prefix: 5.0 says which (Assigned Client Identifier), 3.1.1
    // (Clean Session 1) gets one silently; slot 0 uses "tern-".
    const std::pair<std::size_t, std::string_view> cases[] = {{2, "east-"}, {0, "tern-"}};
    for (const auto& c : cases) {
        const auto slot = c.first;
        const auto prefix = c.second;
        CAPTURE(slot);
        test_client a{e, protocol_version::v5, now};
        a.session().set_security_slot(slot);
        const auto ack = a.connect("");
        REQUIRE(ack.props.assigned_client_identifier.has_value());
        const auto& id = *ack.props.assigned_client_identifier;
        CHECK(id.size() == prefix.size() + 16);
        CHECK(id.rfind(prefix, 0) == 0);
        CHECK(e.find(id) == &a.session());
        test_client b{e, protocol_version::v3_1_1, now};
        b.session().set_security_slot(slot);
        b.connect("");
        CHECK(b.session().client_id().rfind(prefix, 0) == 0);
        CHECK(b.session().client_id() != id);
    }
    // Replacing the policy (SIGHUP) applies to the next CONNECT.
    auto relaxed = std::make_shared<security_policy>();
    relaxed->auto_id_prefix = "x";
    e.set_security(relaxed, 1);
    test_client later{e, protocol_version::v5, now};
    later.session().set_security_slot(1);
    const auto ack = later.connect("");
    REQUIRE(ack.props.assigned_client_identifier.has_value());
    CHECK(ack.props.assigned_client_identifier->rfind("x", 0) == 0);
}

TEST_CASE("auth: use_username_as_clientid replaces the client id with the user name") {
    engine e;
    auto names = std::make_shared<security_policy>();
    names->use_username_as_clientid = true;  // slot 1, anonymous allowed, no password_file
    e.set_security(std::make_shared<security_policy>());
    e.set_security(names, 1);
    auto now = test_epoch();
    // A user name: that is the client id, whatever CONNECT said; 5.0 is not told (the id it
    // sent was not empty), as Mosquitto 2.
    test_client a{e, protocol_version::v5, now};
    a.session().set_security_slot(1);
    auto ack = a.connect_with(connect_as(protocol_version::v5, "x", "alice"));
    CHECK(ack.code == reason_code::success);
    CHECK_FALSE(ack.props.assigned_client_identifier.has_value());
    CHECK(a.session().client_id() == "alice");
    CHECK(e.find("alice") == &a.session());
    CHECK(e.find("x") == nullptr);
    // Another connection with the same user name takes the session over (0x8E to the first).
    test_client b{e, protocol_version::v3_1_1, now};
    b.session().set_security_slot(1);
    CHECK(b.connect_with(connect_as(protocol_version::v3_1_1, "y", "alice")).code ==
          reason_code::success);
    const auto taken = a.received();
    REQUIRE(taken.size() == 1);
    CHECK(as<disconnect_packet>(taken[0]).code == reason_code::session_taken_over);
    CHECK(e.find("alice") == &b.session());
    // An empty client id: 5.0 is told the user name as its Assigned Client Identifier.
    test_client c{e, protocol_version::v5, now};
    c.session().set_security_slot(1);
    ack = c.connect_with(connect_as(protocol_version::v5, "", "carol"));
    CHECK(ack.code == reason_code::success);
    CHECK(ack.props.assigned_client_identifier == "carol");
    // No user name, or an empty one: not authorised (3.1.1 CONNACK 5, 5.0 0x87), at once.
    const auto auth_failures = e.stats().auth_failures;
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        for (std::optional<std::string> user :
             {std::optional<std::string>{}, std::optional<std::string>{""}}) {
            CAPTURE(to_string(v));
            CAPTURE(user.has_value());
            test_client n{e, v, now};
            n.session().set_security_slot(1);
            n.send(connect_as(v, "n", user));
            if (v == protocol_version::v5) {
                CHECK(n.received_bytes() == bytes{0x20, 0x03, 0x00, 0x87, 0x00});
            } else {
                CHECK(n.received_bytes() == bytes{0x20, 0x02, 0x00, 0x05});
            }
            CHECK(n.session().closing());
        }
    }
    CHECK(e.stats().auth_failures == auth_failures + 4);
    CHECK(e.find("n") == nullptr);
    // A user name longer than max_client_id_length (256) is not taken as an id: 0x85 / 2.
    test_client l{e, protocol_version::v5, now};
    l.session().set_security_slot(1);
    l.send(connect_as(protocol_version::v5, "l", std::string(300, 'u')));
    CHECK(l.received_bytes() == bytes{0x20, 0x03, 0x00, 0x85, 0x00});
    // Slot 0 keeps the client's own id.
    test_client o{e, protocol_version::v5, now};
    o.connect_with(connect_as(protocol_version::v5, "own", "alice"));
    CHECK(o.session().client_id() == "own");
}

TEST_CASE("auth: use_username_as_clientid takes the name after its password is checked") {
    engine e;
    auto p = std::make_shared<security_policy>(*policy(false, true));
    p->use_username_as_clientid = true;
    e.set_security(p);
    auto now = test_epoch();
    test_client c{e, protocol_version::v5, now};
    login(c, "whatever", "bob", "hunter2", now);
    CHECK(c.session().client_id() == "bob");
    CHECK(e.find("bob") == &c.session());
    // A wrong password is refused as before (after the delay), under the id it sent.
    test_client w{e, protocol_version::v5, now};
    w.send(connect_as(protocol_version::v5, "w", "bob", "wrong"));
    answer_auth(w, now);
    CHECK(w.received_bytes().empty());
    now += e.config().auth_failure_delay;
    w.session().on_timer(now);
    CHECK(w.received_bytes() == bytes{0x20, 0x03, 0x00, 0x86, 0x00});
    // No user name at all: not authorised (0x87), at once.
    test_client n{e, protocol_version::v5, now};
    n.send(connect_as(protocol_version::v5, "n", std::nullopt));
    CHECK(n.received_bytes() == bytes{0x20, 0x03, 0x00, 0x87, 0x00});
    CHECK(e.find("bob") == &c.session());
}

TEST_CASE("listener policy: max_qos and max_topic_alias per security slot") {
    engine e;
    auto q0 = std::make_shared<security_policy>();
    q0->max_qos = 0;
    q0->max_topic_alias = 3;
    auto q1 = std::make_shared<security_policy>();
    q1->max_qos = 1;
    e.set_security(std::make_shared<security_policy>());
    e.set_security(q0, 1);
    e.set_security(q1, 2);
    auto now = test_epoch();
    // CONNACK: Maximum QoS and the listener's Topic Alias Maximum; slot 0 says neither
    // Maximum QoS (2) nor anything but the broker's alias maximum.
    test_client a{e, protocol_version::v5, now};
    a.session().set_security_slot(1);
    auto ack = a.connect("a");
    CHECK(ack.props.maximum_qos == 0);
    CHECK(ack.props.topic_alias_maximum == 3);
    test_client b{e, protocol_version::v5, now};
    b.session().set_security_slot(2);
    ack = b.connect("b");
    CHECK(ack.props.maximum_qos == 1);
    CHECK(ack.props.topic_alias_maximum == e.config().max_topic_alias);
    test_client z{e, protocol_version::v5, now};
    ack = z.connect("z");
    CHECK_FALSE(ack.props.maximum_qos.has_value());
    // SUBSCRIBE is granted at most max_qos, and deliveries follow the grant.
    CHECK(a.subscribe("t/#", qos::exactly_once) == std::vector{reason_code::success});
    CHECK(b.subscribe("t/#", qos::exactly_once) == std::vector{reason_code::granted_qos_1});
    z.publish("t/x", "m", qos::exactly_once, false, 1);
    auto got = a.received();
    REQUIRE(got.size() == 1);
    CHECK(as<publish_packet>(got[0]).qos_level == qos::at_most_once);
    got = b.received();
    REQUIRE(got.size() == 1);
    CHECK(as<publish_packet>(got[0]).qos_level == qos::at_least_once);
    // A Topic Alias above the listener's maximum: DISCONNECT 0x94.
    {
        test_client t{e, protocol_version::v5, now};
        t.session().set_security_slot(1);
        t.connect("t");
        publish_packet p;
        p.topic = "t/y";
        p.props.topic_alias = 4;
        t.send(p);
        got = t.received();
        REQUIRE(got.size() == 1);
        CHECK(as<disconnect_packet>(got[0]).code == reason_code::topic_alias_invalid);
    }
    // A PUBLISH above max_qos: 5.0 DISCONNECT 0x9B; 3.1.1 closed without a word.
    b.publish("t/x", "too high", qos::exactly_once, false, 2);
    got = b.received();
    REQUIRE(got.size() == 1);
    CHECK(as<disconnect_packet>(got[0]).code == reason_code::qos_not_supported);
    CHECK(b.session().closing());
    test_client c{e, protocol_version::v3_1_1, now};
    c.session().set_security_slot(1);
    c.connect("c");
    c.publish("t/x", "too high", qos::at_least_once, false, 3);
    CHECK(c.received_bytes().empty());
    CHECK(c.session().closing());
    // A Will above max_qos: 5.0 CONNACK 0x9B; 3.1.1 closed without a CONNACK.
    for (auto v : {protocol_version::v5, protocol_version::v3_1_1}) {
        CAPTURE(to_string(v));
        test_client w{e, v, now};
        w.session().set_security_slot(1);
        connect_packet p = connect_as(v, "w", std::nullopt);
        p.will = will_message{"w/t", "gone", qos::at_least_once, false, {}};
        w.send(p);
        if (v == protocol_version::v5) {
            CHECK(w.received_bytes() == bytes{0x20, 0x03, 0x00, 0x9B, 0x00});
        } else {
            CHECK(w.received_bytes().empty());
        }
        CHECK(w.session().closing());
    }
    // Replacing the policy applies to the next CONNECT; a connected client keeps what its
    // CONNACK said.
    auto q2 = std::make_shared<security_policy>();
    e.set_security(q2, 1);
    a.publish("t/x", "still 0 only", qos::at_least_once, false, 4);
    got = a.received();
    REQUIRE(got.size() == 1);
    CHECK(as<disconnect_packet>(got[0]).code == reason_code::qos_not_supported);
    test_client d{e, protocol_version::v5, now};
    d.session().set_security_slot(1);
    CHECK_FALSE(d.connect("d").props.maximum_qos.has_value());
}
