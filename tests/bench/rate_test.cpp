// Open-loop pacing with a fake clock, the payload header and per-publisher sequence accounting.

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/payload.hpp"
#include "mqtt/bench/rate.hpp"
#include "mqtt/bench/sequence.hpp"

using namespace std::chrono_literals;
using steady = mqtt::bench::clock;
using mqtt::bench::rate_limiter;

TEST_CASE("bench rate: messages are due on a fixed schedule from the start") {
    const steady::time_point t0{1s};
    rate_limiter r(1000.0, t0);  // one message per millisecond
    REQUIRE(r.open_loop());
    CHECK(r.intended(0) == t0);
    CHECK(r.intended(1) == t0 + 1ms);
    CHECK(r.intended(1000) == t0 + 1s);
    CHECK(r.due_count(t0 - 1ns) == 0);
    CHECK(r.due_count(t0) == 1);
    CHECK(r.due_count(t0 + 999us) == 1);
    CHECK(r.due_count(t0 + 1ms) == 2);
    CHECK(r.due_count(t0 + 10s) == 10'001);
    CHECK_FALSE(r.due(5, t0 + 4ms));
    CHECK(r.due(5, t0 + 5ms));
}

TEST_CASE("bench rate: a late sender stamps the intended time (coordinated omission)") {
    const steady::time_point t0{};
    rate_limiter r(100.0, t0);  // every 10 ms
    // The sender stalled for 50 ms: five messages are due and each keeps its own slot.
    const auto now = t0 + 45ms;
    CHECK(r.due_count(now) == 5);
    for (std::uint64_t k = 0; k < 5; ++k) CHECK(r.stamp(k, now) == t0 + k * 10ms);
    // A message sent early (never, by the loop's rules) is not stamped in the future.
    CHECK(r.stamp(9, now) == now);
    // Latency from the stamp includes the stall: message 0 waited 45 ms.
    CHECK(now - r.stamp(0, now) == 45ms);
}

TEST_CASE("bench rate: closed loop stamps the send time") {
    rate_limiter r(0, steady::time_point{});
    CHECK_FALSE(r.open_loop());
    const steady::time_point now{123ms};
    CHECK(r.due(1'000'000, now));
    CHECK(r.stamp(7, now) == now);
}

TEST_CASE("bench rate: shares of a total rate interleave and add up") {
    const steady::time_point t0{};
    const double total = 3000;  // three publishers at 1000/s each
    std::uint64_t due = 0;
    for (unsigned i = 0; i < 3; ++i) {
        auto r = mqtt::bench::share_of(total, i, 3, t0);
        CHECK(r.intended(1) - r.intended(0) == 1ms);
        CHECK(r.intended(0) == t0 + std::chrono::nanoseconds(333'333 * i + (i == 2 ? 1 : 0)));
        due += r.due_count(t0 + 1s - 1ns);
    }
    CHECK(due == 3000);
}

TEST_CASE("bench rate: --rate-per-client is the total over the publishers, each at its rate") {
    using mqtt::bench::scenario;
    mqtt::bench::bench_config c;
    c.scenario = scenario::pairs;
    c.clients = 4;
    c.rate_per_client = 250;
    REQUIRE(mqtt::bench::apply_scenario_defaults(c).empty());
    CHECK(c.publishers == 4);
    CHECK(c.rate == 1000);
    CHECK(c.rate_per_client == 250);
    // Each publisher's share sends every 4 ms (250/s), the four 1 ms apart.
    const steady::time_point t0{1s};
    for (unsigned i = 0; i < 4; ++i) {
        const auto r = mqtt::bench::share_of(c.rate, i, c.publishers, t0);
        CHECK(r.intended(0) == t0 + i * 1ms);
        CHECK(r.intended(1) - r.intended(0) == 4ms);
        CHECK(r.due_count(t0 + 10s - 1ns) == 2500);  // 250 a second for 10 s
    }

    mqtt::bench::bench_config f;
    f.scenario = scenario::fanin;
    f.publishers = 3;
    f.rate_per_client = 0.5;
    REQUIRE(mqtt::bench::apply_scenario_defaults(f).empty());
    CHECK(f.rate == doctest::Approx(1.5));

    // The scenario's default publishers count: pub has one.
    mqtt::bench::bench_config p;
    p.scenario = scenario::pub;
    p.rate_per_client = 700;
    REQUIRE(mqtt::bench::apply_scenario_defaults(p).empty());
    CHECK(p.rate == 700);

    mqtt::bench::bench_config both;
    both.rate = 100;
    both.rate_per_client = 10;
    CHECK(mqtt::bench::apply_scenario_defaults(both).find("exclude") != std::string::npos);

    mqtt::bench::bench_config sub;
    sub.scenario = scenario::sub;
    sub.count = 10;
    sub.rate_per_client = 10;
    CHECK(mqtt::bench::apply_scenario_defaults(sub).find("no publishers") != std::string::npos);

    mqtt::bench::bench_config closed;  // neither: closed loop
    REQUIRE(mqtt::bench::apply_scenario_defaults(closed).empty());
    CHECK(closed.rate == 0);
}

TEST_CASE("bench payload: header round trip, padding, foreign payloads") {
    mqtt::bench::payload_header h{0xdeadbeef, 17, 0x0102030405060708ull, 987654321012345ull};
    std::string out;
    mqtt::bench::encode_payload(h, 64, out);
    CHECK(out.size() == 64);
    CHECK(out.back() == 'x');
    auto back = mqtt::bench::decode_payload(out);
    REQUIRE(back);
    CHECK(back->run_id == h.run_id);
    CHECK(back->publisher == 17);
    CHECK(back->sequence == h.sequence);
    CHECK(back->sent_ns == h.sent_ns);
    CHECK(back->timed);
    mqtt::bench::encode_payload(h, 3, out);  // never shorter than the compact header
    CHECK(out.size() == mqtt::bench::compact_header_size);
    CHECK_FALSE(mqtt::bench::decode_payload("hello"));
    CHECK_FALSE(mqtt::bench::decode_payload(std::string(40, 'x')));
}

TEST_CASE("bench payload: 16 to 27 bytes carry the compact header, without a send time") {
    mqtt::bench::payload_header h{0xdeadbeef, 70000, 0x0102030405060708ull, 987654321012345ull};
    std::string out;
    for (std::size_t size : {std::size_t{16}, std::size_t{27}}) {
        mqtt::bench::encode_payload(h, size, out);
        CHECK(out.size() == size);
        CHECK(out.substr(0, 2) == "Tb");
        auto back = mqtt::bench::decode_payload(out);
        REQUIRE(back);
        CHECK_FALSE(back->timed);
        CHECK(back->run_id == 0xbeef);  // the low 16 bits
        CHECK(back->run_id == mqtt::bench::run_id_in(*back, h.run_id));
        CHECK(back->publisher == 70000);
        CHECK(back->sequence == h.sequence);
        CHECK(back->sent_ns == 0);
    }
    // 28 bytes and more: the full header, whatever the first bytes of a compact one say.
    mqtt::bench::encode_payload(h, 28, out);
    CHECK(out.substr(0, 4) == "TBN1");
    CHECK(mqtt::bench::decode_payload(out)->timed);
    CHECK_FALSE(mqtt::bench::decode_payload(std::string("Tb") + std::string(13, 'x')));  // 15
    CHECK_FALSE(mqtt::bench::decode_payload(std::string("Tb") + std::string(30, 'x')));  // 32
}

TEST_CASE("bench sequence: loss, duplicates and reordering per publisher") {
    using arrival = mqtt::bench::sequence_tracker::arrival;
    mqtt::bench::sequence_tracker t;
    CHECK(t.record(0) == arrival::in_order);
    CHECK(t.record(1) == arrival::in_order);
    CHECK(t.record(3) == arrival::in_order);  // 2 skipped
    CHECK(t.record(2) == arrival::out_of_order);
    CHECK(t.record(2) == arrival::duplicate);
    CHECK(t.record(200) == arrival::in_order);
    CHECK(t.record(mqtt::bench::sequence_tracker::max_sequence) == arrival::invalid);
    CHECK(t.unique() == 5);
    CHECK(t.duplicates() == 1);
    CHECK(t.out_of_order() == 1);
    CHECK(t.invalid() == 1);
    CHECK(t.end() == 201);
    CHECK(t.lost(201) == 196);  // 4..199
    CHECK(t.lost(300) == 295);
    CHECK(t.lost(4) == 0);
    CHECK(t.lost(3) == 0);
    CHECK(t.lost(100) == 96);
    mqtt::bench::sequence_tracker none;
    CHECK(none.lost(10) == 10);
}
