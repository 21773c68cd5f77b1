#include "mqtt/protocol/topic.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using namespace std::string_view_literals;
using namespace mqtt::protocol;

namespace {

struct match_case {
    std::string_view filter;
    std::string_view topic;
    bool matches;
};

// The examples of MQTT 3.1.1 / 5.0 §4.7.1 and §4.7.2, then the edges around them.
constexpr match_case match_table[] = {
    // §4.7.1.2 multi-level wildcard
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/tennis/player1/#", "sport/tennis/player2", false},
    {"sport/tennis/player1/#", "sport/tennis", false},
    {"sport/#", "sport", true},
    {"sport/#", "sport/", true},
    {"sport/#", "sports", false},
    {"#", "sport/tennis/player1", true},
    {"#", "/", true},
    {"#", "a", true},
    // §4.7.1.3 single-level wildcard
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player2", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"sport/+/player1", "sport/tennis/player1", true},
    {"+/tennis/#", "sport/tennis", true},
    {"+/tennis/#", "sport/tennis/player1/ranking", true},
    {"+/tennis/#", "sport/golf", false},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+", "finance", true},
    {"+", "a/b", false},
    // §4.7.2 topics beginning with `$`
    {"#", "$SYS/x", false},
    {"#", "$SYS", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"+/#", "$SYS/monitor", false},
    {"+", "$x", false},
    {"$SYS/#", "$SYS/monitor/Clients", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"$SYS/monitor/Clients", "$SYS/monitor/Clients", true},
    {"$SYS/+", "$SYS/a/b", false},
    {"a/+", "a/$x", true},  // `$` matters at the first level only
    {"a/#", "a/$x/y", true},
    // empty levels are levels
    {"a//b", "a//b", true},
    {"a/+/b", "a//b", true},
    {"a/b", "a//b", false},
    {"a/#", "a//b", true},
    {"/#", "/", true},
    {"/#", "a", false},
    {"a/b/", "a/b/", true},
    {"a/b", "a/b/", false},
    {"a/b/", "a/b", false},
    {"a/b/#", "a/b/", true},
    {"+/+/+", "//", true},
    {"+/+", "//", false},
    // literal comparison is exact and case-sensitive (§4.7.3)
    {"ACCOUNTS", "Accounts", false},
    {"Accounts payable", "Accounts payable", true},
    {"a/b", "a/bc", false},
    {"a/bc", "a/b", false},
};

}  // namespace

TEST_CASE("topic_matches: specification examples and edges") {
    for (const auto& c : match_table) {
        CAPTURE(c.filter);
        CAPTURE(c.topic);
        REQUIRE(is_valid_topic_filter(c.filter));
        REQUIRE(is_valid_topic_name(c.topic));
        CHECK(topic_matches(c.filter, c.topic) == c.matches);
    }
}

TEST_CASE("topic_matches: any input gets an answer") {
    // Outside the preconditions the result is unspecified but must be safe to compute.
    for (const auto f : {""sv, "#/a"sv, "a+"sv, "/"sv, "+/#/x"sv}) {
        for (const auto t : {""sv, "a"sv, "$"sv, "/"sv, "a/+"sv}) (void)topic_matches(f, t);
    }
    CHECK(topic_matches("a+", "a+"));  // `+` inside a level is not a wildcard
}

TEST_CASE("is_valid_topic_filter") {
    SUBCASE("valid") {
        for (const auto f :
             {"#"sv, "+"sv, "sport/tennis/#"sv, "sport/+/player1"sv, "+/tennis/#"sv, "/"sv, "//"sv,
              "a//b"sv, "/+"sv, "+/+"sv, "+/+/+"sv, "$SYS/#"sv, "$SYS/monitor/+"sv, "a b"sv,
              "a/+/+/#"sv, "/#"sv, "$share/g/x"sv, "\xc3\xa9t\xc3\xa9/+"sv}) {
            CAPTURE(f);
            CHECK(is_valid_topic_filter(f));
        }
    }
    SUBCASE("invalid") {
        for (const auto f : {""sv,
                             "sport+"sv,
                             "sport/tennis#"sv,
                             "sport/tennis/#/ranking"sv,
                             "#/"sv,
                             "a/#/"sv,
                             "#/#"sv,
                             "+a"sv,
                             "a+/b"sv,
                             "a/b+"sv,
                             "a/+b/c"sv,
                             "++"sv,
                             "##"sv,
                             "+#"sv,
                             "#+"sv,
                             "a/#b"sv,
                             "a/b#"sv,
                             "a\0b"sv,
                             "\0"sv,
                             "a/\0/b"sv}) {
            CAPTURE(f);
            CHECK_FALSE(is_valid_topic_filter(f));
        }
    }
    SUBCASE("length limit") {
        CHECK(is_valid_topic_filter(std::string(max_topic_length, 'a')));
        CHECK_FALSE(is_valid_topic_filter(std::string(max_topic_length + 1, 'a')));
        CHECK(is_valid_topic_filter(std::string(max_topic_length - 2, 'a') + "/#"));
    }
}

TEST_CASE("is_valid_topic_name") {
    SUBCASE("valid") {
        for (const auto t : {"a"sv, "/"sv, "//"sv, "a//b"sv, "/finance"sv, "$SYS/x"sv, " "sv,
                             "sport/tennis/player1"sv, "$share/g/x"sv, "a$b"sv}) {
            CAPTURE(t);
            CHECK(is_valid_topic_name(t));
        }
    }
    SUBCASE("invalid") {
        for (const auto t :
             {""sv, "+"sv, "#"sv, "a/+"sv, "a/#"sv, "sp+rt"sv, "sport#"sv, "a\0b"sv, "\0"sv}) {
            CAPTURE(t);
            CHECK_FALSE(is_valid_topic_name(t));
        }
    }
    SUBCASE("length limit") {
        CHECK(is_valid_topic_name(std::string(max_topic_length, 'a')));
        CHECK_FALSE(is_valid_topic_name(std::string(max_topic_length + 1, 'a')));
    }
}

