#include "mqtt/bench/sequence.hpp"

#include <algorithm>
#include <bit>

namespace mqtt::bench {

sequence_tracker::arrival sequence_tracker::record(std::uint64_t sequence) {
    if (sequence >= max_sequence) {
        ++invalid_;
        return arrival::invalid;
    }
    const auto word = static_cast<std::size_t>(sequence / 64);
    const auto bit = std::uint64_t{1} << (sequence % 64);
    if (word >= seen_.size()) seen_.resize(std::max(word + 1, seen_.size() * 2), 0);
    if (seen_[word] & bit) {
        ++duplicates_;
        return arrival::duplicate;
    }
    seen_[word] |= bit;
    ++unique_;
    if (sequence >= end_) {
        end_ = sequence + 1;
        return arrival::in_order;
    }
    ++out_of_order_;
    return arrival::out_of_order;
}

void sequence_tracker::merge(const sequence_tracker& other) {
    if (seen_.size() < other.seen_.size()) seen_.resize(other.seen_.size(), 0);
    std::uint64_t both = 0;
    for (std::size_t i = 0; i < other.seen_.size(); ++i) {
        both += static_cast<std::uint64_t>(std::popcount(seen_[i] & other.seen_[i]));
        seen_[i] |= other.seen_[i];
    }
    unique_ += other.unique_ - both;
    duplicates_ += other.duplicates_ + both;
    out_of_order_ += other.out_of_order_;
    invalid_ += other.invalid_;
    end_ = std::max(end_, other.end_);
}

std::uint64_t sequence_tracker::lost(std::uint64_t expected) const noexcept {
    // Count the unique numbers below `expected` (a run stopped by time may have seen
    // fewer than it sent, never more).
    std::uint64_t below = 0;
    if (expected >= end_) {
        below = unique_;
    } else {
        const auto full = static_cast<std::size_t>(expected / 64);
        for (std::size_t i = 0; i < full && i < seen_.size(); ++i)
            below += static_cast<std::uint64_t>(std::popcount(seen_[i]));
        if (full < seen_.size() && expected % 64)
            below += static_cast<std::uint64_t>(
                std::popcount(seen_[full] & ((std::uint64_t{1} << (expected % 64)) - 1)));
    }
    return expected - below;
}

}  // namespace mqtt::bench
