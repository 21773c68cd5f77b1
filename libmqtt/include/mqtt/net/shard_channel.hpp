#pragma once

// One direction between two shards of the sharded broker (docs/broker.md, "Threading"): a
// single-producer single-consumer channel of batches. The producer (the sending shard's
// thread) appends items to an open batch during its loop turn and publishes the batch at the
// end of the turn; the consumer (the receiving shard's thread) drains every published batch
// in order. No Asio here: publish() says when the consumer must be woken and the caller posts
// that one wake-up (net/shard_runtime.hpp does), so the channel is tested without threads too.
//
// Per message the producer does a push_back into its own open batch (no atomic operation,
// no lock); the atomics below are touched once per batch.
//
// Memory when the consumer falls behind (bounded, never growing without limit):
// - at most `slots` published batches wait; when all are taken publish() answers `full`, the
//   batch stays open and keeps collecting;
// - at most `max_items` items are in flight (open + published, not yet drained): beyond that
//   try_push() refuses the item (left untouched with the caller) and counts it in `refused`;
// - from `high_water` items in flight check_congested() is true: the producer's signal to
//   stop taking new work (in the broker: stop reading from publishers) before items are refused;
//   also from `high_water_bytes` in flight, when the channel weighs its items (the Weigh
//   parameter: in the broker a message's held bytes, so that 1 MiB messages pause their
//   publishers after a few dozen, not after tens of thousands);
// - after a full publish, a refusal or a congested check the next drain reports
//   `resume_producer`, so the producer learns it may publish and check again (one signal per
//   drain, however many items it freed);
// - a drained batch's storage is kept for reuse unless it grew past max_items / slots
//   elements, so what stays allocated is about max(max_items, slots * 64) items per channel;
// - the consumer may stop in the middle of a batch (its handler takes fewer items than it
//   was given: in the broker, an item reached a congested subscriber). The drain then
//   reports `stalled` and stays scheduled, so no publish posts another one; the items left
//   stay in flight and count towards high_water, which is how the stall reaches the
//   producer. The consumer calls drain() again when it is ready, and it resumes there.
//
// Memory orders. Slots: a slot belongs to the producer while it is outside
// [head_, tail_) and to the consumer while inside. tail_ is stored with release (seq_cst
// here) after the batch is swapped into its slot and loaded with acquire by the consumer, so
// the consumer sees the batch's contents; head_ is stored after the consumer emptied the slot
// and loaded with acquire by the producer, so the producer's next swap into that slot comes
// after the consumer's last touch of it. Wake-ups: `scheduled_` is true from the publish that
// posted a drain until that drain ends. The producer stores tail_ then exchanges scheduled_;
// the consumer stores scheduled_ = false then loads tail_ again. Both pairs are seq_cst, so
// in their single total order either the producer's exchange reads false (and it posts a
// drain) or the consumer's second load sees the new tail_ (and it drains again): no batch is
// left without a drain. The back-pressure flag `blocked_` uses the same pattern with head_ /
// consumed_ (producer: store blocked_, reload; consumer: store head_ / consumed_, exchange
// blocked_), so a producer that found no room is always told when room appears.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace mqtt::net {

struct shard_channel_limits {
    std::size_t slots = 16;           // published batches in flight; rounded up to a power of 2
    std::size_t max_items = 65'536;   // items in flight (open + published); more are refused
    std::size_t high_water = 32'768;  // check_congested() from this many items in flight
    // check_congested() from this many bytes in flight, as the channel's Weigh counts them;
    // 0: items only.
    std::size_t high_water_bytes = 0;
};

// The default Weigh: items weigh nothing (high_water_bytes has no effect).
template <class T>
struct shard_channel_no_weight {
    std::size_t operator()(const T&) const noexcept { return 0; }
};

// What a producer did (read on the producer's thread, or after the threads are joined).
struct shard_channel_producer_counters {
    std::uint64_t pushed = 0;   // items accepted by try_push()
    std::uint64_t refused = 0;  // items try_push() refused (max_items in flight)
    std::uint64_t batches = 0;  // batches published
    std::uint64_t wakeups = 0;  // publishes that asked for a drain to be posted
    std::uint64_t full = 0;     // publishes that found every slot taken
};

// What a consumer did (read on the consumer's thread, or after the threads are joined).
struct shard_channel_consumer_counters {
    std::uint64_t drains = 0;   // drain() calls
    std::uint64_t batches = 0;  // batches drained
    std::uint64_t items = 0;    // items drained
    std::uint64_t again = 0;    // drains that found more published meanwhile and asked again
    std::uint64_t stalls = 0;   // drains the handler stopped before the last item
};

template <class T, class Weigh = shard_channel_no_weight<T>>
class shard_channel {
  public:
    enum class publish_result : std::uint8_t {
        nothing,    // the open batch was empty
        published,  // published; a drain is already scheduled or running
        wake,       // published; the caller must post one drain to the consumer
        full,       // every slot taken: the batch stays open, a drain will report
                    // resume_producer
    };

