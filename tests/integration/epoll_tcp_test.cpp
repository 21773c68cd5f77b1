// The epoll transport of tern-broker's plain-TCP connections (net/transport/epoll_tcp.hpp)
// over loopback sockets: readiness waits, EPOLLOUT for writes the peer does not take, closes
// with waits pending, stale events of a batch, and the io_context going with waits pending.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "net/transport/epoll_tcp.hpp"

namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using mqtt::net::io_result;
using mqtt::net::transport;
using namespace std::chrono_literals;

// A connected loopback pair: {the accepted end, the connecting end}.
std::pair<int, int> tcp_pair(int rcvbuf = 0) {
    const int l = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(l >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(l, 8) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    const int c = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(c >= 0);
    if (rcvbuf > 0) ::setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const int s = ::accept(l, nullptr, nullptr);
    REQUIRE(s >= 0);
    ::close(l);
    return {s, c};
}

std::unique_ptr<transport> make(asio::io_context& io, int fd) {
    auto t = mqtt::net::make_epoll_tcp_transport(io, fd, asio::ip::tcp::v4());
    REQUIRE(t);
    return t;
}

struct listener final : mqtt::net::readable_listener {
    std::function<void(const error_code&)> f;
    int calls = 0;
    std::optional<error_code> last;
    void on_readable(const error_code& ec) override {
        ++calls;
        last = ec;
        if (f) f(ec);
    }
};

// Runs `io` until `done()` or the limit (a loaded machine gets plenty).
template <class Pred>
bool run_until(asio::io_context& io, Pred done, std::chrono::milliseconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < until) {
        if (io.stopped()) io.restart();
        io.run_one_for(20ms);
    }
    return done();
}
void run_for(asio::io_context& io, std::chrono::milliseconds d) {
    run_until(
        io, [] { return false; }, d);
}

}  // namespace

TEST_CASE("epoll tcp: bytes after a readiness wait, then the end of the stream") {
    asio::io_context io{1};
    auto [s, c] = tcp_pair();
    auto t = make(io, s);
    CHECK(mqtt::net::epoll_tcp_registered(io) == 1);
    CHECK(t->can_wait_readable());
    char buf[64];
    error_code ec;
    CHECK(t->read_now(asio::buffer(buf), ec) == 0);
    CHECK(ec == asio::error::would_block);
    auto l = std::make_shared<listener>();
    t->async_wait_readable(l);
    run_for(io, 100ms);
    CHECK(l->calls == 0);  // nothing came
    REQUIRE(::send(c, "hello", 5, 0) == 5);
    REQUIRE(run_until(io, [&] { return l->calls == 1; }));
    CHECK(!*l->last);
    CHECK(t->read_now(asio::buffer(buf), ec) == 5);
    CHECK(!ec);
    CHECK(std::memcmp(buf, "hello", 5) == 0);
    ::shutdown(c, SHUT_WR);  // a half-closed peer: the end of its stream, the socket open
    for (int i = 0; i < 2; ++i) {
        t->read_now(asio::buffer(buf), ec);
        if (ec != asio::error::would_block) break;
        l->calls = 0;
        t->async_wait_readable(l);
        REQUIRE(run_until(io, [&] { return l->calls == 1; }));
    }
    CHECK(ec == asio::error::eof);
    // We can still write to it.
    io_result r;
    bool done = false;
    asio::co_spawn(io, t->write(asio::buffer("bye", 3)), [&](std::exception_ptr, io_result x) {
        r = x;
        done = true;
    });
    REQUIRE(run_until(io, [&] { return done; }));
    CHECK(!std::get<0>(r));
    CHECK(::recv(c, buf, sizeof buf, 0) == 3);
    t->close();
    CHECK(mqtt::net::epoll_tcp_registered(io) == 0);
    CHECK(::recv(c, buf, sizeof buf, 0) == 0);
    ::close(c);
}

