// broker::message as it is made: its topic and payload behind it in one allocation, a large
// received payload moved in rather than copied, copies that own their bytes.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mqtt/broker/message.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/packet.hpp"

using steady = mqtt::broker::clock;
using mqtt::broker::copy_message;
using mqtt::broker::make_message;
using mqtt::broker::message;
using mqtt::protocol::publish_packet;
using mqtt::protocol::qos;

namespace {

// True when [s.data(), s.data() + s.size()) lies within the bytes of the allocation that
// holds `m` (the object and what follows it, up to `tail` bytes).
bool behind(const message& m, std::string_view s, std::size_t tail) {
    const auto* begin = reinterpret_cast<const char*>(&m);
    const auto* end = begin + sizeof(message) + tail;
    return std::less_equal<>{}(begin, s.data()) && std::less_equal<>{}(s.data() + s.size(), end);
}

publish_packet publish(std::string topic, std::string payload) {
    publish_packet p;
    p.topic = std::move(topic);
    p.payload = std::move(payload);
    p.qos_level = qos::at_least_once;
    p.retain = true;
    p.props.message_expiry_interval = 60;
    p.props.topic_alias = 3;
    return p;
}

}  // namespace

TEST_CASE("broker message: a received PUBLISH's topic and small payload are copied behind it") {
    auto p = publish("sensors/building-7/temp", std::string(200, 'x'));
    const auto now = steady::now();
    const auto m = make_message(std::move(p), now);
    CHECK(m->topic == "sensors/building-7/temp");
    CHECK(m->payload == std::string(200, 'x'));
    CHECK(m->qos_level == qos::at_least_once);
    CHECK(m->retain);
    CHECK(m->message_expiry_interval == 60u);
    CHECK(m->received == now);
    CHECK_FALSE(m->props_v5.empty());  // the expiry; the Topic Alias is removed
    // The message's own bytes, not the packet's: the packet keeps its strings (the
    // session's decoder reuses them for the next PUBLISH).
    const std::size_t tail = 64 + m->topic.size() + m->payload.size();  // the control block
    CHECK(behind(*m, m->topic, tail));
    CHECK(behind(*m, m->payload, tail));
    CHECK(p.topic == "sensors/building-7/temp");
    p.topic.assign(p.topic.size(), '?');
    p.payload.assign(p.payload.size(), '?');
    CHECK(m->topic == "sensors/building-7/temp");
    CHECK(m->payload == std::string(200, 'x'));
}

