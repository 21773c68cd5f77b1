// The store with threads > 1 (docs/persistence.md, "Threads"): a file per shard, what a
// start does with stores written with another number of threads (store::in_place,
// store::redistribute), and the recorder of a shard k > 0 (no retained records, message ids
// of its own, message::store_id untouched).

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/broker/acl_file.hpp"
#include "mqtt/broker/durable_session.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/store/record.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/shards.hpp"
#include "mqtt/store/state.hpp"
#include "mqtt/store/store_file.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

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
        out.emplace_back(st.messages().at(q.msg_id).msg->payload);
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
    // k <= 3 keeps its ids on the message, k > 3 in the recorder.
    for (const std::size_t k : {std::size_t{1}, std::size_t{3}, std::size_t{5}}) {
        CAPTURE(k);
        recorder rec{state{}};
        rec.set_clock([] { return clock_pair{mqtt::broker::clock::now(), wall}; });
        rec.set_secondary_shard(k);
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
        if (k <= m->shard_store_ids.size()) {
            // Its own element only (the others belong to the other shards' threads).
            CHECK(m->shard_store_ids[k - 1] == rec.mirror().messages().begin()->first);
            for (std::size_t j = 0; j < m->shard_store_ids.size(); ++j) {
                if (j != k - 1) CHECK(m->shard_store_ids[j] == 0);
            }
        } else {
            CHECK(m->shard_store_ids == std::array<std::uint64_t, 3>{});
        }
        // A recorder started on a store that holds messages knows their ids: queued once more,
        // a message is not written again.
        recorder again{l.st};
        again.set_secondary_shard(k);
        const auto& held = again.mirror().messages().begin()->second.msg;
        const auto before = again.records();
        again.queued(b, {held, qos::at_least_once, false, {}});
        CHECK(again.records() == before + 1);  // a queue record only, no message record
        CHECK(again.mirror().messages().size() == 1);
    }
}

// ---- the outbox (docs/persistence.md, "Threads: the outbox")

namespace {

using bytes_t = std::vector<std::uint8_t>;

// Store 0 as shard 0 writes it: the publisher's session and, per QoS 2 message sent to
// shard 1, the message, its packet id and its outbox item, in one group each.
std::vector<record> publisher_log(std::uint64_t items) {
    std::vector<record> rs{header_record{format_version, wall}, commit_record{},
                           session_record{"s0-pub", 3600}, commit_record{}};
    for (std::uint64_t i = 1; i <= items; ++i) {
        rs.push_back(
            message_record{i, wall, make_msg("a/b", "m" + std::to_string(i), qos::exactly_once)});
        rs.push_back(qos2_in_add_record{"s0-pub", static_cast<std::uint16_t>(i)});
        rs.push_back(outbox_add_record{i, i, {1}, {}, {}});
        rs.push_back(commit_record{});
    }
    return rs;
}

// Store 1: a subscriber to a/# (QoS 2, Subscription Identifier 4) that has taken store 0's
// items up to `taken` (each queued, with its inbox sequence, in one group).
state subscriber_store(std::uint64_t taken) {
    state st;
    REQUIRE(st.apply(session_record{"s1-sub", 3600}));
    REQUIRE(st.apply(subscribe_record{"s1-sub", "a/#", {qos::exactly_once, false, false, {}}, 4}));
    for (std::uint64_t i = 1; i <= taken; ++i) {
        REQUIRE(st.apply(message_record{
            100 + i, wall, make_msg("a/b", "m" + std::to_string(i), qos::exactly_once)}));
        REQUIRE(st.apply(queue_push_record{"s1-sub", 100 + i, qos::exactly_once, false, {4}}));
        REQUIRE(st.apply(inbox_applied_record{0, i}));
    }
    return st;
}

bytes_t encode_all_records(const std::vector<record>& rs) {
    bytes_t out;
    for (const auto& r : rs) append_record(out, r);
    return out;
}

}  // namespace

TEST_CASE("store shards: outbox items past the destination's sequence are replayed, once") {
    replay_counts counts;
    auto s0 = load_bytes(encode_all_records(publisher_log(3))).st;
    auto s1 = subscriber_store(2);
    CHECK(s0.outbox().size() == 3);
    CHECK(s0.outbox_last() == 3);
    CHECK(s1.applied_from(0) == 2);
    // Only item 3 is past what store 1 took; nothing goes from store 1 to store 0.
    auto pending = unapplied({&s0, &s1}, 1);
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].source == 0);
    CHECK(pending[0].seq == 3);
    CHECK(pending[0].msg->payload == "m3");
    CHECK(unapplied({&s0, &s1}, 0).empty());
    // What store 1 confirmed (on disk) leaves store 0's outbox; item 3 stays until a later
    // confirmation (the replay below is not on disk yet).
    settle_outboxes({&s0, &s1});
    REQUIRE(s0.outbox().size() == 1);
    CHECK(s0.outbox().begin()->first == 3);
    CHECK(s0.messages().size() == 1);  // messages 1 and 2 had no other reference
    CHECK(s0.sessions().at("s0-pub").qos2_in == std::vector<std::uint16_t>{1, 2, 3});
    CHECK(replay(s1, pending[0], {}, counts) == 1);
    CHECK(payloads(s1, "s1-sub") == std::vector<std::string>{"m1", "m2", "m3"});
    CHECK(s1.sessions().at("s1-sub").queue.back().subscription_ids ==
          std::vector<std::uint32_t>{4});
    CHECK(s1.sessions().at("s1-sub").queue.back().q == qos::exactly_once);
    CHECK(s1.applied_from(0) == 3);
    CHECK(unapplied({&s0, &s1}, 1).empty());  // a second start replays nothing
    // The outbox, its last sequence and the inbox sequences survive a snapshot (compaction).
    const auto again0 = load_bytes(encode_all_records(s0.snapshot(wall))).st;
    CHECK(again0.outbox().size() == 1);
    CHECK(again0.outbox_last() == 3);
    CHECK(again0.messages().size() == 1);
    const auto again1 = load_bytes(encode_all_records(s1.snapshot(wall))).st;
    CHECK(again1.applied_from(0) == 3);
    CHECK(again1.queued_count() == 3);
    // Store 1 confirms item 3: gone, and the last sequence stays for the next ones.
    settle_outboxes({&s0, &s1});
    CHECK(s0.outbox().empty());
    CHECK(s0.messages().empty());
    CHECK(load_bytes(encode_all_records(s0.snapshot(wall))).st.outbox_last() == 3);
}