// A read that empties the socket answers the next read_now() itself (would_block, no recv):
// the socket's next bytes bring an event. These are the cases where no event follows.
TEST_CASE("epoll tcp: after a short read, bytes that came without a waiter are still read") {
    asio::io_context io{1};
    auto [s, c] = tcp_pair();
    auto t = make(io, s);
    char buf[64];
    error_code ec;
    REQUIRE(::send(c, "one", 3, 0) == 3);
    auto l = std::make_shared<listener>();
    CHECK(t->read_now(asio::buffer(buf), ec) == 3);  // short: the socket is empty now
    CHECK(!ec);
    CHECK(t->read_now(asio::buffer(buf), ec) == 0);
    CHECK(ec == asio::error::would_block);
    // Bytes arrive while nobody waits: their event is dispatched to no reader.
    REQUIRE(::send(c, "two", 3, 0) == 3);
    run_for(io, 100ms);
    CHECK(t->read_now(asio::buffer(buf), ec) == 3);
    CHECK(!ec);
    CHECK(std::memcmp(buf, "two", 3) == 0);
    // And bytes after a wait is registered wake it.
    CHECK(t->read_now(asio::buffer(buf), ec) == 0);
    CHECK(ec == asio::error::would_block);
    t->async_wait_readable(l);
    REQUIRE(::send(c, "three", 5, 0) == 5);
    REQUIRE(run_until(io, [&] { return l->calls == 1; }));
    CHECK(t->read_now(asio::buffer(buf), ec) == 5);
    t->close();
    ::close(c);
}

TEST_CASE("epoll tcp: the last bytes and the peer's FIN in one event: the end is read too") {
    asio::io_context io{1};
    auto [s, c] = tcp_pair();
    auto t = make(io, s);
    char buf[64];
    error_code ec;
    CHECK(t->read_now(asio::buffer(buf), ec) == 0);
    CHECK(ec == asio::error::would_block);
    auto l = std::make_shared<listener>();
    t->async_wait_readable(l);
    REQUIRE(::send(c, "last", 4, 0) == 4);
    ::shutdown(c, SHUT_WR);
    run_for(io, 100ms);  // both are there before the set is read: one event
    REQUIRE(l->calls == 1);
    // The recv stops before the FIN with fewer bytes than asked, and takes the FIN with it:
    // no event follows, so this read must not be taken for "empty".
    CHECK(t->read_now(asio::buffer(buf), ec) == 4);
    CHECK(!ec);
    t->read_now(asio::buffer(buf), ec);
    CHECK(ec == asio::error::eof);
    t->close();
    ::close(c);
}

TEST_CASE("epoll tcp: a wait pending at the close ends with operation_aborted, once") {
    asio::io_context io{1};
    auto [s, c] = tcp_pair();
    auto t = make(io, s);
    auto l = std::make_shared<listener>();
    t->async_wait_readable(l);
    REQUIRE(::send(c, "x", 1, 0) == 1);  // an event on its way too
    t->close();
    CHECK(l.use_count() == 2);  // the posted completion holds it
    run_for(io, 100ms);
    CHECK(l->calls == 1);
    CHECK(l->last == asio::error::operation_aborted);
    CHECK(l.use_count() == 1);
    ::close(c);
}

