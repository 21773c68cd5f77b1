#include "mqtt/broker/retained_store.hpp"

#include <algorithm>
#include <utility>

#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {
namespace {

// "a//b" has three levels, "a/" two (§4.7.1.1).
std::vector<std::string_view> split_levels(std::string_view s) {
    std::vector<std::string_view> levels;
    protocol::detail::level_cursor cursor{s};
    while (!cursor.done()) levels.push_back(cursor.next());
    return levels;
}

bool starts_with_dollar(std::string_view level) {
    return !level.empty() && level[0] == '$';
}

}  // namespace

retained_store::~retained_store() {
    // Iterative teardown: a chain of 65,535 levels must not recurse through unique_ptrs.
    std::vector<std::unique_ptr<node>> pending;
    auto detach = [&pending](node& n) {
        for (auto& [level, child] : n.children) pending.push_back(std::move(child));
        n.children.clear();
    };
    detach(root_);
    while (!pending.empty()) {
        auto last = std::move(pending.back());
        pending.pop_back();
        detach(*last);
    }
}

std::size_t retained_store::cost(const message& m) noexcept {
    const auto levels = static_cast<std::size_t>(std::count(m.topic.begin(), m.topic.end(), '/'));
    return m.topic.size() + m.payload.size() + m.props_v5.size() + per_level_cost * (levels + 1);
}

retained_store::outcome retained_store::set(const message_ptr& m) {
    if (m->payload.empty()) {
        const std::size_t before = count_;
        remove(m->topic);
        return count_ < before ? outcome::cleared : outcome::nothing_to_clear;
    }
    const auto levels = split_levels(m->topic);
    node* n = &root_;
    for (const auto level : levels) {
        const auto it = n->children.find(level);
        if (it == n->children.end()) {
            n = nullptr;
            break;
        }
        n = it->second.get();
    }
    if (n != nullptr && n->msg) {
        const std::size_t after = bytes_ - cost(*n->msg) + cost(*m);
        if (after > max_bytes_) return outcome::full;
        bytes_ = after;
        n->msg = m;
        return outcome::replaced;
    }
    if (count_ >= max_messages_ || bytes_ + cost(*m) > max_bytes_) return outcome::full;
    n = &root_;
    for (const auto level : levels) {
        auto it = n->children.find(level);
        if (it == n->children.end()) {
            it = n->children.emplace(std::string{level}, std::make_unique<node>()).first;
        }
        n = it->second.get();
    }
    n->msg = m;
    ++count_;
    bytes_ += cost(*m);
    return outcome::stored;
}

void retained_store::erase(std::string_view topic) {
    remove(topic);
}

void retained_store::remove(std::string_view topic) {
    struct step {
        node* parent;
        std::string_view level;
    };
    std::vector<step> path;
    node* n = &root_;
    for (const auto level : split_levels(topic)) {
        const auto it = n->children.find(level);
        if (it == n->children.end()) return;
        path.push_back({n, level});
        n = it->second.get();
    }
    if (!n->msg) return;
    bytes_ -= cost(*n->msg);
    --count_;
    n->msg.reset();
    // Free the nodes left with neither a message nor children, bottom up.
    while (!path.empty() && !n->msg && n->children.empty()) {
        const step s = path.back();
        path.pop_back();
        s.parent->children.erase(s.parent->children.find(s.level));
        n = s.parent;
    }
}

void retained_store::match(std::string_view filter, const visitor& f) const {
    const auto levels = split_levels(filter);
    struct item {
        const node* n;
        std::size_t i;  // next filter level
    };
    std::vector<item> pending{{&root_, 0}};
    while (!pending.empty()) {
        const item it = pending.back();
        pending.pop_back();
        if (it.i == levels.size()) {
            if (it.n->msg && !f(it.n->msg)) return;
            continue;
        }
        const auto level = levels[it.i];
        // [MQTT-4.7.2-1] wildcards in the first level do not match `$` topics.
        const bool first = it.i == 0;
        if (level == "#") {
            // Includes the parent level: `a/#` matches `a`.
            if (!visit_subtree(*it.n, first, f)) return;
        } else if (level == "+") {
            for (const auto& [name, child] : it.n->children) {
                if (!(first && starts_with_dollar(name)))
                    pending.push_back({child.get(), it.i + 1});
            }
        } else if (const auto c = it.n->children.find(level); c != it.n->children.end()) {
            pending.push_back({c->second.get(), it.i + 1});
        }
    }
}

bool retained_store::visit_subtree(const node& top, bool skip_dollar, const visitor& f) {
    if (top.msg && !f(top.msg)) return false;
    std::vector<const node*> pending;
    for (const auto& [name, child] : top.children) {
        if (!(skip_dollar && starts_with_dollar(name))) pending.push_back(child.get());
    }
    while (!pending.empty()) {
        const node* n = pending.back();
        pending.pop_back();
        if (n->msg && !f(n->msg)) return false;
        for (const auto& [name, child] : n->children) pending.push_back(child.get());
    }
    return true;
}

}  // namespace mqtt::broker
