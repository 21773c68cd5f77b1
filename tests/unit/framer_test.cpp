#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <stdexcept>

#include <vector>

#include "mqtt/error.hpp"
#include "mqtt/protocol/framer.hpp"

using namespace mqtt::protocol;
using bytes = std::vector<std::uint8_t>;

namespace {

// Feeds `in` one byte at a time and collects every frame as (first byte, body).
std::vector<std::pair<std::uint8_t, bytes>> frames_bytewise(framer& f, const bytes& in,
                                                            std::error_code& ec) {
    std::vector<std::pair<std::uint8_t, bytes>> out;
    for (auto b : in) {
        f.feed(std::span(&b, 1));
        for (;;) {
            auto r = f.next();
            if (!r) {
                ec = r.error();
                return out;
            }
            if (!*r) break;
            out.emplace_back((*r)->first_byte, bytes((*r)->body.begin(), (*r)->body.end()));
        }
    }
    return out;
}

}  // namespace

TEST_CASE("framer: whole packets out of one-byte chunks") {
    const bytes in{0xC0, 0x00,                          // PINGREQ
                   0x30, 0x05, 0x00, 0x01, 'a', 'h', 'i',  // PUBLISH a "hi"
                   0xE0, 0x00};                         // DISCONNECT
    framer f;
    std::error_code ec;
    auto frames = frames_bytewise(f, in, ec);
    REQUIRE(!ec);
    REQUIRE(frames.size() == 3);
    CHECK(frames[0].first == 0xC0);
    CHECK(frames[0].second.empty());
    CHECK(frames[1].first == 0x30);
    CHECK(frames[1].second == bytes{0x00, 0x01, 'a', 'h', 'i'});
    CHECK(frames[2].first == 0xE0);
    CHECK(f.buffered() == 0);
}

TEST_CASE("framer: remaining length boundaries (§1.5.5)") {
    SUBCASE("127 in one byte, 128 in two") {
        bytes p{0x30, 0x7F};
        p.resize(2 + 127, 'x');
        bytes q{0x30, 0x80, 0x01};
        q.resize(3 + 128, 'y');
        framer f;
        f.feed(p);
        f.feed(q);
        auto a = f.next();
        REQUIRE((a && *a));
        CHECK((*a)->body.size() == 127);
        CHECK((*a)->size() == 129);
        auto b = f.next();
        REQUIRE((b && *b));
        CHECK((*b)->body.size() == 128);
        CHECK((*b)->size() == 131);
    }
    SUBCASE("a fifth length byte is malformed") {
        framer f;
        f.feed(bytes{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01});
        auto r = f.next();
        REQUIRE(!r);
        CHECK(r.error() == mqtt::errc::remaining_length_too_long);
        // The framer stays failed.
        f.feed(bytes{0xC0, 0x00});
        CHECK(!f.next());
    }
    SUBCASE("the error is seen as soon as the fifth byte arrives") {
        framer f;
        std::error_code ec;
        frames_bytewise(f, bytes{0x30, 0x80, 0x80, 0x80, 0x80}, ec);
        CHECK(ec == mqtt::errc::remaining_length_too_long);
    }
    SUBCASE("non-minimal encoding is malformed (MQTT-1.5.5-1)") {
        framer f;
        f.feed(bytes{0xC0, 0x80, 0x00});
        auto r = f.next();
        REQUIRE(!r);
        CHECK(r.error() == mqtt::errc::non_minimal_variable_int);
    }
    SUBCASE("the largest length is accepted in the header") {
        framer f(max_packet_size);
        f.feed(bytes{0x30, 0xFF, 0xFF, 0xFF, 0x7F});
        auto r = f.next();
        REQUIRE(r);
        CHECK(!*r);  // incomplete, not an error
    }
}

TEST_CASE("framer: maximum packet size is enforced before the body is buffered") {
    framer f(100);
    // Header announcing 1,000 bytes: rejected at once, before any body byte is held.
    f.feed(bytes{0x30, 0xE8, 0x07});
    CHECK(f.error() == mqtt::errc::packet_too_large);
    CHECK(f.buffered() == 0);
    bytes body(1000, 'x');
    f.feed(body);
    CHECK(f.buffered() == 0);
    auto r = f.next();
    REQUIRE(!r);
    CHECK(r.error() == mqtt::errc::packet_too_large);
}

