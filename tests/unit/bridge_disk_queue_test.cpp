#include "mqtt/bridge/disk_queue.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "temp_dir.hpp"

using namespace mqtt::bridge;
namespace fs = std::filesystem;

namespace {

struct temp_dir : tern_test::temp_dir {
    temp_dir() : tern_test::temp_dir("tern-dq") {}
    std::string q() const { return file("b.remote"); }
};

std::vector<std::uint8_t> body_of(int i, std::size_t size = 20) {
    std::vector<std::uint8_t> b(size);
    for (std::size_t k = 0; k < size; ++k) b[k] = static_cast<std::uint8_t>(i * 7 + k);
    return b;
}

std::unique_ptr<disk_queue> open_q(const temp_dir& t, queue_recovery& rep, queue_options o = {}) {
    std::string error;
    auto q = disk_queue::open(t.q(), o, rep, error);
    INFO(error);
    REQUIRE(q);
    return q;
}

void fill(disk_queue& q, int from, int to, std::size_t size = 20) {
    for (int i = from; i < to; ++i)
        REQUIRE(q.append(body_of(i, size), 0) == disk_queue::append_status::appended);
    REQUIRE(q.commit());
}

// The bodies next() hands out until it has none, acknowledging each.
std::vector<std::uint64_t> drain(disk_queue& q, bool ack = true) {
    std::vector<std::uint64_t> seqs;
    while (auto r = q.next()) {
        CHECK(r->body == body_of(static_cast<int>(r->seq), r->body.size()));
        seqs.push_back(r->seq);
        if (ack) q.done(r->seq);
    }
    return seqs;
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
    std::vector<std::uint64_t> v;
    for (auto i = from; i < to; ++i) v.push_back(i);
    return v;
}

std::vector<fs::path> segments(const temp_dir& t) {
    std::vector<fs::path> v;
    for (const auto& e : fs::directory_iterator(t.q()))
        if (e.path().filename().string().starts_with("seg-")) v.push_back(e.path());
    std::sort(v.begin(), v.end());
    return v;
}

void flip_byte(const fs::path& p, std::uint64_t offset) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
}

void write_file(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << text;
}

constexpr std::uint64_t rec = 18 + 20;  // one record of body_of(i) on disk

}  // namespace

TEST_CASE("bridge disk queue: records come back in order, also after reopening") {
    temp_dir t;
    queue_recovery rep;
    {
        auto q = open_q(t, rep);
        CHECK(rep.records == 0);
        CHECK(rep.problems.empty());
        fill(*q, 0, 10);
        CHECK(q->records() == 10);
        CHECK(q->bytes() == 10 * rec);
        CHECK(q->fsyncs() == 1);  // one group commit for all ten
        // Three go out; 0 and 2 are acknowledged, 1 is not.
        auto a = q->next(), b = q->next(), c = q->next();
        REQUIRE((a && b && c));
        CHECK(b->seq == 1);
        CHECK(q->seq_for_id(packet_id_for(1)) == 1u);
        CHECK(!q->seq_for_id(packet_id_for(5)));  // not handed out
        q->done(0);
        q->done(2);
        CHECK(q->acked_through() == 1);
        CHECK(q->records() == 8);
        CHECK(q->in_flight() == 1);
        REQUIRE(q->save_state());
    }
    auto q = open_q(t, rep);
    CHECK(rep.problems.empty());
    CHECK(rep.records == 8);
    CHECK(rep.resend == 2);  // 1 went out before (2 is done)
    auto first = q->next();
    REQUIRE(first);
    CHECK(first->seq == 1);
    CHECK(first->resend);
    q->done(1);
    CHECK(drain(*q) == range(3, 10));
    CHECK(q->records() == 0);
    CHECK(q->bytes() == 0);
    // New records continue the sequence.
    fill(*q, 10, 12);
    CHECK(drain(*q) == range(10, 12));
}

TEST_CASE("bridge disk queue: segments roll and go once acknowledged") {
    temp_dir t;
    queue_recovery rep;
    queue_options o;
    o.segment_bytes = 4 * rec;
    auto q = open_q(t, rep, o);
    fill(*q, 0, 20);
    CHECK(segments(t).size() == 5);
    CHECK(drain(*q, true).size() == 20);
    REQUIRE(q->save_state());
    CHECK(segments(t).size() == 1);  // the one being written stays
    q.reset();
    q = open_q(t, rep, o);
    CHECK(rep.records == 0);
    CHECK(rep.problems.empty());
    fill(*q, 20, 23);
    CHECK(drain(*q) == range(20, 23));
}

