// tern-broker with two loops (docs/broker.md, "Threading") in-process, with the channel
// between the shards small enough to fill: what one shard sends past its max_items.

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "broker_test_support.hpp"
#include "mqtt/broker/engine.hpp"

namespace {

// `n` client ids of shard `shard` (of `shards`), starting with `base`.
std::vector<std::string> ids_on(std::size_t shard, const std::string& base, std::size_t n,
                                std::size_t shards = 2) {
    std::vector<std::string> out;
    for (int i = 0; out.size() < n; ++i) {
        auto id = base + std::to_string(i);
        if (mqtt::broker::shard_of(id, shards) == shard) out.push_back(std::move(id));
    }
    return out;
}

// Reads and acknowledges every QoS 1 PUBLISH on its own thread until stopped; the payloads
// are read after stop().
class reader {
  public:
    explicit reader(raw_client& c)
        : c_(c), t_([this] {
              while (!stop_) {
                  auto p = c_.receive(100ms);
                  if (!p) continue;
                  const auto* m = std::get_if<publish_packet>(&*p);
                  if (m == nullptr) continue;
                  got_.push_back(m->payload);
                  puback_packet ack;
                  ack.packet_id = m->packet_id;
                  c_.send(ack);
              }
          }) {}
    ~reader() { stop(); }
    const std::vector<std::string>& stop() {
        stop_ = true;
        if (t_.joinable()) t_.join();
        return got_;
    }

  private:
    raw_client& c_;
    std::atomic<bool> stop_{false};
    std::vector<std::string> got_;
    std::thread t_;
};

}  // namespace

TEST_CASE("broker shards: Wills past a held-up channel's max_items wait, none is dropped") {
    mqtt::net::server_options o;
    o.listeners = {{"127.0.0.1", 0}};
    o.threads = 2;
    o.shard_channel_items = 30;  // publishers pause at 10 in flight
    o.limits.max_inflight = 1;
    o.limits.max_queued_messages = 4;     // congested above 2 queued
    o.limits.backpressure_timeout = 0ms;  // it holds up shard 1 for as long as it is connected
    running_server s{o};
    raw_client sub{s.port(), protocol_version::v3_1_1};
    sub.connect(ids_on(0, "sub-", 1)[0]);
    sub.subscribe("w/#", qos::at_least_once);
    // Clients on shard 1 with a QoS 1 Will each: senders without a connection to pause.
    constexpr std::size_t wills = 40;
    std::vector<std::unique_ptr<raw_client>> c;
    for (const auto& id : ids_on(1, "will-", wills)) {
        c.push_back(std::make_unique<raw_client>(s.port(), protocol_version::v3_1_1));
        c.back()->connect(id, 60,
                          will_message{"w/will/" + id, "gone", qos::at_least_once, false, {}});
    }
    // A publisher on shard 1 congests the subscriber, which reads nothing (1 in flight, the
    // rest queued): shard 0 stops taking what shard 1 sends.
    raw_client pub{s.port(), protocol_version::v3_1_1};
    pub.connect(ids_on(1, "pub-", 1)[0]);
    for (std::uint16_t i = 1; i <= 4; ++i) {
        pub.send(make_publish("w/p", std::to_string(i), qos::at_least_once, i));
        pub.expect<puback_packet>();
    }
    std::this_thread::sleep_for(300ms);
    // Every Will client goes at once: 40 Wills towards a channel that takes 30.
    for (auto& w : c) w->reset();
    std::this_thread::sleep_for(500ms);
    // The subscriber reads and acknowledges: everything arrives, each Will once.
    std::set<std::string> got_wills;
    std::size_t got_p = 0;
    for (std::size_t n = 0; n < wills + 4; ++n) {
        auto p = sub.receive(5s);
        if (!p) break;
        const auto* m = std::get_if<publish_packet>(&*p);
        REQUIRE(m != nullptr);
        if (m->topic == "w/p") {
            ++got_p;
        } else {
            CHECK(got_wills.insert(m->topic).second);
        }
        puback_packet ack;
        ack.packet_id = m->packet_id;
        sub.send(ack);
    }
    CHECK(got_p == 4);
    CHECK(got_wills.size() == wills);
    CHECK_FALSE(sub.receive(300ms).has_value());  // nothing twice
    s.stop();
}

