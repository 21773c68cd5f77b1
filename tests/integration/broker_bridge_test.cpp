// tern-broker's own bridges (`connection` blocks): the local side is an in-memory byte
// stream pair into the engine, not a socket. Broker A runs a bridge to broker B (both
// in-process on port 0): no AF_UNIX socket is opened for it, QoS 1 crosses both ways in
// order, and what A's clients publish while B is down arrives once B is back. Also the
// memory pair itself: back-pressure, EOF after close, broken pipe, aborted reads.

#include <doctest/doctest.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "broker_test_support.hpp"
#include "mqtt/bridge/config.hpp"
#include "net/transport/transport.hpp"

namespace {

namespace asio = boost::asio;

// AF_UNIX sockets this process has open: the socket inodes of /proc/self/fd that
// /proc/self/net/unix lists.
std::size_t unix_sockets_open() {
    std::set<std::string> unix_inodes;
    std::ifstream table("/proc/self/net/unix");
    std::string line;
    std::getline(table, line);  // the header
    while (std::getline(table, line)) {
        std::istringstream in(line);
        std::string field;
        for (int i = 0; i < 6 && in >> field; ++i) {
        }
        if (in >> field) unix_inodes.insert(field);  // the 7th column: the inode
    }
    std::size_t n = 0;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = std::filesystem::read_symlink(fd.path(), ec).string();
        if (ec || target.rfind("socket:[", 0) != 0) continue;
        if (unix_inodes.count(target.substr(8, target.size() - 9)) > 0) ++n;
    }
    return n;
}

mqtt::net::server_options bridging_to(std::uint16_t remote_port) {
    const std::string text =
        "connection t\n"
        "address 127.0.0.1:" +
        std::to_string(remote_port) +
        "\n"
        "topic out/# out 1\n"
        "topic in/# in 1\n"
        "cleansession false\n"
        "notifications false\n"
        "restart_timeout 1 1\n"
        "bridge_protocol_version mqttv50\n";
    mqtt::bridge::address local;
    local.host = "in-process";
    local.port = 0;
    local.in_process = true;
    auto r = mqtt::bridge::parse_config(text, "", "test", local);
    REQUIRE_MESSAGE(!r.error, r.error->message);
    mqtt::net::server_options o;
    o.listeners = {{"127.0.0.1", 0}};
    o.bridges = std::move(r.bridges);
    return o;
}

mqtt::net::server_options listening_on(std::uint16_t port) {
    mqtt::net::server_options o;
    o.listeners = {{"127.0.0.1", port}};
    return o;
}

// Publishes QoS 0 probes at `pub` until `sub` receives one (the bridge is up and
// subscribed), at most ~10 s.
bool wait_bridged(raw_client& pub, raw_client& sub, const std::string& topic) {
    for (int i = 0; i < 100; ++i) {
        pub.send(make_publish(topic, "probe", qos::at_most_once, 0));
        if (auto p = sub.receive(100ms)) {
            if (const auto* m = std::get_if<publish_packet>(&*p); m && m->payload == "probe") {
                while (sub.receive(300ms)) {  // later probes
                }
                return true;
            }
        }
    }
    return false;
}

// QoS 1 messages `prefix`0.. published at `pub`, received in order at `sub`, which
// acknowledges each.
void send_and_expect(raw_client& pub, raw_client& sub, const std::string& prefix, int n,
                     int first = 0) {
    for (int i = first; i < first + n; ++i) {
        pub.send(make_publish(prefix + std::to_string(i), std::to_string(i), qos::at_least_once,
                              static_cast<std::uint16_t>(i + 1)));
        CHECK(pub.expect<puback_packet>().packet_id == i + 1);
    }
    for (int i = first; i < first + n; ++i) {
        const auto p = sub.expect<publish_packet>(10s);
        CHECK(p.topic == prefix + std::to_string(i));
        CHECK(p.payload == std::to_string(i));
        if (p.qos_level != qos::at_most_once)
            sub.send(puback_packet{p.packet_id, reason_code::success, {}});
    }
}

}  // namespace

