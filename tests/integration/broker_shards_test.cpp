// tern-broker with two loops (docs/broker.md, "Threading") in-process, with the channel
// between the shards small enough to fill: what one shard sends past its max_items.

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "broker_test_support.hpp"
#include "mqtt/broker/engine.hpp"

namespace {

// `n` client ids of shard `shard` (of 2), starting with `base`.
std::vector<std::string> ids_on(std::size_t shard, const std::string& base, std::size_t n) {
    std::vector<std::string> out;
    for (int i = 0; out.size() < n; ++i) {
        auto id = base + std::to_string(i);
        if (mqtt::broker::shard_of(id, 2) == shard) out.push_back(std::move(id));
    }
    return out;
}

}  // namespace

TEST_CASE("broker shards: Wills past a held-up channel's max_items wait, none is dropped") {
    mqtt::net::server_options o;
    o.listeners = {{"127.0.0.1", 0}};
    o.threads = 2;
    o.shard_channel_items = 30;  // publishers pause at 10 in flight
    o.limits.max_inflight = 1;
    o.limits.max_queued_messages = 4;  // congested above 2 queued
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
        c.back()->connect(id, 60, will_message{"w/will/" + id, "gone", qos::at_least_once, false, {}});
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
