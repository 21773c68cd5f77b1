// The store with threads > 1 (docs/persistence.md, "Threads"): a file per shard, what a
// start does with stores written with another number of threads (store::in_place,
// store::redistribute), and the recorder of a shard k > 0 (no retained records, message ids
// of its own, message::store_id untouched).

#include <doctest/doctest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/broker/durable_session.hpp"
#include "mqtt/store/record.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/shards.hpp"
#include "mqtt/store/state.hpp"
#include "mqtt/store/store_file.hpp"
#include "temp_dir.hpp"
#include "store_test_support.hpp"

using namespace mqtt::store;
using mqtt::protocol::qos;

namespace {

constexpr std::int64_t wall = 1'700'000'000'000;

using store_test::make_msg;

// A session with a subscription, two queued messages (ids `first` and first + 1, payloads
// named after the client), a QoS 2 id and, with `will`, offline with a Will (id first + 2).
void add_session(state& st, const std::string& c, std::uint64_t first, bool will = false) {
    REQUIRE(st.apply(session_record{c, 3600}));
    REQUIRE(st.apply(subscribe_record{c, "t/" + c, {qos::exactly_once, false, false, {}}, 0}));
    for (std::uint64_t i = 0; i < 2; ++i) {
        REQUIRE(
            st.apply(message_record{first + i, wall, make_msg("t/" + c, c + std::to_string(i))}));
        REQUIRE(st.apply(queue_push_record{c, first + i, qos::exactly_once, false, {}}));
    }
    REQUIRE(st.apply(qos2_in_add_record{c, 7}));
    if (will) {
        REQUIRE(st.apply(message_record{first + 2, wall, make_msg("will/" + c, "bye")}));
        REQUIRE(
            st.apply(session_offline_record{c, 3600, wall + 3'600'000, first + 2, wall + 1000}));
    }
}

std::vector<std::string> payloads(const state& st, const std::string& c) {
    std::vector<std::string> out;
    for (const auto& q : st.sessions().at(c).queue)
        out.push_back(st.messages().at(q.msg_id).msg->payload);
    return out;
}

// Clients named by the shard they belong on: "s0-..." on 0, "s1-..." on 1.
std::size_t home_by_name(std::string_view id) {
    return id.size() > 1 && id[1] == '1' ? 1 : 0;
}

}  // namespace

TEST_CASE("store shards: file names, and the shard files found in a directory") {
    CHECK(shard_file("tern.db", 0) == "tern.db");
    CHECK(shard_file("tern.db", 1) == "tern.db.shard1");
    CHECK(shard_file("x", 12) == "x.shard12");
    tern_test::temp_dir dir;
    for (const char* n : {"tern.db", "tern.db.shard1", "tern.db.shard3", "tern.db.shard1.new",
                          "tern.db.shard2.damaged", "tern.db.shard01", "tern.db.shardx",
                          "tern.db.shard", "other.db.shard5", "tern.db.shard0", "tern.db.shard1025",
                          "tern.db.shard99999999999999999999999"}) {
        std::ofstream{dir.file(n)} << "x";
    }
    CHECK(shard_files(dir.path, "tern.db") == std::vector<std::size_t>{1, 3});
    CHECK(shard_files(dir.path + "/missing", "tern.db").empty());
}

TEST_CASE("store shards: in_place") {
    state s0;
    state s1;
    add_session(s0, "s0-a", 1);
    add_session(s0, "s1-bridge", 10);  // shard 0 may hold any id (bridges, MQTT-SN)
    add_session(s1, "s1-b", 1);
    CHECK(in_place({&s0, &s1}, 2, home_by_name));
    CHECK(in_place({&s0, nullptr}, 2, home_by_name));
    SUBCASE("a file of a shard past n") {
        CHECK_FALSE(in_place({&s0, &s1}, 1, home_by_name));
    }
    SUBCASE("a session of shard 1 that belongs on 0") {
        add_session(s1, "s0-c", 20);
        CHECK_FALSE(in_place({&s0, &s1}, 2, home_by_name));
    }
    SUBCASE("one client id in two stores") {
        add_session(s1, "s1-bridge", 20);
        CHECK_FALSE(in_place({&s0, &s1}, 2, home_by_name));
    }
    SUBCASE("retained messages outside shard 0's store") {
        REQUIRE(s1.apply(message_record{30, wall, make_msg("r", "x")}));
        REQUIRE(s1.apply(retained_set_record{30}));
        CHECK_FALSE(in_place({&s0, &s1}, 2, home_by_name));
    }
}

