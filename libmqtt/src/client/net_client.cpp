// The Asio side of mqtt::client::connection: three coroutines (read, write, timer) move
// bytes and time between a transport (TCP or TLS) and the session; every protocol decision
// is the session's. This is the client's only translation unit that includes Asio.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <csignal>
#include <optional>
#include <utility>

#include "mqtt/client/connection.hpp"
#include "net/transport/tls.hpp"
#include "net/transport/transport.hpp"
#include "net/transport/ws.hpp"

namespace mqtt::client {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 64 * 1024;

}  // namespace

struct connection::impl {
    impl(connection_config c, session& s)
        : cfg(std::move(c)), s(s), wake(io, clock::time_point::max()), timer(io) {}

    connection_config cfg;
    session& s;
    asio::io_context io{1};  // declared before the I/O objects, destroyed after them
    std::unique_ptr<net::transport> transport;  // set by tcp_connect()
    net::tls_context_ptr tls;                   // built at the first connect, kept
    std::string transport_error;
    asio::steady_timer wake;   // never expires: the writer sleeps on it, changed() cancels it
    asio::steady_timer timer;  // the session's deadline
    clock::time_point armed = clock::time_point::max();
    std::optional<asio::signal_set> signals;
    protocol::framer framer;
    std::vector<std::uint8_t> writing;
    bool interrupted = false;
    bool writer_busy = false;
    bool socket_open = false;
    int loops = 0;  // coroutines still running: a reconnect waits for all three to end

    // After any call into the session: wake the writer; re-arm the timer only when the
    // deadline moved earlier (a later one is found when the armed one fires), so a busy
    // connection does not re-arm it per message.
    void changed() {
        wake.cancel();
        if (s.deadline() < armed || s.closed()) timer.cancel();
    }

    void close_socket() {
        if (transport) transport->close();
        timer.cancel();
        wake.cancel();
        socket_open = false;
    }

    asio::awaitable<void> read_loop();
    asio::awaitable<void> write_loop();
    asio::awaitable<void> timer_loop();
    std::error_code tcp_connect();
    std::error_code tls_handshake(clock::time_point deadline);
    asio::awaitable<void> run_handshake(std::chrono::milliseconds timeout, bool& finished,
                                        boost::system::error_code& ec);
    void spawn_loops();
    void wait_for_loops();
};

void connection::impl::spawn_loops() {
    loops += 3;
    const auto done = [this](std::exception_ptr) { --loops; };
    asio::co_spawn(io, read_loop(), done);
    asio::co_spawn(io, write_loop(), done);
    asio::co_spawn(io, timer_loop(), done);
}

// The loops end once the socket is closed and the timers cancelled; run until they have.
void connection::impl::wait_for_loops() {
    if (socket_open) close_socket();
    timer.cancel();
    wake.cancel();
    for (int i = 0; loops > 0 && i < 10'000; ++i) {
        if (io.stopped()) io.restart();
        io.run_one_for(std::chrono::milliseconds{100});
    }
}

asio::awaitable<void> connection::impl::read_loop() {
    while (!s.closed()) {
        const auto room = framer.prepare(read_chunk);
        auto [ec, n] = co_await transport->read_some(asio::buffer(room.data(), room.size()));
        if (ec) {
            const bool eof = ec == asio::error::eof;
            // TLS 1.3: a broker that refuses our certificate says so after the handshake.
            if (const auto tls_error = net::describe_tls_error(ec);
                !tls_error.empty() && s.state() == session_state::connecting) {
                transport_error = "the broker refused the TLS connection: " + tls_error;
                s.on_transport_closed(errc::tls_failed);
                changed();
                co_return;
            }
            s.on_transport_closed(eof ? std::error_code{} : std::error_code(ec));
            changed();
            co_return;
        }
        framer.commit(n);
        const auto now = clock::now();
        while (!s.closed()) {
            auto next = framer.next();
            if (!next) {
                s.on_framing_error(next.error());
                break;
            }
            if (!*next) break;
            s.on_frame(**next, now);
        }
        changed();
    }
}

