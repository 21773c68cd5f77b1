// The store file is made larger ahead of its records (zeros, store_file::prealloc_step at a
// time) so that a sync overwrites blocks that exist: the zeros after the last record are room,
// not damage; appends after a restart go where the records end, not at the end of the file;
// damage inside or after the room is still found.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mqtt/store/record.hpp"
#include "mqtt/store/store_file.hpp"
#include "temp_dir.hpp"

using namespace mqtt::store;
using bytes = std::vector<std::uint8_t>;

namespace {

struct temp_dir : tern_test::temp_dir {
    temp_dir() : tern_test::temp_dir("tern-prealloc") {}
    std::string file() const { return tern_test::temp_dir::file("tern.db"); }
};

bytes read_all(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

void write_all(const std::string& path, const bytes& b) {
    std::ofstream out{path, std::ios::binary | std::ios::trunc};
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A group: a session record and its commit.
bytes group(const std::string& client) {
    bytes b;
    append_record(b, session_record{client, 60});
    append_record(b, commit_record{});
    return b;
}

content_writer header_only() {
    return [](const byte_sink& out) {
        bytes b;
        append_record(b, header_record{format_version, 1});
        append_record(b, commit_record{});
        return out(b);
    };
}

}  // namespace

TEST_CASE("store: zeros after the last record are room ahead, not damage") {
    bytes b = group("a");
    const auto records_end = b.size();
    b.resize(b.size() + 5000, 0);
    std::uint64_t end = 0;
    std::size_t n = 0;
    const auto damaged = scan(
        std::span<const std::uint8_t>{b}, [&](auto, auto) { ++n; }, &end);
    CHECK(damaged.empty());
    CHECK(n == 2);
    CHECK(end == records_end);
    const auto l = load_bytes(b);
    CHECK(l.report.clean());
    CHECK(l.report.data_end == records_end);
    CHECK(l.report.file_bytes == b.size());
    CHECK(l.st.sessions().size() == 1);

    SUBCASE("a record started in the room and cut short is a torn tail") {
        bytes torn = group("b");
        torn.resize(torn.size() - 3);
        std::copy(torn.begin(), torn.end(), b.begin() + static_cast<std::ptrdiff_t>(records_end));
        const auto t = load_bytes(b);
        REQUIRE(t.report.damaged.size() == 1);
        CHECK(t.report.damaged[0].kind == damage_kind::torn_tail);
        CHECK(t.report.damaged[0].offset == records_end);
        CHECK(t.st.sessions().size() == 1);  // b's group never completed
    }
    SUBCASE("bytes after the zeros are damage, and the zeros with them") {
        b.push_back(0x54);
        b.push_back(0x72);
        b.push_back(1);
        const auto t = load_bytes(b);
        REQUIRE(t.report.damaged.size() == 1);
        CHECK(t.report.damaged[0].kind == damage_kind::torn_tail);
        CHECK(t.report.damaged[0].offset == records_end);
        CHECK(t.report.damaged[0].length == b.size() - records_end);
    }
    SUBCASE("a file of zeros only has no records and no damage") {
        const auto z = load_bytes(bytes(100, 0));
        CHECK(z.report.clean());
        CHECK(z.report.data_end == 0);
    }
}

TEST_CASE("store: appends make room ahead and a reopened file appends where the records end") {
    temp_dir dir;
    auto f = store_file::create(dir.path, "tern.db", header_only());
    REQUIRE(f.has_value());
    const auto start = f->size();
    CHECK(std::filesystem::file_size(dir.file()) == start);  // a snapshot has no room ahead

    REQUIRE_FALSE(f->append(group("a")));
    CHECK(f->size() == start + group("a").size());
    CHECK(f->allocated() == store_file::prealloc_step);
    CHECK(std::filesystem::file_size(dir.file()) == store_file::prealloc_step);
    REQUIRE_FALSE(f->sync());

    auto l = load_file(dir.file(), nullptr, 4096);  // chunks smaller than the room
    REQUIRE(l.has_value());
    CHECK(l->report.clean());
    CHECK(l->report.data_end == f->size());
    CHECK(l->st.sessions().size() == 1);

    // Reopened (a restart): the next records go right after the last one, inside the room.
    const auto end = f->size();
    *f = store_file{};
    auto g = store_file::open_append(dir.path, "tern.db", l->report.data_end);
    REQUIRE(g.has_value());
    CHECK(g->size() == end);
    CHECK(g->allocated() == store_file::prealloc_step);
    REQUIRE_FALSE(g->append(group("b")));
    CHECK(std::filesystem::file_size(dir.file()) == store_file::prealloc_step);
    l = load_file(dir.file(), nullptr, 4096);
    REQUIRE(l.has_value());
    CHECK(l->report.clean());
    CHECK(l->st.sessions().size() == 2);

    // Records beyond the room: more room, every record read back.
    bytes rec;
    append_record(rec, session_record{std::string(store_file::prealloc_step + 100, 'x'), 60});
    append_record(rec, commit_record{});
    REQUIRE_FALSE(g->append(rec));
    CHECK(g->allocated() == 2 * store_file::prealloc_step);
    CHECK(g->allocated() > g->size());
    REQUIRE_FALSE(g->append(group("c")));
    l = load_file(dir.file(), nullptr, 4096);
    REQUIRE(l.has_value());
    CHECK(l->report.clean());
    CHECK(l->st.sessions().size() == 4);
    CHECK(l->report.data_end == g->size());

    SUBCASE("a compaction's file has no room until the next append") {
        REQUIRE_FALSE(g->rewrite(header_only()));
        CHECK(std::filesystem::file_size(dir.file()) == g->size());
        REQUIRE_FALSE(g->append(group("d")));
        CHECK(std::filesystem::file_size(dir.file()) == store_file::prealloc_step);
        l = load_file(dir.file());
        REQUIRE(l.has_value());
        CHECK(l->report.clean());
        CHECK(l->st.sessions().size() == 1);
    }
    SUBCASE("bytes after the room are damage, read in chunks smaller than the room") {
        auto raw = read_all(dir.file());
        const auto room_from = raw.size();
        raw.resize(raw.size() + 3 * 4096, 0);
        bytes torn = group("e");
        torn.resize(10);  // a record's header, cut short
        raw.insert(raw.end(), torn.begin(), torn.end());
        write_all(dir.file(), raw);
        l = load_file(dir.file(), nullptr, 4096);
        REQUIRE(l.has_value());
        REQUIRE(l->report.damaged.size() == 1);
        CHECK(l->report.damaged[0].kind == damage_kind::torn_tail);
        CHECK(l->report.damaged[0].offset == g->size());  // from the end of the records
        CHECK(l->report.damaged[0].length == raw.size() - g->size());
        CHECK(room_from > g->size());
        CHECK(l->st.sessions().size() == 4);
        const auto m = load_bytes(raw);  // the same from memory
        CHECK(m.report.damaged == l->report.damaged);
    }
    SUBCASE("a byte flipped in a record inside the room is found") {
        auto raw = read_all(dir.file());
        raw[end + 14] ^= 0xFF;  // inside b's session record
        write_all(dir.file(), raw);
        l = load_file(dir.file(), nullptr, 4096);
        REQUIRE(l.has_value());
        CHECK_FALSE(l->report.clean());
        CHECK(l->st.sessions().size() == 3);  // b's record skipped
    }
}