TEST_CASE("framer: the limit counts the whole packet, fixed header included") {
    framer f(10);
    bytes ok{0x30, 0x08, 0, 1, 'a', 1, 2, 3, 4, 5};  // 10 bytes
    f.feed(ok);
    auto r = f.next();
    REQUIRE((r && *r));
    bytes too_big{0x30, 0x09, 0, 1, 'a', 1, 2, 3, 4, 5, 6};  // 11 bytes
    f.feed(too_big);
    auto e = f.next();
    REQUIRE(!e);
    CHECK(e.error() == mqtt::errc::packet_too_large);
}

TEST_CASE("framer: whole packets before a bad one are still delivered") {
    framer f(50);
    f.feed(bytes{0xC0, 0x00, 0xD0, 0x00, 0x30, 0xFF, 0x01});
    auto a = f.next();
    REQUIRE((a && *a));
    CHECK((*a)->first_byte == 0xC0);
    auto b = f.next();
    REQUIRE((b && *b));
    CHECK((*b)->first_byte == 0xD0);
    auto c = f.next();
    REQUIRE(!c);
    CHECK(c.error() == mqtt::errc::packet_too_large);
}

TEST_CASE("framer: zero-copy prepare/commit") {
    framer f;
    const bytes pkt{0x30, 0x03, 0x00, 0x01, 't'};
    auto room = f.prepare(64);
    REQUIRE(room.size() == 64);
    std::copy(pkt.begin(), pkt.end(), room.begin());
    f.commit(pkt.size());
    auto r = f.next();
    REQUIRE((r && *r));
    CHECK((*r)->body.size() == 3);
    auto none = f.next();
    REQUIRE(none);
    CHECK(!*none);
}

TEST_CASE("framer: release() frees an empty buffer only, and reading goes on after it") {
    framer f;
    // A PUBLISH (topic "a", payload "xyz") split in two reads.
    const bytes pub{0x30, 0x06, 0x00, 0x01, 'a', 'x', 'y', 'z'};
    auto room = f.prepare(16 * 1024);
    std::copy(pub.begin(), pub.begin() + 5, room.begin());
    f.commit(5);
    CHECK_FALSE(f.next().value().has_value());
    f.release();  // a partial packet is buffered: kept
    CHECK(f.buffered() == 5);
    room = f.prepare(16 * 1024);
    std::copy(pub.begin() + 5, pub.end(), room.begin());
    f.commit(3);
    auto whole = f.next().value();
    REQUIRE(whole.has_value());
    CHECK(bytes(whole->body.begin(), whole->body.end()) == bytes(pub.begin() + 2, pub.end()));
    f.release();  // nothing buffered: freed
    CHECK(f.buffered() == 0);
    f.feed(bytes{0xC0, 0x00});  // PINGREQ after the release
    auto ping = f.next().value();
    REQUIRE(ping.has_value());
    CHECK(ping->type() == packet_type::pingreq);
}