TEST_CASE("is_wildcard_filter, is_dollar_topic, is_system_topic") {
    CHECK(is_wildcard_filter("a/+/b"));
    CHECK(is_wildcard_filter("#"));
    CHECK_FALSE(is_wildcard_filter("a/b"));

    CHECK(is_dollar_topic("$SYS/x"));
    CHECK(is_dollar_topic("$x"));
    CHECK_FALSE(is_dollar_topic("a/$SYS"));
    CHECK_FALSE(is_dollar_topic(""));

    CHECK(is_system_topic("$SYS"));
    CHECK(is_system_topic("$SYS/"));
    CHECK(is_system_topic("$SYS/broker/clients/connected"));
    CHECK_FALSE(is_system_topic("$SYSTEM/x"));
    CHECK_FALSE(is_system_topic("$sys/x"));
    CHECK_FALSE(is_system_topic("a/$SYS/x"));
    static_assert(is_system_topic("$SYS/x"));
}

namespace {

struct shared_case {
    std::string_view input;
    share_status status;
    std::string_view share_name;
    std::string_view filter;
};

constexpr auto ok = share_status::shared;
constexpr auto bad = share_status::malformed;
constexpr auto plain = share_status::not_shared;

// MQTT 5.0 §4.8.2: `$share/{ShareName}/{filter}`.
constexpr shared_case shared_table[] = {
    {"$share/consumer1/sport/tennis/+", ok, "consumer1", "sport/tennis/+"},
    {"$share/consumer2/sport/tennis/+", ok, "consumer2", "sport/tennis/+"},
    {"$share/consumer1//finance", ok, "consumer1", "/finance"},
    {"$share/g/#", ok, "g", "#"},
    {"$share/g/+", ok, "g", "+"},
    {"$share/g//", ok, "g", "/"},
    {"$share/g/$SYS/#", ok, "g", "$SYS/#"},
    {"$share/g/$share/h/x", ok, "g", "$share/h/x"},  // the inner filter is just a filter
    {"$share/a b$c/x", ok, "a b$c", "x"},
    // malformed: the server must refuse these, not subscribe to them as literals
    {"$share", bad, "", ""},
    {"$share/", bad, "", ""},
    {"$share/g", bad, "", ""},
    {"$share/g/", bad, "", ""},  // the filter must be at least one character
    {"$share//x", bad, "", ""},  // [MQTT-4.8.2-1] empty ShareName
    {"$share//", bad, "", ""},
    {"$share/+/x", bad, "", ""},  // [MQTT-4.8.2-2]
    {"$share/#/x", bad, "", ""},
    {"$share/g+/x", bad, "", ""},
    {"$share/g#/x", bad, "", ""},
    {"$share/g/a#", bad, "", ""},  // invalid inner filter
    {"$share/g/a/#/b", bad, "", ""},
    {"$share/g/+b", bad, "", ""},
    {"$share/#", bad, "", ""},
    {"$share/+", bad, "", ""},
    {"$share/g\0/x"sv, bad, "", ""},
    // not shared: passed through whole, validity not judged here
    {"sport/#", plain, "", "sport/#"},
    {"#", plain, "", "#"},
    {"$sharex/g/x", plain, "", "$sharex/g/x"},
    {"$shared", plain, "", "$shared"},
    {"$SHARE/g/x", plain, "", "$SHARE/g/x"},
    {"share/g/x", plain, "", "share/g/x"},
    {"a/$share/g/x", plain, "", "a/$share/g/x"},
    {"$SYS/#", plain, "", "$SYS/#"},
    {"a+", plain, "", "a+"},
};

}  // namespace

TEST_CASE("parse_shared") {
    for (const auto& c : shared_table) {
        CAPTURE(c.input);
        const auto r = parse_shared(c.input);
        CHECK(r.status == c.status);
        CHECK(r.share_name == c.share_name);
        CHECK(r.filter == c.filter);
        CHECK(r.is_shared() == (c.status == ok));
        CHECK(r.is_malformed() == (c.status == bad));
        // Both parts are views into the input, so the broker can keep offsets.
        if (r.is_shared()) {
            CHECK(r.filter.data() + r.filter.size() == c.input.data() + c.input.size());
        }
    }
}

TEST_CASE("parse_shared: the inner filter keeps the $ rule") {
    const auto r = parse_shared("$share/g/#");
    REQUIRE(r.is_shared());
    CHECK_FALSE(topic_matches(r.filter, "$SYS/x"));
    CHECK(topic_matches(r.filter, "a/b"));
}

TEST_CASE("level_cursor counts levels as the specification does") {
    auto count = [](std::string_view s) {
        detail::level_cursor c{s};
        int n = 0;
        while (!c.done()) {
            (void)c.next();
            ++n;
        }
        return n;
    };
    CHECK(count("") == 1);
    CHECK(count("a") == 1);
    CHECK(count("/") == 2);
    CHECK(count("a//b") == 3);
    CHECK(count("a/b/") == 3);
    detail::level_cursor c{"/finance"};
    CHECK(c.next() == "");
    CHECK(c.next() == "finance");
    CHECK(c.done());
}
