#pragma once

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mqtt/protocol/topic.hpp"

// The broker's subscription index: topic filters as a trie of levels, each node holding the
// subscribers of the filter that ends there. Matching a topic walks its levels once, taking
// the literal child (one hash lookup), the `+` child and the `#` child at each level, so
// the cost follows the topic's depth and the number of matches, not the number of
// subscriptions.
//
// Shared subscriptions are stored under their inner filter, with the group in Value; the
// trie itself knows nothing of `$share`.
namespace mqtt::protocol {

namespace detail {

// A stack kept inline up to N elements, spilling to the heap only past that, so a match on
// any realistic topic allocates nothing while a hostile 30,000-level topic still cannot
// overflow the call stack as recursion would. T must be trivially copyable.
template <class T, std::size_t N>
class small_stack {
  public:
    bool empty() const noexcept { return size_ == 0; }

    void push(const T& v) {
        if (size_ < N) {
            inline_[size_] = v;
        } else {
            spill_.push_back(v);
        }
        ++size_;
    }

    // Precondition: !empty().
    T pop() noexcept {
        --size_;
        if (size_ < N) return inline_[size_];
        T v = spill_.back();
        spill_.pop_back();
        return v;
    }

  private:
    std::array<T, N> inline_;  // not zeroed: a slot is read only after a push wrote it
    std::vector<T> spill_;
    std::size_t size_ = 0;
};

// The literal children of a trie node: open addressing with linear probing over
// (hash, child) slots, the level string living in the child itself. A lookup costs one
// cache line of slots and then the child node, which a match visits anyway; a std::
// unordered_map would add its bucket array and a separate hash node on every level. Most
// nodes have a single child (`.../<device>/temp`), held inline with no table at all.
// Node must have a `std::string level` member.
template <class Node>
class child_table {
  public:
    child_table() = default;
    child_table(const child_table&) = delete;
    child_table& operator=(const child_table&) = delete;
    child_table(child_table&& other) noexcept
        : slots_(std::move(other.slots_)),
          one_(std::move(other.one_)),
          capacity_(std::exchange(other.capacity_, 0)),
          size_(std::exchange(other.size_, 0)) {}
    child_table& operator=(child_table&& other) noexcept {
        slots_ = std::move(other.slots_);
        one_ = std::move(other.one_);
        capacity_ = std::exchange(other.capacity_, 0);
        size_ = std::exchange(other.size_, 0);
        return *this;
    }

    static std::size_t hash(std::string_view level) noexcept {
        return std::hash<std::string_view>{}(level);
    }

    bool empty() const noexcept { return size_ == 0; }

    Node* find(std::string_view level, std::size_t h) const noexcept {
        if (capacity_ == 0) return size_ != 0 && holds(one_, level, h) ? one_.child.get() : nullptr;
        const std::size_t i = index_of(level, h);
        return i == npos ? nullptr : slots_[i].child.get();
    }
    // The same, hashing `level` only when there is a table: a single child is compared
    // directly (most levels of a match, e.g. the common prefix of every topic).
    Node* find(std::string_view level) const noexcept {
        if (capacity_ == 0)
            return size_ != 0 && one_.child->level == level ? one_.child.get() : nullptr;
        return find(level, hash(level));
    }

    // Precondition: find(level, h) == nullptr.
    Node& add(std::string_view level, std::size_t h) {
        auto child = std::make_unique<Node>();
        child->level.assign(level);
        Node& added = *child;
        if (size_ == 0 && capacity_ == 0) {
            one_ = slot{h, std::move(child)};
        } else {
            if ((size_ + 1) * 2 > capacity_) rehash(capacity_ == 0 ? 4 : capacity_ * 2);
            place(slot{h, std::move(child)});
        }
        ++size_;
        return added;
    }

    // Precondition: the child is present.
    void erase(std::string_view level, std::size_t h) noexcept {
        --size_;
        if (capacity_ == 0) {
            one_ = slot{};
            return;
        }
        const std::size_t mask = capacity_ - 1;
        std::size_t hole = index_of(level, h);
        assert(hole != npos);
        slots_[hole] = slot{};
        // Backward-shift deletion: pull later members of the probe run into the hole so no
        // tombstones accumulate under churn.
        for (std::size_t j = (hole + 1) & mask; slots_[j].child; j = (j + 1) & mask) {
            const std::size_t home = slots_[j].hash & mask;
            const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
            if (stays) continue;
            slots_[hole] = std::move(slots_[j]);
            hole = j;
        }
        if (size_ <= 1) {
            return_to_inline();
        } else if (capacity_ > 8 && size_ * 8 < capacity_) {
            try_shrink();
        }
    }