asio::awaitable<void> connection::impl::write_loop() {
    for (;;) {
        if (s.has_output()) {
            s.take_output(writing);
            writer_busy = true;
            auto [ec, n] = co_await transport->write(asio::buffer(writing));
            writer_busy = false;
            if (ec) {
                s.on_transport_closed(std::error_code(ec));
                changed();
                break;
            }
            continue;
        }
        if (s.closed() || !socket_open) break;
        auto [ec] = co_await wake.async_wait(nothrow);
        (void)ec;  // cancelled: there is something to look at
    }
    // Everything the session wanted said is said: close, which also ends the reader.
    if (s.closed()) close_socket();
}

asio::awaitable<void> connection::impl::timer_loop() {
    while (!s.closed() && socket_open) {
        armed = s.deadline();
        timer.expires_at(armed);
        auto [ec] = co_await timer.async_wait(nothrow);
        (void)ec;  // fired, or cancelled because the deadline moved: on_timer() checks
        s.on_timer(clock::now());
        changed();
    }
}

std::error_code connection::impl::tcp_connect() {
    transport.reset();
    transport_error.clear();
    tcp::socket socket(io);
    tcp::resolver resolver(io);
    boost::system::error_code ec;
    auto endpoints = resolver.resolve(cfg.host, std::to_string(cfg.port), ec);
    if (ec) return std::error_code(ec);
    bool finished = false;
    asio::async_connect(socket, endpoints, [&](boost::system::error_code e, const tcp::endpoint&) {
        ec = e;
        finished = true;
    });
    const auto deadline = clock::now() + cfg.session.connect_timeout;
    while (!finished && !interrupted && clock::now() < deadline) io.run_one_until(deadline);
    if (!finished) {
        boost::system::error_code ignored;
        socket.close(ignored);
        while (!finished) io.run_one();  // the handler runs with operation_aborted
        return std::error_code(boost::system::error_code(interrupted ? asio::error::interrupted
                                                                     : asio::error::timed_out));
    }
    if (!ec) socket.set_option(tcp::no_delay(true), ec);
    if (ec) return std::error_code(ec);
    if (!cfg.tls && !cfg.websocket_path) {
        transport = net::make_tcp_transport(std::move(socket));
        return {};
    }
    if (cfg.tls && !tls) {
        tls = net::make_client_context(*cfg.tls, transport_error);
        if (!tls) return errc::tls_failed;
    }
    const auto& name = cfg.tls && !cfg.tls->server_name.empty() ? cfg.tls->server_name : cfg.host;
    if (cfg.websocket_path) {
        net::ws_client_settings ws;
        ws.host = name;
        ws.port = cfg.port;
        ws.path = *cfg.websocket_path;
        ws.insecure = cfg.tls && cfg.tls->insecure;
        transport = net::make_ws_client_transport(std::move(socket), cfg.tls ? tls : nullptr,
                                                  std::move(ws));
    } else {
        transport = net::make_tls_client_transport(std::move(socket), tls, name, cfg.tls->insecure);
    }
    return tls_handshake(deadline);
}

asio::awaitable<void> connection::impl::run_handshake(std::chrono::milliseconds timeout,
                                                      bool& finished,
                                                      boost::system::error_code& ec) {
    auto e = co_await transport->handshake(timeout, transport_error);
    ec = e;
    finished = true;
}

// The TLS and/or WebSocket handshake within what is left of the connect timeout.
std::error_code connection::impl::tls_handshake(clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    bool finished = false;
    boost::system::error_code ec;
    asio::co_spawn(io, run_handshake(std::max(left, std::chrono::milliseconds{1}), finished, ec),
                   asio::detached);
    while (!finished && !interrupted) {
        if (io.stopped()) io.restart();
        io.run_one();
    }
    if (!finished) {
        transport->close();
        while (!finished) io.run_one();
        return std::error_code(boost::system::error_code(asio::error::interrupted));
    }
    if (ec == asio::error::timed_out) return errc::connect_timeout;
    if (ec && cfg.websocket_path) return errc::websocket_failed;  // the message says which
    if (ec) {
        transport_error = "TLS handshake failed: " + transport_error;
        return errc::tls_failed;
    }
    return {};
}

