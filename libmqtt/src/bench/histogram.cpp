#include "mqtt/bench/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace mqtt::bench {
namespace {

constexpr std::uint64_t sub_count = std::uint64_t{1} << histogram::sub_bucket_bits;
constexpr std::uint64_t half_count = sub_count / 2;

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
    const auto r = a + b;
    return r < a ? std::numeric_limits<std::uint64_t>::max() : r;
}

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) noexcept {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a)
        return std::numeric_limits<std::uint64_t>::max();
    return a * b;
}

}  // namespace

histogram::histogram() : counts_(bucket_count(), 0) {}

std::size_t histogram::bucket_count() noexcept {
    return sub_count + (max_value_bits - sub_bucket_bits) * half_count;
}

std::size_t histogram::index_of(std::uint64_t value) noexcept {
    value = std::min(value, highest_trackable);
    if (value < sub_count) return static_cast<std::size_t>(value);
    const unsigned shift = static_cast<unsigned>(std::bit_width(value)) - sub_bucket_bits;
    return static_cast<std::size_t>(sub_count + (shift - 1) * half_count +
                                    ((value >> shift) - half_count));
}

std::uint64_t histogram::lowest_of(std::size_t index) noexcept {
    if (index < sub_count) return index;
    const std::uint64_t k = index - sub_count;
    const auto shift = static_cast<unsigned>(k / half_count + 1);
    return (k % half_count + half_count) << shift;
}

std::uint64_t histogram::highest_of(std::size_t index) noexcept {
    if (index < sub_count) return index;
    const std::uint64_t k = index - sub_count;
    const auto shift = static_cast<unsigned>(k / half_count + 1);
    return lowest_of(index) + (std::uint64_t{1} << shift) - 1;
}

void histogram::record(std::uint64_t value, std::uint64_t times) noexcept {
    if (times == 0) return;
    counts_[index_of(value)] += times;
    if (count_ == 0 || value < min_) min_ = value;
    max_ = std::max(max_, value);
    count_ += times;
    sum_ = saturating_add(sum_, saturating_mul(value, times));
}

void histogram::merge(const histogram& other) noexcept {
    if (other.count_ == 0) return;
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
    count_ += other.count_;
    sum_ = saturating_add(sum_, other.sum_);
}

void histogram::reset() noexcept {
    std::fill(counts_.begin(), counts_.end(), 0);
    count_ = min_ = max_ = sum_ = 0;
}

double histogram::mean() const noexcept {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
}

double histogram::stddev() const noexcept {
    if (count_ == 0) return 0.0;
    const double m = mean();
    double sum = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        if (!counts_[i]) continue;
        const double mid =
            (static_cast<double>(lowest_of(i)) + static_cast<double>(highest_of(i))) / 2;
        sum += (mid - m) * (mid - m) * static_cast<double>(counts_[i]);
    }
    return std::sqrt(sum / static_cast<double>(count_));
}

std::uint64_t histogram::percentile(double p) const noexcept {
    if (count_ == 0) return 0;
    p = std::clamp(p, 0.0, 100.0);
    // Nearest rank; the 1e-9 keeps 99.9% of 1000 at rank 999 despite binary rounding.
    auto rank =
        static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_) - 1e-9));
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        seen += counts_[i];
        if (seen >= rank) return std::clamp(highest_of(i), min(), max_);
    }
    return max_;
}

nlohmann::json histogram::to_json() const {
    auto buckets = nlohmann::json::array();
    for (std::size_t i = 0; i < counts_.size(); ++i)
        if (counts_[i]) buckets.push_back({lowest_of(i), counts_[i]});
    return {{"unit", "ns"},
            {"sub_bucket_bits", sub_bucket_bits},
            {"count", count_},
            {"min", min()},
            {"max", max_},
            {"sum", sum_},
            {"buckets", std::move(buckets)}};
}

result<histogram> histogram::from_json(const nlohmann::json& j) {
    const auto bad = std::make_error_code(std::errc::invalid_argument);
    const auto is_uint = [](const nlohmann::json& v) { return v.is_number_unsigned(); };
    if (!j.is_object() || j.value("unit", "") != "ns" || !j.contains("sub_bucket_bits") ||
        j["sub_bucket_bits"] != sub_bucket_bits)
        return bad;
    for (const char* key : {"count", "min", "max", "sum"})
        if (!j.contains(key) || !is_uint(j[key])) return bad;
    if (!j.contains("buckets") || !j["buckets"].is_array()) return bad;
    histogram h;
    std::uint64_t total = 0;
    for (const auto& b : j["buckets"]) {
        if (!b.is_array() || b.size() != 2 || !is_uint(b[0]) || !is_uint(b[1])) return bad;
        const auto value = b[0].get<std::uint64_t>();
        const auto n = b[1].get<std::uint64_t>();
        const auto i = index_of(value);
        if (value > highest_trackable || lowest_of(i) != value || n == 0 || h.counts_[i] != 0)
            return bad;
        h.counts_[i] = n;
        total = saturating_add(total, n);
    }
    h.count_ = j["count"].get<std::uint64_t>();
    h.min_ = j["min"].get<std::uint64_t>();
    h.max_ = j["max"].get<std::uint64_t>();
    h.sum_ = j["sum"].get<std::uint64_t>();
    if (total != h.count_ ||
        (h.count_ && (index_of(h.min_) > index_of(h.max_) || h.counts_[index_of(h.min_)] == 0 ||
                      h.counts_[index_of(h.max_)] == 0)))
        return bad;
    return h;
}

nlohmann::json percentiles_json(const histogram& h) {
    return {{"count", h.count()},
            {"min", h.min()},
            {"mean", h.mean()},
            {"p50", h.percentile(50)},
            {"p90", h.percentile(90)},
            {"p99", h.percentile(99)},
            {"p99_9", h.percentile(99.9)},
            {"p99_99", h.percentile(99.99)},
            {"max", h.max()}};
}

}  // namespace mqtt::bench
