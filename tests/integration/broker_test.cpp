// tern-broker's server in-process on port 0 (127.0.0.1 and ::1), spoken to with raw MQTT
// bytes over blocking loopback sockets with timeouts. Every wait is bounded.

#include <doctest/doctest.h>

#include "broker_test_support.hpp"
#include "net/connection.hpp"

TEST_CASE("broker: both listeners bound on one free port") {
    running_server s;
    const auto addrs = s.server().local_addresses();
    REQUIRE(addrs.size() >= 1);
    CHECK(addrs[0] == "127.0.0.1:" + std::to_string(s.port()));
    if (addrs.size() == 2) CHECK(addrs[1] == "[::1]:" + std::to_string(s.port()));
}

TEST_CASE("broker: QoS 0/1/2 end to end, 3.1.1 and 5.0, IPv4 and IPv6") {
    running_server s;
    const bool has_v6 = s.server().local_addresses().size() == 2;
    for (const auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        CAPTURE(static_cast<int>(v));
        raw_client sub{s.port(), v};
        sub.connect("sub");
        sub.subscribe("t/#", qos::exactly_once);
        raw_client pub{s.port(), v, has_v6};
        pub.connect("pub");

        pub.send(make_publish("t/0", "zero", qos::at_most_once, 0));
        CHECK(sub.expect<publish_packet>().payload == "zero");

        pub.send(make_publish("t/1", "one", qos::at_least_once, 11));
        CHECK(pub.expect<puback_packet>().packet_id == 11);
        const auto p1 = sub.expect<publish_packet>();
        CHECK(p1.qos_level == qos::at_least_once);
        sub.send(puback_packet{p1.packet_id, reason_code::success, {}});

        pub.send(make_publish("t/2", "two", qos::exactly_once, 12));
        CHECK(pub.expect<pubrec_packet>().packet_id == 12);
        pub.send(pubrel_packet{12, reason_code::success, {}});
        CHECK(pub.expect<pubcomp_packet>().packet_id == 12);
        const auto p2 = sub.expect<publish_packet>();
        CHECK(p2.qos_level == qos::exactly_once);
        sub.send(pubrec_packet{p2.packet_id, reason_code::success, {}});
        CHECK(sub.expect<pubrel_packet>().packet_id == p2.packet_id);
        sub.send(pubcomp_packet{p2.packet_id, reason_code::success, {}});

        pub.send(pingreq_packet{});
        pub.expect<pingresp_packet>();
        pub.send(disconnect_packet{});
        CHECK(pub.closed_by_server());
    }
}

TEST_CASE("broker: many packets in one write, many acknowledgements back") {
    running_server s;
    raw_client c{s.port(), protocol_version::v3_1_1};
    c.connect("burst");
    bytes burst;
    for (std::uint16_t id = 1; id <= 500; ++id) {
        REQUIRE(!encode_append(make_publish("b", "x", qos::at_least_once, id),
                               protocol_version::v3_1_1, burst));
    }
    c.send_raw(burst);
    for (std::uint16_t id = 1; id <= 500; ++id) {
        REQUIRE(c.expect<puback_packet>().packet_id == id);
    }
}

TEST_CASE("broker: retained message delivered to a later subscriber") {
    running_server s;
    raw_client pub{s.port(), protocol_version::v5};
    pub.connect("pub");
    auto p = make_publish("r/x", "kept", qos::at_least_once, 1);
    p.retain = true;
    pub.send(p);
    pub.expect<puback_packet>();
    raw_client sub{s.port(), protocol_version::v3_1_1};
    sub.connect("sub");
    sub.subscribe("r/+", qos::at_most_once);
    const auto got = sub.expect<publish_packet>();
    CHECK(got.payload == "kept");
    CHECK(got.retain);
}

TEST_CASE("broker: protocol errors close the connection") {
    running_server s;
    SUBCASE("5.0 malformed PUBLISH: DISCONNECT 0x81, then closed") {
        raw_client c{s.port(), protocol_version::v5};
        c.connect("m");
        c.send_raw(bytes{0x30, 0x02, 0x00, 0x05});
        CHECK(c.expect<disconnect_packet>().code == reason_code::malformed_packet);
        CHECK(c.closed_by_server());
    }
    SUBCASE("3.1.1 malformed PUBLISH: closed without a packet") {
        raw_client c{s.port(), protocol_version::v3_1_1};
        c.connect("m");
        c.send_raw(bytes{0x30, 0x02, 0x00, 0x05});
        CHECK(c.closed_by_server());
    }
    SUBCASE("first packet not CONNECT: closed") {
        raw_client c{s.port(), protocol_version::v3_1_1};
        c.send(pingreq_packet{});
        CHECK(c.closed_by_server());
    }
    SUBCASE("garbage: closed") {
        raw_client c{s.port(), protocol_version::v3_1_1};
        c.send_raw(bytes{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01});
        CHECK(c.closed_by_server());
    }
    SUBCASE("unsupported level: CONNACK 0x01 then closed") {
        raw_client c{s.port(), protocol_version::v3_1_1};
        c.send_raw(bytes{0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x02, 0x02, 0x00, 0x3C, 0x00,
                         0x01, 'c'});
        CHECK(c.expect<connack_packet>().code == reason_code::unsupported_protocol_version);
        CHECK(c.closed_by_server());
    }
}

