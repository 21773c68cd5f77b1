// Shared subscriptions with threads > 1 (docs/broker.md, "Threading"), two shard engines in
// one thread with a router that queues what one shard sends another (FIFO per ordered
// pair, as shard_runtime's channels) and pumps it on demand: a group's home shard picks
// its members on both shards in turn, each message goes to exactly one member, members
// that leave, go offline or end are skipped, an offline member the home did not know about
// yet sends the message back for the next one, and a congested channel of the home pauses
// the publishers of the shard the message came from.

#include <doctest/doctest.h>

#include <array>
#include <deque>
#include <map>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "shard_test_support.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::broker::message_ptr;
using mqtt::broker::share_op;
using mqtt::broker::share_ref_ptr;
using mqtt::broker::shard_of;

namespace {

struct item {
    enum class kind { publish, retained, share } what;
    message_ptr msg;
    share_op op = share_op::deliver;
    share_ref_ptr ref{};
};

struct two_shards;

struct link_router final : mqtt::broker::shard_router {
    link_router(two_shards& h, std::size_t self) : h(h), self(self) {}
    bool publish(const message_ptr& m, std::span<const std::size_t> to,
                 const mqtt::broker::client_id_ptr& publisher) override;
    void retained(const message_ptr& m) override;
    void resume_from(std::size_t from) override { resumed.push_back(from); }
    std::uint64_t retained_ticket() override { return 0; }
    void share(std::size_t to, share_op op, const share_ref_ptr& r, const message_ptr& m) override;
    two_shards& h;
    std::size_t self;
    // This shard congested forwarding (net::shard_runtime::check_forwarding): the other
    // shard's publish() answers it.
    bool forwarding = false;
    std::vector<std::size_t> resumed;
};

// `now`: when the items are routed.
struct two_shards : shard_test::two_engines {
    link_router r0{*this, 0};
    link_router r1{*this, 1};
    std::deque<item> q[2][2];  // [from][to]
    std::vector<share_op> ops[2][2];  // every share_op sent, [from][to]
    two_shards() {
        link(r0, r1);
        // These tests also check that a share group's home counts its remote groups' filters.
        share_interests();
    }
    engine& at(std::size_t k) { return k == 0 ? e0 : e1; }
    // Delivers everything in flight (and what that sends), pair by pair in FIFO order.
    void pump() {
        for (int round = 0; round < 100; ++round) {
            bool any = false;
            for (std::size_t from = 0; from < 2; ++from) {
                const std::size_t to = 1 - from;
                while (!q[from][to].empty()) {
                    item it = std::move(q[from][to].front());
                    q[from][to].pop_front();
                    any = true;
                    if (it.what == item::kind::publish) {
                        at(to).route_from_shard(it.msg, from, now);
                    } else if (it.what == item::kind::retained) {
                        at(to).apply_retained(it.msg);
                    } else {
                        at(to).share_from_shard(from, it.op, it.ref, it.msg, now);
                    }
                }
            }
            if (!any) return;
        }
        FAIL("pump: still sending after 100 rounds");
    }
};

bool link_router::publish(const message_ptr& m, std::span<const std::size_t> to,
                          const mqtt::broker::client_id_ptr&) {
    REQUIRE(to.size() <= 1);
    if (!to.empty()) {
        REQUIRE(to[0] == 1 - self);
        h.q[self][1 - self].push_back({item::kind::publish, m});
    }
    return (self == 0 ? h.r1 : h.r0).forwarding;
}
void link_router::retained(const message_ptr& m) {
    h.q[self][1 - self].push_back({item::kind::retained, m});
}
void link_router::share(std::size_t to, share_op op, const share_ref_ptr& r,
                        const message_ptr& m) {
    REQUIRE(to != self);
    h.q[self][to].push_back({item::kind::share, m, op, r});
    h.ops[self][to].push_back(op);
}

// A client id of shard k (of 2), starting with `base`.
std::string id_on(std::size_t k, const std::string& base) {
    for (int i = 0;; ++i) {
        auto id = base + std::to_string(i);
        if (shard_of(id, 2) == k) return id;
    }
}

// The payloads of the PUBLISH packets in `in`, acknowledging the QoS 1 ones.
std::vector<std::string> take(test_client& c) {
    std::vector<std::string> out;
    for (const auto& p : c.received()) {
        if (const auto* m = std::get_if<publish_packet>(&p)) {
            out.push_back(m->payload);
            if (m->qos_level == qos::at_least_once) {
                c.send(puback_packet{m->packet_id, reason_code::success, {}});
            }
        }
    }
    return out;
}

constexpr const char* group = "$share/g/t/#";

}  // namespace