connection::connection(connection_config cfg)
    : session_(cfg.session), impl_(std::make_unique<impl>(std::move(cfg), session_)) {
    if (impl_->cfg.handle_signals) {
        impl_->signals.emplace(impl_->io, SIGINT, SIGTERM);
        impl_->signals->async_wait([i = impl_.get()](boost::system::error_code ec, int) {
            if (!ec) i->interrupted = true;
        });
    }
}

connection::~connection() = default;

bool connection::interrupted() const noexcept {
    return impl_->interrupted;
}

const std::string& connection::transport_error() const noexcept {
    return impl_->transport_error;
}

bool connection::output_pending() const noexcept {
    return session_.has_output() || impl_->writer_busy;
}

std::error_code connection::connect() {
    auto& i = *impl_;
    if (auto ec = i.tcp_connect()) return ec;
    i.socket_open = true;
    session_.start(clock::now());
    i.spawn_loops();
    run_until([&] { return session_.state() != session_state::connecting; });
    if (session_.state() == session_state::connected) return {};
    if (i.interrupted && !session_.closed()) return std::make_error_code(std::errc::interrupted);
    return session_.close_info().error;
}

std::error_code connection::reconnect() {
    auto& i = *impl_;
    i.wait_for_loops();
    if (i.interrupted) return std::make_error_code(std::errc::interrupted);
    i.framer = protocol::framer{};
    if (auto ec = i.tcp_connect()) return ec;
    i.socket_open = true;
    session_.reconnect(clock::now());
    i.spawn_loops();
    run_until([&] { return session_.state() != session_state::connecting; });
    if (session_.state() == session_state::connected) return {};
    if (i.interrupted && !session_.closed()) return std::make_error_code(std::errc::interrupted);
    return session_.close_info().error;
}

void connection::sleep_until(clock::time_point until) {
    auto& io = impl_->io;
    while (!impl_->interrupted && clock::now() < until) {
        if (io.stopped()) io.restart();
        io.run_one_until(until);
    }
}

result<std::uint16_t> connection::unsubscribe(std::vector<std::string> filters,
                                              protocol::properties props) {
    auto r = session_.unsubscribe(std::move(filters), std::move(props), clock::now());
    impl_->changed();
    return r;
}

result<std::uint16_t> connection::publish(protocol::publish_packet p) {
    auto r = session_.publish(std::move(p), clock::now());
    impl_->changed();
    return r;
}

result<std::uint16_t> connection::subscribe(std::vector<protocol::subscription> subs,
                                            protocol::properties props) {
    auto r = session_.subscribe(std::move(subs), std::move(props), clock::now());
    impl_->changed();
    return r;
}

bool connection::run_until(const std::function<bool()>& done, clock::time_point deadline) {
    auto& io = impl_->io;
    for (;;) {
        if (done()) return true;
        if (impl_->interrupted || session_.closed() || clock::now() >= deadline) return false;
        if (io.stopped()) io.restart();
        if (io.run_one_until(deadline) == 0 && io.stopped() && clock::now() < deadline)
            return done();  // nothing left to wait for
    }
}

void connection::poll() {
    if (impl_->io.stopped()) impl_->io.restart();
    impl_->io.poll();
}

bool connection::disconnect(protocol::reason_code rc) {
    return disconnect(rc, {});
}

bool connection::disconnect(protocol::reason_code rc, protocol::properties props) {
    auto& i = *impl_;
    if (!i.socket_open) return !output_pending();
    session_.disconnect(rc, std::move(props));
    i.changed();
    const auto deadline = clock::now() + i.cfg.close_grace;
    auto& io = i.io;
    while (i.socket_open && clock::now() < deadline) {
        if (io.stopped()) io.restart();
        if (io.run_one_until(deadline) == 0 && io.stopped()) break;
    }
    const bool flushed = !output_pending();
    if (i.socket_open) i.close_socket();
    io.restart();
    io.poll();  // let the coroutines see the closed socket and finish
    return flushed;
}

}  // namespace mqtt::client