    struct drain_result {
        std::size_t batches = 0;
        std::size_t items = 0;
        // More was published during this drain and the drain is still scheduled: the caller
        // posts drain() again (behind the consumer's other work) instead of looping here.
        bool again = false;
        // The producer was refused room (full publish, refused item or congested check): the
        // caller tells it, on the producer's thread, to publish and check again.
        bool resume_producer = false;
        // The handler took fewer items than it was given: the drain stopped there and is
        // still scheduled; nothing posts it again but the caller, with another drain().
        bool stalled = false;
    };

    explicit shard_channel(shard_channel_limits limits = {})
        : mask_(round_up_pow2(limits.slots) - 1),
          max_items_(limits.max_items == 0 ? 1 : limits.max_items),
          high_water_(limits.high_water == 0 || limits.high_water > max_items_ ? max_items_
                                                                               : limits.high_water),
          high_water_bytes_(limits.high_water_bytes),
          retain_capacity_(std::max<std::size_t>(64, max_items_ / (mask_ + 1))),
          slots_(std::make_unique<std::vector<T>[]>(mask_ + 1)) {}

    shard_channel(const shard_channel&) = delete;
    shard_channel& operator=(const shard_channel&) = delete;
    // Items still open or published are destroyed with the channel (their references, e.g.
    // message_ptr counts, released): the owner destroys it only once both threads are done.
    ~shard_channel() = default;

    // ---- producer's thread ----

    // Appends to the open batch; false (item untouched, `refused` counted) when max_items
    // are in flight.
    bool try_push(T&& item) {
        if (pushed_ - consumed_seen_ >= max_items_ && !room_for_items(max_items_)) {
            ++producer_.refused;
            return false;
        }
        if (high_water_bytes_ != 0) pushed_bytes_ += Weigh{}(item);
        open_.push_back(std::move(item));
        ++pushed_;
        ++producer_.pushed;
        return true;
    }

    // Publishes the open batch (end of the producer's loop turn).
    publish_result publish() {
        if (open_.empty()) return publish_result::nothing;
        if (tail_mine_ - head_seen_ > mask_ && !room_for_batch()) {
            ++producer_.full;
            return publish_result::full;
        }
        // The slot is empty (drained and cleared, or never used): swapping keeps its storage
        // for the next open batch.
        slots_[tail_mine_ & mask_].swap(open_);
        ++tail_mine_;
        ++producer_.batches;
        tail_.store(tail_mine_, std::memory_order_seq_cst);
        if (scheduled_.exchange(true, std::memory_order_seq_cst)) return publish_result::published;
        ++producer_.wakeups;
        return publish_result::wake;
    }

    // True while high_water or more items are in flight; the next drain then reports
    // resume_producer.
    bool check_congested() {
        if (pushed_ - consumed_seen_ >= high_water_ && !room_for_items(high_water_)) return true;
        return high_water_bytes_ != 0 && pushed_bytes_ - consumed_bytes_seen_ >= high_water_bytes_ &&
               !room_for_bytes();
    }

    std::size_t open_items() const noexcept { return open_.size(); }
    // Items pushed and not yet drained as far as the producer knows (an upper bound).
    std::size_t in_flight_estimate() const noexcept { return pushed_ - consumed_seen_; }
    const shard_channel_producer_counters& producer_counters() const noexcept { return producer_; }

    // ---- consumer's thread ----

    // Calls on_batch(std::span<T>) for every batch published before the call, oldest first;
    // the items may be moved from, and are destroyed when the batch is done. on_batch either
    // returns nothing (it took every item) or how many of the items it took, from the front:
    // fewer than it was given stops the drain there (`stalled`), and the next drain() starts
    // with the first item not taken. Called for each `wake`, again when `again`, and by the
    // consumer itself after a stall; a spurious call is harmless.
    template <class F>
    drain_result drain(F&& on_batch) {
        drain_result r;
        ++consumer_.drains;
        std::size_t h = head_mine_;
        const std::size_t t = tail_.load(std::memory_order_acquire);
        while (h != t) {
            std::vector<T>& batch = slots_[h & mask_];
            const auto rest = std::span<T>(batch).subspan(taken_);
            // Weighed before the handler moves from them; summed for those it takes.
            if (high_water_bytes_ != 0) {
                weights_.clear();
                for (const T& item : rest) weights_.push_back(Weigh{}(item));
            }
            std::size_t n = rest.size();
            if constexpr (std::is_void_v<std::invoke_result_t<F&, std::span<T>>>) {
                on_batch(rest);
            } else {
                n = std::min<std::size_t>(on_batch(rest), rest.size());
            }
            r.items += n;
            consumed_mine_ += n;
            if (high_water_bytes_ != 0) {
                for (std::size_t i = 0; i < n; ++i) consumed_bytes_mine_ += weights_[i];
                consumed_bytes_.store(consumed_bytes_mine_, std::memory_order_seq_cst);
            }
            if (n < rest.size()) {
                // The items taken are moved-from and stay in the slot until the batch is done.
                taken_ += n;
                consumed_.store(consumed_mine_, std::memory_order_seq_cst);
                r.stalled = true;
                break;
            }
            taken_ = 0;
            ++r.batches;
            batch.clear();
            if (batch.capacity() > retain_capacity_) std::vector<T>().swap(batch);
            ++h;
            head_.store(h, std::memory_order_seq_cst);
            consumed_.store(consumed_mine_, std::memory_order_seq_cst);
        }
        head_mine_ = h;
        consumer_.batches += r.batches;
        consumer_.items += r.items;
        if (r.stalled) {
            ++consumer_.stalls;
            // scheduled_ stays true: a publish meanwhile posts nothing, the stalled drain
            // is the consumer's to resume.
        } else {
            scheduled_.store(false, std::memory_order_seq_cst);
            if (tail_.load(std::memory_order_seq_cst) != h &&
                !scheduled_.exchange(true, std::memory_order_seq_cst)) {
                r.again = true;  // nobody else will post: the caller does
                ++consumer_.again;
            }
        }
        if (r.items != 0) r.resume_producer = blocked_.exchange(false, std::memory_order_seq_cst);
        return r;
    }