    template <class F>
    void for_each(F&& f) const {
        if (capacity_ == 0) {
            if (size_ != 0) f(*one_.child);
            return;
        }
        for (std::size_t i = 0; i < capacity_; ++i) {
            if (slots_[i].child) f(*slots_[i].child);
        }
    }

    // Hands every child to sink(std::unique_ptr<Node>) and leaves the table empty.
    template <class Sink>
    void drain(Sink&& sink) {
        if (capacity_ == 0) {
            if (size_ != 0) sink(std::move(one_.child));
        } else {
            for (std::size_t i = 0; i < capacity_; ++i) {
                if (slots_[i].child) sink(std::move(slots_[i].child));
            }
        }
        *this = child_table{};
    }

  private:
    struct slot {
        std::size_t hash = 0;
        std::unique_ptr<Node> child;  // null: empty slot
    };
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    static bool holds(const slot& s, std::string_view level, std::size_t h) noexcept {
        return s.hash == h && s.child->level == level;
    }

    // Load stays at or below one half, so a probe always reaches an empty slot.
    std::size_t index_of(std::string_view level, std::size_t h) const noexcept {
        const std::size_t mask = capacity_ - 1;
        for (std::size_t i = h & mask; slots_[i].child; i = (i + 1) & mask) {
            if (holds(slots_[i], level, h)) return i;
        }
        return npos;
    }

    void place(slot&& s) noexcept {
        const std::size_t mask = capacity_ - 1;
        std::size_t i = s.hash & mask;
        while (slots_[i].child) i = (i + 1) & mask;
        slots_[i] = std::move(s);
    }

    void rehash(std::size_t capacity) {
        auto fresh = std::make_unique<slot[]>(capacity);
        auto old = std::exchange(slots_, std::move(fresh));
        const std::size_t old_capacity = std::exchange(capacity_, capacity);
        if (old_capacity == 0) {
            if (one_.child) place(std::move(one_));
            one_ = slot{};
            return;
        }
        for (std::size_t i = 0; i < old_capacity; ++i) {
            if (old[i].child) place(std::move(old[i]));
        }
    }

    // Down to one child (or none): back to the inline slot, table freed.
    void return_to_inline() noexcept {
        for (std::size_t i = 0; i < capacity_; ++i) {
            if (slots_[i].child) one_ = std::move(slots_[i]);
        }
        slots_.reset();
        capacity_ = 0;
    }

    // Shrinking is an optimisation: if the smaller table cannot be allocated, keep this one.
    void try_shrink() noexcept {
        try {
            rehash(capacity_ / 2);
        } catch (...) {
        }
    }

    std::unique_ptr<slot[]> slots_;
    slot one_;  // the only child while capacity_ == 0
    std::uint32_t capacity_ = 0;
    std::uint32_t size_ = 0;
};

// The subscribers of one filter. A dense vector, so that visiting them on a match is a
// linear scan; past a few dozen subscribers (a popular filter such as `#`) a key index
// keeps subscribe and unsubscribe O(1) instead of O(subscribers).
template <class Key, class Value, class KeyHash, class KeyEqual>
class entry_set {
  public:
    struct entry {
        Key key;
        Value value;
    };

    bool empty() const noexcept { return items_.empty(); }
    std::size_t size() const noexcept { return items_.size(); }
    std::vector<entry>& items() noexcept { return items_; }
    const std::vector<entry>& items() const noexcept { return items_; }

    // True when added, false when the key was there and its value replaced.
    bool insert_or_assign(Key&& key, Value&& value) {
        if (const auto i = index_of(key); i != npos) {
            items_[i].value = std::move(value);
            return false;
        }
        items_.push_back(entry{std::move(key), std::move(value)});
        if (index_) {
            index_->emplace(items_.back().key, items_.size() - 1);
        } else if (items_.size() > index_above) {
            build_index();
        }
        return true;
    }

    bool erase(const Key& key) {
        const auto i = index_of(key);
        if (i == npos) return false;
        if (index_) index_->erase(key);
        if (i + 1 != items_.size()) {
            items_[i] = std::move(items_.back());
            if (index_) (*index_)[items_[i].key] = i;
        }
        items_.pop_back();
        if (index_ && items_.size() < index_above / 2) index_.reset();
        if (items_.empty()) std::vector<entry>{}.swap(items_);  // give the memory back
        return true;
    }

    Value* find(const Key& key) noexcept {
        const auto i = index_of(key);
        return i == npos ? nullptr : &items_[i].value;
    }

  private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    static constexpr std::size_t index_above = 32;

    std::size_t index_of(const Key& key) const {
        if (index_) {
            const auto it = index_->find(key);
            return it == index_->end() ? npos : it->second;
        }
        for (std::size_t i = 0; i < items_.size(); ++i) {
            if (KeyEqual{}(items_[i].key, key)) return i;
        }
        return npos;
    }