TEST_CASE("bridge disk queue: a torn tail is cut, the rest kept") {
    temp_dir t;
    queue_recovery rep;
    {
        auto q = open_q(t, rep);
        fill(*q, 0, 5);
    }
    const auto seg = segments(t).at(0);
    SUBCASE("in the middle of the last record") {
        fs::resize_file(seg, 4 * rec + 7);
    }
    SUBCASE("in the header of the last record") {
        fs::resize_file(seg, 4 * rec + 3);
    }
    SUBCASE("garbage appended after a good record") {
        fs::resize_file(seg, 4 * rec);
        std::ofstream(seg, std::ios::binary | std::ios::app) << std::string(50, '\xff');
    }
    auto q = open_q(t, rep);
    CHECK(rep.cut_bytes > 0);
    REQUIRE(rep.problems.size() == 1);
    CHECK(rep.problems[0].find("cut") != std::string::npos);
    CHECK(fs::file_size(seg) == 4 * rec);
    CHECK(rep.records == 4);
    fill(*q, 4, 6);  // appends go after the last good record with the next sequence
    CHECK(drain(*q) == range(0, 6));
}

TEST_CASE("bridge disk queue: a state ahead of the records does not come back to cover new ones") {
    // The state says 0-9 were acknowledged, but the records end at 5 (the last segment cut
    // at damage): the state is ignored. Records appended since take sequences 5-9 again; a
    // restart before the next save must not take them as acknowledged by the old state.
    temp_dir t;
    queue_recovery rep;
    {
        auto q = open_q(t, rep);
        fill(*q, 0, 10);
        CHECK(drain(*q) == range(0, 10));
        REQUIRE(q->save_state());
    }
    flip_byte(segments(t).at(0), 5 * rec + 20);  // record 5's body: cut there
    {
        auto q = open_q(t, rep);
        const bool ahead = std::any_of(rep.problems.begin(), rep.problems.end(), [](const auto& p) {
            return p.find("ahead") != std::string::npos;
        });
        CHECK(ahead);
        CHECK(q->next_seq() == 5);
        fill(*q, 5, 10);  // committed; the process dies before saving its state
    }
    auto q = open_q(t, rep);
    const auto got = drain(*q);  // 0-4 again too: the state was ignored
    const auto appended = range(5, 10);
    CHECK(std::includes(got.begin(), got.end(), appended.begin(), appended.end()));
}

TEST_CASE("bridge disk queue: a corrupted record cuts the last segment there") {
    temp_dir t;
    queue_recovery rep;
    {
        auto q = open_q(t, rep);
        fill(*q, 0, 5);
    }
    const auto seg = segments(t).at(0);
    SUBCASE("a body byte of the last record") {
        flip_byte(seg, 4 * rec + 25);
    }
    SUBCASE("the CRC of the last record") {
        flip_byte(seg, 4 * rec + 5);
    }
    SUBCASE("a huge length in the last record") {
        flip_byte(seg, 4 * rec + 3);
    }
    SUBCASE("the sequence of the last record") {
        flip_byte(seg, 4 * rec + 9);
    }
    auto q = open_q(t, rep);
    CHECK(rep.cut_bytes == rec);
    CHECK(drain(*q) == range(0, 4));
}

TEST_CASE("bridge disk queue: a damaged older segment is skipped, not fatal") {
    temp_dir t;
    queue_recovery rep;
    queue_options o;
    o.segment_bytes = 4 * rec;
    {
        auto q = open_q(t, rep, o);
        fill(*q, 0, 12);  // segments of 0-3, 4-7, 8-11
    }
    const auto segs = segments(t);
    REQUIRE(segs.size() == 3);
    SUBCASE("a bad CRC: that record is skipped") {
        flip_byte(segs[1], rec + 20);  // record 5's body
        auto q = open_q(t, rep, o);
        CHECK(rep.problems.empty());  // older segments are checked as they are read
        CHECK(drain(*q) == std::vector<std::uint64_t>{0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11});
        CHECK(q->skipped() == 1);
        const auto problems = q->take_problems();
        REQUIRE(problems.size() == 1);
        CHECK(problems[0].find("record 5") != std::string::npos);
    }
    SUBCASE("a damaged length: the rest of that segment cannot be found") {
        flip_byte(segs[0], rec + 2);  // record 1's length
        auto q = open_q(t, rep, o);
        const auto got = drain(*q);
        const auto problems = q->take_problems();
        CHECK(got == std::vector<std::uint64_t>{0, 4, 5, 6, 7, 8, 9, 10, 11});
        REQUIRE(problems.size() == 2);
        CHECK(problems[1].find("records 1 to 3 are missing") != std::string::npos);
    }
}

