// The peer address a session keeps for its log lines: one word, exactly the text it was
// given back.

#include <doctest/doctest.h>

#include <chrono>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker_test_client.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/peer_name.hpp"
#include "mqtt/broker/session.hpp"

using mqtt::broker::peer_name;

TEST_CASE("peer_name: IPv4 addresses as the server writes them are packed, the rest copied") {
    static_assert(sizeof(peer_name) == 8);
    CHECK(peer_name{}.str().empty());
    CHECK(peer_name{""}.empty());
    for (const std::string_view packed :
         {"127.0.0.1:40123", "0.0.0.0:0", "255.255.255.255:65535", "10.20.30.40:1883"}) {
        CAPTURE(packed);
        const peer_name p{packed};
        CHECK(p.packed());
        CHECK(p.str() == packed);
    }
    // Anything that would not read back the same stays text, unchanged.
    for (const std::string_view text : std::initializer_list<std::string_view>{
             "[::1]:7", "[2001:db8::1234:5678]:54321", "?", "127.0.0.1",
             "127.0.0.1:", "127.0.0.01:5", "127.0.0.1:05", "256.0.0.1:5", "1.2.3.4:65536",
             "1.2.3:4", "1.2.3.4.5:6", "1.2.3.4:5x", " 1.2.3.4:5", "+1.2.3.4:5", "1.2.3.4:-5",
             "127.0.0.1:40123/node/00a1", std::string_view{"1.2.3.4:5\0", 10}}) {
        CAPTURE(text);
        const peer_name p{text};
        CHECK_FALSE(p.packed());
        CHECK(p.str() == text);
    }
    peer_name a{"[::1]:7"};
    peer_name b{std::move(a)};
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
    CHECK(b.str() == "[::1]:7");
    b = peer_name{"127.0.0.1:1"};
    CHECK(b.str() == "127.0.0.1:1");
}

TEST_CASE("peer_name: the session logs the address it was given") {
    using namespace tern_test;
    std::vector<std::string> lines;
    mqtt::broker::engine e{{}, [&](int, std::string_view line) { lines.emplace_back(line); }, 1};
    auto now = clock::time_point{} + std::chrono::hours{1};
    for (const std::string_view peer : {"127.0.0.1:40123", "[::1]:7"}) {
        CAPTURE(peer);
        lines.clear();
        mqtt::broker::session s{e, now, peer};
        connect_packet c;
        c.version = protocol_version::v3_1_1;
        c.client_id = "logged";
        c.clean_start = true;
        auto b = encode(packet{c}, protocol_version::v3_1_1);
        REQUIRE(b.has_value());
        framer f;
        f.feed(*b);
        auto fr = f.next();
        REQUIRE(fr.has_value());
        REQUIRE(fr->has_value());
        s.on_frame(**fr, now);
        REQUIRE(s.state() == mqtt::broker::session_state::connected);
        CHECK(s.peer() == peer);
        bool seen = false;
        for (const auto& l : lines) seen |= l.find("connected from " + std::string{peer}) != l.npos;
        CHECK(seen);
        s.on_transport_closed(now);
    }
}
