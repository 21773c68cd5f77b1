// The broker side of MQTT over WebSocket: the HTTP upgrade (Beast's request parser), then
// RFC 6455 framing of our own (ws_frame.hpp) over an inner transport: plain TCP for ws,
// the OpenSSL memory-BIO TLS of tls_mem.cpp for wss. No state lives in an io_context (the
// decoder is a value, the TLS state is in its SSL object), so a connection can move to
// another loop (tern-broker with threads > 1): release_ws_server_transport() on one loop,
// resume_ws_server_transport() on the other.

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <variant>

#include "net/transport/ws.hpp"
#include "net/transport/ws_frame.hpp"
#include "net/transport/ws_http.hpp"

namespace mqtt::net {
namespace {

using error_code = boost::system::error_code;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// An upgrade request is a few hundred bytes; a peer that sends more before the blank line
// is not a WebSocket client.
constexpr std::size_t header_limit = 8 * 1024;
// Bounds the closing handshake (our close frame, then with wss the TLS close_notify).
constexpr auto close_timeout = std::chrono::seconds{3};

// What a read reports once the input has ended at the WebSocket layer.
error_code input_end(const ws::decoder& d) {
    if (d.peer_closed()) return asio::error::eof;  // the peer's close frame
    return boost::system::errc::make_error_code(boost::system::errc::protocol_error);
}

// Everything a connection's operations share, held by each of them (a control frame may
// still be on the wire when the transport is destroyed).
struct ws_core : std::enable_shared_from_this<ws_core> {
    ws_core(std::unique_ptr<transport> t, ws::decoder d, bool s)
        : inner(std::move(t)), dec(d), secure(s), idle(inner->get_executor()) {
        idle.expires_at(asio::steady_timer::time_point::max());
    }

    std::unique_ptr<transport> inner;
    ws::decoder dec;
    bool secure;
    std::vector<std::uint8_t> unread;  // read with the upgrade request, not decoded yet
    std::size_t unread_at = 0;
    // Output: one write on the inner transport at a time, data or control.
    bool writing = false;
    error_code write_error;
    bool pong_pending = false;
    std::array<std::uint8_t, 125> pong{};
    std::uint8_t pong_size = 0;
    std::uint16_t close_code = 0;  // a close frame to send (once close_queued)
    bool close_queued = false;
    bool close_sent = false;
    std::array<std::uint8_t, 2 + 125 + 4> control{};  // the control frames on the wire now
    std::array<std::uint8_t, ws::max_header> header{};
    std::vector<asio::const_buffer> gather;
    asio::steady_timer idle;    // cancelled whenever a write ends that someone waits for
    int waiting = 0;            // coroutines waiting on `idle`
    asio::const_buffer single;  // write()'s buffer while it is written

    bool control_pending() const { return pong_pending || (close_queued && !close_sent); }

    // Decodes the `n` bytes read into `b` in place: the MQTT bytes now at its start.
    std::size_t take(asio::mutable_buffer b, std::size_t n) {
        auto* p = static_cast<std::uint8_t*>(b.data());
        const auto r = dec.decode(std::span<const std::uint8_t>(p, n), p);
        if (dec.ping_pending()) {
            std::copy(dec.ping_payload().begin(), dec.ping_payload().end(), pong.begin());
            pong_size = static_cast<std::uint8_t>(dec.ping_payload().size());
            pong_pending = true;
            dec.take_ping();
        }
        if (dec.done() && !close_queued) {
            close_queued = true;
            close_code = dec.peer_closed() ? dec.peer_code() : dec.error();
        }
        if (pong_pending || (close_queued && !close_sent)) kick();
        return r.payload;
    }

    // Bytes read with the upgrade request first.
    std::size_t from_unread(asio::mutable_buffer b) {
        const std::size_t n = std::min(b.size(), unread.size() - unread_at);
        std::memcpy(b.data(), unread.data() + unread_at, n);
        unread_at += n;
        if (unread_at == unread.size()) {
            std::vector<std::uint8_t>{}.swap(unread);
            unread_at = 0;
        }
        return n;
    }
    bool has_unread() const { return unread_at < unread.size(); }