TEST_CASE("store shards: a replay delivers as the engine does to offline sessions") {
    replay_counts counts;
    state st;
    REQUIRE(st.apply(session_record{"two", 60}));
    REQUIRE(st.apply(subscribe_record{"two", "a/+", {qos::at_least_once, false, true, {}}, 1}));
    REQUIRE(st.apply(subscribe_record{"two", "a/#", {qos::exactly_once, false, false, {}}, 2}));
    REQUIRE(st.apply(session_record{"low", 60}));
    REQUIRE(st.apply(subscribe_record{"low", "a/b", {qos::at_most_once, false, false, {}}, 0}));
    REQUIRE(st.apply(session_record{"shared", 60}));
    REQUIRE(st.apply(
        subscribe_record{"shared", "$share/g/a/b", {qos::exactly_once, false, false, {}}, 0}));
    REQUIRE(st.apply(session_record{"other", 60}));
    REQUIRE(st.apply(subscribe_record{"other", "b/#", {qos::exactly_once, false, false, {}}, 0}));
    const pending_item item{2, 9, wall, make_msg("a/b", "x", qos::exactly_once, true), {}, {}};
    CHECK(replay(st, item, {}, counts) == 1);
    const auto& q = st.sessions().at("two").queue;
    REQUIRE(q.size() == 1);
    CHECK(q[0].q == qos::exactly_once);
    CHECK(q[0].retain);                // Retain As Published on one of the two
    auto ids = q[0].subscription_ids;  // in the order of the filters
    std::sort(ids.begin(), ids.end());
    CHECK(ids == std::vector<std::uint32_t>{1, 2});
    CHECK(st.sessions().at("low").queue.empty());  // QoS 0 is not queued by default...
    CHECK(st.sessions().at("shared").queue.empty());
    CHECK(st.sessions().at("other").queue.empty());
    CHECK(st.applied_from(2) == 9);
    CHECK(replay(st, {2, 10, wall, make_msg("a/b", "y", qos::exactly_once), {}, {}}, {false, true},
                 counts) == 2);  // ...but with queue_qos0_messages
    CHECK(st.sessions().at("low").queue.size() == 1);
    CHECK(st.applied_from(2) == 10);
    // No session matches: nothing queued, no message kept, the item counts as taken.
    CHECK(replay(st, {2, 11, wall, make_msg("z", "n", qos::exactly_once), {}, {}}, {}, counts) ==
          0);
    CHECK(st.applied_from(2) == 11);
    CHECK(st.messages().size() == 2);
    CHECK(counts.queued == 3);
    CHECK(counts.queue_full == 0);
    // max_queued_messages 2: "two" has 2 queued and gets no more (counted), "low" has 1.
    replay_rules bounded{false, true, 2};
    CHECK(replay(st, {2, 12, wall, make_msg("a/b", "z", qos::exactly_once), {}, {}}, bounded,
                 counts) == 1);
    CHECK(st.sessions().at("two").queue.size() == 2);
    CHECK(st.sessions().at("low").queue.size() == 2);
    CHECK(counts.queue_full == 1);
    CHECK(st.applied_from(2) == 12);
}

TEST_CASE("store shards: a replay skips the No Local subscriptions of the item's publisher") {
    // "s1-x" belongs on shard 1 but had a session on shard 0 (kept from threads 1, or a
    // bridge's or MQTT-SN client's id): it published there, its session there ended, and its
    // next one, on shard 1, subscribed with No Local before shard 1 took the item. The
    // running engine skips a publisher's No Local subscriptions (MQTT-3.8.3-3); so does a
    // replay, by the client id the outbox item keeps.
    state s0;
    REQUIRE(s0.apply(header_record{format_version, wall}));
    REQUIRE(s0.apply(message_record{1, wall, make_msg("a/b", "mine", qos::exactly_once)}));
    REQUIRE(s0.apply(outbox_add_record{1, 1, {1}, {}, {}, "s1-x"}));
    REQUIRE(s0.apply(message_record{2, wall, make_msg("a/b", "old", qos::exactly_once)}));
    REQUIRE(s0.apply(outbox_add_record{2, 2, {1}, {}, {}}));  // written before publishers were
    // The publisher survives the store's bytes and a snapshot.
    s0 = load_bytes(encode_all_records(s0.snapshot(wall))).st;
    CHECK(s0.outbox().at(1).publisher == "s1-x");
    CHECK(s0.outbox().at(2).publisher.empty());
    state s1;
    const mqtt::protocol::subscription_options no_local{qos::exactly_once, true, false, {}};
    for (const char* c : {"s1-x", "s1-y", "s1-z"}) REQUIRE(s1.apply(session_record{c, 60}));
    REQUIRE(s1.apply(subscribe_record{"s1-x", "a/#", no_local, 1}));
    REQUIRE(s1.apply(subscribe_record{"s1-y", "a/#", no_local, 2}));  // not the publisher
    // The publisher's session with a No Local subscription and one without: the other
    // one's delivery only (its QoS and Subscription Identifier).
    REQUIRE(s1.apply(subscribe_record{"s1-z", "a/#", no_local, 3}));
    REQUIRE(s1.apply(subscribe_record{"s1-z", "a/+", {qos::at_least_once, false, false, {}}, 4}));
    const auto pending = unapplied({&s0, &s1}, 1);
    REQUIRE(pending.size() == 2);
    CHECK(pending[0].publisher == "s1-x");
    CHECK(pending[1].publisher.empty());
    replay_counts counts;
    CHECK(replay(s1, pending[0], {}, counts) == 2);
    CHECK(payloads(s1, "s1-x").empty());
    CHECK(payloads(s1, "s1-y") == std::vector<std::string>{"mine"});
    CHECK(payloads(s1, "s1-z") == std::vector<std::string>{"mine"});
    auto z = pending[0];
    z.seq = 3;
    z.publisher = "s1-z";
    CHECK(replay(s1, z, {}, counts) == 3);
    CHECK(payloads(s1, "s1-x") == std::vector<std::string>{"mine"});
    const auto& zq = s1.sessions().at("s1-z").queue;
    REQUIRE(zq.size() == 2);
    CHECK(zq.back().q == qos::at_least_once);
    CHECK(zq.back().subscription_ids == std::vector<std::uint32_t>{4});
    // An item that does not say who published it goes to every subscription, as before.
    auto old = pending[1];
    old.seq = 4;
    CHECK(replay(s1, old, {}, counts) == 3);
    CHECK(payloads(s1, "s1-x") == std::vector<std::string>{"mine", "old"});
    CHECK(counts.queued == 8);
}

