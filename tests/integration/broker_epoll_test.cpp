// tern-broker's plain-TCP connections on each loop's epoll set (net/transport/epoll_tcp.hpp),
// with one loop and with two (connections moved from shard 0 to their shard): subscribers
// that stop reading, many connections reset at once, half-closed peers.

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "broker_test_support.hpp"
#include "mqtt/broker/engine.hpp"

namespace {

mqtt::net::server_options options(std::size_t threads, mqtt::broker::limits l = {}) {
    mqtt::net::server_options o;
    o.listeners = {{"127.0.0.1", 0}};
    o.limits = l;
    o.threads = threads;
    return o;
}

// A raw socket that sends `b` and then resets the connection (SO_LINGER 0).
void send_and_reset(std::uint16_t port, const bytes& b) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    if (!b.empty())
        REQUIRE(::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size()));
    linger lg{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::close(fd);
}

bytes connect_bytes(const std::string& id) {
    connect_packet c;
    c.version = protocol_version::v3_1_1;
    c.client_id = id;
    c.keep_alive = 60;
    auto b = encode(c, protocol_version::v3_1_1);
    REQUIRE(b.has_value());
    return *b;
}

// One event loop, then two: a SUBCASE each.
std::size_t loops() {
    std::size_t n = 1;
    SUBCASE("one loop") {
        n = 1;
    }
    SUBCASE("two loops") {
        n = 2;
    }
    return n;
}

}  // namespace

TEST_CASE("broker: subscribers on two loops get every message while other connections churn") {
    running_server s{options(2)};
    constexpr int subs = 24;
    constexpr int rounds = 20;
    std::vector<std::unique_ptr<raw_client>> c;
    for (int i = 0; i < subs; ++i) {  // client ids on both shards: moved there from shard 0
        c.push_back(std::make_unique<raw_client>(s.port(), protocol_version::v3_1_1));
        c.back()->connect("sub-" + std::to_string(i));
        c.back()->subscribe("t/" + std::to_string(i), qos::at_most_once);
    }
    raw_client pub{s.port(), protocol_version::v3_1_1};
    pub.connect("pub");
    bytes batch;
    std::uint16_t id = 1;
    for (int r = 0; r < rounds; ++r) {
        for (int i = 0; i < subs; ++i) {
            REQUIRE(!encode_append(
                make_publish("t/" + std::to_string(i), std::to_string(r), qos::at_least_once, id++),
                protocol_version::v3_1_1, batch));
        }
    }
    pub.send_raw(batch);
    // Meanwhile connections that come, say CONNECT (or half of one) and reset at once.
    const auto full = connect_bytes("churn");
    const bytes half(full.begin(), full.begin() + static_cast<long>(full.size() / 2));
    for (int i = 0; i < 100; ++i) send_and_reset(s.port(), i % 2 ? full : half);
    for (int n = 0; n < subs * rounds; ++n) pub.expect<puback_packet>(10s);
    for (int i = 0; i < subs; ++i) {
        for (int r = 0; r < rounds; ++r) {
            auto p = c[i]->expect<publish_packet>(10s);
            CHECK(p.topic == "t/" + std::to_string(i));
            CHECK(p.payload == std::to_string(r));
        }
    }
    raw_client late{s.port(), protocol_version::v3_1_1};  // still served
    late.connect("late");
    s.stop();
}

TEST_CASE("broker: many connections reset while their input is pending") {
    const std::size_t threads = loops();
    CAPTURE(threads);
    running_server s{options(threads)};
    std::vector<std::unique_ptr<raw_client>> c;
    for (int i = 0; i < 150; ++i) {
        c.push_back(std::make_unique<raw_client>(s.port(), protocol_version::v3_1_1));
        c.back()->connect("r-" + std::to_string(i));
    }
    // Every client sends a packet and resets its connection, all at once.
    bytes ping;
    REQUIRE(!encode_append(pingreq_packet{}, protocol_version::v3_1_1, ping));
    REQUIRE(!encode_append(make_publish("x", "y", qos::at_least_once, 7), protocol_version::v3_1_1,
                           ping));
    for (auto& one : c) {
        one->send_raw(ping);
        one->reset();
    }
    c.clear();
    raw_client after{s.port(), protocol_version::v3_1_1};
    after.connect("after");
    after.send(pingreq_packet{});
    after.expect<pingresp_packet>();
    s.stop();
}

TEST_CASE("broker: a half-closed client's Will goes out and its connection is closed") {
    const std::size_t threads = loops();
    CAPTURE(threads);
    running_server s{options(threads)};
    raw_client sub{s.port(), protocol_version::v5};
    sub.connect("watcher");
    sub.subscribe("wills/#", qos::at_most_once);
    for (int i = 0; i < 4; ++i) {
        raw_client half{s.port(), protocol_version::v5};
        will_message w;
        w.topic = "wills/" + std::to_string(i);
        w.payload = "gone";
        half.connect("half-" + std::to_string(i), 60, w);
        half.shutdown_send();  // FIN: no DISCONNECT, no more bytes
        CHECK(half.closed_by_server(10s));
        auto p = sub.expect<publish_packet>(10s);
        CHECK(p.topic == "wills/" + std::to_string(i));
    }
    // Half a CONNECT, then FIN: closed unanswered.
    raw_client partial{s.port(), protocol_version::v3_1_1};
    const auto full = connect_bytes("partial");
    partial.send_raw(bytes(full.begin(), full.begin() + 5));
    partial.shutdown_send();
    CHECK(partial.closed_by_server(10s));
    s.stop();
}

TEST_CASE("broker: a subscriber that stops reading, then reads again (two loops)") {
    mqtt::broker::limits l;
    l.max_outbound_bytes = 64 * 1024;
    running_server s{options(2, l)};
    raw_client slow{s.port(), protocol_version::v3_1_1};
    slow.set_receive_buffer(16 * 1024);
    slow.connect("slow");
    slow.subscribe("flood", qos::at_most_once);
    raw_client pub{s.port(), protocol_version::v3_1_1};
    REQUIRE(mqtt::broker::shard_of("pub-a", 2) != mqtt::broker::shard_of("slow", 2));
    pub.connect("pub-a");  // the other shard than "slow"'s: routed across loops
    const std::string payload(16 * 1024, 'x');
    bytes batch;
    for (int i = 0; i < 64; ++i) {
        REQUIRE(!encode_append(make_publish("flood", payload, qos::at_most_once, 0),
                               protocol_version::v3_1_1, batch));
    }
    for (int i = 0; i < 8; ++i) pub.send_raw(batch);  // 8 MiB the subscriber does not read
    pub.send(pingreq_packet{});
    pub.expect<pingresp_packet>(10s);  // the publisher is still served
    // The subscriber reads again: what the broker kept, then a message published now.
    int got = 0;
    while (slow.receive(1s)) ++got;
    CHECK(!slow.eof());
    CHECK(got > 0);
    pub.send(make_publish("flood", "end", qos::at_most_once, 0));
    auto p = slow.expect<publish_packet>(10s);
    CHECK(p.payload == "end");
    s.stop();
    CHECK(s.server().stats().dropped_qos0_slow > 0);
}
