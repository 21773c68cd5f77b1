// Crash rounds in the engine, without I/O: a QoS 1 and a QoS 2 publisher (persistent
// sessions, several messages outstanding, everything not completed sent again after each
// restart) and a persistent subscriber that is online in some lives of the broker and offline
// in others share one store. As with persistence_sync batch, output to the clients is held
// until the records made before it are on disk; a kill between two syncs loses what was not
// written yet and may leave a torn record at the end of the log. In the end every message has
// arrived (QoS 2 exactly once), and the first arrivals of each publisher's messages follow the
// order in which it wrote its PUBLISH packets (MQTT-4.6.0-2 .. MQTT-4.6.0-4, MQTT-4.6.0-6):
// they are a subsequence of its writes, resends included, since a message written on a
// connection the broker died on may first reach the broker when written again.

#include <doctest/doctest.h>

#include <deque>
#include <optional>
#include <random>
#include <set>

#include "broker_test_client.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/store_file.hpp"

using namespace tern_test;
using mqtt::broker::engine;
using mqtt::store::clock_pair;
using mqtt::store::recorder;
using namespace std::chrono_literals;

namespace {

clock_pair times_at(clock::time_point now) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
    return {now, 1'700'000'000'000 + ms.count()};
}

mqtt::broker::limits crash_limits() {
    mqtt::broker::limits l;
    l.max_inflight = 4;  // a small window: most of the subscriber's messages wait in its queue
    l.max_queued_messages = 100'000;
    return l;
}

// A publisher's side of its session: what it has not seen completed, in the order first
// sent, and the payload of every PUBLISH it wrote.
struct publisher {
    std::string name;
    qos q;
    struct pending {
        std::uint16_t id;
        std::string payload;
        bool released;  // PUBREC came: only PUBREL / PUBCOMP left
    };
    std::deque<pending> out;
    std::vector<std::string> written;
    int next = 0;
    std::uint16_t next_id = 1;

    std::string topic() const { return "t/" + name; }
    void write(test_client& c, const pending& p, bool dup) {
        publish_packet pp;
        pp.topic = topic();
        pp.payload = p.payload;
        pp.qos_level = q;
        pp.packet_id = p.id;
        pp.dup = dup;
        written.push_back(p.payload);
        c.send(pp);
    }
    void publish_new(test_client& c) {
        out.push_back({next_id, name + "-" + std::to_string(next++), false});
        next_id = next_id == 0xFFFF ? 1 : static_cast<std::uint16_t>(next_id + 1);
        write(c, out.back(), false);
    }
    // After a CONNACK with Session Present: what is not completed goes again, in order.
    void resend(test_client& c) {
        for (const auto& p : out) {
            if (p.released) {
                c.send(pubrel_packet{p.id, reason_code::success, {}});
            } else {
                write(c, p, true);
            }
        }
    }
    void erase(std::uint16_t id) {
        std::erase_if(out, [&](const pending& p) { return p.id == id; });
    }
    void handle(test_client& c, const packet& in) {
        if (const auto* a = std::get_if<puback_packet>(&in)) {
            erase(a->packet_id);
        } else if (const auto* r = std::get_if<pubrec_packet>(&in)) {
            for (auto& p : out) {
                if (p.id != r->packet_id) continue;
                p.released = true;
                c.send(pubrel_packet{p.id, reason_code::success, {}});
            }
        } else if (const auto* k = std::get_if<pubcomp_packet>(&in)) {
            erase(k->packet_id);
        }
    }
};

// The subscriber's side: arrivals in order; QoS 2 delivered on PUBLISH, its id kept until
// PUBREL so that a resent PUBLISH is not delivered twice (the client's session state).
struct subscriber {
    std::vector<std::pair<std::string, std::string>> arrivals;  // topic, payload
    std::set<std::uint16_t> awaiting_pubrel;

    void handle(test_client& c, const packet& in) {
        if (const auto* p = std::get_if<publish_packet>(&in)) {
            if (p->qos_level == qos::at_least_once) {
                arrivals.emplace_back(p->topic, p->payload);
                c.send(puback_packet{p->packet_id, reason_code::success, {}});
            } else if (p->qos_level == qos::exactly_once) {
                if (awaiting_pubrel.insert(p->packet_id).second) {
                    arrivals.emplace_back(p->topic, p->payload);
                }
                c.send(pubrec_packet{p->packet_id, reason_code::success, {}});
            }
        } else if (const auto* r = std::get_if<pubrel_packet>(&in)) {
            awaiting_pubrel.erase(r->packet_id);
            c.send(pubcomp_packet{r->packet_id, reason_code::success, {}});
        }
    }
};

// One life of the broker: the engine rebuilt from the log, and the clients' connections.
// Members are destroyed in reverse order: connections, then the engine, then the recorder.
struct life {
    std::optional<recorder> rec;
    engine e{crash_limits()};
    std::optional<test_client> sub_c;
    std::vector<packet> sub_held;  // sent after CONNACK, handed over at the next sync
    std::optional<test_client> pub_c[2];

    life(std::vector<std::uint8_t>& log, clock::time_point& now) {
        const auto times = times_at(now);
        auto l = mqtt::store::load_bytes(log, &times);
        CHECK(l.report.rejected == 0);
        const bool clean = l.report.clean();
        mqtt::store::restore(e, l.st, times);
        rec.emplace(std::move(l.st));
        rec->set_clock([&now] { return times_at(now); });
        // As the broker does: a damaged log is written anew from what was recovered.
        if (!clean) log = rec->snapshot_bytes();
        e.set_store(&*rec);
    }
};

