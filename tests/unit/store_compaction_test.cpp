// Compaction while the broker runs is written a slice at a time (recorder::compaction_step,
// snapshot_cursor) while the state goes on changing between the slices. Whatever the changes
// and wherever they fall, the new file (the slices with the records kept between them) must
// read back, without a rejected record, to the recorder's mirror as it is when the new file
// is complete, and appending the later records to it must keep it so.

#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mqtt/broker/durable_session.hpp"
#include "mqtt/store/record.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/snapshot_cursor.hpp"
#include "mqtt/store/state.hpp"
#include "mqtt/store/store_file.hpp"

using namespace mqtt::store;
using steady = mqtt::broker::clock;
using mqtt::protocol::qos;
using bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::int64_t wall = 1'700'000'000'000;

bytes snapshot_of(const state& st) {
    bytes out;
    for (const auto& r : st.snapshot(wall)) append_record(out, r);
    return out;
}

mqtt::broker::message_ptr make_msg(std::string topic, std::size_t n, bool retain = false) {
    return mqtt::broker::make_message({.topic = topic,
                                       .payload = std::string(n, 'p'),
                                       .qos_level = qos::at_least_once,
                                       .retain = retain,
                                       .props_v5 = {0x00}});
}

// Drives a recorder through its store_hooks as the engine would: persistent sessions
// that come and go, queues that grow and drain, subscriptions, in-flight and QoS 2 state,
// retained messages, Wills.
struct driver {
    std::mt19937 rng;
    recorder& rec;
    std::map<std::string, mqtt::broker::durable_session> sessions;  // live, persistent
    std::map<std::string, std::vector<std::uint16_t>> inflight;     // packet ids in use
    std::vector<mqtt::broker::message_ptr> recent;                  // shared by deliveries
    std::uint64_t n = 0;

    driver(recorder& r, unsigned seed) : rng(seed), rec(r) {}

    std::size_t pick(std::size_t k) { return std::uniform_int_distribution<std::size_t>{0, k - 1}(rng); }
    mqtt::broker::durable_session& some_session() {
        auto it = sessions.begin();
        std::advance(it, static_cast<long>(pick(sessions.size())));
        return it->second;
    }
    mqtt::broker::message_ptr message() {
        if (!recent.empty() && pick(3) == 0) return recent[pick(recent.size())];
        auto m = make_msg("t/" + std::to_string(pick(20)), pick(300));
        recent.push_back(m);
        if (recent.size() > 50) recent.erase(recent.begin());
        return m;
    }

    void op() {
        ++n;
        const auto k = pick(100);
        if (sessions.empty() || k < 4) {
            const std::string id = "c" + std::to_string(pick(12));
            auto& s = sessions[id];
            s.client_id = id;
            s.expiry_interval = 3600;
            rec.session_online(s);
            return;
        }
        auto& s = some_session();
        if (k < 6) {
            rec.session_ended(s);
            inflight.erase(s.client_id);
            sessions.erase(s.client_id);
        } else if (k < 10) {
            if (pick(2) == 0) {
                s.set_will(make_msg("will/" + s.client_id, 10));
                s.set_will_at(steady::now() + std::chrono::seconds{60});
            } else {
                s.set_will(nullptr);
                s.set_will_at(steady::time_point::max());
            }
            s.set_expires_at(steady::now() + std::chrono::seconds{3600});
            rec.session_offline(s);
        } else if (k < 14) {
            const std::string f = "t/" + std::to_string(pick(5)) + "/#";
            if (pick(3) == 0) {
                rec.unsubscribed(s, f);
            } else {
                rec.subscribed(s, f, {{qos::at_least_once, false, false, {}}, 0});
            }
        } else if (k < 50) {
            rec.queued(s, {message(), qos::at_least_once, false, {}});
        } else if (k < 75) {
            rec.dequeued(s);
        } else if (k < 82) {
            auto& used = inflight[s.client_id];
            const auto id = static_cast<std::uint16_t>(1 + pick(200));
            if (std::find(used.begin(), used.end(), id) != used.end()) {
                std::erase(used, id);
                if (pick(2) == 0) {
                    rec.inflight_removed(s, id);
                } else {
                    rec.inflight_released(s, id);
                    used.push_back(id);
                }
            } else {
                used.push_back(id);
                mqtt::broker::outbound_delivery o;
                o.msg = message();
                o.id = id;
                o.q = qos::exactly_once;
                rec.inflight_added(s, o);
            }
        } else if (k < 88) {
            const auto id = static_cast<std::uint16_t>(1 + pick(30));
            if (pick(2) == 0) {
                rec.qos2_received(s, id);
            } else {
                rec.qos2_released(s, id);
            }
        } else if (k < 95) {
            rec.retained_set(make_msg("r/" + std::to_string(pick(30)), pick(100), true));
        } else {
            rec.retained_cleared("r/" + std::to_string(pick(30)));
        }
    }
};