// A handler early in a batch closes the other sockets whose events are in the same batch, and
// new sockets take their slots: the stale events must reach neither the closed transports
// (freed) nor the new ones (nothing arrived for those).
TEST_CASE("epoll tcp: events of sockets closed earlier in their batch are dropped") {
    asio::io_context io{1};
    constexpr int n = 40;
    std::vector<std::unique_ptr<transport>> ts;
    std::vector<int> peers;
    std::vector<std::shared_ptr<listener>> ls;
    for (int i = 0; i < n; ++i) {
        auto [s, c] = tcp_pair();
        ts.push_back(make(io, s));
        peers.push_back(c);
        ls.push_back(std::make_shared<listener>());
    }
    std::vector<std::unique_ptr<transport>> fresh;
    std::vector<int> fresh_peers;
    std::vector<std::shared_ptr<listener>> fresh_ls;
    int first = -1;
    for (int i = 0; i < n; ++i) {
        ls[i]->f = [&, i](const error_code& ec) {
            if (ec || first >= 0) return;
            first = i;
            for (int j = 0; j < n; ++j) {
                if (j != i) ts[j].reset();  // closed and freed while their events are pending
            }
            for (int j = 0; j < n - 1; ++j) {  // the freed slots, taken again at once
                auto [s, c] = tcp_pair();
                fresh.push_back(make(io, s));
                fresh_peers.push_back(c);
                fresh_ls.push_back(std::make_shared<listener>());
                fresh.back()->async_wait_readable(fresh_ls.back());
            }
        };
        ts[i]->async_wait_readable(ls[i]);
    }
    for (int c : peers) REQUIRE(::send(c, "x", 1, 0) == 1);  // every socket ready, one batch
    std::this_thread::sleep_for(50ms);                       // all of it in the kernel's ready list
    REQUIRE(run_until(io, [&] {
        int ended = 0;
        for (auto& l : ls) ended += l->calls;
        return ended == n;
    }));
    run_for(io, 200ms);
    CHECK(first >= 0);
    for (int i = 0; i < n; ++i) {
        CHECK(ls[i]->calls == 1);
        if (i != first) CHECK(ls[i]->last == asio::error::operation_aborted);
    }
    for (auto& l : fresh_ls) CHECK(l->calls == 0);  // nothing came for them
    CHECK(mqtt::net::epoll_tcp_registered(io) == static_cast<std::size_t>(n));
    for (int c : peers) ::close(c);
    for (int c : fresh_peers) ::close(c);
}

namespace {

asio::awaitable<io_result> write_all(transport& t, const std::vector<char>& data) {
    co_return co_await t.write(asio::buffer(data));
}

// Reads `n` bytes from `fd` (blocking), on another thread.
std::vector<char> read_exactly(int fd, std::size_t n) {
    std::vector<char> got(n);
    std::size_t have = 0;
    while (have < n) {
        const auto r = ::recv(fd, got.data() + have, n - have, 0);
        if (r <= 0) break;
        have += static_cast<std::size_t>(r);
    }
    got.resize(have);
    return got;
}

// A write started on `io`; its result once it completes.
std::shared_ptr<std::optional<io_result>> spawn_write(asio::io_context& io,
                                                      asio::awaitable<io_result> w) {
    auto r = std::make_shared<std::optional<io_result>>();
    asio::co_spawn(io, std::move(w), [r](std::exception_ptr e, io_result x) {
        REQUIRE(!e);
        *r = x;
    });
    return r;
}

// Runs `io` until the write `r` completes while another thread reads `n` bytes from `peer`;
// what it read.
std::vector<char> drain(asio::io_context& io, const std::optional<io_result>& r, int peer,
                        std::size_t n) {
    std::vector<char> got;
    std::thread reader{[&] { got = read_exactly(peer, n); }};
    const bool done = run_until(
        io, [&] { return r.has_value(); }, 30s);
    reader.join();
    REQUIRE(done);
    return got;
}

}  // namespace

TEST_CASE("epoll tcp: a write the peer does not take waits for EPOLLOUT, then completes") {
    asio::io_context io{1};
    auto [s, c] = tcp_pair(64 * 1024);
    const int small = 64 * 1024;
    ::setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    auto t = make(io, s);
    std::vector<char> data(8u << 20);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + (i >> 12));
    const auto r = spawn_write(io, write_all(*t, data));
    run_for(io, 200ms);
    REQUIRE(!*r);  // 8 MiB do not fit in the socket buffers: the writer waits
    const auto got = drain(io, *r, c, data.size());
    CHECK(!std::get<0>(**r));
    CHECK(std::get<1>(**r) == data.size());
    CHECK(got == data);
    ::close(c);
}

