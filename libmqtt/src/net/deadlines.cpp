#include "deadlines.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

namespace mqtt::net::detail {

void deadlines::start(asio::any_io_executor ex) {
    timer_.emplace(std::move(ex));
    armed_ = broker::clock::time_point::max();
    arm();
}

void deadlines::stop() noexcept {
    timer_.reset();
    armed_ = broker::clock::time_point::max();
}

void deadlines::schedule(deadline_owner& o, broker::clock::time_point at) {
    // While deadlines fire, one moved to a moment already past fires in the next round, not
    // again in this one: a round always ends.
    if (firing_ && at <= *firing_) at = *firing_ + std::chrono::nanoseconds{1};
    if (o.slot_ == deadline_owner::unscheduled) {
        o.at_ = at;
        heap_.push_back(&o);
        o.slot_ = static_cast<std::uint32_t>(heap_.size() - 1);
        sift_up(o.slot_);
    } else {
        const bool earlier = at < o.at_;
        o.at_ = at;
        if (earlier) {
            sift_up(o.slot_);
        } else {
            sift_down(o.slot_);
        }
    }
    if (!firing_) arm();
}

void deadlines::cancel(deadline_owner& o) noexcept {
    if (o.slot_ == deadline_owner::unscheduled) return;
    remove(o.slot_);
    // The timer stays armed while other deadlines wait: if it fires for nothing, it re-arms
    // for the next one. With none left its pending wait goes too, so a loop with nothing else
    // to do ends now rather than when the gone deadline would have passed (a broker told to
    // stop would otherwise linger up to a close grace period after its last client left).
    if (heap_.empty() && timer_ && armed_ != broker::clock::time_point::max() && !firing_) {
        armed_ = broker::clock::time_point::max();
        timer_->cancel();
    }
}

void deadlines::arm() {
    if (!timer_ || heap_.empty()) return;
    const auto next = heap_.front()->at_;
    if (next >= armed_) return;  // the pending wait fires first (then re-arms)
    armed_ = next;
    timer_->expires_at(next);  // cancels the pending wait, whose handler sees the abort
    timer_->async_wait([this](const boost::system::error_code& ec) { on_timer(ec); });
}

void deadlines::on_timer(const boost::system::error_code& ec) {
    if (ec) return;  // replaced by an earlier expiry (or the timer was destroyed)
    armed_ = broker::clock::time_point::max();
    const auto now = broker::clock::now();
    firing_ = now;
    // One at a time from the top: a deadline's action may cancel or destroy other owners
    // (a takeover closes the old connection), which leaves the heap as it should be.
    while (!heap_.empty() && heap_.front()->at_ <= now) {
        deadline_owner* o = heap_.front();
        remove(0);
        o->on_deadline();
    }
    firing_.reset();
    arm();
}

void deadlines::place(std::size_t i, deadline_owner* o) noexcept {
    heap_[i] = o;
    o->slot_ = static_cast<std::uint32_t>(i);
}

void deadlines::sift_up(std::size_t i) noexcept {
    deadline_owner* o = heap_[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (!(o->at_ < heap_[parent]->at_)) break;
        place(i, heap_[parent]);
        i = parent;
    }
    place(i, o);
}

void deadlines::sift_down(std::size_t i) noexcept {
    deadline_owner* o = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && heap_[child + 1]->at_ < heap_[child]->at_) ++child;
        if (!(heap_[child]->at_ < o->at_)) break;
        place(i, heap_[child]);
        i = child;
    }
    place(i, o);
}

void deadlines::remove(std::size_t i) noexcept {
    deadline_owner* gone = heap_[i];
    gone->slot_ = deadline_owner::unscheduled;
    deadline_owner* last = heap_.back();
    heap_.pop_back();
    if (last == gone) return;
    place(i, last);
    sift_up(i);
    sift_down(last->slot_);
}

}  // namespace mqtt::net::detail