TEST_CASE(
    "broker shards: deliveries waiting behind a refused item pause the publishers feeding them") {
    // Three shards: a share group's home H, whose channel to M1 is held up by a subscriber
    // that reads nothing and past its max_items (Wills); the group's member is on M2, and a
    // publisher on M2 sends to the group through H. H's deliveries to M2 wait behind the
    // refused Wills, so H counts as congested forwarding and the publisher pauses.
    constexpr std::size_t n = 3;
    std::string group;
    for (int i = 0;; ++i) {
        group = "$share/q" + std::to_string(i) + "/g/#";
        if (mqtt::broker::shard_of(group, n) == 0) break;
    }
    const std::size_t h = 0;
    const std::size_t m1 = 1;
    const std::size_t m2 = 2;
    mqtt::net::server_options o;
    o.listeners = {{"127.0.0.1", 0}};
    o.threads = n;
    o.shard_channel_items = 40;  // publishers pause at 10 in flight
    o.limits.max_inflight = 1;
    o.limits.max_queued_messages = 4;
    o.limits.backpressure_timeout = 0ms;
    std::mutex log_mutex;
    bool refused = false;  // the broker logged a channel's refusal
    o.log = [&](int, std::string_view line) {
        const std::lock_guard lock{log_mutex};
        if (line.find("too far behind") != std::string_view::npos) refused = true;
    };
    running_server s{o};
    raw_client held{s.port(), protocol_version::v3_1_1};
    held.connect(ids_on(m1, "held-", 1, n)[0]);
    held.subscribe("w/#", qos::at_least_once);
    raw_client member{s.port(), protocol_version::v3_1_1};
    member.connect(ids_on(m2, "member-", 1, n)[0]);
    member.subscribe(group, qos::at_least_once);
    reader member_reads{member};
    std::vector<std::unique_ptr<raw_client>> c;
    for (const auto& id : ids_on(h, "will-", 60, n)) {
        c.push_back(std::make_unique<raw_client>(s.port(), protocol_version::v3_1_1));
        c.back()->connect(id, 60,
                          will_message{"w/will/" + id, "gone", qos::at_least_once, false, {}});
    }
    raw_client on_h{s.port(), protocol_version::v3_1_1};
    on_h.connect(ids_on(h, "pub-h-", 1, n)[0]);
    for (std::uint16_t i = 1; i <= 4; ++i) {  // the held subscriber congested: M1 holds H's channel
        on_h.send(make_publish("w/p", std::to_string(i), qos::at_least_once, i));
        on_h.expect<puback_packet>();
    }
    std::this_thread::sleep_for(300ms);
    for (auto& w : c) w->reset();    // 60 Wills towards a channel that takes 40
    for (int i = 0; i < 200; ++i) {  // until H's channel has refused some (slow builds too)
        {
            const std::lock_guard lock{log_mutex};
            if (refused) break;
        }
        std::this_thread::sleep_for(50ms);
    }
    {
        const std::lock_guard lock{log_mutex};
        REQUIRE(refused);
    }
    // The publisher on M2, one message at a time: it pauses once H has forwarded one of
    // them (a few, as H routes them a little after M2 acknowledged them).
    raw_client pub{s.port(), protocol_version::v3_1_1};
    pub.connect(ids_on(m2, "pub-", 1, n)[0]);
    constexpr std::uint16_t total = 40;
    std::uint16_t acked = 0;
    for (std::uint16_t i = 1; i <= total; ++i) {
        pub.send(make_publish("g/" + std::to_string(i), std::to_string(i), qos::at_least_once, i));
        if (!pub.receive(1s)) break;
        ++acked;
    }
    CHECK(acked < total);  // without the pause every one is acknowledged
    // The held subscriber reads: the Wills go, H is no longer congested, the publisher goes on.
    reader held_reads{held};
    for (std::uint16_t i = acked + 1; i <= total; ++i) {
        if (i > acked + 1) {
            pub.send(
                make_publish("g/" + std::to_string(i), std::to_string(i), qos::at_least_once, i));
        }
        REQUIRE(pub.receive(5s).has_value());
    }
    std::this_thread::sleep_for(500ms);
    const auto& to_member = member_reads.stop();
    CHECK(to_member.size() == total);
    const auto& to_held = held_reads.stop();
    CHECK(std::count(to_held.begin(), to_held.end(), "gone") == 60);
    s.stop();
}
