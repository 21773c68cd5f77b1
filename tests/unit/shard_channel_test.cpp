// The cross-shard batch channel (net/shard_channel.hpp) on its own: FIFO over batches, the
// wake-up protocol, the bounds and their back-pressure signal, items released on
// destruction, and a producer and a consumer thread with the wake-ups as the only hand-off.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "mqtt/net/shard_channel.hpp"
#include "mqtt/net/shard_runtime.hpp"
#include "shard_test_support.hpp"

using mqtt::net::shard_channel_limits;
using mqtt::net::shard_item;
using mqtt::net::shard_item_channel;
using publish_result = shard_item_channel::publish_result;
using shard_test::counted_message;
using shard_test::message_counts;
using shard_test::seq_of;

namespace {

shard_item item(message_counts& c, std::uint64_t seq) {
    return {shard_item::kind::publish, counted_message(c, 1, seq)};
}

// Drains and appends the sequence numbers received.
shard_item_channel::drain_result drain_into(shard_item_channel& ch,
                                            std::vector<std::uint64_t>& out) {
    return ch.drain([&](std::span<shard_item> items) {
        for (auto& i : items) out.push_back(seq_of(*i.msg));
    });
}

}  // namespace

TEST_CASE("shard channel: FIFO over many batches, one wake-up until the consumer drained") {
    message_counts c;
    std::vector<std::uint64_t> got;
    {
        shard_item_channel ch;
        CHECK(ch.publish() == publish_result::nothing);  // nothing open: nothing published
        std::uint64_t seq = 0;
        for (int round = 0; round < 50; ++round) {
            // Three batches of different sizes before the consumer runs: the first asks for a
            // drain, the other two find it scheduled.
            for (int b = 0; b < 3; ++b) {
                for (int i = 0; i <= (round + b) % 7; ++i) REQUIRE(ch.try_push(item(c, seq++)));
                CHECK(ch.publish() == (b == 0 ? publish_result::wake : publish_result::published));
            }
            const auto r = drain_into(ch, got);
            CHECK(r.batches == 3);
            CHECK_FALSE(r.again);
            CHECK_FALSE(r.resume_producer);
        }
        REQUIRE(got.size() == seq);
        for (std::uint64_t i = 0; i < seq; ++i) REQUIRE(got[i] == i);
        CHECK(ch.producer_counters().batches == 150);
        CHECK(ch.producer_counters().wakeups == 50);
        CHECK(ch.consumer_counters().batches == 150);
        CHECK(ch.consumer_counters().items == seq);
    }
    CHECK(c.live() == 0);
}

TEST_CASE("shard channel: a batch published during a drain makes it ask to be posted again") {
    message_counts c;
    std::vector<std::uint64_t> got;
    shard_item_channel ch;
    REQUIRE(ch.try_push(item(c, 0)));
    CHECK(ch.publish() == publish_result::wake);
    // The producer publishes while the consumer is inside drain() (here: from its callback):
    // no post (the drain is scheduled), so the drain must report `again` itself.
    bool once = false;
    const auto r = ch.drain([&](std::span<shard_item> items) {
        for (auto& i : items) got.push_back(seq_of(*i.msg));
        if (!once) {
            once = true;
            REQUIRE(ch.try_push(item(c, 1)));
            CHECK(ch.publish() == publish_result::published);
        }
    });
    CHECK(r.batches == 1);
    CHECK(r.again);
    CHECK(ch.producer_counters().wakeups == 1);
    // Still scheduled: a publish now posts nothing; the reposted drain takes both.
    REQUIRE(ch.try_push(item(c, 2)));
    CHECK(ch.publish() == publish_result::published);
    const auto r2 = drain_into(ch, got);
    CHECK(r2.batches == 2);
    CHECK_FALSE(r2.again);
    CHECK(got == std::vector<std::uint64_t>{0, 1, 2});
    CHECK(ch.consumer_counters().again == 1);
}

TEST_CASE("shard channel: every slot taken keeps the batch open until a drain frees one") {
    message_counts c;
    std::vector<std::uint64_t> got;
    shard_item_channel ch({.slots = 2, .max_items = 1000, .high_water = 1000});
    std::uint64_t seq = 0;
    REQUIRE(ch.try_push(item(c, seq++)));
    CHECK(ch.publish() == publish_result::wake);
    REQUIRE(ch.try_push(item(c, seq++)));
    CHECK(ch.publish() == publish_result::published);
    REQUIRE(ch.try_push(item(c, seq++)));
    CHECK(ch.publish() == publish_result::full);
    REQUIRE(ch.try_push(item(c, seq++)));  // still collecting into the open batch
    CHECK(ch.open_items() == 2);
    CHECK(ch.producer_counters().full == 1);

    auto r = drain_into(ch, got);
    CHECK(r.batches == 2);
    CHECK(r.resume_producer);  // the producer was refused a slot: it is told
    CHECK(ch.publish() == publish_result::wake);
    r = drain_into(ch, got);
    CHECK(r.batches == 1);
    CHECK_FALSE(r.resume_producer);  // told once, not again
    CHECK(got == std::vector<std::uint64_t>{0, 1, 2, 3});
}

