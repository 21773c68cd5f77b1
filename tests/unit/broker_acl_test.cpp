// acl_file: parsing, and the allow/deny table, decided as Mosquitto 2.0 decides
// (tests/interop/acl_compare_test.py checks the same kind of table against Mosquitto itself).

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include "mqtt/broker/acl_file.hpp"
#include "mqtt/protocol/topic.hpp"

namespace {

using namespace mqtt::broker;

constexpr std::string_view rules =
    "# anonymous clients\n"
    "topic read public/#\n"
    "topic readwrite anon/+\n"
    "\n"
    "user alice\n"
    "topic readwrite alice/#\n"
    "topic write shared/in\n"
    "topic deny alice/secret\n"
    "topic read $SYS/#\n"
    "user bob\n"
    "topic read alice/#\n"
    "topic readwrite   with spaces/in name\n"
    "user alice\n"
    "topic read extra/alice\n"
    "pattern readwrite clients/%c/#\n"
    "pattern read users/%u/inbox\n"
    "pattern deny clients/%c/locked\n";

struct row {
    std::optional<std::string> user;
    std::string client_id;
    acl_access access;
    std::string topic;
    bool allowed;
};

bool check(const acl_file& acl, const row& r) {
    const std::string* user = r.user ? &*r.user : nullptr;
    const acl_client c{user, r.client_id, acl.block_of(user)};
    std::string scratch;
    return acl.allows(c, r.access, r.topic, scratch);
}

}  // namespace

TEST_CASE("acl_file: the allow/deny table") {
    const auto parsed = acl_file::parse(rules, "acl");
    REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
    const auto& acl = *parsed.value;
    constexpr auto R = acl_access::read;
    constexpr auto W = acl_access::write;
    const std::optional<std::string> anon;
    const row table[] = {
        // anonymous block: only for clients without a user name
        {anon, "c1", R, "public/news", true},
        {anon, "c1", W, "public/news", false},
        {anon, "c1", R, "public", true},  // '#' matches the parent level
        {anon, "c1", W, "anon/x", true},
        {anon, "c1", W, "anon/x/y", false},
        {anon, "c1", R, "alice/a", false},
        {std::string{"carol"}, "c1", R, "public/news", false},  // a user with no block
        // alice: her own rules, the later `user alice` block merged in
        {std::string{"alice"}, "a1", W, "alice/a/b", true},
        {std::string{"alice"}, "a1", R, "alice", true},
        {std::string{"alice"}, "a1", W, "shared/in", true},
        {std::string{"alice"}, "a1", R, "shared/in", false},
        {std::string{"alice"}, "a1", R, "alice/secret", false},  // deny wins over readwrite
        {std::string{"alice"}, "a1", W, "alice/secret", false},
        {std::string{"alice"}, "a1", R, "alice/secret/x", true},  // deny is exact here
        {std::string{"alice"}, "a1", R, "extra/alice", true},
        {std::string{"alice"}, "a1", R, "$SYS/broker/uptime", true},
        {std::string{"alice"}, "a1", R, "public/news", false},  // anonymous rules are not hers
        // bob
        {std::string{"bob"}, "b1", R, "alice/a", true},
        {std::string{"bob"}, "b1", W, "alice/a", false},
        {std::string{"bob"}, "b1", W, "with spaces/in name", true},
        {std::string{"bob"}, "b1", R, "$SYS/broker/uptime", false},
        // patterns apply to everyone, anonymous too (but %u needs a user name)
        {anon, "c1", W, "clients/c1/x", true},
        {anon, "c1", W, "clients/c2/x", false},
        {std::string{"bob"}, "b1", R, "clients/b1", true},
        {std::string{"bob"}, "b1", W, "clients/b1/locked", false},  // deny pattern
        {std::string{"bob"}, "b1", R, "users/bob/inbox", true},
        {std::string{"bob"}, "b1", W, "users/bob/inbox", false},
        {std::string{"bob"}, "b1", R, "users/alice/inbox", false},
        {anon, "c1", R, "users//inbox", false},
        // '+' or '#' in a user name or client id: patterns refuse
        {std::string{"b+"}, "b1", R, "users/b+/inbox", false},
        {std::string{"bob"}, "b#", R, "clients/b#", false},
        {std::string{"bob"}, "b#", R, "alice/x", true},  // own rules come first
        // a client id with '/' reaches deeper levels, as in Mosquitto
        {anon, "x/y", W, "clients/x/y/z", true},
        // wildcards in the checked topic are not special: it is a topic name
        {anon, "c1", R, "$SYS/x", false},
    };
    for (const auto& r : table) {
        CAPTURE(r.user.value_or("(anonymous)"));
        CAPTURE(r.client_id);
        CAPTURE(r.topic);
        CAPTURE(static_cast<int>(r.access));
        CHECK(check(acl, r) == r.allowed);
    }
}

