#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

namespace mqtt::broker {

// A sequence for the in-flight window of a session: appended at the back, and removed
// from nearly always at the front (acknowledgements come in the order the messages were
// sent). The live elements are [head, head + size) of one buffer, so removing the first
// one is O(1); a std::vector moved every other element instead (99 moves per PUBACK with
// the default window of 100, a third of the broker's instructions per QoS 1 message).
// When the back reaches the end of the buffer the elements move to its front (or to a
// buffer twice their number), so a steady window costs O(1) amortised per element.
// Contiguous, iterators are pointers. The same size as a std::vector (one pointer and
// three 32-bit counts), so the session state does not grow. T's move must not throw.
template <class T>
class sliding_vector {
  public:
    using value_type = T;
    using iterator = T*;
    using const_iterator = const T*;
    using size_type = std::size_t;

    sliding_vector() = default;
    ~sliding_vector() { release(); }
    sliding_vector(const sliding_vector& o) {
        if (o.size_ == 0) return;
        data_ = allocate(o.size_);
        cap_ = o.size_;
        std::uninitialized_copy(o.begin(), o.end(), data_);
        size_ = o.size_;
    }
    sliding_vector(sliding_vector&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)),
          head_(std::exchange(o.head_, 0)),
          size_(std::exchange(o.size_, 0)),
          cap_(std::exchange(o.cap_, 0)) {}
    sliding_vector& operator=(const sliding_vector& o) {
        if (this != &o) {
            sliding_vector copy(o);
            swap(copy);
        }
        return *this;
    }
    sliding_vector& operator=(sliding_vector&& o) noexcept {
        if (this != &o) {
            release();
            data_ = std::exchange(o.data_, nullptr);
            head_ = std::exchange(o.head_, 0);
            size_ = std::exchange(o.size_, 0);
            cap_ = std::exchange(o.cap_, 0);
        }
        return *this;
    }
    void swap(sliding_vector& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(head_, o.head_);
        std::swap(size_, o.size_);
        std::swap(cap_, o.cap_);
    }

    iterator begin() noexcept { return data_ + head_; }
    iterator end() noexcept { return data_ + head_ + size_; }
    const_iterator begin() const noexcept { return data_ + head_; }
    const_iterator end() const noexcept { return data_ + head_ + size_; }
    size_type size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    T& front() noexcept { return *begin(); }
    const T& front() const noexcept { return *begin(); }
    T& back() noexcept { return *(end() - 1); }
    const T& back() const noexcept { return *(end() - 1); }
    T& operator[](size_type i) noexcept { return begin()[i]; }
    const T& operator[](size_type i) const noexcept { return begin()[i]; }

    void push_back(T v) {
        if (head_ + size_ == cap_) make_room();
        ::new (static_cast<void*>(end())) T(std::move(v));
        ++size_;
    }

    // Removes *it; returns the iterator to the element that followed it.
    iterator erase(iterator it) noexcept {
        if (it == begin()) {
            std::destroy_at(it);
            ++head_;
            if (--size_ == 0) head_ = 0;
            return begin();
        }
        std::move(it + 1, end(), it);
        std::destroy_at(end() - 1);
        --size_;
        return it;
    }

    // Removes every element for which pred is true, keeping the order of the others;
    // returns how many were removed.
    template <class Pred>
    size_type erase_if(Pred pred) {
        const iterator kept_end = std::remove_if(begin(), end(), pred);
        const auto removed = static_cast<size_type>(end() - kept_end);
        std::destroy(kept_end, end());
        size_ -= static_cast<std::uint32_t>(removed);
        if (size_ == 0) head_ = 0;
        return removed;
    }

    // Destroys the elements and keeps the buffer, as std::vector::clear does.
    void clear() noexcept {
        std::destroy(begin(), end());
        head_ = 0;
        size_ = 0;
    }

  private:
    static T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }

    // The back is at the end of the buffer: move the elements to the front when at least
    // half of it is free there, else to a new buffer of twice their number.
    void make_room() {
        if (head_ != 0 && head_ >= size_) {  // [0, size) and [head, head + size) do not overlap
            std::uninitialized_move(begin(), end(), data_);
            std::destroy(begin(), end());
            head_ = 0;
            return;
        }
        const std::uint32_t cap = size_ < 2 ? 4 : size_ * 2;
        T* data = allocate(cap);
        std::uninitialized_move(begin(), end(), data);
        const std::uint32_t size = size_;
        release();
        data_ = data;
        size_ = size;
        cap_ = cap;
    }

    void release() noexcept {
        if (data_ == nullptr) return;
        std::destroy(begin(), end());
        std::allocator<T>{}.deallocate(data_, cap_);
        data_ = nullptr;
        head_ = size_ = cap_ = 0;
    }

    T* data_ = nullptr;
    std::uint32_t head_ = 0;
    std::uint32_t size_ = 0;
    std::uint32_t cap_ = 0;
};

}  // namespace mqtt::broker
