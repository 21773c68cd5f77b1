// Compaction writes its snapshot a piece at a time (recorder::write_snapshot into
// store_file's replacement), never the whole of it in memory: the pieces are bounded, they
// add up to exactly the records of state::snapshot, the file they make reads back to the same
// state, and an error stops the writing and leaves the old file.

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/store/record.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/state.hpp"
#include "mqtt/store/store_file.hpp"
#include "temp_dir.hpp"
#include "store_test_support.hpp"

using namespace mqtt::store;
using mqtt::protocol::qos;
using bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::int64_t wall = 1'700'000'000'000;
constexpr std::size_t large_payload = 200'000;

using store_test::make_msg;

// Three sessions with 20,000 queued messages of many sizes (one of 200 KB), in-flight and
// QoS 2 state, subscriptions, retained messages and an offline session with a Will.
state many_records() {
    state st;
    const char* clients[] = {"a", "b", "c"};
    for (const char* c : clients) {
        REQUIRE(st.apply(session_record{c, 3600}));
        REQUIRE(st.apply(subscribe_record{
            c, std::string{"t/"} + c + "/#", {qos::at_least_once, false, false, {}}, 7}));
    }
    for (std::uint64_t i = 1; i <= 20'000; ++i) {
        const std::size_t n = i == 5'000 ? large_payload : (i * 37) % 300;
        REQUIRE(st.apply(message_record{i, wall + static_cast<std::int64_t>(i),
                                        make_msg("t/x", std::string(n, 'p'))}));
        const std::string c = clients[i % 3];
        if (i % 1000 == 0) {
            REQUIRE(st.apply(inflight_add_record{c,
                                                 static_cast<std::uint16_t>(i / 1000),
                                                 i,
                                                 qos::at_least_once,
                                                 false,
                                                 stage::puback,
                                                 {7}}));
        } else if (i % 777 == 0) {
            REQUIRE(st.apply(retained_set_record{i}));
        } else {
            REQUIRE(st.apply(queue_push_record{c, i, qos::at_least_once, false, {7}}));
        }
    }
    REQUIRE(st.apply(qos2_in_add_record{"b", 42}));
    REQUIRE(st.apply(message_record{20'001, wall, make_msg("will", "gone")}));
    REQUIRE(st.apply(session_offline_record{"c", 3600, wall + 3'600'000, 20'001, wall + 60'000}));
    return st;
}

bytes encode_all(const std::vector<record>& rs) {
    bytes out;
    for (const auto& r : rs) append_record(out, r);
    return out;
}

bytes snapshot_of(const state& st) {
    return encode_all(st.snapshot(wall));
}

std::size_t largest_record(const state& st) {
    std::size_t most = 0;
    for (const auto& r : st.snapshot(wall)) most = std::max(most, encode_record(r).size());
    return most;
}

recorder recorder_of(const state& st) {
    recorder rec{st};
    rec.set_clock([] { return clock_pair{mqtt::broker::clock::now(), wall}; });
    return rec;
}

// The pieces a sink was given.
struct pieces {
    std::vector<std::size_t> sizes;
    bytes all;
    byte_sink sink() {
        return [this](std::span<const std::uint8_t> b) {
            sizes.push_back(b.size());
            all.insert(all.end(), b.begin(), b.end());
            return std::error_code{};
        };
    }
};

struct temp_dir : tern_test::temp_dir {
    temp_dir() : tern_test::temp_dir("tern-store-snapshot") {}
    std::string file() const { return tern_test::temp_dir::file("tern.db"); }
    using tern_test::temp_dir::has;
};

}  // namespace

TEST_CASE("store: a snapshot is written in bounded pieces that add up to the whole") {
    const state st = many_records();
    const auto whole = snapshot_of(st);
    const std::size_t largest = largest_record(st);
    CHECK(largest > large_payload);
    const auto rec = recorder_of(st);
    for (const std::size_t chunk :
         {std::size_t{1}, std::size_t{4096}, std::size_t{65536}, snapshot_chunk}) {
        CAPTURE(chunk);
        pieces p;
        REQUIRE_FALSE(rec.write_snapshot(p.sink(), chunk));
        CHECK(p.all == whole);
        REQUIRE_FALSE(p.sizes.empty());
        // At least a chunk each but the last; never a chunk plus more than one record.
        for (std::size_t i = 0; i + 1 < p.sizes.size(); ++i) CHECK(p.sizes[i] >= chunk);
        CHECK(*std::max_element(p.sizes.begin(), p.sizes.end()) < chunk + largest);
        if (chunk < whole.size() / 4) CHECK(p.sizes.size() >= 4);
    }
    // Without the large message, a piece stays under a chunk plus a small record.
    pieces p;
    REQUIRE_FALSE(rec.write_snapshot(p.sink(), 4096));
    std::size_t over = 0;
    for (const auto n : p.sizes) over += n > 4096 + 400 ? 1 : 0;
    CHECK(over == 1);  // the piece that holds the 200 KB message
    CHECK(rec.snapshot_bytes() == whole);
}

TEST_CASE("store: the snapshot read back gives the same state, by groups of 1,024 records") {
    const state st = many_records();
    pieces p;
    REQUIRE_FALSE(recorder_of(st).write_snapshot(p.sink(), 4096));
    const auto l = load_bytes(p.all);
    CHECK(l.report.clean());
    CHECK(snapshot_of(l.st) == snapshot_of(st));
    CHECK(l.st.queued_count() == st.queued_count());
    CHECK(l.st.inflight_count() == 20);
    CHECK(l.st.retained().size() == st.retained().size());
    CHECK(l.st.sessions().at("c").will_msg_id == 20'001);
    // The commit-record groups the crash safety relies on: the header alone, then at most
    // snapshot_group_records records each, the last one closed too.
    const auto rs = st.snapshot(wall);
    CHECK(std::holds_alternative<header_record>(rs[0]));
    CHECK(std::holds_alternative<commit_record>(rs[1]));
    CHECK(std::holds_alternative<commit_record>(rs.back()));
    std::size_t since = 0;
    std::size_t most = 0;
    for (const auto& r : rs) {
        since = std::holds_alternative<commit_record>(r) ? 0 : since + 1;
        most = std::max(most, since);
    }
    CHECK(most == snapshot_group_records);
    // Cut anywhere inside the last group, the snapshot (were it ever torn) keeps none of it.
    const bytes cut(p.all.begin(), p.all.end() - 20);
    const auto torn = load_bytes(cut);
    CHECK(torn.report.damaged.size() == 1);
    CHECK(torn.st.queued_count() < st.queued_count());
}

TEST_CASE("store: compaction through store_file writes a file that reads back the same") {
    const state st = many_records();
    const auto rec = recorder_of(st);
    temp_dir dir;
    std::size_t writes = 0;
    std::size_t biggest = 0;
    const content_writer content = [&](const byte_sink& out) {
        return rec.write_snapshot(
            [&](std::span<const std::uint8_t> b) {
                ++writes;
                biggest = std::max(biggest, b.size());
                return out(b);
            },
            4096);
    };
    auto f = store_file::create(dir.path, "tern.db", content);
    REQUIRE(f.has_value());
    CHECK_FALSE(dir.has("tern.db.new"));
    const auto whole = snapshot_of(st);
    CHECK(f->size() == whole.size());
    CHECK(f->snapshot_size() == whole.size());
    CHECK(writes > 100);
    CHECK(biggest < 4096 + largest_record(st));
    auto l = load_file(dir.file());
    REQUIRE(l.has_value());
    CHECK(l->report.clean());
    CHECK(snapshot_of(l->st) == whole);

    // Appends go after the snapshot; a second compaction replaces the file, appends follow it.
    bytes more;
    append_record(more, queue_pop_record{"a"});
    append_record(more, commit_record{});
    REQUIRE_FALSE(f->append(more));
    REQUIRE_FALSE(f->rewrite(content));
    CHECK(f->size() == whole.size());
    REQUIRE_FALSE(f->append(more));
    l = load_file(dir.file());
    REQUIRE(l.has_value());
    CHECK(l->report.clean());
    CHECK(l->st.queued_count() == st.queued_count() - 1);
    CHECK(f->size() == whole.size() + more.size());
    CHECK(std::filesystem::file_size(dir.file()) == f->allocated());  // room ahead

    SUBCASE("an error while writing leaves the old file and no temporary one") {
        std::size_t calls = 0;
        const auto ec = f->rewrite([&](const byte_sink& out) {
            return rec.write_snapshot(
                [&](std::span<const std::uint8_t> b) -> std::error_code {
                    if (++calls == 3) return std::make_error_code(std::errc::no_space_on_device);
                    return out(b);
                },
                4096);
        });
        CHECK(ec == std::errc::no_space_on_device);
        CHECK(calls == 3);  // stopped at the error
        CHECK_FALSE(dir.has("tern.db.new"));
        CHECK(f->size() == whole.size() + more.size());
        REQUIRE_FALSE(f->append(more));  // still the old file
        l = load_file(dir.file());
        REQUIRE(l.has_value());
        CHECK(l->report.clean());
        CHECK(l->st.queued_count() == st.queued_count() - 2);
    }
    SUBCASE("in steps: the content is written first, the file replaced later") {
        auto r = f->begin_rewrite();
        REQUIRE(r.has_value());
        REQUIRE_FALSE(content([&](std::span<const std::uint8_t> b) { return r->write(b); }));
        CHECK(dir.has("tern.db.new"));
        CHECK(r->size() == whole.size());
        // Not yet replaced: the old file with its appended records.
        CHECK(f->size() == whole.size() + more.size());
        CHECK(std::filesystem::file_size(dir.file()) == f->allocated());  // room ahead
        REQUIRE_FALSE(f->replace(std::move(*r)));
        CHECK_FALSE(dir.has("tern.db.new"));
        CHECK(std::filesystem::file_size(dir.file()) == whole.size());
        l = load_file(dir.file());
        REQUIRE(l.has_value());
        CHECK(snapshot_of(l->st) == whole);
    }
    SUBCASE("a replacement dropped before replace() is removed") {
        {
            auto r = f->begin_rewrite();
            REQUIRE(r.has_value());
            REQUIRE_FALSE(r->write(whole));
            CHECK(dir.has("tern.db.new"));
        }
        CHECK_FALSE(dir.has("tern.db.new"));
        CHECK(f->size() == whole.size() + more.size());
        CHECK(std::filesystem::file_size(dir.file()) == f->allocated());  // room ahead
    }
}

TEST_CASE("store: live_bytes follows the size of the state's snapshot as messages come and go") {
    auto st = many_records();
    const auto full = snapshot_of(st).size();
    INFO("snapshot " << full << " bytes, live_bytes " << st.live_bytes());
    CHECK(st.live_bytes() >= full * 9 / 10);
    CHECK(st.live_bytes() <= full * 11 / 10);

    // Every queue emptied: its messages and references leave the estimate, what stays
    // (in flight, retained, the Will) is still counted.
    for (const char* c : {"a", "b", "c"}) {
        while (!st.sessions().at(c).queue.empty()) REQUIRE(st.apply(queue_pop_record{c}));
    }
    const auto left = snapshot_of(st).size();
    INFO("after the pops: snapshot " << left << " bytes, live_bytes " << st.live_bytes());
    CHECK(st.live_bytes() > 0);
    CHECK(st.live_bytes() <= left);
    CHECK(st.live_bytes() < full / 20);

    // A replaced message (restore's copy) and a pruned one are counted once, then not at all.
    const auto before = st.live_bytes();
    const auto& [id, held] = *st.messages().begin();
    st.replace_message(id, mqtt::broker::copy_message(*held.msg));
    CHECK(st.live_bytes() == before);
    REQUIRE(st.apply(message_record{30'000, wall, make_msg("t/none", "unreferenced")}));
    CHECK(st.live_bytes() > before);
    st.prune();
    CHECK(st.live_bytes() == before);
}

TEST_CASE("store: compaction is due when half the log is dead, not while a queue only grows") {
    state st;
    bytes log;
    const auto add = [&](const record& r) {
        REQUIRE(st.apply(r));
        append_record(log, r);
    };
    add(session_record{"keeper", 3600});
    for (std::uint64_t i = 1; i <= 20'000; ++i) {
        add(message_record{i, wall, make_msg("t/x", std::string(64, 'p'))});
        add(queue_push_record{"keeper", i, qos::at_least_once, false, {}});
    }
    // Every record still live: judged by the state, nothing to win; judged by the size of a
    // last snapshot of nothing, the whole log would be rewritten (and again at each doubling).
    CHECK_FALSE(compaction_due(log.size(), 0, st.live_bytes(), 0));
    CHECK(compaction_due(log.size(), 0, 0, 0));
    // Three quarters delivered: the log is mostly dead records.
    for (int i = 0; i < 15'000; ++i) add(queue_pop_record{"keeper"});
    CHECK(compaction_due(log.size(), 0, st.live_bytes(), 0));
    // A last snapshot larger than the live state still holds the rewrite back, and the slack
    // counts on top of twice the live size.
    CHECK_FALSE(compaction_due(log.size(), log.size(), st.live_bytes(), 0));
    CHECK_FALSE(compaction_due(log.size(), 0, st.live_bytes(), log.size()));
    CHECK(compaction_due(log.size(), 0, st.live_bytes(), 1024));
}