    // Reads until MQTT bytes arrive or the input ends, with completion handlers.
    template <class Handler>
    void read(asio::mutable_buffer b, Handler&& h) {
        if (dec.done()) return complete(std::forward<Handler>(h), input_end(dec), 0);
        if (b.size() == 0) return complete(std::forward<Handler>(h), error_code{}, 0);
        if (has_unread()) {
            const std::size_t n = take(b, from_unread(b));
            if (n > 0) return complete(std::forward<Handler>(h), error_code{}, n);
            if (dec.done()) return complete(std::forward<Handler>(h), input_end(dec), 0);
            if (has_unread()) {
                auto alloc = asio::get_associated_allocator(h);
                asio::post(inner->get_executor(),
                           asio::bind_allocator(alloc, [self = shared_from_this(), b,
                                                        h = std::forward<Handler>(h)]() mutable {
                               self->read(b, std::move(h));
                           }));
                return;
            }
        }
        auto alloc = asio::get_associated_allocator(h);
        inner->async_read_some(
            b, asio::bind_allocator(
                   alloc, [self = shared_from_this(), b, h = std::forward<Handler>(h)](
                              const error_code& ec, std::size_t n) mutable {
                       if (ec) return std::move(h)(ec, std::size_t{0});
                       const std::size_t got = self->take(b, n);
                       if (got > 0) return std::move(h)(error_code{}, got);
                       if (self->dec.done())
                           return std::move(h)(input_end(self->dec), std::size_t{0});
                       self->read(b, std::move(h));  // a header or a control frame only
                   }));
    }

    template <class Handler>
    void complete(Handler&& h, error_code ec, std::size_t n) {
        auto alloc = asio::get_associated_allocator(h);
        asio::post(inner->get_executor(),
                   asio::bind_allocator(alloc, [h = std::forward<Handler>(h), ec, n]() mutable {
                       std::move(h)(ec, n);
                   }));
    }

    // The same as a coroutine, for callers racing the read against a deadline.
    asio::awaitable<io_result> read_co(asio::mutable_buffer b) {
        auto self = shared_from_this();
        for (;;) {
            if (dec.done()) co_return io_result{input_end(dec), 0};
            if (b.size() == 0) co_return io_result{error_code{}, 0};
            std::size_t n = 0;
            if (has_unread()) {
                n = from_unread(b);
            } else {
                auto [ec, m] = co_await inner->read_some(b);
                if (ec) co_return io_result{ec, 0};
                n = m;
            }
            if (const std::size_t got = take(b, n); got > 0) co_return io_result{error_code{}, got};
        }
    }

    // Starts sending the pending control frames unless a write is on the wire (whose end
    // sends them).
    void kick() {
        if (writing || write_error) return;
        writing = true;
        asio::co_spawn(inner->get_executor(), send_control(shared_from_this()), asio::detached);
    }

    static asio::awaitable<void> send_control(std::shared_ptr<ws_core> self) {
        (void)co_await self->write_control();
        self->writing = false;
        self->idle.cancel();
    }

    // With `writing` held: the pending pong, then the pending close frame.
    asio::awaitable<error_code> write_control() {
        while (!write_error && !close_sent && (pong_pending || close_queued)) {
            std::size_t n = 0;
            if (pong_pending) {
                control[0] = 0x8A;
                control[1] = pong_size;
                std::copy_n(pong.begin(), pong_size, control.begin() + 2);
                n = 2 + pong_size;
                pong_pending = false;
            } else {
                std::array<std::uint8_t, 4> c{};
                n = ws::encode_close(close_code, c);
                std::copy_n(c.begin(), n, control.begin());
                close_sent = true;
            }
            auto [ec, m] = co_await inner->write(asio::buffer(control.data(), n));
            (void)m;
            if (ec) write_error = ec;
        }
        co_return write_error;
    }

