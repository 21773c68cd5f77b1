#include "mqtt/protocol/subscription_trie.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "mqtt/protocol/topic.hpp"

using mqtt::protocol::subscription_trie;
using mqtt::protocol::topic_matches;

namespace {

using trie_t = subscription_trie<int, int>;
using hit = std::tuple<std::string, int, int>;  // filter, key, value

std::vector<hit> matches_of(const trie_t& trie, std::string_view topic) {
    std::vector<hit> out;
    trie.match(topic, [&](std::string_view filter, const int& key, const int& value) {
        out.emplace_back(std::string{filter}, key, value);
    });
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> filters_matching(const trie_t& trie, std::string_view topic) {
    std::vector<std::string> out;
    for (auto& [filter, key, value] : matches_of(trie, topic)) out.push_back(filter);
    return out;
}

}  // namespace

TEST_CASE("insert, replace, find, erase") {
    trie_t trie;
    CHECK(trie.empty());
    CHECK(trie.insert_or_assign("a/b", 1, 10));
    CHECK(trie.insert_or_assign("a/b", 2, 20));
    CHECK_FALSE(trie.insert_or_assign("a/b", 1, 11));  // one entry per subscriber and filter
    CHECK(trie.insert_or_assign("a/+", 1, 12));
    CHECK(trie.size() == 3);
    REQUIRE(trie.find("a/b", 1) != nullptr);
    CHECK(*trie.find("a/b", 1) == 11);
    CHECK(trie.find("a/b", 3) == nullptr);
    CHECK(trie.find("a", 1) == nullptr);
    CHECK(trie.find("a/b/c", 1) == nullptr);

    CHECK(matches_of(trie, "a/b") ==
          std::vector<hit>{{"a/+", 1, 12}, {"a/b", 1, 11}, {"a/b", 2, 20}});

    CHECK_FALSE(trie.erase("a/b", 3));
    CHECK_FALSE(trie.erase("a/c", 1));
    CHECK_FALSE(trie.erase("a", 1));
    CHECK(trie.erase("a/b", 1));
    CHECK_FALSE(trie.erase("a/b", 1));
    CHECK(trie.size() == 2);
    CHECK(matches_of(trie, "a/b") == std::vector<hit>{{"a/+", 1, 12}, {"a/b", 2, 20}});
}

TEST_CASE("the specification's examples through the trie") {
    trie_t trie;
    const char* filters[] = {
        "sport/tennis/player1/#", "sport/#", "sport/tennis/+", "sport/+", "+/+",   "/+", "+", "#",
        "+/monitor/Clients",      "$SYS/#",  "$SYS/monitor/+", "a//b",    "a/+/b", "/#"};
    int key = 0;
    for (const char* f : filters) trie.insert_or_assign(f, key++, 0);

    using v = std::vector<std::string>;
    CHECK(filters_matching(trie, "sport/tennis/player1") ==
          v{"#", "sport/#", "sport/tennis/+", "sport/tennis/player1/#"});
    CHECK(filters_matching(trie, "sport/tennis/player1/ranking") ==
          v{"#", "sport/#", "sport/tennis/player1/#"});
    CHECK(filters_matching(trie, "sport") == v{"#", "+", "sport/#"});
    CHECK(filters_matching(trie, "sport/") == v{"#", "+/+", "sport/#", "sport/+"});
    CHECK(filters_matching(trie, "/finance") == v{"#", "+/+", "/#", "/+"});
    CHECK(filters_matching(trie, "a//b") == v{"#", "a/+/b", "a//b"});
    CHECK(filters_matching(trie, "$SYS/monitor/Clients") == v{"$SYS/#", "$SYS/monitor/+"});
    CHECK(filters_matching(trie, "$SYS") == v{"$SYS/#"});
    CHECK(filters_matching(trie, "$SYS/x") == v{"$SYS/#"});
    CHECK(filters_matching(trie, "x/monitor/Clients") == v{"#", "+/monitor/Clients"});
    CHECK(filters_matching(trie, "$x") == v{});
}

TEST_CASE("'#' matches the parent level") {
    trie_t trie;
    trie.insert_or_assign("a/#", 1, 0);
    trie.insert_or_assign("a/b/#", 2, 0);
    CHECK(filters_matching(trie, "a") == std::vector<std::string>{"a/#"});
    CHECK(filters_matching(trie, "a/b") == std::vector<std::string>{"a/#", "a/b/#"});
    CHECK(filters_matching(trie, "b").empty());
}

TEST_CASE("erase prunes empty nodes and keeps shared prefixes") {
    trie_t trie;
    CHECK(trie.node_count() == 1);
    trie.insert_or_assign("a/b/c", 1, 0);
    trie.insert_or_assign("a/b", 1, 0);
    trie.insert_or_assign("a/+/#", 1, 0);
    CHECK(trie.node_count() == 6);  // root, a, b, c, +, #

    CHECK(trie.erase("a/b", 1));  // b still leads to c
    CHECK(trie.node_count() == 6);
    CHECK(trie.erase("a/b/c", 1));  // c and b go
    CHECK(trie.node_count() == 4);
    CHECK(trie.erase("a/+/#", 1));
    CHECK(trie.node_count() == 1);
    CHECK(trie.empty());

    // A node holding subscribers is kept when its last child goes.
    trie.insert_or_assign("x", 1, 0);
    trie.insert_or_assign("x/y", 1, 0);
    CHECK(trie.erase("x/y", 1));
    CHECK(trie.node_count() == 2);
    CHECK(filters_matching(trie, "x") == std::vector<std::string>{"x"});
}

TEST_CASE("many subscribers on one filter") {
    // Past a few dozen entries the per-node key index takes over; results must not change.
    trie_t trie;
    constexpr int n = 1000;
    for (int k = 0; k < n; ++k) CHECK(trie.insert_or_assign("#", k, k));
    for (int k = 0; k < n; ++k) CHECK_FALSE(trie.insert_or_assign("#", k, k + 1));
    for (int k = 0; k < n; k += 2) CHECK(trie.erase("#", k));
    CHECK(trie.size() == n / 2);
    int seen = 0;
    trie.match("a", [&](std::string_view, const int& key, const int& value) {
        CHECK(key % 2 == 1);
        CHECK(value == key + 1);
        ++seen;
    });
    CHECK(seen == n / 2);
    for (int k = 1; k < n; k += 2) {
        REQUIRE(trie.find("#", k) != nullptr);
        CHECK(*trie.find("#", k) == k + 1);
        CHECK(trie.erase("#", k));  // down through the index threshold and below it
    }
    CHECK(trie.empty());
    CHECK(trie.node_count() == 1);
}

TEST_CASE("non-const match gives mutable values, filter view names the node") {
    subscription_trie<std::string, int> trie;
    trie.insert_or_assign("a/+", "c1", 0);
    trie.insert_or_assign("a/+", "c2", 0);
    trie.insert_or_assign("a/b", "c1", 0);
    std::map<std::string, const char*> filter_data;
    trie.match("a/b", [&](std::string_view filter, const std::string&, int& value) {
        ++value;
        auto [it, fresh] = filter_data.emplace(std::string{filter}, filter.data());
        if (!fresh) CHECK(it->second == filter.data());  // one string per filter node
    });
    CHECK(*trie.find("a/+", "c1") == 1);
    CHECK(*trie.find("a/+", "c2") == 1);
    CHECK(*trie.find("a/b", "c1") == 1);
    CHECK(filter_data.size() == 2);
}

TEST_CASE("clear, move, for_each") {
    trie_t trie;
    trie.insert_or_assign("a/b", 1, 1);
    trie.insert_or_assign("+/b", 2, 2);
    trie.insert_or_assign("#", 3, 3);
    std::vector<hit> all;
    trie.for_each([&](std::string_view f, const int& k, const int& v) {
        all.emplace_back(std::string{f}, k, v);
    });
    std::sort(all.begin(), all.end());
    CHECK(all == std::vector<hit>{{"#", 3, 3}, {"+/b", 2, 2}, {"a/b", 1, 1}});

    trie_t moved{std::move(trie)};
    CHECK(moved.size() == 3);
    CHECK(trie.empty());            // NOLINT(bugprone-use-after-move): defined as empty
    CHECK(trie.node_count() == 1);  // NOLINT(bugprone-use-after-move)
    CHECK(matches_of(moved, "a/b").size() == 3);
    trie = std::move(moved);
    CHECK(trie.size() == 3);
    trie.clear();
    CHECK(trie.empty());
    CHECK(trie.node_count() == 1);
    CHECK(matches_of(trie, "a/b").empty());
    trie.insert_or_assign("a", 1, 1);  // usable after clear
    CHECK(matches_of(trie, "a").size() == 1);
}

TEST_CASE("hostile depth: no recursion on match, erase or destruction") {
    // 20,000 levels of `+` against a topic of 20,000 empty levels: the explicit stacks
    // spill to the heap instead of overflowing the call stack.
    constexpr int depth = 20000;
    std::string filter = "+";
    std::string topic;
    for (int i = 1; i < depth; ++i) {
        filter += "/+";
        topic += '/';
    }
    trie_t trie;
    trie.insert_or_assign(filter, 1, 0);
    trie.insert_or_assign(filter + "/#", 2, 0);
    CHECK(matches_of(trie, topic).size() == 2);
    CHECK(trie.node_count() == depth + 2);
    CHECK(trie.erase(filter + "/#", 2));
    CHECK(trie.node_count() == depth + 1);
    {
        trie_t doomed;
        doomed.insert_or_assign(filter, 1, 0);
    }  // destroyed here
    CHECK(trie.erase(filter, 1));
    CHECK(trie.node_count() == 1);
}

namespace {

// Small alphabets so that random filters and topics collide often.
std::string random_filter(std::mt19937& rng) {
    static constexpr std::string_view levels[] = {"a", "b", "c", "", "$SYS", "+", "#"};
    std::uniform_int_distribution<int> depth_dist(1, 4);
    std::uniform_int_distribution<int> level_dist(0, std::size(levels) - 1);
    for (;;) {
        const int depth = depth_dist(rng);
        std::string f;
        for (int i = 0; i < depth; ++i) {
            if (i != 0) f += '/';
            auto level = levels[level_dist(rng)];
            if (level == "#" && i != depth - 1) level = "+";
            f += level;
        }
        if (mqtt::protocol::is_valid_topic_filter(f)) return f;
    }
}

std::string random_topic(std::mt19937& rng) {
    static constexpr std::string_view levels[] = {"a", "b", "c", "", "$SYS", "$x"};
    std::uniform_int_distribution<int> depth_dist(1, 5);
    std::uniform_int_distribution<int> level_dist(0, std::size(levels) - 1);
    for (;;) {
        const int depth = depth_dist(rng);
        std::string t;
        for (int i = 0; i < depth; ++i) {
            if (i != 0) t += '/';
            t += levels[level_dist(rng)];
        }
        if (mqtt::protocol::is_valid_topic_name(t)) return t;
    }
}

using model_t = std::map<std::pair<std::string, int>, int>;

std::vector<hit> brute_force(const model_t& model, std::string_view topic) {
    std::vector<hit> out;
    for (const auto& [fk, value] : model) {
        if (topic_matches(fk.first, topic)) out.emplace_back(fk.first, fk.second, value);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST_CASE("random churn against a brute-force matcher") {
    std::mt19937 rng{20240611};  // fixed: failures reproduce
    std::uniform_int_distribution<int> key_dist(0, 7);
    std::uniform_int_distribution<int> op_dist(0, 9);
    trie_t trie;
    model_t model;
    std::size_t checked_topics = 0;
    for (int op = 1; op <= 20000; ++op) {
        const std::string filter = random_filter(rng);
        const int key = key_dist(rng);
        if (op_dist(rng) < 6) {
            const bool fresh = model.insert_or_assign({filter, key}, op).second;
            REQUIRE(trie.insert_or_assign(filter, key, op) == fresh);
        } else {
            const bool existed = model.erase({filter, key}) == 1;
            REQUIRE(trie.erase(filter, key) == existed);
        }
        REQUIRE(trie.size() == model.size());
        if (op % 100 == 0) {
            for (int i = 0; i < 40; ++i) {
                const std::string topic = random_topic(rng);
                CAPTURE(topic);
                REQUIRE(matches_of(trie, topic) == brute_force(model, topic));
                ++checked_topics;
            }
        }
    }
    CHECK(checked_topics == 8000);
    CHECK(trie.size() > 0);

    // Drain through erase: every node but the root must be gone.
    while (!model.empty()) {
        const auto it = model.begin();
        REQUIRE(trie.erase(it->first.first, it->first.second));
        model.erase(it);
    }
    CHECK(trie.empty());
    CHECK(trie.node_count() == 1);
}

namespace {

struct probe_node {
    std::string level;
};

}  // namespace

TEST_CASE("child_table under colliding hashes and churn") {
    // Hashes are chosen by the test: few distinct values force long probe runs, and values
    // near SIZE_MAX make runs wrap around the end of the table, so backward-shift deletion,
    // growth, shrinking and the return to the inline slot are all exercised.
    using table_t = mqtt::protocol::detail::child_table<probe_node>;
    const std::size_t hashes[] = {0, 1, 2, 3, ~std::size_t{0}, ~std::size_t{0} - 1, 4096 + 3};
    auto hash_of = [&](int n) { return hashes[static_cast<std::size_t>(n) % std::size(hashes)]; };
    // Appending rather than `"n" + std::to_string(n)`: GCC 12 raises a false -Wrestrict on
    // the latter at -O3 (GCC bug 105329).
    auto name_of = [](int n) {
        std::string s = "n";
        s += std::to_string(n);
        return s;
    };

    std::mt19937 rng{7};
    std::uniform_int_distribution<int> name_dist(0, 299);
    table_t table;
    std::map<int, const probe_node*> model;
    for (int op = 0; op < 30000; ++op) {
        // Phases: grow to ~300 children, then drain to a handful, repeatedly.
        const bool growing = (op / 3000) % 2 == 0;
        const int n = name_dist(rng);
        const std::string name = name_of(n);
        const std::size_t h = hash_of(n);
        probe_node* found = table.find(name, h);
        REQUIRE((found != nullptr) == model.contains(n));
        if (found == nullptr && (growing || name_dist(rng) < 30)) {
            probe_node& added = table.add(name, h);
            CHECK(added.level == name);
            model[n] = &added;
        } else if (found != nullptr && (!growing || name_dist(rng) < 100)) {
            table.erase(name, h);
            model.erase(n);
        }
        if (op % 97 == 0) {
            for (const auto& [m, ptr] : model) {
                REQUIRE(table.find(name_of(m), hash_of(m)) == ptr);
            }
            std::size_t seen = 0;
            table.for_each([&](const probe_node&) { ++seen; });
            REQUIRE(seen == model.size());
            REQUIRE(table.empty() == model.empty());
        }
    }
    std::size_t drained = 0;
    table.drain([&](std::unique_ptr<probe_node> child) {
        CHECK(child != nullptr);
        ++drained;
    });
    CHECK(drained == model.size());
    CHECK(table.empty());
}

TEST_CASE("a wide node: thousands of literal children under churn") {
    trie_t trie;
    std::mt19937 rng{99};
    std::uniform_int_distribution<int> dev_dist(0, 4999);
    std::map<int, bool> live;
    for (int op = 0; op < 20000; ++op) {
        const int dev = dev_dist(rng);
        const std::string filter = "site/1/device/" + std::to_string(dev) + "/temp";
        if (op < 10000 || (op / 1000) % 2 == 0) {
            trie.insert_or_assign(filter, 1, dev);
            live[dev] = true;
        } else if (live.erase(dev) == 1) {
            REQUIRE(trie.erase(filter, 1));
        }
    }
    CHECK(trie.size() == live.size());
    for (int dev = 0; dev < 5000; ++dev) {
        const auto hits = matches_of(trie, "site/1/device/" + std::to_string(dev) + "/temp");
        REQUIRE(hits.size() == (live.contains(dev) ? 1u : 0u));
    }
    for (const auto& [dev, _] : live) {
        REQUIRE(trie.erase("site/1/device/" + std::to_string(dev) + "/temp", 1));
    }
    CHECK(trie.node_count() == 1);
}