TEST_CASE("store shards: a replay applies max_queued_bytes and the read check") {
    // Each session subscribes to a/#; "tight" holds 11 bytes (a/x, "12345678"); the bound is
    // 16 bytes, as the engine's enqueue counts them (topic and payload).
    replay_counts counts;
    state st;
    for (const char* c : {"roomy", "tight", "denied"}) {
        REQUIRE(st.apply(session_record{c, 60}));
        REQUIRE(st.apply(subscribe_record{c, "a/#", {qos::exactly_once, false, false, {}}, 0}));
        REQUIRE(st.apply(
            subscribe_record{c, "$share/g/a/#", {qos::exactly_once, false, false, {}}, 0}));
    }
    REQUIRE(st.apply(message_record{1, wall, make_msg("a/x", "12345678", qos::exactly_once)}));
    REQUIRE(st.apply(queue_push_record{"tight", 1, qos::exactly_once, false, {}}));
    replay_rules rules;
    rules.max_queued_bytes = 16;
    rules.may_read = [](std::string_view id, const stored_session&, std::string_view) {
        return id != "denied";
    };
    // 6 bytes: "tight" would hold 17, "denied" may not read it.
    CHECK(replay(st, {2, 1, wall, make_msg("a/b", "xyz", qos::exactly_once), {}, {}}, rules,
                 counts) == 1);
    CHECK(payloads(st, "roomy") == std::vector<std::string>{"xyz"});
    CHECK(payloads(st, "tight") == std::vector<std::string>{"12345678"});
    CHECK(st.sessions().at("denied").queue.empty());
    CHECK(counts.queue_full == 1);
    CHECK(counts.denied == 1);
    // 5 bytes: "tight" holds exactly 16 then, which the bound allows.
    CHECK(replay(st, {2, 2, wall, make_msg("a/b", "xy", qos::exactly_once), {}, {}}, rules,
                 counts) == 2);
    CHECK(st.sessions().at("tight").queued_bytes == 16);
    CHECK(counts.queue_full == 1);
    CHECK(counts.denied == 2);
    // A share group's delivery (an outbox_share item) to a member that may not read it, and
    // to one that is full: neither queued, each counted; the item is taken all the same.
    CHECK(replay(st,
                 {2, 3, wall, make_msg("a/b", "s", qos::exactly_once), "$share/g/a/#", "denied"},
                 rules, counts) == 0);
    CHECK(counts.denied == 3);
    CHECK(replay(st, {2, 4, wall, make_msg("a/b", "s", qos::exactly_once), "$share/g/a/#", "tight"},
                 rules, counts) == 0);
    CHECK(counts.queue_full == 2);
    CHECK(replay(st, {2, 5, wall, make_msg("a/b", "s", qos::exactly_once), "$share/g/a/#", "roomy"},
                 rules, counts) == 1);
    CHECK(payloads(st, "roomy") == std::vector<std::string>{"xyz", "xy", "s"});
    CHECK(st.sessions().at("denied").queue.empty());
    CHECK(st.applied_from(2) == 5);
    CHECK(counts.queued == 4);
    // What a replay queued counts in the session's bytes when the store is read back.
    const auto back = load_bytes(encode_all_records(st.snapshot(wall))).st;
    CHECK(back.sessions().at("roomy").queued_bytes == 6 + 5 + 4);
}

TEST_CASE("store shards: a replay checks the acl_file with the stored user name") {
    const auto parsed = mqtt::broker::acl_file::parse(
        "topic read public/#\n"
        "user alice\n"
        "topic read a/#\n"
        "topic deny a/secret\n"
        "user bob\n"
        "topic read b/#\n"
        "pattern read own/%c/#\n"
        "pattern read users/%u/#\n",
        "acl");
    REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
    const auto& acl = *parsed.value;
    replay_rules rules;
    std::string scratch;
    rules.may_read = [&](std::string_view id, const stored_session& s, std::string_view topic) {
        return mqtt::broker::stored_may_read(acl, id, s.identified,
                                             s.username ? &*s.username : nullptr, topic, scratch);
    };
    state st;
    // alice's and an anonymous client's sessions, and one stored before user names were.
    REQUIRE(st.apply(session_record{"alice-c", 60, true, "alice"}));
    REQUIRE(st.apply(session_record{"anon-c", 60, true, std::nullopt}));
    REQUIRE(st.apply(session_record{"old-c", 60, false, std::nullopt}));
    for (const char* c : {"alice-c", "anon-c", "old-c"}) {
        REQUIRE(st.apply(subscribe_record{c, "#", {qos::exactly_once, false, false, {}}, 0}));
    }
    replay_counts counts;
    std::uint64_t seq = 0;
    const auto route = [&](const std::string& topic) {
        return replay(st, {1, ++seq, wall, make_msg(topic, topic, qos::exactly_once), {}, {}},
                      rules, counts);
    };
    CHECK(route("a/b") == 1);            // alice's own rule
    CHECK(route("a/secret") == 0);       // alice's deny
    CHECK(route("public/x") == 1);       // the anonymous block, not alice's or the unknown one's
    CHECK(route("users/alice/x") == 1);  // %u: alice's name
    CHECK(route("own/old-c/x") == 1);    // %c: a pattern that needs no user name
    CHECK(route("own/alice-c/x") == 1);
    CHECK(route("b/x") == 0);  // bob's: none of these is bob
    CHECK(payloads(st, "alice-c") ==
          std::vector<std::string>{"a/b", "users/alice/x", "own/alice-c/x"});
    CHECK(payloads(st, "anon-c") == std::vector<std::string>{"public/x"});
    CHECK(payloads(st, "old-c") == std::vector<std::string>{"own/old-c/x"});
    CHECK(counts.queued == 5);
    CHECK(counts.denied == 7 * 3 - 5);
}