TEST_CASE("bridge disk queue: records missing beyond the id window do not stop the queue") {
    // A damaged length early in a large segment loses the rest of it: more records than
    // the 32,767 the queue hands out past the oldest unacknowledged one. The records after
    // the gap must still go, and the count of what waits must not include the gap.
    temp_dir t;
    queue_recovery rep;
    queue_options o;
    constexpr int first_segment = 40'000;
    o.segment_bytes = static_cast<std::uint64_t>(first_segment) * (18 + 1);  // 1-byte bodies
    {
        auto q = open_q(t, rep, o);
        fill(*q, 0, first_segment, 1);
        fill(*q, first_segment, first_segment + 5, 1);
    }
    const auto segs = segments(t);
    REQUIRE(segs.size() == 2);
    flip_byte(segs[0], 19 + 2);  // record 1's length
    auto q = open_q(t, rep, o);
    std::vector<std::uint64_t> expected{0};
    for (std::uint64_t s = first_segment; s < first_segment + 5; ++s) expected.push_back(s);
    CHECK(drain(*q) == expected);
    CHECK(q->records() == 0);
    fill(*q, first_segment + 5, first_segment + 6, 1);
    CHECK(drain(*q) == std::vector<std::uint64_t>{first_segment + 5});
}

TEST_CASE("bridge disk queue: a bad state CRC falls back to the previous state") {
    temp_dir t;
    queue_recovery rep;
    {
        auto q = open_q(t, rep);
        fill(*q, 0, 6);
        for (int i = 0; i < 2; ++i) q->done(q->next()->seq);
        REQUIRE(q->save_state());  // generation 1, acknowledged through 2: state.1
        for (int i = 0; i < 2; ++i) q->done(q->next()->seq);
        REQUIRE(q->save_state());  // generation 2, acknowledged through 4: state.0
    }
    const auto newer = t.q() + "/state.0";
    const auto older = t.q() + "/state.1";
    SUBCASE("both intact: the newer") {
        auto q = open_q(t, rep);
        CHECK(rep.problems.empty());
        CHECK(drain(*q) == range(4, 6));
    }
    SUBCASE("the newer damaged (a torn save): the older") {
        flip_byte(newer, 10);
        auto q = open_q(t, rep);
        CHECK(rep.state_fallback);
        REQUIRE(rep.problems.size() == 2);
        CHECK(rep.problems[0].find("CRC") != std::string::npos);
        CHECK(rep.problems[1].find("used state.1") != std::string::npos);
        CHECK(drain(*q) == range(2, 6));  // at least once: 2 and 3 go again
    }
    SUBCASE("both damaged: everything on disk") {
        flip_byte(newer, 10);
        write_file(older, "rubbish");
        auto q = open_q(t, rep);
        CHECK(!rep.state_found);
        CHECK(rep.problems.size() == 2);
        CHECK(drain(*q) == range(0, 6));
    }
    SUBCASE("the newer missing: the older, no complaint") {
        fs::remove(newer);
        auto q = open_q(t, rep);
        CHECK(rep.problems.empty());
        CHECK(drain(*q) == range(2, 6));
    }
    SUBCASE("a longer old content after the entries is ignored") {
        std::ofstream(newer, std::ios::binary | std::ios::app) << std::string(40, '\x01');
        auto q = open_q(t, rep);
        CHECK(rep.problems.empty());
        CHECK(drain(*q) == range(4, 6));
    }
    SUBCASE("a state ahead of the records is ignored") {
        for (const auto& s : segments(t)) fs::resize_file(s, 0);
        fs::remove(older);
        auto q = open_q(t, rep);
        CHECK(rep.problems.size() == 1);
        fill(*q, 0, 1);  // the sequence starts again from the segment's first
        CHECK(drain(*q) == range(0, 1));
    }
    SUBCASE("saves go on alternating after a reopen") {
        {
            auto q = open_q(t, rep);
            q->done(q->next()->seq);
            REQUIRE(q->save_state());  // generation 3: state.1
        }
        flip_byte(newer, 10);  // generation 2 damaged: 3 is the newest anyway
        auto q = open_q(t, rep);
        CHECK(drain(*q) == range(5, 6));
    }
}

