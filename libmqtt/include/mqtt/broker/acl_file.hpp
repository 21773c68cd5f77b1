#pragma once

// Mosquitto's acl_file, read and matched as Mosquitto 2.0 does:
//   user NAME                       the `topic` lines after it are NAME's
//   topic [read|write|readwrite|deny] TOPIC   (readwrite when the access is left out)
//   pattern [read|write|readwrite|deny] TOPIC  for every client, %c = client id, %u = user
// `topic` lines before the first `user` line are for anonymous clients (no user name).
// A check walks the client's own `topic` rules, then the patterns: a matching `deny` rule
// refuses, a matching rule with the access asked for allows, and nothing matching refuses.
// Within each list the deny rules are looked at first. With patterns present, a user name
// or client id holding '+' or '#' is refused once the client's own rules did not allow.
// A SUBSCRIBE is refused only for a filter under which the client could read nothing
// (acl_file::may_subscribe, below); what a subscriber receives is still checked on every
// delivery (read). Mosquitto 2.0's default check grants every SUBSCRIBE instead.
//
// The rules are parsed once (the "compiled" form below) and immutable afterwards; checking
// allocates nothing except, for pattern rules, the growth of a caller-owned scratch string.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mqtt::broker {

enum class acl_access : std::uint8_t { read = 1, write = 2 };

struct acl_rule {
    std::string topic;         // a topic filter; for patterns, with %c / %u still in it
    std::uint8_t access = 0;   // read | write bits; 0 for deny
    bool substitutes = false;  // a pattern holding %c or %u
    bool needs_user = false;   // a pattern holding %u: skipped for anonymous clients
};

struct acl_user_rules {
    std::optional<std::string> user;  // nullopt: the anonymous block
    std::vector<acl_rule> rules;      // deny rules first, then the others in file order
};

// Who is asking: the block of the user (acl_file::block_of) is looked up once per
// connection, not per check.
struct acl_client {
    const std::string* username = nullptr;  // nullptr: anonymous
    std::string_view client_id;
    int block = -1;  // index into the user blocks; -1: none
};

struct acl_parse_result;

class acl_file {
  public:
    static acl_parse_result parse(std::string_view text, std::string_view file);

    // The block holding `username`'s rules (the anonymous block for nullptr); -1: none.
    int block_of(const std::string* username) const;
    // Whether `c` may read (receive) or write (publish) `topic`. `scratch` holds the
    // expanded patterns; pass the same string every time so it stops growing.
    bool allows(const acl_client& c, acl_access a, std::string_view topic,
                std::string& scratch) const;
    // Whether client `client_id`, whose user name is not known (a session stored before the
    // store kept user names), may read or write `topic` whoever its user is: no `deny`
    // rule of any block (the anonymous one too) matches; then the patterns as allows()
    // walks them, those holding %u skipped, but a `deny` pattern holding %u refuses when
    // the topic could match it for some user name (its levels from the one with %u on
    // taken as '#'). So its own `topic` rules never allow, and a refusal is never missed.
    bool allows_unknown_user(std::string_view client_id, acl_access a, std::string_view topic,
                             std::string& scratch) const;
    // Whether some topic that `filter` matches could be read by `c`: false only when each
    // rule that would let `c` read (its own, then the patterns) does not overlap the filter,
    // or overlaps it only where one deny rule looked at before it covers the overlap. A
    // union of deny rules covering the overlap together is not recognised, so the answer
    // errs towards true; a false is exact: allows(c, read, t) is false for every t the
    // filter matches. For SUBSCRIBE (not on the routing path: it allocates).
    bool may_subscribe(const acl_client& c, std::string_view filter) const;

    const std::vector<acl_user_rules>& users() const noexcept { return users_; }
    const std::vector<acl_rule>& patterns() const noexcept { return patterns_; }

  private:
    std::vector<acl_user_rules> users_;
    std::vector<acl_rule> patterns_;  // deny patterns first
};

// Whether the client of a stored session, offline, may read `topic`: as a client that
// connected with `username` (nullptr: none) when the store kept it (`identified`), else
// acl_file::allows_unknown_user. A replay at start (docs/persistence.md) checks with it.
bool stored_may_read(const acl_file& acl, std::string_view client_id, bool identified,
                     const std::string* username, std::string_view topic, std::string& scratch);

// Topic filter algebra for may_subscribe, with topic_matches' rules: levels split on '/',
// '+' one level, '#' that level and all below it and the parent ("a/#" matches "a"), and a
// wildcard in the first level matching no topic that starts with '$'. Pure functions,
// defined for any input.
//
// Whether some topic matches both filters; when one does, `meet` is the filter matching
// exactly the topics both match ("a/+" and "+/b": "a/b"; "a/#" and "+/+": "a/+").
bool filter_intersection(std::string_view a, std::string_view b, std::string& meet);
bool filters_overlap(std::string_view a, std::string_view b);
// Whether every topic `inner` matches is matched by `outer` ("a/#" covers "a/+/c" and "a").
bool filter_covers(std::string_view outer, std::string_view inner) noexcept;

struct acl_parse_result {
    std::optional<acl_file> value;
    std::string error;  // "FILE:LINE: message"
};

}  // namespace mqtt::broker