    void build_index() {
        index_ = std::make_unique<std::unordered_map<Key, std::size_t, KeyHash, KeyEqual>>();
        index_->reserve(items_.size() * 2);
        for (std::size_t i = 0; i < items_.size(); ++i) index_->emplace(items_[i].key, i);
    }

    std::vector<entry> items_;
    std::unique_ptr<std::unordered_map<Key, std::size_t, KeyHash, KeyEqual>> index_;
};

}  // namespace detail

// Key identifies a subscriber (client id, session handle); a subscriber has at most one
// entry per filter. Value is what the broker needs per subscription (options, QoS,
// subscription identifier, share group). Not thread-safe; move-only.
template <class Key, class Value, class KeyHash = std::hash<Key>,
          class KeyEqual = std::equal_to<Key>>
class subscription_trie {
  public:
    using key_type = Key;
    using value_type = Value;

    subscription_trie() = default;
    ~subscription_trie() { destroy_children(root_); }
    subscription_trie(const subscription_trie&) = delete;
    subscription_trie& operator=(const subscription_trie&) = delete;
    subscription_trie(subscription_trie&& other) noexcept
        : root_(std::exchange(other.root_, node{})), size_(std::exchange(other.size_, 0)) {}
    subscription_trie& operator=(subscription_trie&& other) noexcept {
        if (this != &other) {
            destroy_children(root_);
            root_ = std::exchange(other.root_, node{});
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }

    // Adds (filter, key) or replaces its value. True when added, false when replaced (what
    // MQTT 5.0 Retain Handling 1 needs to know). Precondition: is_valid_topic_filter(filter);
    // the broker checks it first and answers Topic Filter invalid.
    bool insert_or_assign(std::string_view filter, Key key, Value value) {
        assert(is_valid_topic_filter(filter));
        node* n = &root_;
        detail::level_cursor levels{filter};
        while (!levels.done()) n = &child_or_add(*n, levels.next());
        if (n->entries.empty()) n->filter.assign(filter);
        const bool added = n->entries.insert_or_assign(std::move(key), std::move(value));
        if (added) ++size_;
        return added;
    }

    // Removes (filter, key); false when it was not there. Nodes left with no subscriber and
    // no child are freed on the way back up, so churn does not grow memory.
    bool erase(std::string_view filter, const Key& key) {
        struct step {
            node* parent;
            std::string_view level;
        };
        detail::small_stack<step, inline_depth> path;
        node* n = &root_;
        detail::level_cursor levels{filter};
        while (!levels.done()) {
            const auto level = levels.next();
            node* child = find_child(*n, level);
            if (child == nullptr) return false;
            path.push(step{n, level});
            n = child;
        }
        if (!n->entries.erase(key)) return false;
        --size_;
        if (n->entries.empty()) std::string{}.swap(n->filter);
        while (!path.empty() && n->prunable()) {
            const step s = path.pop();
            remove_child(*s.parent, s.level);
            n = s.parent;
        }
        return true;
    }

    const Value* find(std::string_view filter, const Key& key) const noexcept {
        return const_cast<subscription_trie*>(this)->find(filter, key);
    }
    Value* find(std::string_view filter, const Key& key) noexcept {
        node* n = &root_;
        detail::level_cursor levels{filter};
        while (n != nullptr && !levels.done()) n = find_child(*n, levels.next());
        return n == nullptr ? nullptr : n->entries.find(key);
    }

    // Calls visit(std::string_view filter, const Key&, const Value&) once for every entry
    // whose filter matches `topic` (a valid Topic Name), in no particular order. The filter
    // view stays valid until that entry is erased, so it also names the node: entries of one
    // share group on one filter can be told apart by it. visit must not modify the trie.
    template <class Visit>
    void match(std::string_view topic, Visit&& visit) const {
        match_impl<const node>(root_, topic, visit);
    }
    // The same, visit receiving Value& for in-place updates (e.g. a share group's cursor).
    template <class Visit>
    void match(std::string_view topic, Visit&& visit) {
        match_impl<node>(root_, topic, visit);
    }

    // Calls visit(std::string_view filter, const Key&, const Value&) for every entry.
    template <class Visit>
    void for_each(Visit&& visit) const {
        detail::small_stack<const node*, inline_depth> pending;
        pending.push(&root_);
        while (!pending.empty()) {
            const node* n = pending.pop();
            visit_entries(*n, visit);
            for_each_child(*n, [&](const node& c) { pending.push(&c); });
        }
    }

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }

    void clear() noexcept {
        destroy_children(root_);
        root_ = node{};
        size_ = 0;
    }