TEST_CASE("acl_file: without any rule for a client everything is refused") {
    const auto parsed = acl_file::parse("user alice\ntopic a\n", "acl");
    REQUIRE(parsed.value);
    CHECK_FALSE(check(*parsed.value, {std::nullopt, "c", acl_access::read, "a", false}));
    CHECK(check(*parsed.value, {std::string{"alice"}, "c", acl_access::read, "a", true}));
    const auto empty = acl_file::parse("# nothing\n", "acl");
    REQUIRE(empty.value);
    CHECK_FALSE(check(*empty.value, {std::string{"alice"}, "c", acl_access::read, "a", false}));
}

TEST_CASE("acl_file: errors name FILE:LINE") {
    CHECK(acl_file::parse("topic\n", "a.acl").error == "a.acl:1: empty topic");
    CHECK(acl_file::parse("\ntopic sometimes x\n", "a.acl").error ==
          "a.acl:2: invalid access 'sometimes' (read, write, readwrite or deny)");
    CHECK(acl_file::parse("topic read a/#/b\n", "a.acl").error ==
          "a.acl:1: invalid topic filter 'a/#/b'");
    CHECK(acl_file::parse("user\n", "a.acl").error == "a.acl:1: missing user name after 'user'");
    CHECK(acl_file::parse("usr bob\n", "a.acl").error ==
          "a.acl:1: invalid line (expected user, topic or pattern)");
    // Deny rules are kept in front of the others.
    const auto p = acl_file::parse("user u\ntopic a\ntopic deny b\n", "a.acl");
    REQUIRE(p.value);
    REQUIRE(p.value->users().size() == 1);
    CHECK(p.value->users()[0].rules.front().topic == "b");
}

TEST_CASE("acl_file: checking patterns reuses the scratch string") {
    const auto parsed = acl_file::parse("pattern read c/%c/#\n", "acl");
    REQUIRE(parsed.value);
    const acl_client c{nullptr, "client-1", -1};
    std::string scratch;
    CHECK(parsed.value->allows(c, acl_access::read, "c/client-1/x", scratch));
    const auto* data = scratch.data();
    const auto cap = scratch.capacity();
    for (int i = 0; i < 100; ++i) {
        CHECK(parsed.value->allows(c, acl_access::read, "c/client-1/x", scratch));
    }
    CHECK(scratch.data() == data);
    CHECK(scratch.capacity() == cap);
}