TEST_CASE("store shards: a replay checks the acl_file of the listener the client came through") {
    // Two listeners with acl_files of their own (per_listener_settings), slots 1 and 2, and
    // the broker's (slot 0), which a third listener's clients have. alice may read a/#
    // through listener 1, not through listener 2.
    const auto acl = [](const char* text) {
        auto parsed = mqtt::broker::acl_file::parse(text, "acl");
        REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
        return std::make_shared<const mqtt::broker::acl_file>(std::move(*parsed.value));
    };
    replay_acls acls;
    acls.by_slot = {acl("user alice\ntopic read a/#\ntopic read b/#\n"),
                    acl("user alice\ntopic read a/#\ntopic read c/#\n"),
                    acl("user alice\ntopic read b/#\ntopic read c/#\n")};
    acls.listeners = {
        {}, {"mqtt 1883 0.0.0.0", 1}, {"mqtt 1884 0.0.0.0", 2}, {"mqtt 1885 0.0.0.0", 0}};
    acls.exempt = {"bridge-c"};
    replay_rules rules;
    rules.may_read = read_check_of(acls);
    REQUIRE(rules.may_read);
    state st;
    REQUIRE(st.apply(session_record{"on-1", 60, true, "alice", "mqtt 1883 0.0.0.0"}));
    REQUIRE(st.apply(session_record{"on-2", 60, true, "alice", "mqtt 1884 0.0.0.0"}));
    // Through a listener without a policy of its own: the broker's acl_file.
    REQUIRE(st.apply(session_record{"on-3", 60, true, "alice", "mqtt 1885 0.0.0.0"}));
    // A store written before listeners were kept: the broker's acl_file, as before.
    REQUIRE(st.apply(session_record{"unnamed", 60, true, "alice"}));
    // A listener no longer in the configuration: every acl_file must allow it.
    REQUIRE(st.apply(session_record{"gone", 60, true, "alice", "mqtt 1999 0.0.0.0"}));
    // A bridge's local session: no acl_file applies to it, wherever it came from.
    REQUIRE(st.apply(session_record{"bridge-c", 60, true, std::nullopt, "mqtt 1884 0.0.0.0"}));
    for (const char* c : {"on-1", "on-2", "on-3", "unnamed", "gone", "bridge-c"}) {
        REQUIRE(st.apply(subscribe_record{c, "#", {qos::exactly_once, false, false, {}}, 0}));
    }
    replay_counts counts;
    std::uint64_t seq = 0;
    for (const char* topic : {"a/x", "b/x", "c/x", "d/x"}) {
        replay(st, {1, ++seq, wall, make_msg(topic, topic, qos::exactly_once), {}, {}}, rules,
               counts);
    }
    CHECK(payloads(st, "on-1") == std::vector<std::string>{"a/x", "c/x"});
    CHECK(payloads(st, "on-2") == std::vector<std::string>{"b/x", "c/x"});
    CHECK(payloads(st, "on-3") == std::vector<std::string>{"a/x", "b/x"});
    CHECK(payloads(st, "unnamed") == std::vector<std::string>{"a/x", "b/x"});
    CHECK(payloads(st, "gone").empty());  // a/x, b/x and c/x each refused by one of them
    CHECK(payloads(st, "bridge-c") == std::vector<std::string>{"a/x", "b/x", "c/x", "d/x"});
    CHECK(counts.denied == 6 * 4 - 12);
    // Two listeners the key cannot tell apart: as gone.
    acls.listeners = {{}, {"mqtt 1883 0.0.0.0", 1}, {"mqtt 1883 0.0.0.0", 2}};
    const auto alike = read_check_of(acls);
    CHECK(rules.may_read("on-1", st.sessions().at("on-1"), "a/x"));
    CHECK_FALSE(alike("on-1", st.sessions().at("on-1"), "a/x"));  // not in slot 2's
    CHECK_FALSE(alike("on-1", st.sessions().at("on-1"), "c/x"));  // nor in the broker's
    // A slot without an acl_file allows everything; with none anywhere, no check at all.
    acls.listeners = {{}, {"mqtt 1883 0.0.0.0", 1}, {"mqtt 1884 0.0.0.0", 2}};
    acls.by_slot[2] = nullptr;
    CHECK(read_check_of(acls)("on-2", st.sessions().at("on-2"), "d/x"));
    CHECK_FALSE(read_check_of(acls)("gone", st.sessions().at("gone"), "c/x"));
    CHECK_FALSE(read_check_of({{nullptr, nullptr}, {{}, {"mqtt 1 h", 1}}, {}}));
}