TEST_CASE("shard channel: max_items refuses and counts, high_water signals congestion") {
    message_counts c;
    std::vector<std::uint64_t> got;
    shard_item_channel ch({.slots = 4, .max_items = 8, .high_water = 4});
    std::uint64_t seq = 0;
    for (int i = 0; i < 3; ++i) REQUIRE(ch.try_push(item(c, seq++)));
    CHECK_FALSE(ch.check_congested());
    REQUIRE(ch.try_push(item(c, seq++)));
    CHECK(ch.check_congested());
    for (int i = 0; i < 4; ++i) REQUIRE(ch.try_push(item(c, seq++)));
    shard_item refused = item(c, 99);
    CHECK_FALSE(ch.try_push(std::move(refused)));
    CHECK(refused.msg != nullptr);  // left with the caller
    CHECK(refused.msg.use_count() == 1);
    CHECK(ch.producer_counters().refused == 1);
    CHECK(ch.producer_counters().pushed == 8);

    CHECK(ch.publish() == publish_result::wake);
    const auto r = drain_into(ch, got);
    CHECK(r.items == 8);
    CHECK(r.resume_producer);
    CHECK_FALSE(ch.check_congested());
    CHECK(ch.try_push(std::move(refused)));
    CHECK(got.size() == 8);
}

TEST_CASE("shard channel: high_water_bytes signals congestion by the items' weight") {
    message_counts c;
    std::vector<std::uint64_t> got;
    const std::size_t w = mqtt::broker::held_cost(*counted_message(c, 1, 0));  // seq 0-9 alike
    // Far below the item bounds: only the bytes can say congested.
    shard_item_channel ch(
        {.slots = 4, .max_items = 1000, .high_water = 1000, .high_water_bytes = 3 * w + 1});
    std::uint64_t seq = 0;
    for (int i = 0; i < 3; ++i) REQUIRE(ch.try_push(item(c, seq++)));
    CHECK_FALSE(ch.check_congested());  // 3w in flight
    REQUIRE(ch.try_push(item(c, seq++)));
    CHECK(ch.check_congested());  // 4w
    CHECK(ch.publish() == publish_result::wake);
    // The consumer takes two of the four (a stall): 2w in flight, and the producer is told.
    const auto r = ch.drain([&](std::span<shard_item> items) {
        for (std::size_t i = 0; i < 2; ++i) got.push_back(seq_of(*items[i].msg));
        return std::size_t{2};
    });
    CHECK(r.stalled);
    CHECK(r.resume_producer);
    CHECK_FALSE(ch.check_congested());
    REQUIRE(ch.try_push(item(c, seq++)));
    REQUIRE(ch.try_push(item(c, seq++)));
    CHECK(ch.check_congested());  // 4w again
    CHECK(ch.publish() == publish_result::published);  // the stalled drain is still scheduled
    const auto r2 = drain_into(ch, got);
    CHECK(r2.items == 4);
    CHECK(r2.resume_producer);
    CHECK_FALSE(ch.check_congested());
    CHECK(got == std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5});
    // Without weights (the default Weigh) the byte bound cannot say congested.
    mqtt::net::shard_channel<shard_item> plain(
        {.slots = 4, .max_items = 1000, .high_water = 1000, .high_water_bytes = 1});
    for (int i = 0; i < 10; ++i) REQUIRE(plain.try_push(item(c, i)));
    CHECK_FALSE(plain.check_congested());
}

TEST_CASE("shard channel: a handler that takes fewer items stalls the drain where it stopped") {
    message_counts c;
    std::vector<std::uint64_t> got;
    {
        shard_item_channel ch({.slots = 4, .max_items = 100, .high_water = 8});
        // Takes at most `n` items of what it is given (the broker: until a congested subscriber).
        const auto take = [&](std::size_t n) {
            return ch.drain([&](std::span<shard_item> items) {
                const std::size_t k = std::min(n, items.size());
                for (std::size_t i = 0; i < k; ++i) got.push_back(seq_of(*items[i].msg));
                n -= k;
                return k;
            });
        };
        for (std::uint64_t i = 0; i < 10; ++i) REQUIRE(ch.try_push(item(c, i)));
        CHECK(ch.publish() == publish_result::wake);
        auto r = take(3);
        CHECK(r.stalled);
        CHECK(r.items == 3);
        CHECK(r.batches == 0);  // the batch is not done
        CHECK_FALSE(r.again);
        CHECK(got == std::vector<std::uint64_t>{0, 1, 2});
        CHECK(c.live() == 10);  // the taken ones are moved from, not yet destroyed with the slot
        // Still scheduled: a batch published now asks for no drain (the consumer resumes).
        for (std::uint64_t i = 10; i < 12; ++i) REQUIRE(ch.try_push(item(c, i)));
        CHECK(ch.publish() == publish_result::published);
        // 12 pushed, 3 taken: the 9 left count towards high_water (8).
        CHECK(ch.check_congested());
        r = take(0);  // a resumed drain that takes nothing: stalled again, nobody told
        CHECK(r.stalled);
        CHECK(r.items == 0);
        CHECK_FALSE(r.resume_producer);
        r = take(100);
        CHECK_FALSE(r.stalled);
        CHECK(r.items == 9);
        CHECK(r.batches == 2);
        CHECK(r.resume_producer);  // the congested check is answered
        REQUIRE(got.size() == 12);
        for (std::uint64_t i = 0; i < 12; ++i) CHECK(got[i] == i);
        CHECK_FALSE(ch.check_congested());
        // No longer scheduled: the next batch wakes the consumer again.
        REQUIRE(ch.try_push(item(c, 12)));
        CHECK(ch.publish() == publish_result::wake);
        CHECK(ch.consumer_counters().stalls == 2);
        CHECK(ch.consumer_counters().items == 12);
        // Stalled once more and destroyed so: what was left is released too.
        r = take(0);
        CHECK(r.stalled);
    }
    CHECK(c.live() == 0);
}

