// libFuzzer target: the text parsers an operator's files and a scraper's requests reach, and
// the topic filter algebra the ACL check stands on. A hand-edited file must get a clear
// "FILE:LINE: ..." error, never a crash or a hang; the metrics endpoint's request parser
// faces the network.
//
// The first input byte chooses what the rest is (the parts split on NUL bytes):
// 0 tern-broker's configuration: the main file, then files that include_dir lists (in
//   memory); a parsed config also goes through to_json();
// 1 tern-bridge's configuration file;
// 2 an acl_file, then a user name (empty: anonymous), a client id, then topics and filters:
//   a filter may_subscribe() refuses lets no topic it matches be read (allows()), and a
//   stored session's check (stored_may_read) agrees with allows() when the user is known;
// 3 two topic filters and topics: filter_intersection / filters_overlap / filter_covers
//   agree with each other and with topic_matches on the topics;
// 4 a password file and a user: set_password_line() then parse() finds the user with the
//   hash set, and no longer once the line is removed; every other user keeps its entry;
// 5 an HTTP request head: read at once and byte by byte the parser never refuses a prefix of
//   a head it accepts, and bytes after the head change nothing; then the value parsers
//   (durations, byte sizes, addresses, policies) on the same text.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/bridge/config.hpp"
#include "mqtt/broker/acl_file.hpp"
#include "mqtt/broker/config.hpp"
#include "mqtt/broker/metrics.hpp"
#include "mqtt/broker/password_file.hpp"
#include "mqtt/protocol/topic.hpp"

namespace broker = mqtt::broker;
namespace bridge = mqtt::bridge;
namespace protocol = mqtt::protocol;

namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "config_fuzz: %s\n", what);
        std::abort();
    }
}

std::vector<std::string_view> split_nul(std::string_view text) {
    std::vector<std::string_view> parts;
    for (;;) {
        const auto nul = text.find('\0');
        parts.push_back(text.substr(0, nul));
        if (nul == std::string_view::npos) return parts;
        text.remove_prefix(nul + 1);
    }
}

void broker_config(std::string_view text) {
    const auto parts = split_nul(text);
    // Every directory holds the same files: "0.conf", "1.conf", ... (parts after the first).
    std::map<std::string, std::string> files;
    for (std::size_t i = 1; i < parts.size(); ++i) {
        files.emplace(std::to_string(i - 1) + ".conf", std::string{parts[i]});
    }
    broker::config_source source;
    source.list_dir = [&](const std::string&, std::string&) {
        std::vector<std::string> names;
        for (const auto& f : files) names.push_back(f.first);
        return std::optional{names};
    };
    source.read_file = [&](const std::string& path,
                           std::string& why) -> std::optional<std::string> {
        const auto slash = path.rfind('/');
        const auto it = files.find(slash == std::string::npos ? path : path.substr(slash + 1));
        if (it == files.end()) {
            why = "no such file";
            return std::nullopt;
        }
        return it->second;
    };
    source.hostname = [] { return std::string{"fuzz.host"}; };
    const auto r = broker::parse_config(parts[0], "fuzz.conf", source);
    if (r) {
        check(!broker::to_json(*r.value).empty(), "a parsed config renders no JSON");
    } else {
        check(!r.error.to_string().empty(), "a refused config without a message");
    }
}

void bridge_config(std::string_view text) {
    bridge::address local;
    local.host = "127.0.0.1";
    const auto r = bridge::parse_config(text, "fuzz.conf", "fuzz.host", local);
    if (r.error) check(!r.error->to_string().empty(), "a refused bridge file without a message");
}

void acl(std::string_view text) {
    const auto parts = split_nul(text);
    const auto parsed = broker::acl_file::parse(parts[0], "fuzz.acl");
    if (!parsed.value) {
        check(!parsed.error.empty(), "a refused acl_file without a message");
        return;
    }
    const auto& file = *parsed.value;
    const std::string user = parts.size() > 1 ? std::string{parts[1]} : std::string{};
    const std::string* username = user.empty() ? nullptr : &user;
    broker::acl_client c;
    c.username = username;
    c.client_id = parts.size() > 2 ? parts[2] : std::string_view{"fuzz"};
    c.block = file.block_of(username);
    std::vector<std::string_view> topics;
    std::vector<std::string_view> filters;
    for (std::size_t i = 3; i < parts.size(); ++i) {
        if (protocol::is_valid_topic_name(parts[i])) topics.push_back(parts[i]);
        if (protocol::is_valid_topic_filter(parts[i])) filters.push_back(parts[i]);
    }
    std::string scratch;
    for (const auto t : topics) {
        const bool read = file.allows(c, broker::acl_access::read, t, scratch);
        (void)file.allows(c, broker::acl_access::write, t, scratch);
        (void)file.allows_unknown_user(c.client_id, broker::acl_access::read, t, scratch);
        check(broker::stored_may_read(file, c.client_id, true, username, t, scratch) == read,
              "stored_may_read with a known user differs from allows()");
    }
    for (const auto f : filters) {
        if (file.may_subscribe(c, f)) continue;
        for (const auto t : topics) {
            if (!protocol::topic_matches(f, t)) continue;
            check(!file.allows(c, broker::acl_access::read, t, scratch),
                  "may_subscribe refused a filter under which a topic can be read");
        }
    }
}

