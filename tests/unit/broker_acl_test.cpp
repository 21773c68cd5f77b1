// acl_file: parsing, and the allow/deny table, decided as Mosquitto 2.0 decides
// (tests/interop/acl_compare_test.py checks the same kind of table against Mosquitto itself).

#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "mqtt/broker/acl_file.hpp"

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