TEST_CASE("epoll tcp: a gathered write of many buffers arrives whole and in order") {
    asio::io_context io{1};
    auto [s, c] = tcp_pair(64 * 1024);
    auto t = make(io, s);
    std::vector<std::vector<char>> parts;
    std::vector<asio::const_buffer> bufs;
    std::vector<char> expected;
    for (int i = 0; i < 300; ++i) {  // more than one sendmsg's 64 buffers, some empty
        parts.emplace_back(static_cast<std::size_t>((i % 5) * 997), static_cast<char>(i));
        expected.insert(expected.end(), parts.back().begin(), parts.back().end());
    }
    for (auto& p : parts) bufs.push_back(asio::buffer(p));
    const auto r = spawn_write(io, t->write_gathered(bufs));
    const auto got = drain(io, *r, c, expected.size());
    CHECK(!std::get<0>(**r));
    CHECK(std::get<1>(**r) == expected.size());
    CHECK(got == expected);
    ::close(c);
}

TEST_CASE("epoll tcp: a write waiting for EPOLLOUT ends at the close, or at the peer's reset") {
    asio::io_context io{1};
    auto [s, c] = tcp_pair(64 * 1024);
    auto t = make(io, s);
    std::vector<char> data(8u << 20, 'x');
    const auto r = spawn_write(io, write_all(*t, data));
    run_for(io, 200ms);
    REQUIRE(!*r);
    SUBCASE("close") {
        t->close();
        REQUIRE(run_until(io, [&] { return r->has_value(); }));
        CHECK(std::get<0>(**r) == asio::error::operation_aborted);
        CHECK(std::get<1>(**r) < data.size());
        ::close(c);
    }
    SUBCASE("reset") {
        linger lg{1, 0};  // close with RST
        ::setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        ::close(c);
        REQUIRE(run_until(io, [&] { return r->has_value(); }));
        CHECK(std::get<0>(**r));
        CHECK(std::get<0>(**r) != asio::error::operation_aborted);
    }
}

namespace {

// Holds its transport, which holds it while it waits: only the loop's shutdown frees both.
struct owner final : mqtt::net::readable_listener {
    explicit owner(int& alive) : alive(alive) { ++alive; }
    ~owner() { --alive; }
    void on_readable(const error_code&) override {}
    int& alive;
    std::unique_ptr<transport> t;
};

}  // namespace

TEST_CASE("epoll tcp: an io_context destroyed with waits pending frees what they hold") {
    int alive = 0;
    std::vector<int> peers;
    {
        asio::io_context io{1};
        for (int i = 0; i < 3; ++i) {
            auto [s, c] = tcp_pair();
            peers.push_back(c);
            auto o = std::make_shared<owner>(alive);
            o->t = make(io, s);
            o->t->async_wait_readable(o);
        }
        run_for(io, 20ms);
        CHECK(alive == 3);
    }
    CHECK(alive == 0);
    for (int c : peers) ::close(c);
}

// tern-broker's loop ends when it has no more work: an epoll set without sockets keeps no
// wait pending.
TEST_CASE("epoll tcp: no wait is pending once the last socket is gone") {
    asio::io_context io{1};
    for (int round = 0; round < 2; ++round) {
        auto [s, c] = tcp_pair();
        auto t = make(io, s);
        auto l = std::make_shared<listener>();
        t->async_wait_readable(l);
        REQUIRE(::send(c, "x", 1, 0) == 1);
        REQUIRE(run_until(io, [&] { return l->calls == 1; }));
        t.reset();
        ::close(c);
        io.restart();
        io.run_for(10s);  // returns at once when out of work
        CHECK(io.stopped());
    }
}

// The set's readiness is not an Asio operation: the sockets in it are the loop's work.
TEST_CASE("epoll tcp: the loop runs while its set holds a socket, and ends with the last") {
    asio::io_context io{1};
    auto [s, c] = tcp_pair();
    auto t = make(io, s);
    char buf[8];
    error_code ec;
    CHECK(t->read_now(asio::buffer(buf), ec) == 0);
    CHECK(ec == asio::error::would_block);
    auto l = std::make_shared<listener>();
    l->f = [&](const error_code&) { t->close(); };  // the last socket goes: run() returns
    t->async_wait_readable(l);
    std::thread runner([&] { io.run(); });
    std::this_thread::sleep_for(100ms);
    REQUIRE(::send(c, "x", 1, 0) == 1);
    runner.join();
    CHECK(l->calls == 1);
    ::close(c);
}