TEST_CASE("shard channel: destroyed with items open and published, every message is released") {
    message_counts c;
    auto kept = counted_message(c, 1, 0);
    {
        shard_item_channel ch({.slots = 4, .max_items = 1000, .high_water = 1000});
        for (int b = 0; b < 6; ++b) {  // 4 published, the rest open (full)
            for (int i = 0; i < 10; ++i) REQUIRE(ch.try_push(item(c, b * 10 + i + 1)));
            REQUIRE(ch.try_push({shard_item::kind::retain_set, kept}));
            ch.publish();
        }
        CHECK(ch.producer_counters().full == 2);
        CHECK(kept.use_count() == 7);
        CHECK(c.live() == 61);
    }
    CHECK(kept.use_count() == 1);
    CHECK(c.live() == 1);
    kept.reset();
    CHECK(c.live() == 0);
}

TEST_CASE("shard channel: a producer and a consumer thread, wake-ups as the only hand-off") {
    // The consumer drains only when a wake-up was "posted" (a counter standing in for the
    // io_context post), as the runtime does; a lost wake-up leaves it waiting, caught by the
    // deadline. Small limits so full publishes and refusals happen.
    constexpr std::uint64_t total = 200'000;
    message_counts c;
    std::atomic<std::uint64_t> posts{0};
    std::atomic<bool> give_up{false};
    std::atomic<bool> consumer_done{false};
    std::uint64_t received = 0, out_of_order = 0, wakes = 0;
    {
        shard_item_channel ch({.slots = 4, .max_items = 256, .high_water = 128});
        std::thread consumer([&] {
            std::uint64_t handled = 0, expect = 0;
            while (received < total && !give_up.load()) {
                if (posts.load(std::memory_order_acquire) == handled) {
                    std::this_thread::yield();
                    continue;
                }
                ++handled;
                const auto r = ch.drain([&](std::span<shard_item> items) {
                    for (auto& i : items) {
                        if (seq_of(*i.msg) != expect) ++out_of_order;
                        expect = seq_of(*i.msg) + 1;
                        ++received;
                    }
                });
                if (r.again) posts.fetch_add(1, std::memory_order_release);
            }
            consumer_done = true;
        });
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        std::uint64_t seq = 0;
        while (seq < total && std::chrono::steady_clock::now() < deadline) {
            const std::uint64_t turn = 1 + seq % 37;  // a loop turn's worth of items
            for (std::uint64_t i = 0; i < turn && seq < total; ++i) {
                shard_item it = item(c, seq);
                if (!ch.try_push(std::move(it))) break;  // refused: publish, try again
                ++seq;
            }
            const auto p = ch.publish();
            if (p == publish_result::wake) {
                ++wakes;
                posts.fetch_add(1, std::memory_order_release);
            } else if (p == publish_result::full) {
                std::this_thread::yield();  // the consumer is behind: let it run
            }
        }
        // Whatever is still open goes out (the consumer frees slots meanwhile).
        while (ch.open_items() != 0 && std::chrono::steady_clock::now() < deadline) {
            if (ch.publish() == publish_result::wake) {
                ++wakes;
                posts.fetch_add(1, std::memory_order_release);
            }
            std::this_thread::yield();
        }
        while (!consumer_done.load() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        give_up = true;
        consumer.join();
        CHECK(ch.producer_counters().wakeups == wakes);
        CHECK(ch.producer_counters().batches > wakes);  // a busy consumer needs fewer posts
        MESSAGE("batches " << ch.producer_counters().batches << ", wake-ups " << wakes << ", full "
                           << ch.producer_counters().full << ", refused "
                           << ch.producer_counters().refused);
    }
    CHECK(received == total);
    CHECK(out_of_order == 0);
    CHECK(c.live() == 0);
}