TEST_CASE(
    "store shards: a session record names its client's listener, a restored session "
    "gets its slot") {
    // Listener 1 without a policy of its own (slot 0), listener 2 with one (slot 2).
    const mqtt::store::listener_keys keys{
        {}, {"mqtt 1883 0.0.0.0", 0}, {"mqtt-sn 1884 0.0.0.0", 2}};
    recorder rec{state{}};
    rec.set_clock([] { return clock_pair{mqtt::broker::clock::now(), wall}; });
    rec.set_listeners(keys);
    mqtt::broker::durable_session a;
    a.client_id = "a";
    a.expiry_interval = 3600;
    a.security_slot = 2;
    a.listener = 2;
    mqtt::broker::durable_session b = a;
    b.client_id = "b";
    b.security_slot = 0;  // the broker's policy, through listener 1: still named
    b.listener = 1;
    mqtt::broker::durable_session c = a;
    c.client_id = "c";
    c.security_slot = 7;  // an in-process bridge: no listener
    c.listener = 0;
    for (const auto* s : {&a, &b, &c}) rec.session_online(*s);
    const auto& ss = rec.mirror().sessions();
    CHECK(ss.at("a").listener == std::optional<std::string>{"mqtt-sn 1884 0.0.0.0"});
    CHECK(ss.at("b").listener == std::optional<std::string>{"mqtt 1883 0.0.0.0"});
    CHECK_FALSE(ss.at("c").listener.has_value());
    std::vector<std::uint8_t> bytes;
    rec.take_pending(bytes);
    auto l = load_bytes(bytes);
    CHECK(l.st.sessions().at("a").listener == ss.at("a").listener);
    CHECK(l.st.sessions().at("b").listener == ss.at("b").listener);
    // Restored: the listener's number and slot under the configuration restored with; a
    // listener that has a policy now and had none when the record was written gets its
    // slot; with the listener gone, listener_gone and the broker's slot (0).
    struct expect {
        mqtt::store::listener_keys with;
        std::uint32_t a_listener, a_slot, b_listener, b_slot;
    };
    constexpr auto gone = mqtt::broker::durable_session::listener_gone;
    for (const auto& x : std::vector<expect>{
             {keys, 2, 2, 1, 0},
             {{{}, {"mqtt 1883 0.0.0.0", 1}}, gone, 0, 1, 1},
             {{{}, {"mqtt-sn 1884 0.0.0.0", 0}, {}, {"mqtt 1883 0.0.0.0", 3}}, 1, 0, 3, 3}}) {
        mqtt::broker::engine e;
        auto st = l.st;
        restore(e, st, clock_pair{mqtt::broker::clock::now(), wall}, true, x.with);
        REQUIRE(e.find_session("a") != nullptr);
        REQUIRE(e.find_session("b") != nullptr);
        CHECK(e.find_session("a")->listener == x.a_listener);
        CHECK(e.find_session("a")->security_slot == x.a_slot);
        CHECK(e.find_session("b")->listener == x.b_listener);
        CHECK(e.find_session("b")->security_slot == x.b_slot);
        CHECK(e.find_session("c")->listener == 0);
        CHECK(e.find_session("c")->security_slot == 0);
    }
}

TEST_CASE(
    "store shards: a restored session whose listener is gone receives only what every "
    "policy's acl_file allows, until its client comes back") {
    // The broker's policy (slot 0) and two listeners' (slots 1, 2), as in the replay's
    // case above: alice may read a/# through slots 0 and 1, b/# through 0 and 2, c/# through
    // 1 and 2; d/# through all three, and write it through 0 and 1.
    const auto policy = [](const char* text) {
        auto parsed = mqtt::broker::acl_file::parse(text, "acl");
        REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
        auto p = std::make_shared<mqtt::broker::security_policy>();
        p->acl = std::make_shared<const mqtt::broker::acl_file>(std::move(*parsed.value));
        return p;
    };
    const auto make_engine = [&](mqtt::broker::engine& e) {
        e.set_security(policy("user alice\ntopic read a/#\ntopic read b/#\ntopic d/#\n"));
        e.set_security(policy("user alice\ntopic read a/#\ntopic read c/#\ntopic d/#\n"), 1);
        e.set_security(policy("user alice\ntopic read b/#\ntopic read c/#\ntopic read d/#\n"), 2);
    };
    state st;
    REQUIRE(st.apply(session_record{"gone", 60, true, "alice", "mqtt 1999 0.0.0.0"}));
    REQUIRE(st.apply(session_record{"on-1", 60, true, "alice", "mqtt 1883 0.0.0.0"}));
    const mqtt::store::listener_keys keys{{}, {"mqtt 1883 0.0.0.0", 1}, {"mqtt 1884 0.0.0.0", 2}};
    mqtt::broker::engine e;
    make_engine(e);
    restore(e, st, clock_pair{mqtt::broker::clock::now(), wall}, true, keys);
    auto* g = e.find_session("gone");
    auto* one = e.find_session("on-1");
    REQUIRE(g != nullptr);
    REQUIRE(one != nullptr);
    CHECK(g->listener == mqtt::broker::durable_session::listener_gone);
    // The broker's slot alone would let it read a/x and b/x; every slot: only d/x.
    for (const char* t : {"a/x", "b/x", "c/x"}) CHECK_FALSE(e.may_receive(*g, t));
    CHECK(e.may_receive(*g, "d/x"));
    // Its Will: slots 0 and 1 let alice write d/#, slot 2 does not.
    CHECK_FALSE(e.may_publish(*g, "d/x"));
    CHECK(e.may_publish(*one, "d/x"));
    // Its listener is there: that slot's alone.
    CHECK(e.may_receive(*one, "a/x"));
    CHECK(e.may_receive(*one, "c/x"));
    CHECK_FALSE(e.may_receive(*one, "b/x"));
    // A slot without an acl_file allows everything: the others still decide.
    e.set_security(std::make_shared<mqtt::broker::security_policy>(), 2);
    CHECK(e.may_receive(*g, "a/x"));
    CHECK_FALSE(e.may_receive(*g, "b/x"));  // not in slot 1's
    // Its client comes back through listener 2 (identify, at its CONNECT): that
    // listener's policy from then on.
    make_engine(e);
    mqtt::broker::durable_session back;
    back.client_id = "gone";
    back.listener = mqtt::broker::durable_session::listener_gone;
    CHECK_FALSE(e.may_receive(back, "b/x"));  // anonymous: no rules for it here
    e.identify(back, std::string{"alice"}, 2, 2);
    CHECK(back.listener == 2);
    CHECK(e.may_receive(back, "b/x"));
    CHECK_FALSE(e.may_receive(back, "a/x"));
}

