#pragma once

// With threads > 1 (docs/broker.md, "Threading"): what one shard's subscription filters may
// match, in a form the other shards read without a lock, so a message goes only to the
// shards where a filter may match its topic. A message nobody on a shard subscribed to then
// costs that shard nothing: no channel item, no wake-up of its loop.
//
// Conservative by construction: may_match() can say yes for a topic no filter matches (two
// filters or prefixes in one bucket; a wildcard filter's levels after its first wildcard are
// not looked at), never no for one a filter matches. Counts, not bits, so removing a filter
// takes back exactly what adding it put in.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mqtt::broker {

class shard_interest {
  public:
    shard_interest() = default;
    shard_interest(const shard_interest&) = delete;
    shard_interest& operator=(const shard_interest&) = delete;

    // One subscription entry more, or less, for `filter` (a valid Topic Filter, without the
    // `$share/<name>/` part). On the owning shard's thread only. A shard that adds a filter
    // before it answers the SUBSCRIBE is seen by every publish that starts after that
    // answer was read (the update is a locked instruction; readers load with acquire).
    void add(std::string_view filter) noexcept { change(filter, 1); }
    void remove(std::string_view filter) noexcept { change(filter, static_cast<std::uint32_t>(-1)); }

    // False only when no filter added (and not removed) can match `topic` (a valid Topic
    // Name). Any thread.
    bool may_match(std::string_view topic) const noexcept;

    // Entries counted now (any thread; a gauge for tests and figures).
    std::uint64_t entries() const noexcept { return entries_.load(std::memory_order_relaxed); }

    // Filters with a wildcard are keyed by the literal levels before it, up to this many.
    static constexpr std::size_t max_depth = 8;
    static constexpr std::size_t bucket_bits = 14;

  private:
    static constexpr std::size_t buckets = std::size_t{1} << bucket_bits;
    void change(std::string_view filter, std::uint32_t delta) noexcept;

    // exact_: filters without a wildcard, by the hash of all their levels. prefix_: filters
    // with one, by the hash of their literal levels before it and how many (capped at
    // max_depth); depth_[d]: how many of those have d literal levels, so a lookup tries
    // only the depths some filter has.
    std::array<std::atomic<std::uint32_t>, buckets> exact_{};
    std::array<std::atomic<std::uint32_t>, buckets> prefix_{};
    std::array<std::atomic<std::uint32_t>, max_depth + 1> depth_{};
    std::atomic<std::uint64_t> entries_{0};
};

}  // namespace mqtt::broker