TEST_CASE("shard share: members on both shards get each message once, in turn") {
    auto now = test_epoch();
    two_shards h;
    const std::size_t home = shard_of(group, 2);
    const std::size_t away = 1 - home;
    // Join order: a (home shard), b (other shard), c (other shard).
    test_client a{h.at(home), protocol_version::v5, now};
    test_client b{h.at(away), protocol_version::v5, now};
    test_client c{h.at(away), protocol_version::v3_1_1, now};
    // Shared subscriptions are announced and granted with threads > 1.
    const auto ack = a.connect(id_on(home, "a"));
    CHECK_FALSE(ack.props.shared_subscription_available.has_value());
    b.connect(id_on(away, "b"));
    c.connect(id_on(away, "c"));
    CHECK(a.subscribe(group, qos::at_least_once) == std::vector{reason_code::granted_qos_1});
    h.pump();
    CHECK(b.subscribe(group, qos::at_least_once) == std::vector{reason_code::granted_qos_1});
    h.pump();
    CHECK(c.subscribe(group, qos::at_least_once) == std::vector{reason_code::granted_qos_1});
    h.pump();
    CHECK(h.at(home).share_group_count() == 1);
    CHECK(h.at(away).share_group_count() == 0);
    CHECK(h.at(home).subscription_count() == 3);  // the remote members are counted at home

    // Publishers on both shards.
    test_client p_home{h.at(home), protocol_version::v5, now};
    test_client p_away{h.at(away), protocol_version::v5, now};
    p_home.connect(id_on(home, "ph"));
    p_away.connect(id_on(away, "pa"));
    std::vector<std::string> got_a, got_b, got_c;
    for (int i = 0; i < 12; ++i) {
        auto& p = i % 2 == 0 ? p_home : p_away;
        p.publish("t/x", "m" + std::to_string(i), qos::at_least_once);
        (void)p.received();  // PUBACK
        h.pump();
        for (auto& s : take(a)) got_a.push_back(s);
        for (auto& s : take(b)) got_b.push_back(s);
        for (auto& s : take(c)) got_c.push_back(s);
    }
    // Round robin over the three members in join order, whichever shard published.
    CHECK(got_a == std::vector<std::string>{"m0", "m3", "m6", "m9"});
    CHECK(got_b == std::vector<std::string>{"m1", "m4", "m7", "m10"});
    CHECK(got_c == std::vector<std::string>{"m2", "m5", "m8", "m11"});

    SUBCASE("a member on the other shard that unsubscribes gets nothing more") {
        unsubscribe_packet u;
        u.packet_id = 9;
        u.filters.push_back(group);
        b.send(u);
        (void)b.received();  // UNSUBACK
        h.pump();
        CHECK(h.at(home).subscription_count() == 2);
        for (int i = 0; i < 4; ++i) {
            p_away.publish("t/y", "n" + std::to_string(i), qos::at_least_once);
            (void)p_away.received();
            h.pump();
        }
        CHECK(take(b).empty());
        CHECK(take(a).size() + take(c).size() == 4);
    }
    SUBCASE("a member whose session ends leaves the group") {
        c.lose_connection();  // 3.1.1 clean session: the session ends with it
        h.pump();
        CHECK(h.at(home).subscription_count() == 2);
        for (int i = 0; i < 4; ++i) {
            p_home.publish("t/y", "n" + std::to_string(i), qos::at_least_once);
            (void)p_home.received();
            h.pump();
        }
        CHECK(take(a).size() == 2);
        CHECK(take(b).size() == 2);
    }
    SUBCASE("the last member leaving ends the group at home") {
        for (auto* cl : {&a, &b, &c}) cl->lose_connection();
        h.pump();
        CHECK(h.at(home).share_group_count() == 0);
        CHECK(h.at(home).subscription_count() == 0);
    }
}