    // Nodes in the trie, the root included: for memory statistics and tests of pruning.
    std::size_t node_count() const {
        std::size_t count = 0;
        detail::small_stack<const node*, inline_depth> pending;
        pending.push(&root_);
        while (!pending.empty()) {
            const node* n = pending.pop();
            ++count;
            for_each_child(*n, [&](const node& c) { pending.push(&c); });
        }
        return count;
    }

  private:
    static constexpr std::size_t inline_depth = 64;
    static constexpr std::size_t at_end = std::string_view::npos;

    struct node {
        // Fields a match reads first come first: the level compared on lookup, then the
        // children and the subscribers; the filter text is only read for a hit.
        std::string level;  // this node's level, the key in its parent
        detail::child_table<node> literals;
        std::unique_ptr<node> plus;  // the `+` level
        std::unique_ptr<node> hash;  // the `#` level: never has children of its own
        detail::entry_set<Key, Value, KeyHash, KeyEqual> entries;
        std::string filter;  // the whole filter, while entries is non-empty

        bool prunable() const noexcept {
            return entries.empty() && literals.empty() && !plus && !hash;
        }
    };
    using children = detail::child_table<node>;

    static node& child_or_add(node& n, std::string_view level) {
        if (level == "+") {
            if (!n.plus) n.plus = std::make_unique<node>();
            return *n.plus;
        }
        if (level == "#") {
            if (!n.hash) n.hash = std::make_unique<node>();
            return *n.hash;
        }
        const std::size_t h = children::hash(level);
        node* child = n.literals.find(level, h);
        return child != nullptr ? *child : n.literals.add(level, h);
    }

    static node* find_child(const node& n, std::string_view level) noexcept {
        if (level == "+") return n.plus.get();
        if (level == "#") return n.hash.get();
        return n.literals.find(level);
    }

    static void remove_child(node& n, std::string_view level) {
        if (level == "+") {
            n.plus.reset();
        } else if (level == "#") {
            n.hash.reset();
        } else {
            n.literals.erase(level, children::hash(level));
        }
    }

    template <class F>
    static void for_each_child(const node& n, F&& f) {
        n.literals.for_each(f);
        if (n.plus) f(*n.plus);
        if (n.hash) f(*n.hash);
    }

    template <class NodeT, class Visit>
    static void visit_entries(NodeT& n, Visit& visit) {
        const std::string_view filter = n.filter;
        for (auto& e : n.entries.items()) visit(filter, std::as_const(e.key), e.value);
    }

    // Depth-first over (node, offset of the next topic level); each trie node is reached by
    // one path at most, so no entry is visited twice.
    template <class NodeT, class Visit>
    static void match_impl(NodeT& root, std::string_view topic, Visit& visit) {
        struct frame {
            NodeT* n;
            std::size_t pos;  // at_end once every level of the topic is consumed
        };
        // [MQTT-4.7.2-1] wildcards at the first level do not see `$` topics.
        const bool dollar = is_dollar_topic(topic);
        detail::small_stack<frame, inline_depth> pending;
        pending.push(frame{&root, 0});
        while (!pending.empty()) {
            const frame f = pending.pop();
            NodeT& n = *f.n;
            const bool wildcards = !(dollar && f.n == &root);
            // `#` matches the remaining levels, none included (`a/#` matches `a`).
            if (n.hash && wildcards) visit_entries<NodeT>(*n.hash, visit);
            if (f.pos == at_end) {
                visit_entries(n, visit);
                continue;
            }
            const auto slash = topic.find('/', f.pos);
            const auto level = topic.substr(f.pos, slash == at_end ? at_end : slash - f.pos);
            const auto next = slash == at_end ? at_end : slash + 1;
            if (!n.literals.empty()) {
                if (node* child = n.literals.find(level)) {
                    pending.push(frame{child, next});
                }
            }
            if (n.plus && wildcards) pending.push(frame{n.plus.get(), next});
        }
    }

    // Frees every node below n without recursion: a filter of 30,000 `+` levels would
    // otherwise overflow the stack in the unique_ptr destructor chain.
    static void destroy_children(node& n) noexcept {
        std::vector<std::unique_ptr<node>> pending;
        auto detach = [&pending](node& from) {
            from.literals.drain(
                [&pending](std::unique_ptr<node> child) { pending.push_back(std::move(child)); });
            if (from.plus) pending.push_back(std::move(from.plus));
            if (from.hash) pending.push_back(std::move(from.hash));
        };
        detach(n);
        while (!pending.empty()) {
            std::unique_ptr<node> last = std::move(pending.back());
            pending.pop_back();
            detach(*last);
        }
    }

    node root_;
    std::size_t size_ = 0;
};

}  // namespace mqtt::protocol
