// The broker connections' shared deadline heap (libmqtt/src/net/deadlines.hpp): one timer
// for every connection's keep-alive, CONNECT timeout and close grace period.

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "net/deadlines.hpp"

namespace {

using mqtt::broker::clock;
using mqtt::net::detail::deadline_owner;
using mqtt::net::detail::deadlines;
using namespace std::chrono_literals;

struct owner final : deadline_owner {
    int id = 0;
    std::vector<int>* fired = nullptr;
    std::function<void()> action;
    void on_deadline() override {
        fired->push_back(id);
        if (action) action();
    }
};

// One heap on its own io_context, started and stopped around each case; owners report to
// `fired`.
struct heap_fixture {
    boost::asio::io_context io;
    deadlines d;
    std::vector<int> fired;
    heap_fixture() { d.start(io.get_executor()); }
    ~heap_fixture() { d.stop(); }
    heap_fixture(const heap_fixture&) = delete;
    heap_fixture& operator=(const heap_fixture&) = delete;
    void enlist(owner& o, int id) {
        o.id = id;
        o.fired = &fired;
    }
    // Returns as soon as the loop has no work left (every deadline fired or cancelled), so
    // the bound is only a backstop for a heap that never empties: a loaded machine may hold
    // the loop back well past a deadline.
    void run_for(std::chrono::milliseconds t) {
        io.restart();
        io.run_for(t);
    }
};

}  // namespace

TEST_CASE_FIXTURE(heap_fixture,
                  "deadlines: fire in time order, each once, moved and cancelled ones as they now are") {
    std::vector<owner> o(5);
    for (int i = 0; i < 5; ++i) enlist(o[i], i);
    CHECK(o[2].scheduled_at() == clock::time_point::max());  // never scheduled
    const auto t0 = clock::now();
    d.schedule(o[0], t0 + 80ms);
    d.schedule(o[1], t0 + 20ms);
    d.schedule(o[2], t0 + 60ms);
    d.schedule(o[3], t0 + 40ms);
    d.schedule(o[4], t0 + 10ms);
    d.schedule(o[0], t0 + 5ms);   // moved earlier: first now
    d.schedule(o[4], t0 + 100ms);  // moved later: last now
    CHECK(o[4].scheduled_at() == t0 + 100ms);
    d.cancel(o[2]);
    d.cancel(o[2]);  // twice is harmless
    CHECK(d.size() == 4);
    run_for(10s);
    CHECK(fired == std::vector<int>{0, 1, 3, 4});
    CHECK(d.size() == 0);
    CHECK(clock::now() - t0 >= 100ms);
    // The last schedule() stays readable after the deadline fired or was cancelled.
    CHECK(o[0].scheduled_at() == t0 + 5ms);
    CHECK(o[2].scheduled_at() == t0 + 60ms);
}

TEST_CASE_FIXTURE(heap_fixture,
                  "deadlines: an action may cancel or reschedule others, and a deadline moved "
                  "into the past fires in the next round") {
    owner a, b, c;
    enlist(a, 1);
    enlist(b, 2);
    enlist(c, 3);
    const auto t0 = clock::now();
    // a fires first and cancels b (due at the same moment), and puts itself back into the
    // past: that must not loop within one round, and fires once more.
    int again = 1;
    a.action = [&] {
        d.cancel(b);
        if (again-- > 0) d.schedule(a, t0 - 1s);
    };
    d.schedule(a, t0 + 10ms);
    d.schedule(b, t0 + 10ms + 1ns);
    d.schedule(c, t0 + 30ms);
    run_for(10s);
    CHECK(fired == std::vector<int>{1, 1, 3});
}

TEST_CASE_FIXTURE(heap_fixture,
                  "deadlines: an owner destroyed by another's action is gone from the heap") {
    auto victim = std::make_unique<owner>();
    enlist(*victim, 2);
    owner killer;
    enlist(killer, 1);
    killer.action = [&] {
        d.cancel(*victim);  // what ~connection() does
        victim.reset();
    };
    const auto t0 = clock::now();
    d.schedule(killer, t0 + 5ms);
    d.schedule(*victim, t0 + 5ms + 1ns);
    run_for(10s);
    CHECK(fired == std::vector<int>{1});
    CHECK(d.size() == 0);
}

TEST_CASE_FIXTURE(heap_fixture,
                  "deadlines: a heap of many owners stays ordered through random moves and cancels") {
    std::vector<owner> o(500);
    std::mt19937 rng{7};
    const auto t0 = clock::now() + 20ms;
    std::vector<clock::time_point> at(o.size());
    std::vector<bool> live(o.size(), true);
    for (std::size_t i = 0; i < o.size(); ++i) {
        enlist(o[i], static_cast<int>(i));
        at[i] = t0 + std::chrono::microseconds{rng() % 40000};
        d.schedule(o[i], at[i]);
    }
    for (int k = 0; k < 2000; ++k) {
        const auto i = rng() % o.size();
        if (rng() % 5 == 0) {
            d.cancel(o[i]);
            live[i] = false;
        } else {
            at[i] = t0 + std::chrono::microseconds{rng() % 40000};
            d.schedule(o[i], at[i]);
            live[i] = true;
        }
    }
    run_for(10s);
    std::size_t expected = 0;
    for (bool l : live) expected += l ? 1 : 0;
    REQUIRE(fired.size() == expected);
    for (std::size_t k = 1; k < fired.size(); ++k) CHECK(at[fired[k - 1]] <= at[fired[k]]);
}

TEST_CASE_FIXTURE(heap_fixture,
                  "deadlines: with the last deadline cancelled the loop has no work left and ends") {
    // A stopping broker ends when its loop runs out of work; a timer still waiting for a
    // cancelled deadline (a closed connection's grace period) would hold it until then.
    std::vector<owner> o(2);
    enlist(o[0], 0);
    enlist(o[1], 1);
    const auto t0 = clock::now();
    d.schedule(o[0], t0 + 1h);
    d.schedule(o[1], t0 + 2h);
    d.cancel(o[0]);
    io.restart();
    CHECK(io.run_for(50ms) == 0);
    CHECK_FALSE(io.stopped());  // o[1] still waits: the timer keeps the loop
    d.cancel(o[1]);
    io.restart();
    const auto before = clock::now();
    io.run_for(5s);
    CHECK(io.stopped());
    CHECK(clock::now() - before < 4s);
    CHECK(fired.empty());
    // Scheduling again arms the timer again.
    d.schedule(o[0], clock::now() + 10ms);
    run_for(10s);
    CHECK(fired == std::vector<int>{0});
}