TEST_CASE("shard share: offline members are skipped, and queue when every member is offline") {
    auto now = test_epoch();
    two_shards h;
    const std::size_t home = shard_of(group, 2);
    const std::size_t away = 1 - home;
    test_client a{h.at(home), protocol_version::v5, now};
    test_client b{h.at(away), protocol_version::v5, now};
    const auto id_b = id_on(away, "b");
    a.connect(id_on(home, "a"));
    b.connect_persistent(id_b);
    a.subscribe(group, qos::at_least_once);
    b.subscribe(group, qos::at_least_once);
    h.pump();
    test_client pub{h.at(away), protocol_version::v5, now};
    pub.connect(id_on(away, "p"));
    auto send = [&](const std::string& payload) {
        pub.publish("t/1", payload, qos::at_least_once);
        (void)pub.received();
        h.pump();
    };

    SUBCASE("a persistent member offline is skipped while another is connected") {
        b.lose_connection();
        h.pump();  // the offline note reaches the home
        for (int i = 0; i < 4; ++i) send("o" + std::to_string(i));
        CHECK(take(a).size() == 4);
        CHECK(h.at(away).find_session(id_b)->queue.empty());
    }
    SUBCASE("offline before the home knew: the message comes back for the next member") {
        send("first");  // a's turn
        CHECK(take(a) == std::vector<std::string>{"first"});
        // b goes offline; a publisher on the home shard publishes before the offline note
        // arrives there, so the home still thinks b is connected when it picks b.
        test_client local{h.at(home), protocol_version::v5, now};
        local.connect(id_on(home, "l"));
        b.lose_connection();
        REQUIRE(h.q[away][home].size() == 1);  // the offline note, not there yet
        local.publish("t/1", "second", qos::at_least_once);
        (void)local.received();
        REQUIRE(h.ops[home][away].size() == 1);
        CHECK(h.ops[home][away].back() == share_op::deliver);
        h.pump();
        CHECK(take(a) == std::vector<std::string>{"second"});  // local: no retry needed
        CHECK(h.at(away).find_session(id_b)->queue.empty());
        CHECK(h.ops[away][home] ==
              std::vector{share_op::join, share_op::offline, share_op::again});
    }
    SUBCASE("every member offline: the next one in turn queues it (QoS 1), given on resume") {
        b.lose_connection();
        h.pump();
        a.lose_connection();  // 5.0 without Session Expiry: its session ends, it leaves
        h.pump();
        send("kept");
        CHECK(h.at(away).find_session(id_b)->queue.size() == 1);
        b.new_connection();
        const auto ack = b.connect_persistent(id_b);
        CHECK(ack.session_present);
        h.pump();  // the online note
        std::vector<std::string> got;
        for (const auto& p : b.rest_after_connack()) {
            if (const auto* m = std::get_if<publish_packet>(&p)) got.push_back(m->payload);
        }
        for (auto& s : take(b)) got.push_back(s);
        CHECK(got == std::vector<std::string>{"kept"});
        send("after");  // b is the only member, connected again
        CHECK(take(b) == std::vector<std::string>{"after"});
    }
}

TEST_CASE("shard share: the home congested forwarding pauses the origin's publishers") {
    auto now = test_epoch();
    two_shards h;
    const std::size_t home = shard_of(group, 2);
    const std::size_t away = 1 - home;
    // The member and the publisher on the other shard: its messages go to the home and
    // come back as deliveries.
    test_client m{h.at(away), protocol_version::v5, now};
    m.connect(id_on(away, "m"));
    m.subscribe(group, qos::at_least_once);
    h.pump();
    test_client pub{h.at(away), protocol_version::v5, now};
    pub.connect(id_on(away, "p"));
    pub.publish("t/1", "a", qos::at_least_once);
    h.pump();
    CHECK(take(m) == std::vector<std::string>{"a"});
    CHECK_FALSE(pub.session().input_paused());
    (home == 0 ? h.r0 : h.r1).forwarding = true;
    pub.publish("t/1", "b", qos::at_least_once);  // sent, and the publisher pauses at once
    CHECK(pub.session().input_paused());
    h.pump();
    CHECK(take(m) == std::vector<std::string>{"b"});  // nothing dropped for it
    // The home is no longer congested: the runtime calls the away shard's on_resume.
    (home == 0 ? h.r0 : h.r1).forwarding = false;
    h.at(away).shards_resumed();
    CHECK_FALSE(pub.session().input_paused());
}

TEST_CASE("shard share: a member whose leave note was lost costs one message, not a loop") {
    auto now = test_epoch();
    two_shards h;
    const std::size_t home = shard_of(group, 2);
    const std::size_t away = 1 - home;
    test_client b{h.at(away), protocol_version::v3_1_1, now};
    b.connect(id_on(away, "b"));
    b.subscribe(group, qos::at_least_once);
    h.pump();
    b.lose_connection();  // clean session: it ends, and its leave note ...
    REQUIRE(h.q[away][home].size() == 1);
    h.q[away][home].clear();  // ... is lost (a channel past max_items refuses it)
    test_client pub{h.at(home), protocol_version::v5, now};
    pub.connect(id_on(home, "p"));
    pub.publish("t/1", "x", qos::at_least_once);
    h.pump();  // would not end if it went back and forth
    CHECK(h.ops[home][away] == std::vector{share_op::deliver, share_op::retry});
    CHECK(h.ops[away][home] == std::vector{share_op::join, share_op::leave, share_op::again});
}

namespace {

// A group name of the form `$share/<name>/t/#` whose home is shard k (of 2).
std::string group_on(std::size_t k, const std::string& name) {
    for (int i = 0;; ++i) {
        auto g = "$share/" + name + std::to_string(i) + "/t/#";
        if (shard_of(g, 2) == k) return g;
    }
}

}  // namespace