TEST_CASE("broker message: a PUBLISH decoded as views is copied behind the message once") {
    using mqtt::protocol::protocol_version;
    // QoS 1 PUBLISH, 5.0: topic "a/b", packet id 7, Message Expiry Interval 60 and Topic
    // Alias 2, then the payload.
    for (const std::size_t size : {std::size_t{5}, std::size_t{70'000}}) {
        std::vector<std::uint8_t> body{0x00, 0x03, 'a',  '/',  'b',  0x00, 0x07, 0x08,
                                       0x02, 0x00, 0x00, 0x00, 0x3C, 0x23, 0x00, 0x02};
        body.insert(body.end(), size, 'p');
        mqtt::protocol::publish_view v;
        REQUIRE_FALSE(mqtt::protocol::decode_publish_view(0x33, body, protocol_version::v5, v));
        CHECK(v.has_props);
        const auto now = steady::now();
        const auto m = make_message(std::move(v), now);
        CHECK(m->topic == "a/b");
        CHECK(m->payload == std::string(size, 'p'));
        CHECK(m->qos_level == qos::at_least_once);
        CHECK(m->retain);
        CHECK(m->message_expiry_interval == 60u);
        CHECK(m->received == now);
        // The expiry only (5 bytes behind Property Length 5): the Topic Alias is removed.
        CHECK(m->props_v5 == std::vector<std::uint8_t>{0x05, 0x02, 0x00, 0x00, 0x00, 0x3C});
        CHECK(behind(*m, m->topic, 64 + 3 + size));
        CHECK(behind(*m, m->payload, 64 + 3 + size));
        // The frame's bytes can go: the message keeps its own.
        std::fill(body.begin(), body.end(), std::uint8_t{0});
        CHECK(m->topic == "a/b");
        CHECK(m->payload == std::string(size, 'p'));
    }
}

TEST_CASE("broker message: a received Properties block is kept as it came unless it must change") {
    using mqtt::protocol::protocol_version;
    // A User Property ("k", "v") before a Content Type ("t"): not the order the encoder
    // writes, kept as it is.
    const std::vector<std::uint8_t> block{0x0B, 0x26, 0x00, 0x01, 'k',  0x00,
                                          0x01, 'v',  0x03, 0x00, 0x01, 't'};
    std::vector<std::uint8_t> body{0x00, 0x01, 'a'};
    body.insert(body.end(), block.begin(), block.end());
    body.push_back('x');
    mqtt::protocol::publish_view v;
    REQUIRE_FALSE(mqtt::protocol::decode_publish_view(0x30, body, protocol_version::v5, v));
    CHECK(v.props_block.size() == block.size());
    auto m = make_message(std::move(v), steady::now());
    CHECK(m->props_v5 == block);
    CHECK(m->payload == "x");

    // With a Subscription Identifier (a client may not send one; the broker sets its own
    // per delivery): taken out, the rest encoded again.
    const std::vector<std::uint8_t> with_id{0x00, 0x01, 'a',  0x06, 0x0B, 0x05,
                                            0x03, 0x00, 0x01, 't',  'x'};
    REQUIRE_FALSE(mqtt::protocol::decode_publish_view(0x30, with_id, protocol_version::v5, v));
    m = make_message(std::move(v), steady::now());
    CHECK(m->props_v5 == std::vector<std::uint8_t>{0x04, 0x03, 0x00, 0x01, 't'});

    // The next PUBLISH into the same view, without properties, has none.
    const std::vector<std::uint8_t> bare{0x00, 0x01, 'a', 0x00, 'y'};
    REQUIRE_FALSE(mqtt::protocol::decode_publish_view(0x30, bare, protocol_version::v5, v));
    CHECK_FALSE(v.has_props);
    CHECK(v.props == mqtt::protocol::properties{});
    m = make_message(std::move(v), steady::now());
    CHECK(m->props_v5.empty());
}

TEST_CASE("broker message: a large received payload is moved in, not copied") {
    auto p = publish("big", std::string(message::inline_limit, 'L'));
    const char* bytes = p.payload.data();
    const auto m = make_message(std::move(p), steady::now());
    CHECK(m->payload.data() == bytes);
    CHECK(m->payload.size() == message::inline_limit);
    CHECK(m->topic == "big");
    CHECK(mqtt::broker::held_cost(*m) ==
          sizeof(message) + 3 + message::inline_limit + m->props_v5.size());

    auto small = publish("small", std::string(message::inline_limit - 1, 's'));
    const char* small_bytes = small.payload.data();
    const auto s = make_message(std::move(small), steady::now());
    CHECK(s->payload.data() != small_bytes);
    CHECK(s->payload == std::string(message::inline_limit - 1, 's'));
}

TEST_CASE("broker message: a large PUBLISH alone in its read buffer keeps its payload there") {
    using mqtt::protocol::protocol_version;
    // QoS 0 PUBLISH, 3.1.1, topic "big", payload of `size` bytes, read into a framer as a
    // connection reads it: its head, then room for exactly the rest.
    auto frame_bytes = [](std::size_t size) {
        std::vector<std::uint8_t> pkt{0x30};
        std::uint32_t left = static_cast<std::uint32_t>(5 + size);
        do {
            std::uint8_t b = left & 0x7F;
            left >>= 7;
            if (left != 0) b |= 0x80;
            pkt.push_back(b);
        } while (left != 0);
        pkt.insert(pkt.end(), {0x00, 0x03, 'b', 'i', 'g'});
        for (std::size_t i = 0; i < size; ++i) pkt.push_back(static_cast<std::uint8_t>(i % 251));
        return pkt;
    };
    auto read_in = [](mqtt::protocol::framer& f, const std::vector<std::uint8_t>& pkt) {
        auto room = f.prepare(256);
        std::copy(pkt.begin(), pkt.begin() + 256, room.begin());
        f.commit(256);
        room = f.prepare(pkt.size() - 256);
        std::copy(pkt.begin() + 256, pkt.end(), room.begin());
        f.commit(pkt.size() - 256);
    };
    auto expected = [](std::size_t size) {
        std::string s;
        for (std::size_t i = 0; i < size; ++i) s.push_back(static_cast<char>(i % 251));
        return s;
    };
    for (const std::size_t size :
         {message::adopt_limit - 1, message::adopt_limit, std::size_t{1} << 20}) {
        CAPTURE(size);
        const auto pkt = frame_bytes(size);
        mqtt::protocol::framer f{1 << 24};
        read_in(f, pkt);
        auto fr = f.next().value();
        REQUIRE(fr.has_value());
        mqtt::protocol::publish_view v;
        REQUIRE_FALSE(mqtt::protocol::decode_publish_view(fr->first_byte, fr->body,
                                                          protocol_version::v3_1_1, v));
        v.source = fr->source;
        const auto* in_frame = v.payload.data();
        const auto m = make_message(std::move(v), steady::now());
        CHECK(m->topic == "big");
        CHECK(behind(*m, m->topic, 64 + 3));
        CHECK(m->payload == expected(size));
        if (size >= message::adopt_limit) {
            CHECK(m->payload.data() == in_frame);  // not copied: the buffer is the message's
            CHECK_FALSE(f.take_buffer(1 << 24).bytes);
        } else {
            CHECK(behind(*m, m->payload, 64 + 3 + size));
            CHECK(f.take_buffer(1 << 24).bytes);  // left with the framer
        }
        // The framer reads on; the message keeps its bytes.
        f.feed(std::vector<std::uint8_t>{0xC0, 0x00});
        CHECK(f.next().value().has_value());
        CHECK(m->payload == expected(size));
    }

    // Part of the next packet in the same buffer: the payload is copied, the buffer stays.
    auto pkt = frame_bytes(message::adopt_limit);
    pkt.push_back(0xC0);
    mqtt::protocol::framer f{1 << 24};
    read_in(f, pkt);
    auto fr = f.next().value();
    REQUIRE(fr.has_value());
    mqtt::protocol::publish_view v;
    REQUIRE_FALSE(
        mqtt::protocol::decode_publish_view(fr->first_byte, fr->body, protocol_version::v3_1_1, v));
    v.source = fr->source;
    const auto m = make_message(std::move(v), steady::now());
    CHECK(behind(*m, m->payload, 64 + 3 + message::adopt_limit));
    f.feed(std::vector<std::uint8_t>{0x00});
    auto ping = f.next().value();
    REQUIRE(ping.has_value());
    CHECK(ping->type() == mqtt::protocol::packet_type::pingreq);
}

TEST_CASE("broker message: a Will becomes a message without its Will Delay Interval") {
    mqtt::protocol::will_message w{"clients/c1/state", "gone", qos::exactly_once, true, {}};
    w.props.will_delay_interval = 30;
    w.props.content_type = "text/plain";
    const auto m = make_message(std::move(w), steady::now());
    CHECK(m->topic == "clients/c1/state");
    CHECK(m->payload == "gone");
    CHECK(m->qos_level == qos::exactly_once);
    CHECK(m->retain);
    // 0x03 Content Type only: Property Length, id, two length bytes, "text/plain".
    REQUIRE(m->props_v5.size() == 1 + 1 + 2 + 10);
    CHECK(m->props_v5[1] == 0x03);
}

TEST_CASE("broker message: made from fields, empty topic and payload included") {
    const auto m = make_message({.topic = "a/b", .payload = "", .qos_level = qos::exactly_once});
    CHECK(m->topic == "a/b");
    CHECK(m->payload.empty());
    CHECK(m->qos_level == qos::exactly_once);
    CHECK_FALSE(m->retain);
    const auto e = make_message({});
    CHECK(e->topic.empty());
    CHECK(e->payload.empty());
}

TEST_CASE("broker message: a copy owns its bytes and outlives the original") {
    auto original = make_message(
        {.topic = "t/1", .payload = "hello", .retain = true, .props_v5 = {0x02, 0x01, 0x01}});
    original->store_id = 42;
    original->shard_store_ids[0] = 7;
    auto big = publish("t/big", std::string(message::inline_limit * 2, 'b'));
    auto large = make_message(std::move(big), steady::now());

    auto copy = copy_message(*original);
    auto large_copy = copy_message(*large);
    CHECK(copy->payload.data() != original->payload.data());
    CHECK(large_copy->payload.data() != large->payload.data());
    CHECK(copy->store_id == 0);  // the store writes a copy as a message of its own
    CHECK(copy->shard_store_ids[0] == 0);
    CHECK(copy->props_v5 == original->props_v5);
    CHECK(copy->retain);
    original.reset();
    large.reset();
    CHECK(copy->topic == "t/1");
    CHECK(copy->payload == "hello");
    CHECK(large_copy->topic == "t/big");
    CHECK(large_copy->payload == std::string(message::inline_limit * 2, 'b'));
}

TEST_CASE("broker message: an aged copy carries what is left of its expiry") {
    auto p = publish("exp", "x");
    const auto t0 = steady::now();
    const auto m = make_message(std::move(p), t0);
    const auto later = mqtt::broker::aged(m, t0 + std::chrono::seconds(25));
    REQUIRE(later);
    CHECK(later.get() != m.get());
    CHECK(later->message_expiry_interval == 35u);
    CHECK(later->topic == "exp");
    CHECK(later->payload == "x");
    CHECK_FALSE(mqtt::broker::aged(m, t0 + std::chrono::seconds(60)));
    CHECK(mqtt::broker::aged(m, t0) == m);
}

TEST_CASE("broker message: freed blocks are kept per thread, bounded, and reused") {
    // On a thread of its own, so that what it keeps starts at none and is given back at
    // its end (the cache's drain; run under valgrind it leaks nothing).
    const std::size_t budget = mqtt::broker::message_block_budget();
    const bool on = budget != 0;  // off under AddressSanitizer
    std::size_t before = 0, after_free = 0, after_reuse = 0, bytes_full = 0, blocks_full = 0;
    std::vector<mqtt::broker::message_ptr> made_here;
    std::thread t([&] {
        before = mqtt::broker::kept_message_blocks();
        std::vector<mqtt::broker::message_ptr> v;
        for (int i = 0; i < 100; ++i) {
            v.push_back(make_message({.topic = "tern/test/topic", .payload = "payload-bytes"}));
        }
        v.clear();
        after_free = mqtt::broker::kept_message_blocks();
        for (int i = 0; i < 10; ++i) {
            v.push_back(make_message({.topic = "tern/test/topic", .payload = "payload-bytes"}));
        }
        after_reuse = mqtt::broker::kept_message_blocks();
        // Made here, freed on another thread after this one has ended.
        made_here = std::move(v);
        for (int i = 0; i < 3; ++i) {
            made_here.push_back(make_message({.topic = "big", .payload = std::string(5000, 'b')}));
        }
        // More than the budget holds: kept up to it, the rest given back.
        std::vector<mqtt::broker::message_ptr> many;
        for (int i = 0; i < 20'000; ++i) {
            many.push_back(make_message({.topic = "t", .payload = std::string(200, 'm')}));
        }
        many.clear();
        bytes_full = mqtt::broker::kept_message_bytes();
        blocks_full = mqtt::broker::kept_message_blocks();
    });
    t.join();
    CHECK(before == 0);
    CHECK(after_free == (on ? 100u : 0u));
    CHECK(after_reuse == (on ? 90u : 0u));
    CHECK(bytes_full <= budget);
    CHECK(bytes_full + 1024 > budget);
    CHECK(blocks_full < (on ? 20'000u + 90u : 1u));
    CHECK(made_here.front()->topic == "tern/test/topic");
    // Freed on another thread than the one that made them (and that has ended): kept there;
    // blocks over 1 KiB are not kept.
    std::size_t kept_there = 99;
    std::thread other([&] {
        made_here.clear();
        kept_there = mqtt::broker::kept_message_blocks();
    });
    other.join();
    CHECK(kept_there == (on ? 10u : 0u));
}