TEST_CASE(
    "store shards: a restored anonymous session whose listener is gone gets the anonymous "
    "rules of every listener's acl_file, one whose user name is not known the patterns only") {
    // per_listener_settings as usual: no broker-wide acl_file (slot 0), two listeners'
    // files with rules for anonymous clients (before any `user` line) and a pattern.
    const auto policy = [](const char* text) {
        auto parsed = mqtt::broker::acl_file::parse(text, "acl");
        REQUIRE_MESSAGE(parsed.value.has_value(), parsed.error);
        auto p = std::make_shared<mqtt::broker::security_policy>();
        p->acl = std::make_shared<const mqtt::broker::acl_file>(std::move(*parsed.value));
        return p;
    };
    mqtt::broker::engine e;
    e.set_security(policy("topic read e/#\ntopic read f/#\npattern read p/%c\n"), 1);
    e.set_security(policy("topic read e/#\npattern read p/%c\n"), 2);
    state st;
    // Identified without a user name (an anonymous client), and a record that kept none.
    REQUIRE(st.apply(session_record{"anon", 60, true, std::nullopt, "mqtt 1999 0.0.0.0"}));
    REQUIRE(st.apply(session_record{"old", 60, false, std::nullopt, "mqtt 1999 0.0.0.0"}));
    const mqtt::store::listener_keys keys{{}, {"mqtt 1883 0.0.0.0", 1}, {"mqtt 1884 0.0.0.0", 2}};
    restore(e, st, clock_pair{mqtt::broker::clock::now(), wall}, true, keys);
    const auto* anon = e.find_session("anon");
    const auto* old = e.find_session("old");
    REQUIRE(anon != nullptr);
    REQUIRE(old != nullptr);
    CHECK(anon->listener == mqtt::broker::durable_session::listener_gone);
    CHECK(old->listener == mqtt::broker::durable_session::listener_gone_unnamed);
    CHECK(e.may_receive(*anon, "e/x"));        // both files' anonymous rules
    CHECK_FALSE(e.may_receive(*anon, "f/x"));  // slot 2's do not have it
    CHECK_FALSE(e.may_receive(*old, "e/x"));   // no block: the anonymous rules do not apply
    CHECK(e.may_receive(*old, "p/old"));       // the patterns do
}

namespace {

// A member of $share/g/a/# (QoS 2, Subscription Identifier 5) in `st`.
void add_member(state& st, const std::string& c) {
    REQUIRE(st.apply(session_record{c, 3600}));
    REQUIRE(
        st.apply(subscribe_record{c, "$share/g/a/#", {qos::exactly_once, false, false, {}}, 5}));
}

std::size_t home_of_g(std::string_view filter) {
    return filter == "$share/g/a/#" ? 1 : 0;
}

}  // namespace

TEST_CASE("store shards: a replay gives a share group's message to one member, once") {
    replay_counts counts;
    // Store 0's item 3 (a QoS 2 message to a/b) was not taken by store 1, the home of
    // $share/g/a/#.
    auto s0 = load_bytes(encode_all_records(publisher_log(3))).st;
    auto s1 = subscriber_store(2);
    auto pending = unapplied({&s0, &s1}, 1);
    REQUIRE(pending.size() == 1);
    bool sent = false;
    SUBCASE("a member in the home's store, and one in another: the home's") {
        add_member(s1, "s1-m");
        add_member(s0, "s0-m");
        CHECK(replay_shared({&s0, &s1}, 1, pending[0], {}, home_of_g, sent, counts) == 1);
        CHECK_FALSE(sent);
        CHECK(replay(s1, pending[0], {}, counts) == 1);  // s1-sub's ordinary subscription
        CHECK(payloads(s1, "s1-m") == std::vector<std::string>{"m3"});
        CHECK(s1.sessions().at("s1-m").queue.back().subscription_ids ==
              std::vector<std::uint32_t>{5});
        CHECK(s0.sessions().at("s0-m").queue.empty());
        CHECK(unapplied({&s0, &s1}, 0).empty());
        CHECK(unapplied({&s0, &s1}, 1).empty());
    }
    SUBCASE("a member in another store only: through the home's outbox, then queued there") {
        add_member(s0, "s0-m");
        CHECK(replay_shared({&s0, &s1}, 1, pending[0], {}, home_of_g, sent, counts) == 1);
        CHECK(sent);
        CHECK(replay(s1, pending[0], {}, counts) == 1);
        REQUIRE(s1.outbox().size() == 1);
        const auto& [seq, o] = *s1.outbox().begin();
        CHECK(o.dests == std::vector<std::uint16_t>{0});
        CHECK(o.client_id == "s0-m");
        CHECK(o.group == "$share/g/a/#");
        // Written and read back (record type outbox_share), as a compaction does.
        auto again1 = load_bytes(encode_all_records(s1.snapshot(wall))).st;
        CHECK(again1.outbox() == s1.outbox());
        auto to0 = unapplied({&s0, &again1}, 0);
        REQUIRE(to0.size() == 1);
        CHECK(to0[0].seq == seq);
        CHECK(to0[0].client_id == "s0-m");
        CHECK(replay(s0, to0[0], {}, counts) == 1);
        CHECK(payloads(s0, "s0-m") == std::vector<std::string>{"m3"});
        CHECK(s0.sessions().at("s0-m").queue.back().q == qos::exactly_once);
        CHECK(s0.applied_from(1) == seq);
        CHECK(unapplied({&s0, &again1}, 0).empty());  // once
    }
    SUBCASE("a member that left before the home's item was routed: nobody") {
        add_member(s0, "s0-m");
        CHECK(replay_shared({&s0, &s1}, 1, pending[0], {}, home_of_g, sent, counts) == 1);
        REQUIRE(s0.apply(unsubscribe_record{"s0-m", "$share/g/a/#"}));
        const auto to0 = unapplied({&s0, &s1}, 0);
        REQUIRE(to0.size() == 1);
        CHECK(replay(s0, to0[0], {}, counts) == 0);
        CHECK(s0.sessions().at("s0-m").queue.empty());
        CHECK(s0.applied_from(1) == to0[0].seq);
    }
    SUBCASE("a group homed on another store is not served here") {
        add_member(s1, "s1-m");
        const auto home0 = [](std::string_view) -> std::size_t { return 0; };
        CHECK(replay_shared({&s0, &s1}, 1, pending[0], {}, home0, sent, counts) == 0);
        CHECK(s1.sessions().at("s1-m").queue.empty());
    }
    SUBCASE("the home's outbox numbers go past what any store took from it") {
        add_member(s0, "s0-m");
        REQUIRE(s0.apply(inbox_applied_record{1, 40}));
        CHECK(replay_shared({&s0, &s1}, 1, pending[0], {}, home_of_g, sent, counts) == 1);
        CHECK(s1.outbox().begin()->first == 41);
    }
}