TEST_CASE("framer: a packet larger than one read grows the buffer and keeps its bytes") {
    framer f;
    bytes pub{0x30, 0xC3, 0xBB, 0x01, 0x00, 0x01, 't'};  // Remaining Length 24,003
    for (int i = 0; i < 24'000; ++i) pub.push_back(static_cast<std::uint8_t>(i * 7));
    std::size_t at = 0;
    while (at < pub.size()) {
        auto room = f.prepare(1000);
        const std::size_t n = std::min<std::size_t>(room.size(), pub.size() - at);
        std::copy(pub.begin() + static_cast<std::ptrdiff_t>(at),
                  pub.begin() + static_cast<std::ptrdiff_t>(at + n), room.begin());
        f.commit(n);
        at += n;
    }
    auto whole = f.next().value();
    REQUIRE(whole.has_value());
    CHECK(bytes(whole->body.begin(), whole->body.end()) == bytes(pub.begin() + 4, pub.end()));
}

TEST_CASE("framer: missing() is the rest of a packet whose header is in") {
    framer f;
    CHECK(f.missing() == 0);  // nothing buffered
    bytes head{0x30, 0xC3};   // Remaining Length not complete yet
    f.feed(head);
    CHECK(f.missing() == 0);
    bytes more{0xBB, 0x01, 0x00, 0x01, 't'};  // Remaining Length 24,003; 3 body bytes in
    f.feed(more);
    CHECK(f.missing() == 24'000);
    // Room for all of it, read in one go: the packet comes out whole.
    auto room = f.prepare(f.missing());
    REQUIRE(room.size() == 24'000);
    std::fill(room.begin(), room.end(), std::uint8_t{0x5A});
    f.commit(room.size());
    CHECK(f.missing() == 0);
    auto whole = f.next().value();
    REQUIRE(whole.has_value());
    CHECK(whole->body.size() == 24'003);
    CHECK(whole->body.back() == 0x5A);
    CHECK(f.missing() == 0);
}

TEST_CASE("framer: missing() is 0 after an error") {
    framer f{100};
    bytes big{0x30, 0xE8, 0x07};  // 1,000 bytes: over the maximum
    f.feed(big);
    CHECK(f.missing() == 0);
}

// A broker holds a framer per connection (GCC 12 / libstdc++ on x86-64): 32-bit offsets,
// and the error as an mqtt::errc instead of a 16-byte error_code.
TEST_CASE("framer: 32 bytes, and no buffer past 4 GiB") {
    CHECK(sizeof(framer) <= 32);
    framer f;
    f.feed(bytes{0x30, 0x03, 0x00, 0x01});  // a PUBLISH's first 4 bytes of 5
    // Refused before anything is allocated; what is buffered stays.
    CHECK_THROWS_AS(f.prepare(std::size_t{UINT32_MAX}), std::length_error);
    CHECK(f.buffered() == 4);
    f.feed(bytes{'t'});
    auto whole = f.next().value();
    REQUIRE(whole.has_value());
    CHECK(whole->body.size() == 3);
}

TEST_CASE("framer: peek_first_byte names the next packet before it is taken") {
    framer f;
    CHECK(f.peek_first_byte() == 0);  // nothing buffered
    const bytes two{0x82, 0x03, 0x00, 0x01, 0x00, 0xC0, 0x00};  // a body, then PINGREQ
    f.feed(std::span(two.data(), 1));
    CHECK(f.peek_first_byte() == 0x82);  // only its first byte in: still named
    f.feed(std::span(two.data() + 1, two.size() - 1));
    CHECK(f.peek_first_byte() == 0x82);
    auto r = f.next();
    REQUIRE(r);
    REQUIRE(*r);
    CHECK((*r)->first_byte == 0x82);
    CHECK(f.peek_first_byte() == 0xC0);
    r = f.next();
    REQUIRE(r);
    REQUIRE(*r);
    CHECK(f.peek_first_byte() == 0);
}

TEST_CASE("framer: take_buffer() hands over a buffer holding only the last packet") {
    // A PUBLISH (topic "t", 3,000 payload bytes) read as a small read and then the rest.
    bytes pub{0x30, 0xBB, 0x17, 0x00, 0x01, 't'};  // Remaining Length 3,003
    for (int i = 0; i < 3'000; ++i) pub.push_back(static_cast<std::uint8_t>(i));
    auto read_in = [&](framer& f, const bytes& in) {
        auto room = f.prepare(16);
        std::copy(in.begin(), in.begin() + 16, room.begin());
        f.commit(16);
        room = f.prepare(f.missing() + (in.size() - pub.size()));
        std::copy(in.begin() + 16, in.end(), room.begin());
        f.commit(in.size() - 16);
    };

    SUBCASE("alone in the buffer: taken, the frame's bytes stay where they are") {
        framer f;
        read_in(f, pub);
        auto whole = f.next().value();
        REQUIRE(whole.has_value());
        CHECK(whole->source == &f);
        CHECK_FALSE(f.take_buffer(100).bytes);  // larger than allowed: kept
        auto taken = f.take_buffer(pub.size() + 4096);
        REQUIRE(taken.bytes);
        CHECK(taken.size >= pub.size());
        CHECK(whole->body.data() == taken.bytes.get() + 3);
        CHECK(bytes(whole->body.begin(), whole->body.end()) == bytes(pub.begin() + 3, pub.end()));
        CHECK_FALSE(f.take_buffer(1 << 20).bytes);  // nothing left to take
        f.feed(bytes{0xC0, 0x00});                  // and reading goes on in a new buffer
        auto ping = f.next().value();
        REQUIRE(ping.has_value());
        CHECK(ping->type() == packet_type::pingreq);
    }
    SUBCASE("followed by part of the next packet: not taken, nothing lost") {
        framer f;
        bytes two = pub;
        two.insert(two.end(), {0xC0});  // the first byte of a PINGREQ
        read_in(f, two);
        REQUIRE(f.next().value().has_value());
        CHECK_FALSE(f.take_buffer(1 << 20).bytes);
        CHECK(f.buffered() == 1);
        f.feed(bytes{0x00});
        auto ping = f.next().value();
        REQUIRE(ping.has_value());
        CHECK(ping->type() == packet_type::pingreq);
    }
}
