// The retained message store: a trie of topic levels, matched by filters.

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "mqtt/broker/message.hpp"
#include "mqtt/broker/retained_store.hpp"

using mqtt::broker::message_ptr;
using mqtt::broker::retained_store;
using outcome = retained_store::outcome;

namespace {

message_ptr msg(std::string topic, std::string payload = "p") {
    mqtt::protocol::publish_packet p;
    p.topic = std::move(topic);
    p.payload = std::move(payload);
    p.retain = true;
    return mqtt::broker::make_message(std::move(p), {});
}

std::vector<std::string> topics(const retained_store& s, std::string_view filter) {
    std::vector<std::string> out;
    s.match(filter, [&](const message_ptr& m) {
        out.emplace_back(m->topic);
        return true;
    });
    std::sort(out.begin(), out.end());
    return out;
}

using list = std::vector<std::string>;

}  // namespace

TEST_CASE("retained store: set, replace, clear") {
    retained_store s{10, 1 << 20};
    CHECK(s.set(msg("a/b")) == outcome::stored);
    CHECK(s.set(msg("a/b", "new")) == outcome::replaced);
    CHECK(s.size() == 1);
    CHECK(s.set(msg("a/c", "")) == outcome::nothing_to_clear);
    CHECK(s.set(msg("a/b", "")) == outcome::cleared);
    CHECK(s.size() == 0);
    CHECK(s.bytes() == 0);
    CHECK(topics(s, "#").empty());
}

TEST_CASE("retained store: filters match like subscriptions") {
    retained_store s{100, 1 << 20};
    for (const char* t : {"a", "a/b", "a/b/c", "a/x/c", "/lead", "trail/", "$SYS/up", "$x"}) {
        REQUIRE(s.set(msg(t)) == outcome::stored);
    }
    CHECK(topics(s, "a") == list{"a"});
    CHECK(topics(s, "a/#") == list{"a", "a/b", "a/b/c", "a/x/c"});  // parent level too
    CHECK(topics(s, "a/+") == list{"a/b"});
    CHECK(topics(s, "a/+/c") == list{"a/b/c", "a/x/c"});
    CHECK(topics(s, "+/lead") == list{"/lead"});
    CHECK(topics(s, "trail/+") == list{"trail/"});
    // [MQTT-4.7.2-1] first-level wildcards do not see $ topics.
    CHECK(topics(s, "#") == list{"/lead", "a", "a/b", "a/b/c", "a/x/c", "trail/"});
    CHECK(topics(s, "+/up").empty());
    CHECK(topics(s, "$SYS/#") == list{"$SYS/up"});
    CHECK(topics(s, "$x") == list{"$x"});
    CHECK(topics(s, "nothing/#").empty());
}

TEST_CASE("retained store: bounds in count and bytes") {
    retained_store by_count{2, 1 << 20};
    CHECK(by_count.set(msg("1")) == outcome::stored);
    CHECK(by_count.set(msg("2")) == outcome::stored);
    CHECK(by_count.set(msg("3")) == outcome::full);
    CHECK(by_count.set(msg("2", "replacing is fine")) == outcome::replaced);
    retained_store by_bytes{100, 400};
    CHECK(by_bytes.set(msg("t", std::string(100, 'x'))) == outcome::stored);
    CHECK(by_bytes.set(msg("u", std::string(300, 'x'))) == outcome::full);
    // Deep topics pay for their trie nodes.
    CHECK(by_bytes.set(msg(std::string(50, '/'))) == outcome::full);
}

TEST_CASE("retained store: a very deep topic neither recurses nor leaks nodes") {
    retained_store s{10, 1u << 30};
    const std::string deep(60000, '/');
    REQUIRE(s.set(msg(deep)) == outcome::stored);
    CHECK(topics(s, "#").size() == 1);
    CHECK(topics(s, deep) == list{deep});
    CHECK(s.set(msg(deep, "")) == outcome::cleared);
    CHECK(s.set(msg(deep)) == outcome::stored);  // destroyed iteratively at scope end
}

TEST_CASE("retained store: the visitor can stop the walk") {
    retained_store s{100, 1 << 20};
    for (int i = 0; i < 10; ++i) REQUIRE(s.set(msg("t/" + std::to_string(i))) == outcome::stored);
    int seen = 0;
    s.match("t/#", [&](const message_ptr&) { return ++seen < 3; });
    CHECK(seen == 3);
}
