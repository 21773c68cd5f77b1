// Several store files replaced as one set (store::commit_store_set, finish_store_set): what a
// start with another number of threads writes. Stopped after any step, and its finish
// stopped after any step too, the directory ends with the whole old set or the whole new one.

#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "mqtt/store/record.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/shards.hpp"
#include "mqtt/store/state.hpp"
#include "mqtt/store/store_file.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

using namespace mqtt::store;

namespace {

constexpr std::int64_t wall = 1'700'000'000'000;

void put(const tern_test::temp_dir& dir, const std::string& name, const std::string& text) {
    std::ofstream{dir.file(name), std::ios::binary | std::ios::trunc} << text;
}

std::string get(const tern_test::temp_dir& dir, const std::string& name) {
    std::ifstream in{dir.file(name), std::ios::binary};
    return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

content_writer text(const std::string& s) {
    return [s](const byte_sink& out) {
        return out(std::span{reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
    };
}

// The old set: three shards' files. The new one: two, and shard 2's removed.
void old_set(const tern_test::temp_dir& dir) {
    put(dir, "tern.db", "old0");
    put(dir, "tern.db.shard1", "old1");
    put(dir, "tern.db.shard2", "old2");
}

store_set new_set() {
    store_set set;
    set.files.push_back({"tern.db", text("new0")});
    set.files.push_back({"tern.db.shard1", text("new1")});
    set.remove.push_back("tern.db.shard2");
    return set;
}

// "old", "new", or what the three files are when neither.
std::string which(const tern_test::temp_dir& dir) {
    const auto a = get(dir, "tern.db");
    const auto b = get(dir, "tern.db.shard1");
    const bool c = dir.has("tern.db.shard2");
    if (a == "old0" && b == "old1" && c && get(dir, "tern.db.shard2") == "old2") return "old";
    if (a == "new0" && b == "new1" && !c) return "new";
    return a + "/" + b + "/" + (c ? get(dir, "tern.db.shard2") : "-");
}

}  // namespace

TEST_CASE("store set: committed whole, or not at all, wherever the commit or its finish stops") {
    // The steps: 2 files written, the commit file, 2 renames, 1 removal, the commit file
    // removed.
    constexpr std::size_t steps = 7;
    for (std::size_t stop = 0; stop <= steps; ++stop) {
        for (std::size_t finish_stop = 0; finish_stop <= 4; ++finish_stop) {
            CAPTURE(stop);
            CAPTURE(finish_stop);
            tern_test::temp_dir dir;
            old_set(dir);
            const auto done = commit_store_set(dir.path, "tern.db", new_set(), stop);
            REQUIRE(done);
            // The next start finishes it, and is itself stopped once before a full one.
            REQUIRE(finish_store_set(dir.path, "tern.db", finish_stop));
            const auto fin = finish_store_set(dir.path, "tern.db");
            REQUIRE(fin);
            CHECK(which(dir) == (stop >= 3 ? "new" : "old"));
            CHECK_FALSE(dir.has("tern.db.commit"));
            CHECK_FALSE(fin->damaged);
            CHECK(shard_files(dir.path, "tern.db") ==
                  (stop >= 3 ? std::vector<std::size_t>{1} : std::vector<std::size_t>{1, 2}));
            // Once finished, a start finds nothing more to do.
            const auto again = finish_store_set(dir.path, "tern.db");
            REQUIRE(again);
            CHECK_FALSE(again->found);
            CHECK(which(dir) == (stop >= 3 ? "new" : "old"));
        }
    }
}

TEST_CASE("store set: what a full commit reports") {
    tern_test::temp_dir dir;
    old_set(dir);
    const auto done = commit_store_set(dir.path, "tern.db", new_set());
    REQUIRE(done);
    CHECK(done->renamed == 2);
    CHECK(done->removed == 1);
    CHECK(done->not_removed.empty());
    CHECK(which(dir) == "new");
    CHECK_FALSE(dir.has("tern.db.commit"));
    CHECK_FALSE(dir.has("tern.db.new"));
    CHECK_FALSE(dir.has("tern.db.shard1.new"));
    // A commit stopped after its commit file, finished by the next start: reported.
    tern_test::temp_dir dir2;
    old_set(dir2);
    REQUIRE(commit_store_set(dir2.path, "tern.db", new_set(), 3));
    CHECK(dir2.has("tern.db.commit"));
    const auto fin = finish_store_set(dir2.path, "tern.db");
    REQUIRE(fin);
    CHECK(fin->found);
    CHECK(fin->renamed == 2);
    CHECK(fin->removed == 1);
    CHECK(which(dir2) == "new");
}

TEST_CASE("store set: a write that fails leaves the old set and no new file") {
    tern_test::temp_dir dir;
    old_set(dir);
    auto set = new_set();
    set.files[1].content = [](const byte_sink& out) {
        const std::uint8_t b[] = {1, 2, 3};
        if (const auto ec = out(b)) return ec;
        return std::make_error_code(std::errc::no_space_on_device);
    };
    const auto done = commit_store_set(dir.path, "tern.db", set);
    REQUIRE_FALSE(done);
    CHECK(done.error() == std::errc::no_space_on_device);
    CHECK(which(dir) == "old");
    CHECK_FALSE(dir.has("tern.db.new"));
    CHECK_FALSE(dir.has("tern.db.shard1.new"));
    CHECK_FALSE(dir.has("tern.db.commit"));
}

TEST_CASE("store set: names that are not plain file names are refused, nothing written") {
    tern_test::temp_dir dir;
    old_set(dir);
    for (const std::string bad : {"../tern.db", "a/b", "x\ny", "", ".."}) {
        CAPTURE(bad);
        auto set = new_set();
        set.remove.push_back(bad);
        const auto done = commit_store_set(dir.path, "tern.db", set);
        REQUIRE_FALSE(done);
        CHECK(done.error() == std::errc::invalid_argument);
        CHECK(which(dir) == "old");
        CHECK_FALSE(dir.has("tern.db.new"));
    }
}

TEST_CASE("store set: an unreadable commit file is kept aside, the files left as they are") {
    for (const std::string& bad :
         {std::string{"garbage"}, std::string{"tern store set 1\nnew tern.db\n"},  // no "end"
          std::string{"tern store set 1\nnew ../x\nend\n"},
          std::string{"tern store set 1\nend\nnew tern.db\n"},
          std::string{"tern store set 2\nend\n"}}) {
        CAPTURE(bad);
        tern_test::temp_dir dir;
        old_set(dir);
        put(dir, "tern.db.new", "new0");
        put(dir, "tern.db.commit", bad);
        const auto fin = finish_store_set(dir.path, "tern.db");
        REQUIRE(fin);
        CHECK(fin->found);
        CHECK(fin->damaged);
        CHECK(which(dir) == "old");
        CHECK_FALSE(dir.has("tern.db.commit"));
        CHECK(get(dir, "tern.db.commit.damaged") == bad);
    }
    // A commit file not written whole (its temporary name): no commit, removed.
    tern_test::temp_dir dir;
    old_set(dir);
    put(dir, "tern.db.commit.new", "tern store set 1\nnew tern");
    const auto fin = finish_store_set(dir.path, "tern.db");
    REQUIRE(fin);
    CHECK_FALSE(fin->found);
    CHECK_FALSE(dir.has("tern.db.commit.new"));
    CHECK(which(dir) == "old");
}

TEST_CASE("store set: states written with write_state_snapshot read back alike") {
    using mqtt::protocol::qos;
    state a;
    REQUIRE(a.apply(header_record{format_version, wall}));
    REQUIRE(a.apply(session_record{"c1", 3600}));
    REQUIRE(a.apply(subscribe_record{"c1", "t/#", {qos::at_least_once, false, false, {}}, 0}));
    for (std::uint64_t i = 1; i <= 3; ++i) {
        REQUIRE(a.apply(message_record{i, wall, store_test::make_msg("t/x", std::to_string(i))}));
        REQUIRE(a.apply(queue_push_record{"c1", i, qos::at_least_once, false, {}}));
    }
    state b;
    REQUIRE(b.apply(header_record{format_version, wall}));
    REQUIRE(b.apply(session_record{"c2", 60}));
    tern_test::temp_dir dir;
    store_set set;
    set.files.push_back({"tern.db", [&](const byte_sink& out) {
                             return write_state_snapshot(a, wall, out, 16);  // small pieces
                         }});
    set.files.push_back({"tern.db.shard1",
                         [&](const byte_sink& out) { return write_state_snapshot(b, wall, out); }});
    REQUIRE(commit_store_set(dir.path, "tern.db", set));
    const auto la = load_file(dir.file("tern.db"));
    const auto lb = load_file(dir.file("tern.db.shard1"));
    REQUIRE(la);
    REQUIRE(lb);
    CHECK(la->report.clean());
    CHECK(la->st.sessions().size() == 1);
    CHECK(la->st.sessions().at("c1").queue.size() == 3);
    CHECK(la->st.sessions().at("c1").subscriptions.size() == 1);
    CHECK(lb->st.sessions().contains("c2"));
    CHECK_FALSE(lb->st.sessions().contains("c1"));
}
