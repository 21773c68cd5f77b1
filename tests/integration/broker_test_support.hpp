#pragma once

// Shared by the broker integration tests: tern-broker's server in-process on port 0
// (127.0.0.1 and ::1), and a blocking raw-bytes MQTT client with timeouts.

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
    // Options as given (listeners, bridges, ...); the limits of `o` too.
    explicit running_server(mqtt::net::server_options o) {
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
    // Closes with a reset (SO_LINGER 0) instead of a FIN.
    void reset() {
        linger lg{1, 0};
        if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close();
    }
    // FIN: no more bytes from us, the connection half open.
    void shutdown_send() { ::shutdown(fd_, SHUT_WR); }
    void set_receive_buffer(int bytes) {
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
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
    bool eof() const { return eof_; }
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
    // CONNECT as given (the version is the client's); the CONNACK, whatever its code.
    connack_packet connect_with(connect_packet c) {
        c.version = version_;
        send(c);
        return expect<connack_packet>();
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