    // Until no write is on the wire (or the transport closed).
    asio::awaitable<bool> wait_idle() {
        while (writing) {
            ++waiting;
            auto [ec] = co_await idle.async_wait(nothrow);
            --waiting;
            if (ec != asio::error::operation_aborted) co_return false;  // not a wake-up
        }
        co_return true;
    }

    // One binary message per batch the driver writes.
    asio::awaitable<io_result> write_data(std::span<const asio::const_buffer> bufs) {
        auto self = shared_from_this();
        // The common case, no control frame and no wait, costs no coroutine but this one.
        if (writing && !co_await wait_idle()) {
            co_return io_result{asio::error::operation_aborted, 0};
        }
        if (write_error) co_return io_result{write_error, 0};
        writing = true;
        error_code ec;
        if (control_pending()) ec = co_await write_control();
        std::size_t total = 0;
        if (!ec && close_sent) ec = asio::error::broken_pipe;  // no data after a close frame
        if (!ec) {
            for (const auto& b : bufs) total += b.size();
            const std::size_t h = ws::encode_header(ws::opcode::binary, total, header);
            gather.clear();
            gather.push_back(asio::buffer(header.data(), h));
            gather.insert(gather.end(), bufs.begin(), bufs.end());
            auto [wec, n] = co_await inner->write_gathered(gather);
            (void)n;
            gather.clear();
            if (wec) write_error = ec = wec;
        }
        if (!ec && control_pending()) ec = co_await write_control();  // queued meanwhile
        writing = false;
        if (waiting > 0) idle.cancel();
        co_return io_result{ec, ec ? 0 : total};
    }

    // Our close frame (1000 unless one is queued or sent already) and whatever control frame
    // is on the wire now, bounded by the caller: after it the stream may end.
    asio::awaitable<void> close_handshake() {
        auto self = shared_from_this();
        if (!co_await wait_idle()) co_return;
        if (!close_queued) {
            close_queued = true;
            close_code = ws::close_normal;
        }
        if (close_sent) co_return;
        writing = true;
        (void)co_await write_control();
        writing = false;
        idle.cancel();
    }
};

class ws_server_transport final : public transport {
  public:
    ws_server_transport(std::shared_ptr<ws_core> core, bool handshaken, ws_server_settings s)
        : core_(std::move(core)), handshaken_(handshaken), settings_(std::move(s)) {}
    ~ws_server_transport() override { close(); }

    asio::awaitable<error_code> handshake(std::chrono::milliseconds timeout,
                                          std::string& why) override {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer timer{core_->inner->get_executor(), timeout};
        auto r = co_await (exchange(timeout, why) || timer.async_wait(nothrow));
        if (r.index() == 1) {
            why = std::string{"no "} + (core_->secure ? "TLS and WebSocket" : "WebSocket") +
                  " handshake within " + std::to_string(timeout.count()) + " ms";
            co_return asio::error::timed_out;
        }
        co_return std::get<0>(r);
    }

    void async_read_some(asio::mutable_buffer b, read_handler h) override {
        core_->read(b, std::move(h));
    }
    asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
        return core_->read_co(b);
    }
    // No coroutine of its own: one write at a time, so the buffer can wait in the core.
    asio::awaitable<io_result> write(asio::const_buffer b) override {
        core_->single = b;
        return core_->write_data(std::span<const asio::const_buffer>(&core_->single, 1));
    }
    asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> b) override {
        return core_->write_data(b);
    }
    // A close frame, bounded by close_timeout, then the inner shutdown (TLS: close_notify;
    // then FIN).
    asio::awaitable<void> shutdown() override {
        using namespace asio::experimental::awaitable_operators;
        auto core = core_;
        if (handshaken_ && !core->write_error) {
            asio::steady_timer timer{core->inner->get_executor(), close_timeout};
            auto r = co_await (core->close_handshake() || timer.async_wait(nothrow));
            if (r.index() == 1) {
                core->inner->close();
                co_return;
            }
        }
        co_await core->inner->shutdown();
    }
    void close() override {
        core_->inner->close();
        core_->idle.cancel();
    }
    asio::any_io_executor get_executor() override { return core_->inner->get_executor(); }
    const char* name() const noexcept override { return core_->secure ? "wss" : "ws"; }
    std::optional<std::string> peer_common_name() const override {
        return core_->inner->peer_common_name();
    }
    std::optional<std::string> peer_subject() const override {
        return core_->inner->peer_subject();
    }