// Records made so far go to disk, then the output they held back goes to the clients
// (whose answers make records for the next sync). False when nothing was delivered.
bool sync(life& b, std::vector<std::uint8_t>& log, subscriber& sub, publisher (&pubs)[2]) {
    std::vector<std::uint8_t> pending;
    b.rec->take_pending(pending);
    log.insert(log.end(), pending.begin(), pending.end());
    bool any = false;
    if (b.sub_c) {
        auto in = std::exchange(b.sub_held, {});
        for (auto& p : b.sub_c->received()) in.push_back(std::move(p));
        for (const auto& p : in) sub.handle(*b.sub_c, p);
        any = any || !in.empty();
    }
    for (int i = 0; i < 2; ++i) {
        const auto in = b.pub_c[i]->received();
        for (const auto& p : in) pubs[i].handle(*b.pub_c[i], p);
        any = any || !in.empty();
    }
    return any;
}

// Where the first arrivals stop being a subsequence of the writes; -1: they are one.
int order_violation(const std::vector<std::string>& first, const std::vector<std::string>& w) {
    std::size_t j = 0;
    for (std::size_t k = 0; k < first.size(); ++k) {
        while (j < w.size() && w[j] != first[k]) ++j;
        if (j == w.size()) return static_cast<int>(k);
        ++j;
    }
    return -1;
}

void crash_rounds(unsigned seed, protocol_version sub_version) {
    std::mt19937 rng{seed};
    const auto pick = [&](unsigned n) { return static_cast<unsigned>(rng() % n); };
    auto now = test_epoch();
    std::vector<std::uint8_t> log;
    subscriber sub;
    publisher pubs[2] = {{"p1", qos::at_least_once, {}, {}}, {"p2", qos::exactly_once, {}, {}}};
    const protocol_version pub_versions[2] = {protocol_version::v5, protocol_version::v3_1_1};
    constexpr int lives = 8;
    for (int n = 0; n <= lives; ++n) {
        CAPTURE(n);
        now += 2s;
        life b{log, now};
        const bool last = n == lives;
        if (n == 0 || last || pick(10) < 6) {
            b.sub_c.emplace(b.e, sub_version, now);
            const auto ack = b.sub_c->connect_persistent("sub");
            CHECK(ack.session_present == (n != 0));
            if (n == 0) {
                b.sub_c->subscribe("t/#", qos::exactly_once);
            } else {
                b.sub_held = b.sub_c->rest_after_connack();
            }
        }
        for (int i = 0; i < 2; ++i) {
            b.pub_c[i].emplace(b.e, pub_versions[i], now);
            CHECK(b.pub_c[i]->connect_persistent(pubs[i].name).session_present == (n != 0));
            pubs[i].resend(*b.pub_c[i]);
        }
        if (n == 0) sync(b, log, sub, pubs);  // the subscription is on disk before any kill
        if (last) break;
        const unsigned window = 1 + pick(12);
        const unsigned steps = 20 + pick(150);
        for (unsigned s = 0; s < steps; ++s) {
            const unsigned what = pick(10);
            if (what < 8) {
                auto& p = pubs[what % 2];
                if (p.out.size() < window) p.publish_new(*b.pub_c[what % 2]);
            } else {
                sync(b, log, sub, pubs);
            }
        }
        // Killed: the records not synced yet reach the disk in part, the held output never
        // leaves. The connections and the engine then go without writing anything more.
        std::vector<std::uint8_t> pending;
        b.rec->take_pending(pending);
        const auto kept = pick(static_cast<unsigned>(pending.size()) + 1);
        log.insert(log.end(), pending.begin(), pending.begin() + kept);
    }
    {
        // The last life: the broker runs until everything in flight has completed.
        now += 2s;
        life b{log, now};
        b.sub_c.emplace(b.e, sub_version, now);
        CHECK(b.sub_c->connect_persistent("sub").session_present);
        b.sub_held = b.sub_c->rest_after_connack();
        for (int i = 0; i < 2; ++i) {
            b.pub_c[i].emplace(b.e, pub_versions[i], now);
            CHECK(b.pub_c[i]->connect_persistent(pubs[i].name).session_present);
            pubs[i].resend(*b.pub_c[i]);
        }
        int turns = 0;
        while (sync(b, log, sub, pubs) && ++turns < 100'000) {
        }
    }
    for (const auto& p : pubs) {
        CAPTURE(p.name);
        CHECK(p.out.empty());  // every publish completed
        std::vector<std::string> first;
        std::set<std::string> seen;
        std::size_t arrivals = 0;
        for (const auto& [topic, payload] : sub.arrivals) {
            if (topic != p.topic()) continue;
            ++arrivals;
            if (seen.insert(payload).second) first.push_back(payload);
        }
        CHECK(first.size() == static_cast<std::size_t>(p.next));        // every message arrived
        if (p.q == qos::exactly_once) CHECK(arrivals == first.size());  // and only once
        const int at = order_violation(first, p.written);
        const std::string culprit = at >= 0 ? first[static_cast<std::size_t>(at)] : "";
        CAPTURE(at);
        CAPTURE(culprit);
        CHECK(at == -1);
    }
}

}  // namespace

TEST_CASE("store recovery: crash rounds keep each publisher's order and lose nothing") {
    for (unsigned seed = 1; seed <= 40; ++seed) {
        CAPTURE(seed);
        crash_rounds(seed, seed % 2 ? protocol_version::v3_1_1 : protocol_version::v5);
    }
}
