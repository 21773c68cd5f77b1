#include "mqtt/broker/shard_interest.hpp"

#include <algorithm>

namespace mqtt::broker {
namespace {

constexpr std::uint64_t fnv_offset = 14695981039346656037ull;  // FNV-1a 64
constexpr std::uint64_t fnv_prime = 1099511628211ull;

std::uint64_t step(std::uint64_t h, char c) noexcept {
    return (h ^ static_cast<unsigned char>(c)) * fnv_prime;
}

// The levels before the first `/` from `i`, hashed into h with a `/` after them: h(d) is
// the hash of "l1/l2/.../ld/", the same for a filter's literal levels and a topic's.
std::uint64_t hash_level(std::uint64_t h, std::string_view level) noexcept {
    for (const char c : level) h = step(h, c);
    return step(h, '/');
}

// A bucket for hash h; `salt` separates the depths of the prefix keys (FNV's low bits mix
// poorly, so the final mix of MurmurHash3's finalizer spreads them).
template <std::size_t Bits>
std::size_t bucket(std::uint64_t h, std::uint64_t salt) noexcept {
    h ^= salt * 0x9E3779B97F4A7C15ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return static_cast<std::size_t>(h >> (64 - Bits));
}

bool is_wildcard(std::string_view level) noexcept {
    return level == "+" || level == "#";
}

}  // namespace

void shard_interest::change(std::string_view filter, std::uint32_t delta) noexcept {
    std::uint64_t h = fnv_offset;
    std::uint64_t capped = h;  // h of the first min(depth, max_depth) levels
    std::size_t depth = 0;
    bool wildcard = false;
    for (std::size_t i = 0;;) {
        const auto end = filter.find('/', i);
        const auto level = filter.substr(i, end == std::string_view::npos ? end : end - i);
        if (is_wildcard(level)) {
            wildcard = true;
            break;
        }
        h = hash_level(h, level);
        if (++depth <= max_depth) capped = h;
        if (end == std::string_view::npos) break;
        i = end + 1;
    }
    // seq_cst read-modify-writes: locked instructions, done before the SUBACK is written.
    if (wildcard) {
        const std::size_t d = std::min(depth, max_depth);
        prefix_[bucket<bucket_bits>(capped, d + 1)].fetch_add(delta, std::memory_order_seq_cst);
        depth_[d].fetch_add(delta, std::memory_order_seq_cst);
    } else {
        exact_[bucket<bucket_bits>(h, 0)].fetch_add(delta, std::memory_order_seq_cst);
    }
    if (delta == 1) {
        entries_.fetch_add(1, std::memory_order_seq_cst);
    } else {
        entries_.fetch_sub(1, std::memory_order_seq_cst);
    }
}

bool shard_interest::may_match(std::string_view topic) const noexcept {
    if (entries_.load(std::memory_order_acquire) == 0) return false;
    std::uint64_t h = fnv_offset;
    // A wildcard filter with d literal levels can match only a topic of d levels or more
    // ("a/#" matches "a"), whose first d levels are those: try each depth some filter has.
    const auto prefix_at = [&](std::size_t d) {
        return depth_[d].load(std::memory_order_acquire) != 0 &&
               prefix_[bucket<bucket_bits>(h, d + 1)].load(std::memory_order_acquire) != 0;
    };
    if (prefix_at(0)) return true;
    std::size_t depth = 0;
    for (std::size_t i = 0;;) {
        const auto end = topic.find('/', i);
        h = hash_level(h, topic.substr(i, end == std::string_view::npos ? end : end - i));
        if (++depth <= max_depth && prefix_at(depth)) return true;
        if (end == std::string_view::npos) break;
        i = end + 1;
    }
    return exact_[bucket<bucket_bits>(h, 0)].load(std::memory_order_acquire) != 0;
}

}  // namespace mqtt::broker
