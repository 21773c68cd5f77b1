#pragma once

// What one subscriber saw of one publisher's numbered messages: unique, duplicate and
// out-of-order arrivals, and from them the loss. A bit per sequence number, so duplicates
// are exact however late they come; numbers past max_sequence are counted as invalid
// instead of growing memory without bound.

#include <cstdint>
#include <vector>

namespace mqtt::bench {

class sequence_tracker {
  public:
    static constexpr std::uint64_t max_sequence = std::uint64_t{1} << 30;

    enum class arrival : std::uint8_t { in_order, out_of_order, duplicate, invalid };

    arrival record(std::uint64_t sequence);
    // Adds what another receiver saw of the same publisher (a shared subscription group spread
    // over several event loops): the union of the numbers is unique, a number both saw is a
    // duplicate; out-of-order and invalid arrivals add up.
    void merge(const sequence_tracker& other);

    std::uint64_t unique() const noexcept { return unique_; }
    std::uint64_t duplicates() const noexcept { return duplicates_; }
    // Arrivals with a lower number than one seen before (duplicates not included).
    std::uint64_t out_of_order() const noexcept { return out_of_order_; }
    std::uint64_t invalid() const noexcept { return invalid_; }
    // Messages 0..expected-1 that never came. With expected unknown (another process
    // published), pass highest()+1: the gaps.
    std::uint64_t lost(std::uint64_t expected) const noexcept;
    // One past the highest number seen; 0 before any.
    std::uint64_t end() const noexcept { return end_; }

  private:
    std::vector<std::uint64_t> seen_;  // bit set
    std::uint64_t unique_ = 0;
    std::uint64_t duplicates_ = 0;
    std::uint64_t out_of_order_ = 0;
    std::uint64_t invalid_ = 0;
    std::uint64_t end_ = 0;
};

}  // namespace mqtt::bench