// The first record of a file that does not fit the state so far, for the failure message.
std::string first_rejected(const bytes& file) {
    state st;
    std::string found = "none";
    std::size_t n = 0;
    scan(file, [&](std::uint64_t at, const record& r) {
        ++n;
        if (found == "none" && !st.apply(r)) {
            found = "record " + std::to_string(n) + " at " + std::to_string(at) + ", type " +
                    std::to_string(static_cast<int>(type_of(r)));
            std::visit(
                [&](const auto& x) {
                    if constexpr (requires { x.client_id; }) found += ", client " + x.client_id;
                },
                r);
        }
    });
    return found;
}

}  // namespace

TEST_CASE("store: compaction in slices while the state changes reads back to the mirror") {
    for (unsigned seed = 1; seed <= 100; ++seed) {
        CAPTURE(seed);
        recorder rec{state{}};
        rec.set_clock([] { return clock_pair{steady::now(), wall}; });
        driver d{rec, seed};
        bytes log;
        bytes scratch;
        // A state to start from, in the log.
        const std::size_t before = 500 + 400 * (seed % 7);
        for (std::size_t i = 0; i < before; ++i) d.op();
        log = rec.snapshot_bytes();
        rec.take_pending(scratch);  // in the snapshot already
        // Compaction with small slices (a record or a few per slice, some sessions with
        // long queues written over many slices) and changes between them.
        rec.begin_compaction();
        bytes next;
        bytes piece;
        const std::size_t chunk = 1 + (seed * 97) % 700;
        std::size_t steps = 0;
        while (true) {
            const bool done = rec.compaction_step(piece, chunk);
            next.insert(next.end(), piece.begin(), piece.end());
            ++steps;
            if (done) break;
            REQUIRE(steps < 100'000);
            const std::size_t changes = d.pick(6);
            for (std::size_t i = 0; i < changes; ++i) d.op();
            rec.take_pending(scratch);
            log.insert(log.end(), scratch.begin(), scratch.end());
        }
        // Complete; changes may still come before the new file replaces the old one, and they
        // all follow in it.
        const std::size_t late = d.pick(20);
        for (std::size_t i = 0; i < late; ++i) d.op();
        CHECK(rec.compaction_step(piece, chunk));
        next.insert(next.end(), piece.begin(), piece.end());
        rec.end_compaction();
        rec.take_pending(scratch);
        log.insert(log.end(), scratch.begin(), scratch.end());

        const auto mirror = snapshot_of(rec.mirror());
        const auto old_file = load_bytes(log);
        CHECK(old_file.report.clean());
        CHECK(snapshot_of(old_file.st) == mirror);
        const auto new_file = load_bytes(next);
        CHECK(new_file.report.clean());
        CHECK_MESSAGE(new_file.report.rejected == 0, first_rejected(next));
        CHECK(snapshot_of(new_file.st) == mirror);

        // After the switch, appends go to the new file as usual.
        for (std::size_t i = 0; i < 300; ++i) d.op();
        rec.take_pending(scratch);
        next.insert(next.end(), scratch.begin(), scratch.end());
        const auto later = load_bytes(next);
        CHECK(later.report.clean());
        CHECK(snapshot_of(later.st) == snapshot_of(rec.mirror()));
    }
}

TEST_CASE("store: a compaction slice is bounded, and one long queue takes many slices") {
    recorder rec{state{}};
    rec.set_clock([] { return clock_pair{steady::now(), wall}; });
    mqtt::broker::durable_session s;
    s.client_id = "keeper";
    s.expiry_interval = 3600;
    rec.session_online(s);
    for (int i = 0; i < 20'000; ++i) rec.queued(s, {make_msg("t", 64), qos::at_least_once, false, {}});
    bytes scratch;
    rec.take_pending(scratch);
    rec.begin_compaction();
    bytes next;
    bytes piece;
    std::size_t slices = 0;
    std::size_t largest = 0;
    bool done = false;
    while (!done) {
        done = rec.compaction_step(piece, 16 * 1024);
        largest = std::max(largest, piece.size());
        next.insert(next.end(), piece.begin(), piece.end());
        ++slices;
        // The front of the queue leaves while it is being written.
        if (slices % 3 == 0) rec.dequeued(s);
    }
    rec.end_compaction();
    CHECK(slices > 100);  // 20,000 messages and their queue entries in 16 KiB slices
    CHECK(largest < 16 * 1024 + 1024);  // a slice ends at the record that crosses 16 KiB
    const auto l = load_bytes(next);
    CHECK(l.report.clean());
    CHECK(snapshot_of(l.st) == snapshot_of(rec.mirror()));
    CHECK(l.st.queued_count() == rec.mirror().queued_count());
}
