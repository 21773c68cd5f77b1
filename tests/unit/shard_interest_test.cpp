// shard_interest: what one shard's filters may match, read by the other shards to skip
// sending them what nobody there subscribed to (docs/broker.md, "Threading").

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/shard_interest.hpp"
#include "mqtt/protocol/topic.hpp"
#include "shard_test_support.hpp"

using namespace tern_test;
using mqtt::broker::shard_interest;
using mqtt::protocol::topic_matches;
using shard_test::two_shards;

TEST_CASE("shard interest: empty, exact filters, wildcards and their literal levels") {
    shard_interest i;
    CHECK_FALSE(i.may_match("a"));
    CHECK(i.entries() == 0);

    i.add("a/b");
    CHECK(i.may_match("a/b"));
    CHECK_FALSE(i.may_match("a"));
    CHECK_FALSE(i.may_match("a/b/c"));
    CHECK_FALSE(i.may_match("ab"));  // levels, not bytes
    CHECK_FALSE(i.may_match("a/c"));

    i.add("x/#");
    CHECK(i.may_match("x"));  // "x/#" matches its parent level
    CHECK(i.may_match("x/1"));
    CHECK(i.may_match("x/1/2/3"));
    CHECK_FALSE(i.may_match("y/1"));
    CHECK_FALSE(i.may_match("xx/1"));

    i.add("s/+/t");
    CHECK(i.may_match("s/1/t"));
    CHECK_FALSE(i.may_match("q/1/t"));

    // Empty levels are levels.
    i.add("/e");
    CHECK(i.may_match("/e"));
    CHECK_FALSE(i.may_match("e"));

    CHECK(i.entries() == 4);
    i.remove("x/#");
    CHECK_FALSE(i.may_match("x/1"));
    CHECK(i.may_match("a/b"));

    // Counted: two entries of one filter, one removed, the other still matches.
    i.add("a/b");
    i.remove("a/b");
    CHECK(i.may_match("a/b"));
    i.remove("a/b");
    CHECK_FALSE(i.may_match("a/b"));

    // A filter that starts with a wildcard may match anything.
    i.add("+/z");
    CHECK(i.may_match("anything/at/all"));
    i.remove("+/z");
    i.add("#");
    CHECK(i.may_match("q"));
    i.remove("#");
    i.remove("s/+/t");
    i.remove("/e");
    CHECK(i.entries() == 0);
    CHECK_FALSE(i.may_match("s/1/t"));
}

TEST_CASE("shard interest: literal levels past max_depth before a wildcard") {
    shard_interest i;
    std::string deep;
    for (std::size_t d = 0; d < shard_interest::max_depth + 3; ++d) deep += "l" + std::to_string(d) + "/";
    i.add(deep + "#");
    CHECK(i.may_match(deep + "x"));
    CHECK(i.may_match(deep.substr(0, deep.size() - 1)));  // the parent level of "#"
    CHECK_FALSE(i.may_match("l0/l1"));                       // fewer levels than max_depth
    i.remove(deep + "#");
    CHECK_FALSE(i.may_match(deep + "x"));
}