TEST_CASE("topic filters: intersection, overlap and cover, level by level") {
    struct meet_row {
        std::string_view a, b;
        std::optional<std::string_view> meet;  // nullopt: no topic matches both
    };
    const meet_row meets[] = {
        {"a/b", "a/b", "a/b"},
        {"a/b", "a/c", std::nullopt},
        {"a/+", "+/b", "a/b"},
        {"+/+", "+/+", "+/+"},
        {"a/#", "+/+", "a/+"},
        {"a/#", "a", "a"},  // '#' includes the parent level
        {"a", "a/#", "a"},
        {"a/+", "a", std::nullopt},
        {"a/+/c", "a/b/#", "a/b/c"},
        {"a/b/#", "a/+/c/d", "a/b/c/d"},
        {"#", "#", "#"},
        {"#", "+/#", "+/#"},
        {"a//b", "a/+/b", "a//b"},
        {"/+", "+/x", "/x"},
        // Wildcards at the first level do not reach '$' topics (MQTT-4.7.2-1)...
        {"#", "$SYS/x", std::nullopt},
        {"$SYS/x", "#", std::nullopt},
        {"+/x", "$SYS/x", std::nullopt},
        {"$SYS/#", "$SYS/+", "$SYS/+"},
        {"$SYS/#", "#", std::nullopt},
        // ...below it they do.
        {"x/$y", "x/+", "x/$y"},
        {"x/#", "x/$y/z", "x/$y/z"},
    };
    for (const auto& r : meets) {
        CAPTURE(r.a);
        CAPTURE(r.b);
        std::string meet = "stale";
        CHECK(filter_intersection(r.a, r.b, meet) == r.meet.has_value());
        CHECK(filters_overlap(r.a, r.b) == r.meet.has_value());
        CHECK(filters_overlap(r.b, r.a) == r.meet.has_value());
        if (r.meet) CHECK(meet == *r.meet);
    }
    struct cover_row {
        std::string_view outer, inner;
        bool covers;
    };
    const cover_row covers[] = {
        {"a", "a", true},           {"a", "a/b", false},      {"a/b", "a", false},
        {"#", "a/b", true},         {"#", "#", true},         {"#", "$SYS/x", false},
        {"$SYS/#", "$SYS/x", true}, {"$SYS/#", "$SYS", true}, {"a/#", "a", true},
        {"a/#", "a/+/c", true},     {"a/#", "a/#", true},     {"a/+", "a/#", false},
        {"a/+", "a/b", true},       {"a/+", "a/+", true},     {"a/b", "a/+", false},
        {"a/+", "a", false},        {"+/b", "x/b", true},     {"+/b", "$x/b", false},
        {"+/+", "+/#", false},      {"+/#", "#", true},       {"a/+/#", "a/#", false},
        {"a/+/#", "a/x", true},     {"+/#", "$SYS/x", false}, {"x/+", "x/$y", true},
    };
    for (const auto& r : covers) {
        CAPTURE(r.outer);
        CAPTURE(r.inner);
        CHECK(filter_covers(r.outer, r.inner) == r.covers);
    }
}

namespace {

bool may_subscribe(const acl_file& acl, const std::optional<std::string>& user,
                   std::string_view client_id, std::string_view filter) {
    const std::string* u = user ? &*user : nullptr;
    return acl.may_subscribe(acl_client{u, client_id, acl.block_of(u)}, filter);
}

}  // namespace