    const shard_channel_consumer_counters& consumer_counters() const noexcept { return consumer_; }

  private:
    static std::size_t round_up_pow2(std::size_t n) {
        std::size_t p = 1;
        while (p < n) p <<= 1;
        return p;
    }

    // Producer: is there room for another published batch? Arms blocked_ before the last
    // look, so a consumer that frees a slot after it reports resume_producer.
    bool room_for_batch() {
        head_seen_ = head_.load(std::memory_order_acquire);
        if (tail_mine_ - head_seen_ <= mask_) return true;
        blocked_.store(true, std::memory_order_seq_cst);
        head_seen_ = head_.load(std::memory_order_seq_cst);
        return tail_mine_ - head_seen_ <= mask_;
    }

    // Producer: fewer than high_water_bytes in flight? Arms blocked_ as room_for_items() does.
    bool room_for_bytes() {
        consumed_bytes_seen_ = consumed_bytes_.load(std::memory_order_relaxed);
        if (pushed_bytes_ - consumed_bytes_seen_ < high_water_bytes_) return true;
        blocked_.store(true, std::memory_order_seq_cst);
        consumed_bytes_seen_ = consumed_bytes_.load(std::memory_order_seq_cst);
        return pushed_bytes_ - consumed_bytes_seen_ < high_water_bytes_;
    }

    // Producer: fewer than `limit` items in flight? Arms blocked_ as room_for_batch() does.
    // consumed_ is only a count (the items' memory is handed over through head_), hence
    // relaxed for the first look.
    bool room_for_items(std::size_t limit) {
        consumed_seen_ = consumed_.load(std::memory_order_relaxed);
        if (pushed_ - consumed_seen_ < limit) return true;
        blocked_.store(true, std::memory_order_seq_cst);
        consumed_seen_ = consumed_.load(std::memory_order_seq_cst);
        return pushed_ - consumed_seen_ < limit;
    }

    const std::size_t mask_;  // slots - 1
    const std::size_t max_items_;
    const std::size_t high_water_;
    const std::size_t high_water_bytes_;
    const std::size_t retain_capacity_;
    const std::unique_ptr<std::vector<T>[]> slots_;

    // Producer's own (plain, one thread).
    alignas(64) std::vector<T> open_;
    std::size_t tail_mine_ = 0;
    std::size_t head_seen_ = 0;  // a past value of head_: a lower bound of free slots
    std::uint64_t pushed_ = 0;
    std::uint64_t consumed_seen_ = 0;  // a past value of consumed_
    std::uint64_t pushed_bytes_ = 0;
    std::uint64_t consumed_bytes_seen_ = 0;  // a past value of consumed_bytes_
    shard_channel_producer_counters producer_;

    // Consumer's own.
    alignas(64) std::size_t head_mine_ = 0;
    std::size_t taken_ = 0;  // items of the batch at head_mine_ already taken (a stall)
    std::uint64_t consumed_mine_ = 0;
    std::uint64_t consumed_bytes_mine_ = 0;
    std::vector<std::size_t> weights_;  // drain(): the weights of the batch's items
    shard_channel_consumer_counters consumer_;

    // Shared, each on its own cache line: written by one side, read by the other.
    alignas(64) std::atomic<std::size_t> tail_{0};        // producer writes
    alignas(64) std::atomic<std::size_t> head_{0};        // consumer writes
    alignas(64) std::atomic<std::uint64_t> consumed_{0};  // consumer writes
    alignas(64) std::atomic<std::uint64_t> consumed_bytes_{0};  // consumer writes
    alignas(64) std::atomic<bool> scheduled_{false};      // both (wake-up protocol)
    alignas(64) std::atomic<bool> blocked_{false};        // both (back-pressure signal)
};

}  // namespace mqtt::net