TEST_CASE("broker: oversized packet refused from its header") {
    mqtt::broker::limits l;
    l.max_packet_size = 1024;
    running_server s{l};
    raw_client c{s.port(), protocol_version::v5};
    c.connect("big");
    // A PUBLISH header announcing 1 MiB; the body is never sent.
    c.send_raw(bytes{0x30, 0x80, 0x80, 0x40});
    CHECK(c.expect<disconnect_packet>().code == reason_code::packet_too_large);
    CHECK(c.closed_by_server());
}

TEST_CASE("broker: takeover, will, keep-alive") {
    running_server s;
    raw_client watcher{s.port(), protocol_version::v3_1_1};
    watcher.connect("watcher", 0);
    watcher.subscribe("will/#", qos::at_least_once);

    SUBCASE("takeover: 0x8E to the old connection, then closed") {
        raw_client old{s.port(), protocol_version::v5};
        old.connect("same");
        raw_client fresh{s.port(), protocol_version::v5};
        fresh.connect("same");
        CHECK(old.expect<disconnect_packet>().code == reason_code::session_taken_over);
        CHECK(old.closed_by_server());
        fresh.send(pingreq_packet{});
        fresh.expect<pingresp_packet>();
    }
    SUBCASE("will on a dropped connection, none on DISCONNECT") {
        raw_client polite{s.port(), protocol_version::v3_1_1};
        polite.connect("polite", 60,
                       will_message{"will/polite", "no", qos::at_most_once, false, {}});
        polite.send(disconnect_packet{});
        CHECK(polite.closed_by_server());
        raw_client rude{s.port(), protocol_version::v3_1_1};
        rude.connect("rude", 60, will_message{"will/rude", "yes", qos::at_least_once, false, {}});
        rude.close();
        const auto w = watcher.expect<publish_packet>();
        CHECK(w.topic == "will/rude");
        CHECK(w.payload == "yes");
    }
    SUBCASE("keep-alive 1 s: DISCONNECT 0x8D after 1.5 s, will sent") {
        raw_client idle{s.port(), protocol_version::v5};
        const auto start = std::chrono::steady_clock::now();
        idle.connect("idle", 1, will_message{"will/idle", "late", qos::at_most_once, false, {}});
        CHECK(idle.expect<disconnect_packet>(4s).code == reason_code::keep_alive_timeout);
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(took >= 1400ms);
        CHECK(took < 3500ms);
        CHECK(idle.closed_by_server());
        CHECK(watcher.expect<publish_packet>().payload == "late");
    }
}

TEST_CASE("broker: a subscriber that does not read cannot grow the broker") {
    mqtt::broker::limits l;
    l.max_outbound_bytes = 64 * 1024;
    running_server s{l};
    raw_client slow{s.port(), protocol_version::v3_1_1};
    slow.connect("slow");
    slow.subscribe("flood", qos::at_most_once);
    raw_client pub{s.port(), protocol_version::v3_1_1};
    pub.connect("pub");
    const std::string payload(16 * 1024, 'x');
    bytes batch;
    for (int i = 0; i < 64; ++i) {
        REQUIRE(!encode_append(make_publish("flood", payload, qos::at_most_once, 0),
                               protocol_version::v3_1_1, batch));
    }
    for (int i = 0; i < 8; ++i) pub.send_raw(batch);  // 8 MiB the subscriber never reads
    pub.send(pingreq_packet{});
    pub.expect<pingresp_packet>(10s);  // the publisher is still served
    s.stop();
    CHECK(s.server().stats().dropped_qos0_slow > 0);
}

TEST_CASE("broker: stop() sends DISCONNECT 0x8B to 5.0 clients and returns") {
    running_server s;
    raw_client c5{s.port(), protocol_version::v5};
    c5.connect("five");
    raw_client c3{s.port(), protocol_version::v3_1_1};
    c3.connect("three");
    s.server().stop();
    CHECK(c5.expect<disconnect_packet>().code == reason_code::server_shutting_down);
    CHECK(c5.closed_by_server());
    CHECK(c3.closed_by_server());
    s.stop();  // joins: run() returned
}

