#include "mqtt/bridge/topic_map.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace mqtt::bridge;
using mqtt::protocol::qos;

namespace {

topic_rule rule(std::string_view text) {
    auto r = parse_rule(text);
    INFO(text << ": " << r.error);
    REQUIRE(r.rule);
    return *r.rule;
}

std::string error_of(std::string_view text) {
    auto r = parse_rule(text);
    CHECK_FALSE(r.rule);
    return r.error;
}

}  // namespace

TEST_CASE("bridge topic rule: words and defaults") {
    const auto r = rule("sensors/#");
    CHECK(r.pattern == "sensors/#");
    CHECK(r.dir == direction::out);  // Mosquitto's default direction
    CHECK(r.qos == qos::at_most_once);
    CHECK(r.local_prefix.empty());
    CHECK(r.remote_prefix.empty());

    const auto both = rule("  # \t both  2 local/topic/ remote/topic/ ");
    CHECK(both.pattern == "#");
    CHECK(both.dir == direction::both);
    CHECK(both.qos == qos::exactly_once);
    CHECK(both.local_prefix == "local/topic/");
    CHECK(both.remote_prefix == "remote/topic/");
    CHECK(both.local_filter() == "local/topic/#");
    CHECK(both.remote_filter() == "remote/topic/#");

    CHECK(rule("a in").dir == direction::in);
    CHECK(rule("a in 1").qos == qos::at_least_once);
    // The vector form is what the config parser hands over.
    const std::vector<std::string> words{"x/+", "in", "1", "\"\"", "site/"};
    auto v = parse_rule(words);
    REQUIRE(v.rule);
    CHECK(v.rule->local_prefix.empty());
    CHECK(v.rule->remote_prefix == "site/");
}

// The validity table of the `topic` option in mosquitto.conf(5), row by row.
TEST_CASE("bridge topic rule: the empty-marker table") {
    CHECK(parse_rule("t/# out 0 l/ r/").rule);        // 1 value value value
    CHECK(parse_rule("t/# out 0 l/ \"\"").rule);      // 2 value value ""
    CHECK(parse_rule("t/# out 0 \"\" r/").rule);      // 3 value "" value
    const auto none = rule("t/# out 0 \"\" \"\"");    // 4 no remapping
    CHECK(to_remote(none, "t/x") == "t/x");
    const auto single = rule("\"\" both 1 local/one remote/two");  // 5 one topic to one
    CHECK(single.local_filter() == "local/one");
    CHECK(to_remote(single, "local/one") == "remote/two");
    CHECK(to_local(single, "remote/two") == "local/one");
    CHECK_FALSE(to_remote(single, "local/one/more"));
    CHECK(error_of("\"\" out 0 l \"\"").find("empty") != std::string::npos);     // 6
    CHECK(error_of("\"\" out 0 \"\" r").find("empty") != std::string::npos);     // 7
    CHECK(error_of("\"\" out 0 \"\" \"\"").find("empty") != std::string::npos);  // 8
    CHECK_FALSE(parse_rule("\"\"").rule);  // no prefixes at all
}

TEST_CASE("bridge topic rule: what is rejected") {
    CHECK(error_of("").find("missing") != std::string::npos);
    CHECK(error_of("a sideways").find("direction") != std::string::npos);
    CHECK(error_of("a OUT").find("direction") != std::string::npos);
    CHECK(error_of("a out 3").find("QoS") != std::string::npos);
    CHECK(error_of("a out -1").find("QoS") != std::string::npos);
    CHECK(error_of("a out 1 local/").find("remote prefix") != std::string::npos);
    CHECK(error_of("a out 1 l/ r/ extra").find("too many") != std::string::npos);
    CHECK(error_of("a/#/b").find("pattern") != std::string::npos);
    CHECK(error_of("a+ in").find("pattern") != std::string::npos);
    CHECK(error_of("a out 1 l/+/ r/").find("local prefix") != std::string::npos);
    CHECK(error_of("a out 1 l/ r/#").find("remote prefix") != std::string::npos);
    // prefix + pattern must be a filter: `l` + `#` is `l#`.
    CHECK(error_of("# out 1 l r/").find("combination 'l#'") != std::string::npos);
    CHECK(error_of("+/x in 1 l/ r").find("combination 'r+/x'") != std::string::npos);
    CHECK(error_of(std::string("a\xff")).find("UTF-8") != std::string::npos);
}

TEST_CASE("bridge topic rule: remapping both ways") {
    const auto r = rule("sensors/# both 1 site1/ central/site1/");
    CHECK(to_remote(r, "site1/sensors/t") == "central/site1/sensors/t");
    CHECK(to_local(r, "central/site1/sensors/t") == "site1/sensors/t");
    CHECK_FALSE(to_remote(r, "sensors/t"));  // not under the local prefix: not subscribed
    CHECK_FALSE(to_local(r, "site1/sensors/t"));
    // `#` matches its parent level: the prefix is then not at the start and stays.
    const auto p = rule("# out 0 a/ b/");
    CHECK(to_remote(p, "a/x") == "b/x");
    CHECK(to_remote(p, "a") == "b/a");
    // Only one way for in and out.
    const auto in = rule("cmd/+ in 2 \"\" remote/");
    CHECK(to_local(in, "remote/cmd/go") == "cmd/go");
    CHECK_FALSE(to_remote(in, "cmd/go"));
    const auto out = rule("data/+ out 0 local/ \"\"");
    CHECK(to_remote(out, "local/data/1") == "data/1");
    CHECK_FALSE(to_local(out, "data/1"));
    // Wildcards at the first level do not see `$` topics; a `$SYS` pattern does.
    CHECK_FALSE(to_remote(rule("#"), "$SYS/broker/uptime"));
    const auto sys = rule("clients/total in 0 test/mosquitto/org/ $SYS/broker/");
    CHECK(to_local(sys, "$SYS/broker/clients/total") == "test/mosquitto/org/clients/total");
}

TEST_CASE("bridge topic map: first matching rule, subscriptions merged") {
    topic_map m({rule("a/# out 1"), rule("a/b both 2 \"\" r/"), rule("c/# in 0 l/ \"\""),
                 rule("a/# both 2")});
    auto o = m.outgoing("a/b");
    REQUIRE(o);
    CHECK(o->topic == "a/b");  // rule 1 wins over rule 2
    CHECK(o->qos == qos::at_least_once);
    CHECK(m.incoming("r/a/b")->topic == "a/b");
    CHECK(m.incoming("c/x")->topic == "l/c/x");
    CHECK_FALSE(m.outgoing("c/x"));
    CHECK_FALSE(m.incoming("z"));
    using sub = topic_map::subscription;
    CHECK(m.local_subscriptions() ==
          std::vector<sub>{{"a/#", qos::exactly_once}, {"a/b", qos::exactly_once}});
    CHECK(m.remote_subscriptions() ==
          std::vector<sub>{{"r/a/b", qos::exactly_once}, {"c/#", qos::at_most_once},
                           {"a/#", qos::exactly_once}});
}