TEST_CASE("shard interest: never false where a filter matches (random filters and topics)") {
    // Levels from a small alphabet so that many filters match many topics.
    const std::vector<std::string> words{"a", "b", "c", "", "dd", "$s"};
    std::mt19937 rng{12345};
    auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    auto topic = [&] {
        std::string t;
        const std::size_t levels = 1 + pick(10);
        for (std::size_t l = 0; l < levels; ++l) {
            if (l) t += '/';
            t += words[pick(words.size() - (l == 0 ? 0 : 1))];
        }
        return t.empty() ? std::string{"a"} : t;
    };
    auto filter = [&] {
        std::string f;
        const std::size_t levels = 1 + pick(10);
        for (std::size_t l = 0; l < levels; ++l) {
            if (l) f += '/';
            const auto r = pick(10);
            if (r == 0 && l + 1 == levels) {
                f += '#';
            } else if (r <= 2) {
                f += '+';
            } else {
                f += words[pick(words.size() - 1)];
            }
        }
        return f.empty() ? std::string{"a"} : f;
    };
    shard_interest i;
    std::vector<std::string> in;
    for (int round = 0; round < 4000; ++round) {
        if (!in.empty() && pick(3) == 0) {
            const auto k = pick(in.size());
            i.remove(in[k]);
            in.erase(in.begin() + static_cast<std::ptrdiff_t>(k));
        } else {
            in.push_back(filter());
            REQUIRE(mqtt::protocol::is_valid_topic_filter(in.back()));
            i.add(in.back());
        }
        for (int q = 0; q < 20; ++q) {
            const auto t = topic();
            bool matched = false;
            for (const auto& f : in) matched = matched || topic_matches(f, t);
            if (matched) {
                INFO("topic ", t, " with ", in.size(), " filters");
                REQUIRE(i.may_match(t));
            }
        }
    }
    for (const auto& f : in) i.remove(f);
    CHECK(i.entries() == 0);
    CHECK_FALSE(i.may_match("a/b"));
}

namespace {

struct linked_engines : two_shards {
    linked_engines() { share_interests(); }
};

}  // namespace

TEST_CASE_FIXTURE(linked_engines, "shard interest: a publish goes only to the shards that may match") {
    test_client pub{e0, protocol_version::v5, now};
    pub.connect("publisher");
    test_client sub{e1, protocol_version::v5, now};
    sub.connect("subscriber");

    pub.publish("t/1", "nobody on shard 1 yet");
    CHECK(r0.published.empty());
    CHECK(r0.publish_calls == 1);  // asked whether a shard is congested, sent nowhere

    sub.subscribe("t/+", qos::at_most_once);
    pub.publish("t/1", "to shard 1");
    pub.publish("u/1", "not to shard 1");
    REQUIRE(r0.published.size() == 1);
    CHECK(r0.published[0]->payload == "to shard 1");
    CHECK(r0.published_to[0] == std::vector<std::size_t>{1});
    e1.route_from_shard(r0.published[0], 0, now);
    REQUIRE(sub.received().size() == 1);

    SUBCASE("unsubscribed: no more") {
        mqtt::protocol::unsubscribe_packet u;
        u.packet_id = 7;
        u.filters.push_back("t/+");
        sub.send(u);
        (void)sub.received();  // UNSUBACK
        pub.publish("t/1", "after");
        CHECK(r0.published.size() == 1);
        CHECK(i1.entries() == 0);
    }
    SUBCASE("the session ended: its filters go") {
        sub.drop();
        pub.publish("t/1", "after");
        CHECK(r0.published.size() == 1);
        CHECK(i1.entries() == 0);
    }
    SUBCASE("a shared subscription's filter counts on the group's home") {
        // A group homed on shard 1, its member there: shard 1's shared trie has "s/#".
        std::string group;
        for (int n = 0; group.empty(); ++n) {
            const auto f = "$share/g" + std::to_string(n) + "/s/#";
            if (mqtt::broker::shard_of(f, 2) == 1) group = f;
        }
        sub.subscribe(group, qos::at_most_once, 2);
        CHECK(i1.may_match("s/1"));
        pub.publish("s/1", "shared");
        REQUIRE(r0.published.size() == 2);
        e1.route_from_shard(r0.published[1], 0, now);
        CHECK(sub.received().size() == 1);
    }
}

TEST_CASE_FIXTURE(two_shards, "shard interest: filters subscribed before set_interests count") {
    test_client sub{e1, protocol_version::v3_1_1, now};
    sub.connect("subscriber");
    sub.subscribe("early/#", qos::at_least_once);
    share_interests();
    CHECK(i1.may_match("early/x"));
    CHECK(i1.entries() == 1);
    test_client pub{e0, protocol_version::v3_1_1, now};
    pub.connect("publisher");
    pub.publish("early/x", "m");
    CHECK(r0.published.size() == 1);
}
