// tern-broker's server in-process on port 0 (127.0.0.1 and ::1), spoken to with raw MQTT
// bytes over blocking loopback sockets with timeouts. Every wait is bounded.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mqtt/net/server.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"

using namespace mqtt::protocol;
using namespace std::chrono_literals;
using bytes = std::vector<std::uint8_t>;

namespace {

// The server on its own thread; stopped and joined on destruction.
class running_server {
  public:
    explicit running_server(mqtt::broker::limits l = {}) {
        mqtt::net::server_options o;
        o.listeners = {{"127.0.0.1", 0}, {"::1", 0}};
        o.limits = l;
        auto s = mqtt::net::server::create(std::move(o));
        REQUIRE_MESSAGE(s.has_value(), s.error().message());
        server_ = std::move(*s);
        thread_ = std::thread([this] { server_->run(); });
    }
    ~running_server() { stop(); }
    void stop() {
        if (!thread_.joinable()) return;
        server_->stop();
        thread_.join();
    }
    std::uint16_t port() const { return server_->port(); }
    mqtt::net::server& server() { return *server_; }

  private:
    std::unique_ptr<mqtt::net::server> server_;
    std::thread thread_;
};

// A blocking TCP client with a receive timeout and an MQTT framer.
class raw_client {
  public:
    raw_client(std::uint16_t port, protocol_version v, bool ipv6 = false) : version_(v) {
        fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        int rc = -1;
        if (ipv6) {
            sockaddr_in6 a{};
            a.sin6_family = AF_INET6;
            a.sin6_port = htons(port);
            a.sin6_addr = in6addr_loopback;
            rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        } else {
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        }
        REQUIRE(rc == 0);
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ~raw_client() { close(); }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    void send_raw(const bytes& b) {
        std::size_t done = 0;
        while (done < b.size()) {
            const auto n = ::send(fd_, b.data() + done, b.size() - done, MSG_NOSIGNAL);
            REQUIRE(n > 0);
            done += static_cast<std::size_t>(n);
        }
    }
    void send(const packet& p) {
        auto b = encode(p, version_);
        REQUIRE(b.has_value());
        send_raw(*b);
    }

    // The next packet, or nullopt on EOF / timeout (eof() tells which).
    std::optional<packet> receive(std::chrono::milliseconds timeout = 5s) {
        const auto until = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto f = framer_.next();
            REQUIRE(f.has_value());
            if (*f) {
                auto p = decode((*f)->first_byte, (*f)->body, version_);
                REQUIRE(p.has_value());
                return std::move(*p);
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            if (left <= 0ms) return std::nullopt;
            pollfd pfd{fd_, POLLIN, 0};
            if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
            auto room = framer_.prepare(4096);
            const auto n = ::recv(fd_, room.data(), room.size(), 0);
            if (n <= 0) {
                eof_ = true;
                return std::nullopt;
            }
            framer_.commit(static_cast<std::size_t>(n));
        }
    }
    template <class T>
    T expect(std::chrono::milliseconds timeout = 5s) {
        auto p = receive(timeout);
        REQUIRE_MESSAGE(p.has_value(), "no packet (eof: ", eof_, ")");
        const T* t = std::get_if<T>(&*p);
        REQUIRE_MESSAGE(t != nullptr, "got packet type ", static_cast<int>(type_of(*p)));
        return *t;
    }
    // True when the server closes the connection (with no further packet) in time.
    bool closed_by_server(std::chrono::milliseconds timeout = 5s) {
        auto p = receive(timeout);
        return !p && eof_;
    }

    connack_packet connect(std::string id, std::uint16_t keep_alive = 60,
                           std::optional<will_message> will = std::nullopt) {
        connect_packet c;
        c.version = version_;
        c.client_id = std::move(id);
        c.keep_alive = keep_alive;
        c.will = std::move(will);
        send(c);
        auto ack = expect<connack_packet>();
        CHECK(ack.code == reason_code::success);
        return ack;
    }
    void subscribe(std::string filter, qos q) {
        subscribe_packet s;
        s.packet_id = 1;
        s.subscriptions.push_back({std::move(filter), {q}});
        send(s);
        expect<suback_packet>();
    }

  private:
    protocol_version version_;
    int fd_ = -1;
    framer framer_;
    bool eof_ = false;
};

publish_packet make_publish(std::string topic, std::string payload, qos q, std::uint16_t id) {
    publish_packet p;
    p.topic = std::move(topic);
    p.payload = std::move(payload);
    p.qos_level = q;
    p.packet_id = q == qos::at_most_once ? 0 : id;
    return p;
}

}  // namespace

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