TEST_CASE("shard share: a member at its Receive Maximum on the other shard is passed over") {
    // MQTT 5.0 §4.8.2 with threads > 1: the member's shard tells the home when its
    // connection can no longer send (share_op::busy) and when it can again (ready).
    auto now = test_epoch();
    two_shards h;
    const std::size_t home = shard_of(group, 2);
    const std::size_t away = 1 - home;
    test_client slow{h.at(away), protocol_version::v5, now};
    connect_packet c;
    c.client_id = id_on(away, "slow");
    c.props.receive_maximum = 1;
    REQUIRE(slow.connect_with(c).code == reason_code::success);
    slow.subscribe(group, qos::at_least_once);
    h.pump();
    test_client fast{h.at(home), protocol_version::v5, now};
    fast.connect(id_on(home, "fast"));
    fast.subscribe(group, qos::at_least_once);
    test_client pub{h.at(home), protocol_version::v5, now};
    pub.connect(id_on(home, "p"));
    auto send = [&](const std::string& payload) {
        pub.publish("t/1", payload, qos::at_least_once);
        (void)pub.received();
        h.pump();
    };

    // slow takes the first and does not acknowledge it: fast gets every other one.
    std::vector<packet> held;
    for (int i = 0; i < 6; ++i) {
        send("m" + std::to_string(i));
        for (auto& p : slow.received()) held.push_back(std::move(p));
    }
    REQUIRE(held.size() == 1);
    CHECK(as<publish_packet>(held[0]).payload == "m0");
    CHECK(take(fast) == std::vector<std::string>{"m1", "m2", "m3", "m4", "m5"});
    CHECK(h.ops[away][home] == std::vector{share_op::join, share_op::busy});
    CHECK(h.ops[home][away] == std::vector{share_op::deliver});
    CHECK(h.at(away).find_session(c.client_id)->queue.empty());

    SUBCASE("its acknowledgement makes it ready, and it is in turn again") {
        slow.send(puback_packet{as<publish_packet>(held[0]).packet_id, reason_code::success, {}});
        h.pump();
        CHECK(h.ops[away][home] == std::vector{share_op::join, share_op::busy, share_op::ready});
        send("n0");  // the member after fast, last served, in turn: slow
        send("n1");
        send("n2");
        CHECK(take(slow) == std::vector<std::string>{"n0"});
        CHECK(take(fast) == std::vector<std::string>{"n1", "n2"});
        h.pump();
        CHECK(h.ops[away][home] == std::vector{share_op::join, share_op::busy, share_op::ready,
                                               share_op::busy, share_op::ready});
    }
    SUBCASE("a busy connection joining another remote group says so with its join") {
        const auto other = group_on(home, "h");
        slow.subscribe(other, qos::at_least_once);
        h.pump();
        CHECK(h.ops[away][home] ==
              std::vector{share_op::join, share_op::busy, share_op::join, share_op::busy});
        pub.publish("t/2", "x", qos::at_least_once);  // both groups: fast's, and the new one
        (void)pub.received();
        h.pump();
        CHECK(take(slow).empty());  // at its maximum: queued, as the only member
        CHECK(h.at(away).find_session(c.client_id)->queue.size() == 1);
    }
}

TEST_CASE("shard share: restored members of a group homed elsewhere join it there, offline") {
    // After a restart with persistence: the member's shard does not keep a copy of the
    // group (it would serve every message a second time); the home learns of the member.
    two_shards h;
    const std::size_t home = shard_of(group, 2);
    const std::size_t away = 1 - home;
    auto ds = std::make_unique<mqtt::broker::durable_session>();
    ds->client_id = id_on(away, "r");
    ds->expiry_interval = 3600;
    ds->subscriptions.emplace(group, mqtt::broker::subscription_entry{{qos::at_least_once}, 0});
    h.at(away).restore_session(std::move(ds));
    CHECK(h.at(away).share_group_count() == 0);
    h.at(away).announce_restored_shares();
    h.pump();
    CHECK(h.ops[away][home] == std::vector{share_op::join, share_op::offline});
    CHECK(h.at(home).share_group_count() == 1);
    CHECK(h.at(home).subscription_count() == 1);

    // A member on the home shard gets everything while the restored one is offline; with
    // both offline the restored one's queue takes it, once.
    test_client a{h.at(home), protocol_version::v5, h.now};
    a.connect(id_on(home, "a"));
    a.subscribe(group, qos::at_least_once);
    test_client pub{h.at(away), protocol_version::v5, h.now};
    pub.connect(id_on(away, "p"));
    for (int i = 0; i < 3; ++i) {
        pub.publish("t/1", std::to_string(i), qos::at_least_once);
        (void)pub.received();
        h.pump();
    }
    CHECK(take(a).size() == 3);
    CHECK(h.at(away).find_session(id_on(away, "r"))->queue.empty());
}