TEST_CASE("store shards: a replay spreads a share group's messages over its members") {
    // Store 0's items 1 to 3 (QoS 2 messages to a/b) were not taken by store 1, the home of
    // $share/g/a/#: with the members all offline at start, each goes to the member with
    // the fewest messages queued, the home's own first when they have as many.
    auto s0 = load_bytes(encode_all_records(publisher_log(3))).st;
    state s1;
    replay_counts counts;
    bool sent = false;
    const auto start = [&](replay_rules rules) {
        for (int pass = 0; pass < 2; ++pass) {
            for (std::size_t d = 0; d < 2; ++d) {
                auto& dest = d == 0 ? s0 : s1;
                for (const auto& item : unapplied({&s0, &s1}, d)) {
                    replay_shared({&s0, &s1}, d, item, rules, home_of_g, sent, counts);
                    replay(dest, item, rules, counts);
                }
            }
        }
    };
    SUBCASE("two members in the home's store: in turn") {
        add_member(s1, "a");
        add_member(s1, "b");
        start({});
        CHECK(payloads(s1, "a") == std::vector<std::string>{"m1", "m3"});
        CHECK(payloads(s1, "b") == std::vector<std::string>{"m2"});
        CHECK(counts.queued == 3);
    }
    SUBCASE("one here, one in another store: the other's through the outbox counts at once") {
        add_member(s1, "here");
        add_member(s0, "there");
        start({});
        CHECK(sent);
        CHECK(payloads(s1, "here") == std::vector<std::string>{"m1", "m3"});
        CHECK(payloads(s0, "there") == std::vector<std::string>{"m2"});
        CHECK(counts.in_outboxes.at("there").messages == 0);  // routed into its queue since
    }
    SUBCASE("max_queued_messages: a full member is passed over, all full is nobody") {
        add_member(s1, "a");
        add_member(s1, "b");
        REQUIRE(s1.apply(message_record{900, wall, make_msg("a/x", "old", qos::exactly_once)}));
        REQUIRE(s1.apply(queue_push_record{"a", 900, qos::exactly_once, false, {}}));
        start({false, false, 2});
        // m1 to b (0 queued against 1), m2 to a (1 each: the first by client id), then a
        // is full and m3 goes to b.
        CHECK(payloads(s1, "b") == std::vector<std::string>{"m1", "m3"});
        CHECK(payloads(s1, "a") == std::vector<std::string>{"old", "m2"});
        CHECK(counts.queue_full == 0);
        // A fourth message finds both full.
        bool more = false;
        const pending_item fourth{0, 4, wall, make_msg("a/b", "m4", qos::exactly_once), {}, {}};
        CHECK(replay_shared({&s0, &s1}, 1, fourth, {false, false, 2}, home_of_g, more, counts) ==
              0);
        CHECK(counts.queue_full == 1);
    }
    SUBCASE("max_queued_bytes: a member the message would take past it is passed over") {
        // Each message costs 5 bytes (topic a/b, payload mN); a holds 6 (a/x, "old").
        add_member(s1, "a");
        add_member(s1, "b");
        REQUIRE(s1.apply(message_record{900, wall, make_msg("a/x", "old", qos::exactly_once)}));
        REQUIRE(s1.apply(queue_push_record{"a", 900, qos::exactly_once, false, {}}));
        replay_rules rules;
        rules.max_queued_bytes = 10;
        start(rules);
        // m1 to b (0 queued against 1); m2: 1 each, a first by client id, but 6 + 5 > 10, so
        // b (5 + 5 = 10, as the engine's bound allows); m3: both would pass 10, nobody.
        CHECK(payloads(s1, "a") == std::vector<std::string>{"old"});
        CHECK(payloads(s1, "b") == std::vector<std::string>{"m1", "m2"});
        CHECK(s1.sessions().at("b").queued_bytes == 10);
        CHECK(counts.queue_full == 1);
        CHECK(counts.queued == 2);
    }
    SUBCASE("max_queued_bytes counts what is on its way to a member through an outbox") {
        add_member(s1, "here");
        add_member(s0, "there");
        replay_rules rules;
        rules.max_queued_bytes = 5;  // one message each
        start(rules);
        CHECK(payloads(s1, "here") == std::vector<std::string>{"m1"});
        CHECK(payloads(s0, "there") == std::vector<std::string>{"m2"});  // on its way for m3
        CHECK(counts.queue_full == 1);
        CHECK(counts.in_outboxes.at("there").messages == 0);
        CHECK(counts.in_outboxes.at("there").bytes == 0);
    }
    SUBCASE("a member that may not read the topic is passed over; none that may, nobody") {
        add_member(s1, "a");
        add_member(s1, "b");
        add_member(s0, "c");
        std::vector<std::string> asked;
        replay_rules rules;
        rules.may_read = [&](std::string_view id, const stored_session&, std::string_view topic) {
            asked.emplace_back(std::string{id} + " " + std::string{topic});
            return id != "a" && id != "c";
        };
        start(rules);
        CHECK(payloads(s1, "a").empty());
        CHECK(payloads(s1, "b") == std::vector<std::string>{"m1", "m2", "m3"});
        CHECK(s0.sessions().at("c").queue.empty());
        CHECK_FALSE(sent);
        CHECK(counts.denied == 0);  // the group was served each time
        CHECK(std::count(asked.begin(), asked.end(), "a a/b") == 3);
        // Nobody in the group may read a fourth one: nobody gets it, counted as denied.
        replay_rules none;
        none.may_read = [](std::string_view, const stored_session&, std::string_view) {
            return false;
        };
        bool more = false;
        const pending_item fourth{0, 4, wall, make_msg("a/b", "m4", qos::exactly_once), {}, {}};
        CHECK(replay_shared({&s0, &s1}, 1, fourth, none, home_of_g, more, counts) == 0);
        CHECK(counts.denied == 1);
        CHECK(counts.queue_full == 0);
    }
}

