#pragma once

// A log-linear latency histogram in the HdrHistogram style: values below 2^11 are counted
// exactly; above, each power-of-two range is split into 1024 equal buckets, so a reported
// value is within 1/1024 (0.1%) of the recorded one. Fixed memory (about 250 KiB), O(1)
// record, exact merge (bucket counts add), and a sparse JSON form that round-trips exactly,
// so results from several runs or machines can be combined without losing precision.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mqtt/result.hpp"

namespace mqtt::bench {

class histogram {
  public:
    static constexpr unsigned sub_bucket_bits = 11;  // exact below 2^11
    static constexpr unsigned max_value_bits = 40;   // 2^40 ns is about 18 minutes
    static constexpr std::uint64_t highest_trackable = (std::uint64_t{1} << max_value_bits) - 1;

    histogram();

    // Values above highest_trackable are counted in the last bucket; max() stays exact.
    void record(std::uint64_t value, std::uint64_t times = 1) noexcept;
    // Adds every count of `other` (same layout, so the result is exact).
    void merge(const histogram& other) noexcept;
    void reset() noexcept;

    std::uint64_t count() const noexcept { return count_; }
    std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
    std::uint64_t max() const noexcept { return max_; }
    double mean() const noexcept;
    // From the buckets (each sample taken at its bucket's middle), as HdrHistogram does.
    double stddev() const noexcept;
    // The nearest-rank percentile (0 < p <= 100): the value of the ceil(p/100*count)-th
    // smallest sample, reported as the highest value its bucket holds, clamped to
    // [min(), max()]. Exact for values below 2^11. 0 for an empty histogram.
    std::uint64_t percentile(double p) const noexcept;

    // {"unit":"ns","sub_bucket_bits":11,"count":..,"min":..,"max":..,"sum":..,
    //  "buckets":[[lowest value of the bucket, count], ...]} with empty buckets left out.
    nlohmann::json to_json() const;
    // The inverse of to_json(); an error for anything it would not have written.
    static result<histogram> from_json(const nlohmann::json& j);

    // Bucket layout, public for tests.
    static std::size_t index_of(std::uint64_t value) noexcept;
    static std::uint64_t lowest_of(std::size_t index) noexcept;
    static std::uint64_t highest_of(std::size_t index) noexcept;
    static std::size_t bucket_count() noexcept;

  private:
    std::vector<std::uint64_t> counts_;
    std::uint64_t count_ = 0;
    std::uint64_t min_ = 0;
    std::uint64_t max_ = 0;
    // long double would not round-trip through JSON; the sum of 2^64 ns does not happen.
    std::uint64_t sum_ = 0;
};

// The summary every report prints: count, min, mean, p50, p90, p99, p99.9, p99.99, max.
nlohmann::json percentiles_json(const histogram& h);

}  // namespace mqtt::bench