TEST_CASE("acl_file: SUBSCRIBE is refused where the client could read nothing") {
    const auto parsed = acl_file::parse(rules, "acl");
    REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
    const auto& acl = *parsed.value;
    const std::optional<std::string> anon;
    const std::optional<std::string> alice{"alice"};
    const std::optional<std::string> bob{"bob"};
    const std::optional<std::string> carol{"carol"};  // no block: only the patterns
    struct sub_row {
        const std::optional<std::string>& user;
        std::string_view client_id;
        std::string_view filter;
        bool granted;
    };
    const sub_row table[] = {
        {anon, "c1", "public/news", true},
        {anon, "c1", "public/+/x", true},
        {anon, "c1", "#", true},            // public/# lies inside
        {anon, "c1", "+/+", true},          // anon/+ and public/x
        {anon, "c1", "alice/#", false},     // no rule of the anonymous block or pattern
        {anon, "c1", "clients/+/x", true},  // clients/c1/x by the pattern
        {anon, "c1", "clients/c2/#", false},
        {anon, "c1", "users/+/inbox", false},  // %u: not for anonymous clients
        {anon, "c1", "$SYS/#", false},
        {alice, "a1", "alice/#", true},
        {alice, "a1", "alice/secret", false},   // wholly inside its deny rule
        {alice, "a1", "alice/secret/#", true},  // alice/secret/x is readable
        {alice, "a1", "shared/in", false},      // write only
        {alice, "a1", "$SYS/#", true},
        {alice, "a1", "$SYS/broker/+", true},
        {alice, "a1", "extra/alice", true},         // a second block of alice, merged
        {alice, "a8", "clients/a8/locked", false},  // the deny pattern comes first
        {alice, "a8", "clients/a8/+", true},
        {alice, "a8", "users/alice/inbox", true},
        {alice, "a1", "public/#", false},  // the anonymous block is not alice's
        {bob, "b1", "alice/#", true},
        {bob, "b1", "alice/secret", true},       // alice's deny rule is hers only
        {bob, "b#5", "alice/data", true},        // its own rules still apply...
        {bob, "b#5", "users/bob/inbox", false},  // ...patterns not, with '#' in the id
        {carol, "c2", "#", true},
        {carol, "c2", "public/#", false},
        {carol, "c2", "clients/c2/a", true},
        {carol, "c2", "users/carol/+", true},
        {carol, "c2", "$share/g/users/carol/inbox", false},  // callers pass the inner filter
    };
    for (const auto& r : table) {
        CAPTURE(r.user.value_or("(anonymous)"));
        CAPTURE(r.client_id);
        CAPTURE(r.filter);
        CHECK(may_subscribe(acl, r.user, r.client_id, r.filter) == r.granted);
    }
    // A filter without wildcards is granted exactly when that topic may be read.
    for (const auto* topic : {"public/news", "anon/x", "alice/data", "alice/secret", "x"}) {
        for (const auto& user : {anon, alice, bob, carol}) {
            std::string scratch;
            const std::string* u = user ? &*user : nullptr;
            const acl_client c{u, "a1", acl.block_of(u)};
            CHECK(acl.may_subscribe(c, topic) == acl.allows(c, acl_access::read, topic, scratch));
        }
    }
    // Only single deny rules are seen to cover: two that cover a/# together do not refuse it.
    const auto split = acl_file::parse("topic read a/#\ntopic deny a\ntopic deny a/+/#\n", "acl");
    REQUIRE(split.value);
    CHECK(may_subscribe(*split.value, anon, "c", "a/#"));
    CHECK_FALSE(may_subscribe(*split.value, anon, "c", "a"));
    CHECK_FALSE(may_subscribe(*split.value, anon, "c", "a/+/x"));
    // Nothing for the client at all: every filter refused.
    const auto none = acl_file::parse("user alice\ntopic a\n", "acl");
    REQUIRE(none.value);
    CHECK_FALSE(may_subscribe(*none.value, anon, "c", "#"));
    CHECK(may_subscribe(*none.value, alice, "c", "#"));
}