TEST_CASE("store shards: threads 2 -> 1 keeps every session, queue, Will and retained message") {
    state s0;
    state s1;
    add_session(s0, "s0-a", 1);
    REQUIRE(s0.apply(message_record{5, wall, make_msg("r/0", "kept")}));
    REQUIRE(s0.apply(retained_set_record{5}));
    // The same message ids in the other store, other messages.
    add_session(s1, "s1-b", 1, true);
    std::size_t moved = 0;
    const auto out = redistribute(
        {&s0, &s1}, 1, [](std::string_view) { return 0; }, wall, moved);
    REQUIRE(out.size() == 1);
    const auto& st = out[0];
    CHECK(moved == 1);
    CHECK(st.sessions().size() == 2);
    CHECK(payloads(st, "s0-a") == std::vector<std::string>{"s0-a0", "s0-a1"});
    CHECK(payloads(st, "s1-b") == std::vector<std::string>{"s1-b0", "s1-b1"});
    const auto& b = st.sessions().at("s1-b");
    CHECK(b.qos2_in == std::vector<std::uint16_t>{7});
    CHECK(b.subscriptions.contains("t/s1-b"));
    REQUIRE(b.offline);
    REQUIRE(b.will_msg_id != 0);
    CHECK(st.messages().at(b.will_msg_id).msg->topic == "will/s1-b");
    REQUIRE(st.retained().contains("r/0"));
    CHECK(st.messages().at(st.retained().at("r/0")).msg->payload == "kept");
    CHECK(st.messages().size() == 6);  // 2 + 2 queued, the Will, the retained one
    CHECK(st.rejected() == 0);
    // It reads back from its own snapshot the same.
    std::vector<std::uint8_t> bytes;
    for (const auto& r : st.snapshot(wall)) append_record(bytes, r);
    const auto l = load_bytes(bytes);
    CHECK(l.report.clean());
    CHECK(l.st.sessions().size() == 2);
    CHECK(l.st.queued_count() == 4);
}

TEST_CASE("store shards: threads 1 -> 2 and a store of a shard that no longer fits") {
    state s0;
    state s1;
    add_session(s0, "s1-x", 1);  // shard 0's store: stays on shard 0
    add_session(s1, "s0-y", 1);  // on shard 1 but belongs on 0: moves
    add_session(s1, "s1-z", 3);  // stays
    std::size_t moved = 0;
    const auto out = redistribute({&s0, &s1}, 2, home_by_name, wall, moved);
    REQUIRE(out.size() == 2);
    CHECK(moved == 1);
    CHECK(out[0].sessions().contains("s1-x"));
    CHECK(out[0].sessions().contains("s0-y"));
    CHECK(out[1].sessions().size() == 1);
    CHECK(payloads(out[1], "s1-z") == std::vector<std::string>{"s1-z0", "s1-z1"});
    CHECK(payloads(out[0], "s0-y") == std::vector<std::string>{"s0-y0", "s0-y1"});
    CHECK(out[1].messages().size() == 2);  // only what its sessions refer to
    std::vector<const state*> in{&s0, &s1};
    std::vector<const state*> again{&out[0], &out[1]};
    CHECK_FALSE(in_place(in, 2, home_by_name));
    CHECK(in_place(again, 2, home_by_name));
}

TEST_CASE("store shards: a client id in two stores is taken once, shard 0's copy") {
    state s0;
    state s1;
    add_session(s0, "s1-dup", 1);
    add_session(s1, "s1-dup", 1);
    REQUIRE(s1.apply(queue_pop_record{"s1-dup"}));  // the copies differ: which one is visible
    std::size_t moved = 0;
    const auto out = redistribute({&s0, &s1}, 2, home_by_name, wall, moved);
    CHECK(out[0].sessions().contains("s1-dup"));
    CHECK_FALSE(out[1].sessions().contains("s1-dup"));
    CHECK(payloads(out[0], "s1-dup") == std::vector<std::string>{"s1-dup0", "s1-dup1"});
}

TEST_CASE("store shards: the recorder of a shard k > 0") {
    recorder rec{state{}};
    rec.set_clock([] { return clock_pair{mqtt::broker::clock::now(), wall}; });
    rec.set_secondary_shard();
    mqtt::broker::durable_session a;
    a.client_id = "a";
    a.expiry_interval = 3600;
    mqtt::broker::durable_session b = a;
    b.client_id = "b";
    rec.session_online(a);
    rec.session_online(b);
    auto m = make_msg("t", "one");
    m->store_id = 12345;  // shard 0's recorder's id: neither read nor written here
    rec.queued(a, {m, qos::at_least_once, false, {}});
    rec.queued(b, {m, qos::at_least_once, false, {}});
    CHECK(rec.mirror().messages().size() == 1);  // written once for both
    CHECK(m->store_id == 12345);
    rec.retained_set(make_msg("r", "x"));
    rec.retained_cleared("r");
    CHECK(rec.mirror().retained().empty());
    // Once every reference is gone the message is dropped; queued again, it is written again.
    rec.dequeued(a);
    rec.dequeued(b);
    CHECK(rec.mirror().messages().empty());
    rec.queued(a, {m, qos::at_least_once, false, {}});
    CHECK(rec.mirror().messages().size() == 1);
    std::vector<std::uint8_t> bytes;
    rec.take_pending(bytes);
    const auto l = load_bytes(bytes);
    CHECK(l.report.clean());
    CHECK(l.st.queued_count() == 1);
    CHECK(l.st.messages().size() == 1);
}