void filter_algebra(std::string_view text) {
    const auto parts = split_nul(text);
    if (parts.size() < 2) return;
    const auto a = parts[0];
    const auto b = parts[1];
    if (!protocol::is_valid_topic_filter(a) || !protocol::is_valid_topic_filter(b)) {
        std::string meet;
        (void)broker::filter_intersection(a, b, meet);  // defined for any input
        (void)broker::filter_covers(a, b);
        return;
    }
    std::string meet;
    const bool meets = broker::filter_intersection(a, b, meet);
    check(meets == broker::filters_overlap(a, b), "filter_intersection and filters_overlap differ");
    check(broker::filters_overlap(b, a) == meets, "filters_overlap is not symmetric");
    check(broker::filter_covers(a, a) && broker::filter_covers(b, b),
          "a filter does not cover itself");
    if (meets) {
        check(protocol::is_valid_topic_filter(meet), "the meet is not a valid filter");
        check(broker::filter_covers(a, meet) && broker::filter_covers(b, meet),
              "a filter does not cover the meet");
    }
    const bool a_covers_b = broker::filter_covers(a, b);
    if (a_covers_b) check(meets, "a covers b but they do not overlap");
    for (std::size_t i = 2; i < parts.size(); ++i) {
        const auto t = parts[i];
        if (!protocol::is_valid_topic_name(t)) continue;
        const bool in_a = protocol::topic_matches(a, t);
        const bool in_b = protocol::topic_matches(b, t);
        if (in_a && in_b) {
            check(meets, "a topic matches both filters, which do not overlap");
            check(protocol::topic_matches(meet, t), "a topic of both filters is not in the meet");
        }
        if (meets && protocol::topic_matches(meet, t)) {
            check(in_a && in_b, "a topic of the meet is not matched by both filters");
        }
        if (a_covers_b && in_b) check(in_a, "a covers b but misses a topic of b");
    }
}

// A valid $7$ hash made once (make_password_hash salts at random; the parse is what is
// tested, not the digest).
const std::string& some_hash() {
    static const std::string h = broker::make_password_hash("fuzz", 1).value_or("");
    return h;
}

void passwords(std::string_view text) {
    const auto parts = split_nul(text);
    std::vector<std::string> warnings;
    const auto before = broker::password_file::parse(parts[0], "fuzz.pw", &warnings);
    for (const auto& w : warnings) check(!w.empty(), "an empty warning");
    if (parts.size() < 2) return;
    const std::string user{parts[1]};
    if (!broker::valid_password_user(user)) return;
    check(!some_hash().empty(), "no hash could be made");
    bool found = false;
    const auto set = broker::set_password_line(parts[0], user, some_hash(), &found);
    if (before.find(user) != nullptr) {
        check(found, "a user the file holds was not found by set_password_line");
    }
    const auto after = broker::password_file::parse(set, "fuzz.pw");
    const auto* e = after.find(user);
    check(e != nullptr, "the user set is not in the file");
    const auto want = broker::parse_password_hash(some_hash());
    check(
        want && e->salt == want->salt && e->hash == want->hash && e->iterations == want->iterations,
        "the user set does not have the hash set");
    const auto removed =
        broker::password_file::parse(broker::set_password_line(set, user, ""), "fuzz.pw");
    check(removed.find(user) == nullptr, "the user removed is still in the file");
    // Other users named in the input keep what they had.
    for (std::size_t i = 2; i < parts.size(); ++i) {
        const std::string other{parts[i]};
        if (other == user) continue;
        const auto* was = before.find(other);
        const auto* now = after.find(other);
        check((was == nullptr) == (now == nullptr), "another user appeared or went");
        if (was != nullptr) {
            check(was->hash == now->hash && was->salt == now->salt, "another user's hash changed");
        }
    }
}

void http_and_values(std::string_view text) {
    broker::http_request whole;
    const auto r = broker::parse_http_request(text, whole);
    if (r == broker::http_parse::complete) {
        check(!whole.method.empty() && !whole.target.empty(),
              "a complete request without a method or target");
        check(whole.target.find('?') == std::string::npos, "the target keeps its query");
        const auto head_end = text.find("\r\n\r\n") + 4;
        // Every prefix of a short head, about 256 of a long one.
        const std::size_t step = head_end <= 512 ? 1 : head_end / 256;
        for (std::size_t n = 0; n < head_end; n += step) {
            broker::http_request part;
            const auto p = broker::parse_http_request(text.substr(0, n), part);
            check(p == broker::http_parse::incomplete, "a prefix of an accepted head was judged");
        }
        broker::http_request head_only;
        check(broker::parse_http_request(text.substr(0, head_end), head_only) == r &&
                  head_only.method == whole.method && head_only.target == whole.target,
              "bytes after the head changed the request");
        (void)broker::metrics_http_response(whole, [] { return std::string{"x"}; });
    } else if (r == broker::http_parse::bad) {
        check(!broker::http_error_response(r).empty(), "no response to a bad request");
    }
    const auto d = broker::parse_duration(text);
    if (d) check(d->count() >= 0, "a negative duration");
    const auto size = bridge::parse_byte_size(text);
    if (size) check(*size >= 64 * 1024, "a byte size under the floor");
    (void)bridge::parse_address(text);
    (void)bridge::parse_full_policy(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view text{reinterpret_cast<const char*>(data) + 1, size - 1};
    switch (data[0] % 6) {
        case 0:
            broker_config(text);
            break;
        case 1:
            bridge_config(text);
            break;
        case 2:
            acl(text);
            break;
        case 3:
            filter_algebra(text);
            break;
        case 4:
            passwords(text);
            break;
        default:
            http_and_values(text);
            break;
    }
    return 0;
}