TEST_CASE("acl_file: a refused filter matches no topic the client may read") {
    // Every filter of up to three levels over a small alphabet, against every topic of up to
    // four levels over it (with a name no rule mentions, so '+' in a rule has a value of its
    // own): may_subscribe false must mean allows() refuses each topic the filter matches.
    const auto parsed = acl_file::parse(
        "topic read a/+/b\n"
        "topic deny a/x/#\n"
        "topic readwrite $s/#\n"
        "topic deny $s/x\n"
        "topic write b/#\n"
        "pattern read c/%c/+\n"
        "pattern deny c/id/x\n"
        "pattern read +/x\n",
        "acl");
    REQUIRE(parsed.value);
    const auto& acl = *parsed.value;
    const acl_client client{nullptr, "id", acl.block_of(nullptr)};
    const std::vector<std::string> names = {"a", "b", "c", "x", "id", "$s", "q"};
    std::vector<std::string> topics;
    std::vector<std::string> level{""};
    for (int depth = 1; depth <= 4; ++depth) {
        std::vector<std::string> next;
        for (const auto& prefix : level)
            for (const auto& n : names) next.push_back(prefix.empty() ? n : prefix + "/" + n);
        topics.insert(topics.end(), next.begin(), next.end());
        level = std::move(next);
    }
    std::vector<std::string> filters;
    std::vector<std::string> fl{""};
    auto filter_names = names;
    filter_names.push_back("+");
    for (int depth = 1; depth <= 3; ++depth) {
        std::vector<std::string> next;
        for (const auto& prefix : fl) {
            for (const auto& n : filter_names)
                next.push_back(prefix.empty() ? n : prefix + "/" + n);
            filters.push_back(prefix.empty() ? "#" : prefix + "/#");
        }
        filters.insert(filters.end(), next.begin(), next.end());
        fl = std::move(next);
    }
    std::string scratch;
    int refused = 0;
    int granted_readable = 0;
    int granted_unreadable = 0;
    for (const auto& f : filters) {
        bool readable = false;
        for (const auto& t : topics) {
            if (mqtt::protocol::topic_matches(f, t) &&
                acl.allows(client, acl_access::read, t, scratch)) {
                readable = true;
                break;
            }
        }
        const bool granted = acl.may_subscribe(client, f);
        CAPTURE(f);
        if (!granted) {
            CHECK_FALSE(readable);
            ++refused;
        } else if (readable) {
            ++granted_readable;
        } else {
            ++granted_unreadable;
        }
    }
    // No deny rules here need each other to cover an overlap, so the answer is exact too.
    CHECK(granted_unreadable == 0);
    // Both answers occur (the universe is big enough to mean something).
    CHECK(refused > 100);
    CHECK(granted_readable > 100);
}

TEST_CASE("acl_file: a stored session whose user name is not known reads only what any user may") {
    const auto parsed = acl_file::parse(
        "topic read public/#\n"
        "user alice\n"
        "topic deny clients/+/private\n"
        "topic read alice/#\n"
        "pattern read clients/%c/#\n"
        "pattern read users/%u/#\n"
        "pattern deny home/%u/locked\n"
        "pattern read home/#\n",
        "acl");
    REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
    const auto& acl = *parsed.value;
    std::string scratch;
    const auto unknown = [&](std::string_view client_id, std::string_view topic) {
        return stored_may_read(acl, client_id, false, nullptr, topic, scratch);
    };
    const std::string bob = "bob";
    const auto as_bob = [&](std::string_view topic) {
        return stored_may_read(acl, "c1", true, &bob, topic, scratch);
    };
    // A pattern that needs no user name, with the client id.
    CHECK(unknown("c1", "clients/c1/x"));
    CHECK_FALSE(unknown("c1", "clients/c2/x"));
    CHECK(as_bob("clients/c1/x"));
    // A deny rule of one user's block could be this client's: refused. bob has none.
    CHECK_FALSE(unknown("c1", "clients/c1/private"));
    CHECK(as_bob("clients/c1/private"));
    // Neither the anonymous block's rules nor a user's own allow, nor a pattern with %u.
    CHECK_FALSE(unknown("c1", "public/x"));
    CHECK_FALSE(unknown("c1", "alice/x"));
    CHECK_FALSE(unknown("c1", "users/bob/x"));
    CHECK(as_bob("users/bob/x"));
    CHECK(stored_may_read(acl, "c1", true, nullptr, "public/x", scratch));  // anonymous
    // A deny pattern with %u: every topic from its %u level on might be this user's.
    CHECK_FALSE(unknown("c1", "home/x/y"));
    CHECK(as_bob("home/x/y"));
    CHECK_FALSE(as_bob("home/bob/locked"));
    // A client id with a wildcard widens patterns: refused, as for a connected client.
    CHECK_FALSE(unknown("c+", "clients/c+/x"));
    // A deny pattern with %u in its first level: any topic could be refused.
    const auto first = acl_file::parse("pattern deny %u/x\npattern read #\n", "acl");
    REQUIRE(first.value.has_value());
    CHECK_FALSE(stored_may_read(*first.value, "c1", false, nullptr, "a/b", scratch));
    CHECK(stored_may_read(*first.value, "c1", true, &bob, "a/b", scratch));
    CHECK_FALSE(stored_may_read(*first.value, "c1", true, &bob, "bob/x", scratch));
}