TEST_CASE("broker bridge: the local side is in memory, QoS 1 both ways, a remote outage") {
    const auto unix_before = unix_sockets_open();
    {  // the count sees a socket pair (what the local side was before)
        int pair[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
        CHECK(unix_sockets_open() == unix_before + 2);
        ::close(pair[0]);
        ::close(pair[1]);
    }
    auto remote = std::make_unique<running_server>(listening_on(0));
    const auto remote_port = remote->port();
    running_server local{bridging_to(remote_port)};

    raw_client remote_sub{remote_port, protocol_version::v5};
    remote_sub.connect("remote-sub");
    remote_sub.subscribe("out/#", qos::at_least_once);
    raw_client local_pub{local.port(), protocol_version::v5};
    local_pub.connect("local-pub");
    REQUIRE(wait_bridged(local_pub, remote_sub, "out/probe"));

    // The bridge is connected on both sides, its local side without a socket.
    CHECK(unix_sockets_open() == unix_before);

    send_and_expect(local_pub, remote_sub, "out/", 50);

    raw_client local_sub{local.port(), protocol_version::v5};
    local_sub.connect("local-sub");
    local_sub.subscribe("in/#", qos::at_least_once);
    raw_client remote_pub{remote_port, protocol_version::v5};
    remote_pub.connect("remote-pub");
    REQUIRE(wait_bridged(remote_pub, local_sub, "in/probe"));
    send_and_expect(remote_pub, local_sub, "in/", 50);

    // The remote broker goes away: what A's publisher sends meanwhile (acknowledged by A)
    // waits, and reaches the new remote broker on the same port once the bridge is back.
    remote_sub.close();
    remote_pub.close();
    remote->stop();
    remote.reset();
    for (int i = 0; i < 30; ++i) {
        local_pub.send(make_publish("out/late/" + std::to_string(i), std::to_string(i),
                                    qos::at_least_once, static_cast<std::uint16_t>(100 + i)));
        CHECK(local_pub.expect<puback_packet>().packet_id == 100 + i);
    }
    remote = std::make_unique<running_server>(listening_on(remote_port));
    raw_client back_sub{remote_port, protocol_version::v5};
    back_sub.connect("remote-sub-2");
    back_sub.subscribe("out/#", qos::at_least_once);
    int next = 0;
    for (int k = 0; k < 60 && next < 30; ++k) {
        auto p = back_sub.receive(10s);
        REQUIRE(p.has_value());
        const auto* m = std::get_if<publish_packet>(&*p);
        REQUIRE(m != nullptr);
        if (m->qos_level != qos::at_most_once)
            back_sub.send(puback_packet{m->packet_id, reason_code::success, {}});
        if (m->topic.rfind("out/late/", 0) != 0) continue;
        // At least once, in order: a repeat of the last one may come after a reconnect.
        const int i = std::stoi(m->topic.substr(9));
        CHECK((i == next || i == next - 1));
        if (i == next) ++next;
    }
    CHECK(next == 30);
    CHECK(unix_sockets_open() == unix_before);
}

TEST_CASE("memory pair: bytes both ways, back-pressure, EOF, broken pipe, abort") {
    asio::io_context io;
    auto [a, b] = mqtt::net::make_memory_pair(io.get_executor(), 8);
    std::vector<std::string> log;
    bool second_write_done = false;

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            const std::string first = "0123456789";  // over the capacity: taken whole
            auto [e1, n1] = co_await a->write(asio::buffer(first));
            CHECK(!e1);
            CHECK(n1 == 10);
            const std::string second = "ab";  // waits: 10 unread >= 8
            auto [e2, n2] = co_await a->write(asio::buffer(second));
            CHECK(!e2);
            CHECK(n2 == 2);
            second_write_done = true;
            log.push_back("written");
            co_await a->shutdown();
        },
        asio::detached);
    io.run_for(50ms);
    io.restart();
    CHECK(!second_write_done);

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            std::array<char, 4> room{};
            std::string got;
            for (;;) {
                auto [ec, n] = co_await b->read_some(asio::buffer(room));
                if (ec) {
                    CHECK(ec == asio::error::eof);
                    break;
                }
                got.append(room.data(), n);
            }
            CHECK(got == "0123456789ab");
            log.push_back("eof");
        },
        asio::detached);
    io.run();
    io.restart();
    CHECK(second_write_done);
    CHECK(log == std::vector<std::string>{"written", "eof"});

    // b closes: a's write fails with broken_pipe; a's pending read ends with EOF.
    auto [c, d] = mqtt::net::make_memory_pair(io.get_executor(), 8);
    bool read_ended = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            std::array<char, 4> room{};
            auto [ec, n] = co_await c->read_some(asio::buffer(room));
            CHECK(ec == asio::error::eof);
            CHECK(n == 0);
            read_ended = true;
            auto [we, wn] = co_await c->write(asio::buffer(std::string("x")));
            CHECK(we == asio::error::broken_pipe);
            (void)wn;
        },
        asio::detached);
    io.run_for(20ms);
    io.restart();
    CHECK(!read_ended);
    d->close();
    io.run();
    io.restart();
    CHECK(read_ended);

    // An end's own pending read ends with operation_aborted when it closes.
    auto [e, f] = mqtt::net::make_memory_pair(io.get_executor(), 8);
    bool aborted = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            std::array<char, 4> room{};
            auto [ec, n] = co_await e->read_some(asio::buffer(room));
            (void)n;
            aborted = ec == asio::error::operation_aborted;
        },
        asio::detached);
    io.run_for(20ms);
    io.restart();
    e->close();
    io.run();
    CHECK(aborted);
    (void)f;
}
