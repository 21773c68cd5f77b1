// The bench latency histogram against exact percentiles of known data, its bucket layout,
// exact merge and JSON round trip.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "mqtt/bench/histogram.hpp"

namespace {

using mqtt::bench::histogram;

// The nearest-rank percentile of a sorted sample: the reference the histogram must match.
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
    auto rank =
        static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size()) - 1e-9));
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

const double percentiles[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

}  // namespace

TEST_CASE("bench histogram: exact below 2048, every percentile of 1..2000") {
    histogram h;
    std::vector<std::uint64_t> values;
    for (std::uint64_t v = 1; v <= 2000; ++v) values.push_back(v);
    std::shuffle(values.begin(), values.end(), std::mt19937_64(7));
    for (auto v : values) h.record(v);
    std::sort(values.begin(), values.end());
    CHECK(h.count() == 2000);
    CHECK(h.min() == 1);
    CHECK(h.max() == 2000);
    CHECK(h.mean() == doctest::Approx(1000.5));
    CHECK(h.percentile(50) == 1000);
    CHECK(h.percentile(90) == 1800);
    CHECK(h.percentile(99) == 1980);
    CHECK(h.percentile(99.9) == 1998);
    CHECK(h.percentile(99.99) == 2000);
    for (double p : percentiles) CHECK(h.percentile(p) == exact_percentile(values, p));
}

TEST_CASE("bench histogram: skewed known data, repeated values, exact percentiles") {
    histogram h;
    // 900 x 100 ns, 90 x 500 ns, 9 x 1500 ns, 1 x 2047 ns: the textbook latency tail.
    h.record(100, 900);
    h.record(500, 90);
    h.record(1500, 9);
    h.record(2047);
    CHECK(h.count() == 1000);
    CHECK(h.percentile(50) == 100);
    CHECK(h.percentile(90) == 100);
    CHECK(h.percentile(90.1) == 500);
    CHECK(h.percentile(99) == 500);
    CHECK(h.percentile(99.9) == 1500);
    CHECK(h.percentile(99.99) == 2047);
    CHECK(h.max() == 2047);
}

TEST_CASE("bench histogram: large values within 1/1024, never below the true value") {
    std::mt19937_64 rng(42);
    std::lognormal_distribution<double> dist(12.0, 2.0);  // around 160 us, long tail
    histogram h;
    std::vector<std::uint64_t> values;
    for (int i = 0; i < 200'000; ++i) {
        const auto v = static_cast<std::uint64_t>(dist(rng)) + 1;
        values.push_back(v);
        h.record(v);
    }
    std::sort(values.begin(), values.end());
    for (double p : percentiles) {
        const auto exact = exact_percentile(values, p);
        const auto got = h.percentile(p);
        CAPTURE(p);
        CHECK(got >= exact);
        CHECK(static_cast<double>(got - exact) <= static_cast<double>(exact) / 1024.0);
    }
    CHECK(h.max() == values.back());
    CHECK(h.min() == values.front());
}

TEST_CASE("bench histogram: bucket layout is contiguous and monotonic") {
    for (std::size_t i = 1; i < histogram::bucket_count(); ++i) {
        REQUIRE(histogram::lowest_of(i) == histogram::highest_of(i - 1) + 1);
        REQUIRE(histogram::index_of(histogram::lowest_of(i)) == i);
        REQUIRE(histogram::index_of(histogram::highest_of(i)) == i);
    }
    CHECK(histogram::highest_of(histogram::bucket_count() - 1) == histogram::highest_trackable);
    // Beyond the trackable range: the last bucket, with max() still exact.
    histogram h;
    h.record(UINT64_MAX / 2);
    CHECK(h.max() == UINT64_MAX / 2);
    CHECK(h.percentile(50) == UINT64_MAX / 2);
}

TEST_CASE("bench histogram: merge equals recording everything in one") {
    histogram a, b, all;
    for (std::uint64_t v = 0; v < 5000; ++v) {
        const auto x = v * v * 37 + 11;
        (v % 3 ? a : b).record(x);
        all.record(x);
    }
    histogram merged = a;
    merged.merge(b);
    CHECK(merged.to_json() == all.to_json());
    for (double p : percentiles) CHECK(merged.percentile(p) == all.percentile(p));
    histogram empty;
    empty.merge(a);
    CHECK(empty.min() == a.min());
    a.merge(histogram{});
    CHECK(a.count() == empty.count());
}

TEST_CASE("bench histogram: JSON round trip and rejection of malformed input") {
    histogram h;
    for (std::uint64_t v = 1; v < 100'000'000; v = v * 3 + 1) h.record(v, v % 5 + 1);
    const auto j = h.to_json();
    auto back = histogram::from_json(nlohmann::json::parse(j.dump()));
    REQUIRE(back);
    CHECK(back->to_json() == j);
    CHECK(back->percentile(99) == h.percentile(99));

    CHECK_FALSE(histogram::from_json(nlohmann::json::array()));
    auto wrong_count = j;
    wrong_count["count"] = h.count() + 1;
    CHECK_FALSE(histogram::from_json(wrong_count));
    auto not_a_bucket = j;
    not_a_bucket["buckets"].push_back({4097, 1});  // inside the bucket starting at 4096
    CHECK_FALSE(histogram::from_json(not_a_bucket));
    auto negative = j;
    negative["buckets"][0][1] = -1;
    CHECK_FALSE(histogram::from_json(negative));
    auto other_layout = j;
    other_layout["sub_bucket_bits"] = 7;
    CHECK_FALSE(histogram::from_json(other_layout));
    CHECK(histogram::from_json(histogram{}.to_json()));
}