TEST_CASE("bridge disk queue: QoS 2 records past PUBREC come back as released") {
    temp_dir t;
    queue_recovery rep;
    {
        auto q = open_q(t, rep);
        fill(*q, 0, 4);
        for (int i = 0; i < 3; ++i) REQUIRE(q->next());
        q->received(1);  // PUBREC for 1: a restart must send PUBREL, not the PUBLISH
        q->done(0);
        REQUIRE(q->save_state());
    }
    auto q = open_q(t, rep);
    CHECK(q->released_at_open() == std::vector<std::uint64_t>{1});
    CHECK(q->in_flight() == 1);
    CHECK(q->seq_for_id(packet_id_for(1)) == 1u);
    auto r = q->next();
    REQUIRE(r);
    CHECK(r->seq == 2);  // 1 is not sent again
    CHECK(r->resend);
    q->done(2);
    CHECK(q->acked_through() == 1);
    q->done(1);  // PUBCOMP
    CHECK(q->acked_through() == 3);
    CHECK(drain(*q) == range(3, 4));
}

TEST_CASE("bridge disk queue: the bound and its policies") {
    temp_dir t;
    queue_recovery rep;
    queue_options o;
    o.max_bytes = 5 * rec;
    SUBCASE("block and drop-new: full") {
        o.policy = full_policy::block;
        auto q = open_q(t, rep, o);
        fill(*q, 0, 5);
        CHECK(q->append(body_of(5), 0) == disk_queue::append_status::full);
        q->done(q->next()->seq);  // room for one again
        CHECK(q->append(body_of(5), 0) == disk_queue::append_status::appended);
        CHECK(q->bytes() == 5 * rec);
    }
    SUBCASE("drop-oldest: the oldest not yet sent make room") {
        o.policy = full_policy::drop_oldest;
        auto q = open_q(t, rep, o);
        fill(*q, 0, 5);
        auto in_flight = q->next();  // 0 is in flight: not dropped
        REQUIRE(in_flight);
        fill(*q, 5, 7);
        CHECK(q->dropped() == 2);  // 1 and 2
        CHECK(q->bytes() == 5 * rec);
        q->done(0);
        CHECK(drain(*q) == range(3, 7));
        CHECK(q->acked_through() == 7);
    }
    SUBCASE("drop-oldest: also records appended and not committed yet") {
        // Appends of one event-loop turn share one commit: the oldest may not be on disk.
        o.policy = full_policy::drop_oldest;
        auto q = open_q(t, rep, o);
        fill(*q, 0, 2);
        for (int i = 2; i < 7; ++i)  // 5 to 6 do not fit: 0 and 1, on disk, make room
            REQUIRE(q->append(body_of(i), 0) == disk_queue::append_status::appended);
        CHECK(q->dropped() == 2);
        for (int i = 7; i < 9; ++i)  // 2 and 3 are only in the write buffer
            CHECK(q->append(body_of(i), 0) == disk_queue::append_status::appended);
        CHECK(q->dropped() == 4);
        REQUIRE(q->commit());
        CHECK(q->bytes() == 5 * rec);
        CHECK(drain(*q) == range(4, 9));
    }
}

TEST_CASE("bridge disk queue: the window is bounded by the packet id space") {
    temp_dir t;
    queue_recovery rep;
    auto q = open_q(t, rep);
    for (std::uint64_t i = 0; i < max_window + 3; ++i)
        REQUIRE(q->append(body_of(static_cast<int>(i), 1), 0) ==
                disk_queue::append_status::appended);
    REQUIRE(q->commit());
    std::uint64_t n = 0;
    while (q->next()) ++n;
    CHECK(n == max_window);
    q->done(0);
    auto r = q->next();
    REQUIRE(r);
    CHECK(r->seq == max_window);
    CHECK(q->seq_for_id(packet_id_for(r->seq)) == r->seq);
    CHECK(!q->seq_for_id(packet_id_for(0)));  // done: its id is free
    CHECK(packet_id_for(max_window + 1) == packet_id_for(0));
}

