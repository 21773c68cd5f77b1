// sliding_vector: the in-flight window's container, checked against std::deque as a model
// (elements hold shared_ptrs, so ASan and the use counts catch a lost or doubled element).

#include "mqtt/broker/sliding_vector.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <vector>

using mqtt::broker::sliding_vector;

namespace {

struct item {
    std::shared_ptr<int> value;
    std::vector<std::uint32_t> ids;
};

item make(int v) {
    return item{std::make_shared<int>(v), {static_cast<std::uint32_t>(v)}};
}

std::vector<int> values(const sliding_vector<item>& s) {
    std::vector<int> out;
    for (const auto& i : s) out.push_back(*i.value);
    return out;
}

std::vector<int> values(const std::deque<int>& d) {
    return {d.begin(), d.end()};
}

}  // namespace

TEST_CASE("sliding_vector: the size of a std::vector") {
    CHECK(sizeof(sliding_vector<item>) == sizeof(std::vector<item>));
}

TEST_CASE("sliding_vector: a window acknowledged in order stops allocating") {
    sliding_vector<item> s;
    for (int i = 0; i < 100; ++i) s.push_back(make(i));
    const auto slide = [&](int from, int to) {
        for (int i = from; i < to; ++i) {
            s.erase(s.begin());
            s.push_back(make(i));
            REQUIRE(s.size() == 100);
        }
    };
    slide(100, 1'100);
    // From here on 9,000 messages through the window of 100 stay in one buffer of 200.
    const auto addr = [](const item& i) { return reinterpret_cast<std::uintptr_t>(&i); };
    std::uintptr_t lowest = addr(s.front());
    std::uintptr_t highest = addr(s.back());
    for (int i = 1'100; i < 10'100; i += 50) {
        slide(i, i + 50);
        lowest = std::min(lowest, addr(s.front()));
        highest = std::max(highest, addr(s.back()));
    }
    CHECK(highest - lowest < 200 * sizeof(item));
    CHECK(*s.front().value == 10'000);
    CHECK(*s.back().value == 10'099);
    CHECK(s.back().ids == std::vector<std::uint32_t>{10'099});
}

TEST_CASE("sliding_vector: random operations match a deque") {
    std::mt19937 rng(12345);
    sliding_vector<item> s;
    std::deque<int> model;
    std::shared_ptr<int> watched = std::make_shared<int>(-1);
    s.push_back(item{watched, {}});
    model.push_back(-1);
    int next = 0;
    for (int step = 0; step < 20'000; ++step) {
        const auto op = rng() % 100;
        if (op < 50) {
            s.push_back(make(next));
            model.push_back(next++);
        } else if (op < 80 && !model.empty()) {  // the front, as most acknowledgements
            const auto it = s.erase(s.begin());
            CHECK(it == s.begin());
            model.pop_front();
        } else if (op < 95 && !model.empty()) {  // anywhere, as an out-of-order one
            const auto at = rng() % model.size();
            const auto it = s.erase(s.begin() + at);
            model.erase(model.begin() + static_cast<std::ptrdiff_t>(at));
            CHECK(it == s.begin() + at);
        } else if (op < 97) {
            const int mod = 3 + static_cast<int>(rng() % 5);
            const auto removed = s.erase_if([&](const item& i) { return *i.value % mod == 0; });
            const auto before = model.size();
            std::erase_if(model, [&](int v) { return v % mod == 0; });
            CHECK(removed == before - model.size());
        } else if (op < 98) {
            sliding_vector<item> copy(s);  // copies only the live elements
            CHECK(values(copy) == values(model));
            s = std::move(copy);
        } else if (op < 99) {
            sliding_vector<item> moved(std::move(s));
            s = moved;
        } else {
            s.clear();
            model.clear();
        }
        REQUIRE(s.size() == model.size());
        REQUIRE(s.empty() == model.empty());
        if (step % 97 == 0) REQUIRE(values(s) == values(model));
    }
    CHECK(values(s) == values(model));
    s.clear();
    CHECK(watched.use_count() == 1);  // the first element was released exactly once
}

TEST_CASE("sliding_vector: erase in the middle keeps the order") {
    sliding_vector<item> s;
    for (int i = 0; i < 6; ++i) s.push_back(make(i));
    s.erase(s.begin());
    s.erase(s.begin() + 2);  // value 3
    CHECK(values(s) == std::vector<int>{1, 2, 4, 5});
    s.push_back(make(6));
    CHECK(values(s) == std::vector<int>{1, 2, 4, 5, 6});
    CHECK(s.erase_if([](const item& i) { return *i.value % 2 == 0; }) == 3);
    CHECK(values(s) == std::vector<int>{1, 5});
    s.erase(s.begin());
    s.erase(s.begin());
    CHECK(s.empty());
    s.push_back(make(7));
    CHECK(values(s) == std::vector<int>{7});
}