TEST_CASE("store shards: a torn group keeps neither the QoS 2 packet id nor its outbox item") {
    const auto rs = publisher_log(2);
    const auto full = encode_all_records(rs);
    // Offsets: the last group is the last four records.
    std::size_t start = 0;
    for (std::size_t i = 0; i + 4 < rs.size(); ++i) start += encode_record(rs[i]).size();
    const auto whole = load_bytes(full);
    CHECK(whole.report.clean());
    CHECK(whole.st.outbox().size() == 2);
    for (std::size_t cut = start; cut < full.size(); ++cut) {
        CAPTURE(cut);
        const bytes_t torn(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
        const auto l = load_bytes(torn);
        CHECK(l.st.outbox().size() == 1);
        CHECK(l.st.outbox_last() == 1);
        CHECK(l.st.sessions().at("s0-pub").qos2_in == std::vector<std::uint16_t>{1});
        // Store 1 never got item 2 either: the sender sends an item only once its group is
        // on disk. The publisher's resend is routed anew; nothing to replay for it.
        const auto s1 = subscriber_store(1);
        CHECK(unapplied({&l.st, &s1}, 1).empty());
    }
    // A corrupt outbox record in the middle of the file (not a crash: damage) is skipped,
    // as any corrupt record; the rest of its group counts.
    auto bad = full;
    const std::size_t outbox_at =
        start + encode_record(rs[rs.size() - 4]).size() + encode_record(rs[rs.size() - 3]).size();
    bad[outbox_at + frame_header_size + 3] ^= 0x40;
    const auto l = load_bytes(bad);
    CHECK_FALSE(l.report.clean());
    CHECK(l.st.outbox().size() == 1);
    CHECK(l.st.sessions().at("s0-pub").qos2_in == std::vector<std::uint16_t>{1, 2});
}

TEST_CASE("store shards: redistribution at start with outbox items outstanding") {
    replay_counts counts;
    auto s0 = load_bytes(encode_all_records(publisher_log(3))).st;
    auto s1 = subscriber_store(1);
    // Store 1 has its own outbox too (an item to shard 0, taken by nobody yet).
    REQUIRE(s1.apply(message_record{500, wall, make_msg("c", "from1", qos::exactly_once)}));
    REQUIRE(s1.apply(outbox_add_record{8, 500, {0}, {}, {}}));
    REQUIRE(s0.apply(session_record{"s0-c", 60}));
    REQUIRE(s0.apply(subscribe_record{"s0-c", "c", {qos::exactly_once, false, false, {}}, 0}));
    // Start-up: settle what is confirmed, replay what is not, then redistribute.
    settle_outboxes({&s0, &s1});
    for (std::size_t d = 0; d < 2; ++d) {
        auto& dest = d == 0 ? s0 : s1;
        for (const auto& item : unapplied({&s0, &s1}, d)) replay(dest, item, {}, counts);
    }
    CHECK(payloads(s1, "s1-sub") == std::vector<std::string>{"m1", "m2", "m3"});
    CHECK(payloads(s0, "s0-c") == std::vector<std::string>{"from1"});
    SUBCASE("threads 2 -> 1") {
        std::size_t moved = 0;
        auto out = redistribute({&s0, &s1}, 1, home_by_name, wall, moved);
        REQUIRE(out.size() == 1);
        CHECK(moved == 1);
        CHECK(payloads(out[0], "s1-sub") == std::vector<std::string>{"m1", "m2", "m3"});
        CHECK(payloads(out[0], "s0-c") == std::vector<std::string>{"from1"});
        // Shard 1 is gone: no outbox item for it. What store 0 took from store 1 stays
        // said: a start that stops before removing store 1's file reads that file again,
        // whose item 8 nobody confirmed to it; routed again, s0-c would get "from1" twice.
        CHECK(out[0].outbox().empty());
        CHECK(out[0].applied_from(1) == 8);
        CHECK(out[0].outbox_last() == 3);
        CHECK(unapplied({&out[0]}, 0).empty());
        auto old1 = subscriber_store(1);
        REQUIRE(old1.apply(message_record{500, wall, make_msg("c", "from1", qos::exactly_once)}));
        REQUIRE(old1.apply(outbox_add_record{8, 500, {0}, {}, {}}));
        CHECK(unapplied({&out[0], &old1}, 0).empty());
        // And the start after that one (its stores redistributed again) keeps saying so.
        auto again = redistribute({&out[0], &old1}, 1, home_by_name, wall, moved);
        CHECK(again[0].applied_from(1) == 8);
    }
    SUBCASE("threads 2 -> 3") {
        std::size_t moved = 0;
        auto out = redistribute({&s0, &s1}, 3, home_by_name, wall, moved);
        REQUIRE(out.size() == 3);
        // Every store says it has taken what was replayed, so that a start that stops half
        // way (an old file of store 0 read again with a new one of store 1) replays nothing
        // twice; the outbox items stay until a later start confirms them.
        for (std::size_t j = 0; j < 3; ++j) {
            CAPTURE(j);
            if (j != 0) CHECK(out[j].applied_from(0) == 3);
            if (j != 1) CHECK(out[j].applied_from(1) == 8);
        }
        CHECK(out[0].outbox().size() == 2);  // items 2 and 3 of store 0, for shard 1
        CHECK(out[1].outbox().size() == 1);
        CHECK(out[0].outbox_last() == 3);
        CHECK(out[1].outbox_last() == 8);
        for (std::size_t d = 0; d < 3; ++d) {
            CHECK(unapplied({&out[0], &out[1], &out[2]}, d).empty());
        }
        // An old store 1 read again with the new store 0: nothing twice either.
        auto old1 = subscriber_store(1);
        CHECK(unapplied({&out[0], &old1}, 1).size() == 2);  // replayed into the old copy
        settle_outboxes({&out[0], &out[1], &out[2]});
        CHECK(out[0].outbox().empty());
        CHECK(out[1].outbox().empty());
        CHECK(out[0].messages().size() == 1);  // s0-c's queued message only... on store 0
    }
}