    // Control frames a read queued go out first: no write may be pending on this loop once
    // the descriptor is someone else's.
    asio::awaitable<bool> release(ws_parts& out) {
        auto core = core_;
        if (!handshaken_ || core->dec.done() || core->close_queued) co_return false;
        if (!co_await core->wait_idle()) co_return false;
        core->writing = true;
        const auto ec = co_await core->write_control();
        core->writing = false;
        if (ec) co_return false;
        if (core->secure) {
            if (!co_await release_tls_server_transport(*core->inner, out.stream)) co_return false;
        } else if (!release_tcp_transport(*core->inner, out.stream.fd, out.stream.protocol)) {
            co_return false;
        }
        out.decoder = core->dec;
        out.unread.assign(core->unread.begin() + static_cast<std::ptrdiff_t>(core->unread_at),
                          core->unread.end());
        co_return true;
    }

  private:
    asio::awaitable<error_code> exchange(std::chrono::milliseconds timeout, std::string& why) {
        auto core = core_;
        if (core->secure) {
            auto ec = co_await core->inner->handshake(timeout, why);
            if (ec) co_return ec;
        }
        ws_upgrade up{*core->inner, settings_.path, header_limit, {}};
        auto ec = co_await up.run(why);
        if (ec) co_return ec;
        core->unread = std::move(up.rest);
        handshaken_ = true;
        co_return error_code{};
    }

    std::shared_ptr<ws_core> core_;
    bool handshaken_;
    ws_server_settings settings_;
};

std::unique_ptr<transport> make(std::unique_ptr<transport> inner, bool secure, ws::decoder dec,
                                bool handshaken, ws_server_settings s) {
    auto core = std::make_shared<ws_core>(std::move(inner), dec, secure);
    return std::make_unique<ws_server_transport>(std::move(core), handshaken, std::move(s));
}

}  // namespace

std::unique_ptr<transport> make_ws_server_transport(asio::ip::tcp::socket socket,
                                                    tls_context_ptr tls, ws_server_settings s) {
    const ws::decoder dec{s.max_message};
    if (tls) {
        return make(make_tls_server_transport(std::move(socket), std::move(tls)), true, dec, false,
                    std::move(s));
    }
    return make(make_tcp_transport(std::move(socket)), false, dec, false, std::move(s));
}

asio::awaitable<bool> release_ws_server_transport(transport& t, ws_parts& out) {
    auto* w = dynamic_cast<ws_server_transport*>(&t);
    if (w == nullptr) co_return false;
    co_return co_await w->release(out);
}

std::unique_ptr<transport> resume_ws_server_transport(asio::ip::tcp::socket socket,
                                                      ws_parts parts) {
    const bool secure = parts.stream.ssl != nullptr;
    auto inner = secure
                     ? resume_tls_server_transport(std::move(socket), std::move(parts.stream.ssl))
                     : make_tcp_transport(std::move(socket));
    auto core = std::make_shared<ws_core>(std::move(inner), parts.decoder, secure);
    core->unread = std::move(parts.unread);
    return std::make_unique<ws_server_transport>(std::move(core), true, ws_server_settings{});
}

}  // namespace mqtt::net