TEST_CASE("broker: the server's timer publishes a delayed Will and expires the session") {
    running_server s;
    raw_client watcher{s.port(), protocol_version::v5};
    watcher.connect("watcher");
    watcher.subscribe("will/late", qos::at_least_once);
    {
        raw_client victim{s.port(), protocol_version::v5};
        connect_packet c;
        c.client_id = "victim";
        c.clean_start = false;
        c.props.session_expiry_interval = 2;
        will_message w{"will/late", "after a second", qos::at_most_once, false, {}};
        w.props.will_delay_interval = 1;
        c.will = w;
        CHECK(victim.connect_with(c).code == reason_code::success);
    }  // the socket closes without DISCONNECT
    const auto lost = std::chrono::steady_clock::now();
    CHECK_FALSE(watcher.receive(500ms).has_value());  // not at once: the delay holds it
    const auto will = watcher.expect<publish_packet>(5s);
    CHECK(will.payload == "after a second");
    CHECK(std::chrono::steady_clock::now() - lost >= 900ms);
    // Session Expiry 2 s: gone after it, so a resume finds nothing.
    std::this_thread::sleep_for(2500ms);
    raw_client back{s.port(), protocol_version::v5};
    connect_packet again;
    again.client_id = "victim";
    again.clean_start = false;
    CHECK_FALSE(back.connect_with(again).session_present);
}

TEST_CASE("broker: large payloads (shared, gathered writes) arrive whole and in order") {
    // Payloads under and over output_batch::share_threshold, one of them larger than a
    // read chunk, interleaved with small ones, to two subscribers of both versions.
    running_server s;
    raw_client sub5{s.port(), protocol_version::v5};
    sub5.connect("sub5");
    sub5.subscribe("big/#", qos::at_least_once);
    raw_client sub3{s.port(), protocol_version::v3_1_1};
    sub3.connect("sub3");
    sub3.subscribe("big/#", qos::at_most_once);
    raw_client pub{s.port(), protocol_version::v5};
    pub.connect("pub");
    std::vector<std::string> sent;
    for (std::size_t size : {std::size_t{10}, std::size_t{5000}, std::size_t{300'000},
                             std::size_t{3}, std::size_t{70'000}}) {
        std::string payload(size, '\0');
        for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('a' + (i * 7) % 26);
        sent.push_back(payload);
    }
    bytes all;  // every PUBLISH in one write: the broker reads them in pieces
    std::uint16_t id = 1;
    for (const auto& p : sent) {
        REQUIRE(!encode_append(make_publish("big/t", p, qos::at_least_once, id++),
                               protocol_version::v5, all));
    }
    pub.send_raw(all);
    for (std::uint16_t k = 1; k < id; ++k) CHECK(pub.expect<puback_packet>().packet_id == k);
    for (const auto& want : sent) {
        const auto got5 = sub5.expect<publish_packet>();
        CHECK(got5.payload == want);
        sub5.send(puback_packet{got5.packet_id, reason_code::success, {}});
        CHECK(sub3.expect<publish_packet>().payload == want);
    }
}

TEST_CASE("broker: max_inflight_bytes holds deliveries past it until a PUBACK, drops none") {
    mqtt::broker::limits l;
    l.max_inflight_bytes = 300'000;
    running_server s{l};
    raw_client sub{s.port(), protocol_version::v5};
    sub.connect("sub");
    sub.subscribe("big", qos::at_least_once);
    raw_client pub{s.port(), protocol_version::v5};
    pub.connect("pub");
    for (std::uint16_t id = 1; id <= 5; ++id) {
        pub.send(make_publish("big", std::string(100'000, static_cast<char>('0' + id)),
                              qos::at_least_once, id));
        pub.expect<puback_packet>();
    }
    std::vector<publish_packet> got;
    for (int i = 0; i < 3; ++i) got.push_back(sub.expect<publish_packet>());
    CHECK_FALSE(sub.receive(300ms).has_value());  // 300,000 bytes in flight: the rest wait
    sub.send(puback_packet{got[0].packet_id, reason_code::success, {}});
    got.push_back(sub.expect<publish_packet>());
    CHECK_FALSE(sub.receive(300ms).has_value());
    for (std::size_t i = 1; i < 4; ++i) {
        sub.send(puback_packet{got[i].packet_id, reason_code::success, {}});
    }
    got.push_back(sub.expect<publish_packet>());
    for (std::size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].payload == std::string(100'000, static_cast<char>('1' + i)));
    }
    s.stop();
    CHECK(s.server().stats().dropped_queue_full == 0);
}

// What every idle connection's driver holds (GCC 12 / libstdc++ on x86-64): one pointer to
// what the connections of a loop share (engine, password worker, deadline heap, store, end
// handler) instead of a reference each and a std::function, the store's staged output only
// once it is used, the flags as bits, and a framer with 32-bit offsets. 400 bytes +
// make_shared's control block: a 432-byte malloc chunk (528 before the shared context, 448
// before the framer's offsets), 376 with the session's one-word peer address (a 400-byte
// chunk), 352 with the output batch's payload references behind a pointer (384); 312 with
// the session's client id behind a pointer, the framer's error as an errc, the paused
// connection's self-reference on the heap and the listener tag in the deadline entry's tail
// padding (a 336-byte chunk).
TEST_CASE("broker: the per-connection driver stays small") {
    CHECK(sizeof(mqtt::net::detail::connection) <= 312);
}