TEST_CASE("bridge disk queue: a QoS 2 resend from the source after a restart is recognised") {
    temp_dir t;
    queue_recovery rep;
    {
        auto q = open_q(t, rep);
        REQUIRE(q->append(body_of(1), 77) == disk_queue::append_status::appended);
        REQUIRE(q->commit());
        CHECK(!q->recovered_duplicate(77, body_of(1)));  // only what a restart found
    }
    auto q = open_q(t, rep);
    CHECK(!q->recovered_duplicate(77, body_of(2)));  // another message with that id
    CHECK(!q->recovered_duplicate(78, body_of(1)));
    CHECK(q->recovered_duplicate(77, body_of(1)));
    CHECK(!q->recovered_duplicate(77, body_of(1)));  // once
}

TEST_CASE("bridge disk queue: hostile files never stop it from opening") {
    temp_dir t;
    fs::create_directories(t.q());
    std::mt19937 rng(7);
    SUBCASE("random bytes in a segment and the state") {
        std::string junk(4000, '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        write_file(t.q() + "/seg-0000000000000000.q", junk);
        write_file(t.q() + "/state.0", junk.substr(0, 64));
    }
    SUBCASE("a huge length field") {
        write_file(t.q() + "/seg-0000000000000000.q", std::string(18, '\xff'));
    }
    SUBCASE("odd names, a directory, an out-of-range sequence") {
        fs::create_directories(t.q() + "/seg-0000000000000001.q");
        write_file(t.q() + "/seg-ffffffffffffffff.q", "x");
        write_file(t.q() + "/seg-XYZ.q", "x");
        write_file(t.q() + "/state.1", "");
    }
    SUBCASE("a state with a count that does not fit") {
        std::string s = "TBQ2";
        s += std::string(28, '\0');
        s += std::string("\xff\xff\xff\x7f", 4);
        write_file(t.q() + "/state.0", s);
    }
    queue_recovery rep;
    auto q = open_q(t, rep);
    CHECK(!rep.problems.empty());
    CHECK(q->records() == 0);
    fill(*q, 0, 3);
    std::vector<std::uint64_t> got;
    while (auto r = q->next()) {
        got.push_back(r->seq);
        q->done(r->seq);
    }
    CHECK(got.size() == 3);
}

TEST_CASE("bridge disk queue: a directory that cannot be made is an error") {
    temp_dir t;
    write_file(fs::path(t.path) / "file", "x");
    queue_recovery rep;
    std::string error;
    auto q = disk_queue::open((fs::path(t.path) / "file" / "q").string(), {}, rep, error);
    CHECK(!q);
    CHECK(error.find("queue directory") != std::string::npos);
}

TEST_CASE(
    "bridge disk queue: random damage anywhere: it opens, and what it hands out is in order") {
    std::mt19937 rng(20261129);
    queue_options o;
    o.segment_bytes = 6 * rec;
    for (int round = 0; round < 60; ++round) {
        temp_dir t;
        queue_recovery rep;
        {
            auto q = open_q(t, rep, o);
            fill(*q, 0, 20);
            for (int i = 0; i < 5; ++i) q->done(q->next()->seq);
            REQUIRE(q->save_state());
            for (int i = 0; i < 3; ++i) q->received(q->next()->seq);
            REQUIRE(q->save_state());
        }
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(t.q())) files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (int k = 0; k < 1 + round % 4; ++k) {
            const auto& f = files[rng() % files.size()];
            const auto size = fs::file_size(f);
            if (size == 0) continue;
            if (rng() % 4 == 0)
                fs::resize_file(f, rng() % size);
            else
                flip_byte(f, rng() % size);
        }
        auto q = open_q(t, rep, o);
        std::vector<std::uint64_t> got;
        while (auto r = q->next()) {
            got.push_back(r->seq);
            q->done(r->seq);
        }
        for (auto s : q->released_at_open()) q->done(s);
        CHECK(std::is_sorted(got.begin(), got.end()));
        CHECK(std::adjacent_find(got.begin(), got.end()) == got.end());
        CHECK(q->in_flight() == 0);
        fill(*q, 100, 102);  // and it still takes new records
        CHECK(q->next());
    }
}

TEST_CASE("bridge disk queue: one process at a time") {
    temp_dir t;
    queue_recovery rep;
    auto q = open_q(t, rep);
    std::string error;
    CHECK(!disk_queue::open(t.q(), {}, rep, error));
    CHECK(error.find("in use") != std::string::npos);
    q.reset();
    error.clear();
    auto again = disk_queue::open(t.q(), {}, rep, error);
    INFO(error);
    CHECK(again != nullptr);
}
