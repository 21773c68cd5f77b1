// The broker side of TLS: an OpenSSL SSL object driven through two memory BIOs over a plain
// TCP socket. Socket bytes go into the read BIO, SSL_read decrypts them; SSL_write encrypts
// into the write BIO, which is drained to the socket. All TLS state is in the SSL object and
// its BIOs, none in an io_context, so a handshaken connection can move to another loop
// (tern-broker with threads > 1): release_tls_server_transport() on one loop,
// resume_tls_server_transport() on the other.

#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <limits>
#include <utility>
#include <variant>

#include "net/transport/tls.hpp"

namespace mqtt::net {

void ssl_deleter::operator()(SSL* s) const noexcept {
    SSL_free(s);
}

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
using error_code = boost::system::error_code;

// Ciphertext taken from the socket per read: at most this much waits in the read BIO
// beyond what OpenSSL holds of one record (at most 16 KiB of plaintext and its overhead).
constexpr std::size_t socket_chunk = 16 * 1024;
// Plaintext encrypted per step of a write: the write BIO holds at most this much ciphertext
// (and its record overhead) before it goes out.
constexpr std::size_t write_chunk = 64 * 1024;

// The error of an SSL call that failed with SSL_get_error() == `e`.
error_code ssl_error(int e, bool socket_eof) {
    if (e == SSL_ERROR_ZERO_RETURN) return asio::error::eof;  // close_notify
    if (const unsigned long code = ERR_get_error(); code != 0) {
        ERR_clear_error();
        // The peer closed the socket without close_notify.
        if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return asio::ssl::error::stream_truncated;
        return error_code{static_cast<int>(code), asio::error::get_ssl_category()};
    }
    return socket_eof ? error_code{asio::ssl::error::stream_truncated}
                      : error_code{asio::error::connection_aborted};
}

// A memory BIO that has grown past this keeps its buffer only while it is in use.
constexpr std::size_t idle_bio_capacity = 4 * 1024;

// An empty memory BIO that answers "retry" when read empty (more may come), not EOF.
BIO* new_mem_bio() {
    BIO* b = BIO_new(BIO_s_mem());
    if (b != nullptr) BIO_set_mem_eof_return(b, -1);
    return b;
}

std::size_t bio_capacity(BIO* b) {
    BUF_MEM* m = nullptr;
    BIO_get_mem_ptr(b, &m);
    return m == nullptr ? 0 : m->max;
}

// Everything a connection's operations share, held by each pending operation: a flush
// started by a read (TLS 1.3 tickets, a key update's answer, an alert) may still be on the
// wire when the transport is destroyed.
struct tls_core : std::enable_shared_from_this<tls_core> {
    tls_core(asio::ip::tcp::socket s, ssl_ptr p)
        : socket(std::move(s)), ssl(std::move(p)), flushed(socket.get_executor()) {
        flushed.expires_at(asio::steady_timer::time_point::max());
    }

    asio::ip::tcp::socket socket;
    ssl_ptr ssl;
    std::vector<unsigned char> out;  // the ciphertext on the wire now
    bool flushing = false;           // one socket write at a time: reader and writer share it
    error_code write_error;          // the socket write failed: no more output
    bool socket_eof = false;         // the socket said EOF: OpenSSL gets it when its bytes run out
    asio::steady_timer flushed;      // cancelled whenever a flush ends: wakes flush_all()

    BIO* wbio() const { return SSL_get_wbio(ssl.get()); }
    BIO* rbio() const { return SSL_get_rbio(ssl.get()); }
    bool has_output() const { return BIO_ctrl_pending(wbio()) > 0; }

    // Starts writing what the write BIO holds, unless a write is on the wire already (its
    // end starts the next). No one waits for it; flush_all() does.
    void kick() {
        if (flushing || write_error || !has_output()) return;
        take_output();
        flushing = true;
        asio::async_write(socket, asio::buffer(out),
                          [self = shared_from_this()](const error_code& ec, std::size_t) {
                              self->written();
                              if (ec) self->write_error = ec;
                              self->flushed.cancel();
                              self->kick();
                          });
    }

    // A write ended: a quiet connection keeps no large ciphertext buffer (a burst of large
    // messages leaves up to write_chunk and more behind).
    void written() {
        flushing = false;
        if (out.capacity() > socket_chunk) std::vector<unsigned char>{}.swap(out);
        if (!has_output() && bio_capacity(wbio()) > idle_bio_capacity) {
            if (BIO* fresh = new_mem_bio()) SSL_set0_wbio(ssl.get(), fresh);
        }
    }

    // Before waiting for the socket: an empty read BIO that grew (a large message) is
    // replaced by a fresh one, so a quiet connection keeps no ciphertext buffer.
    void before_wait() {
        if (BIO_ctrl_pending(rbio()) == 0 && bio_capacity(rbio()) > idle_bio_capacity) {
            if (BIO* fresh = new_mem_bio()) SSL_set0_rbio(ssl.get(), fresh);
        }
    }

    void take_output() {
        const std::size_t n = BIO_ctrl_pending(wbio());
        out.resize(n);
        std::size_t got = 0;
        if (n > 0) (void)BIO_read_ex(wbio(), out.data(), n, &got);
        out.resize(got);
    }

    // Until everything the write BIO holds is on the wire (or a write failed).
    asio::awaitable<error_code> flush_all() {
        auto self = shared_from_this();
        for (;;) {
            if (write_error) co_return write_error;
            if (flushing) {
                auto [ec] = co_await flushed.async_wait(nothrow);
                if (ec != asio::error::operation_aborted) co_return ec;  // not a wake-up
                if (!socket.is_open()) co_return asio::error::operation_aborted;
                continue;
            }
            if (!has_output()) co_return error_code{};
            take_output();
            flushing = true;
            auto [ec, n] = co_await asio::async_write(socket, asio::buffer(out), nothrow);
            (void)n;
            written();
            if (ec) write_error = ec;
            flushed.cancel();
        }
    }

    // Moves what the socket holds now into the read BIO: false when it holds nothing
    // (would_block); EOF sets socket_eof; any other error is returned in `ec`.
    bool fill(error_code& ec) {
        std::array<unsigned char, socket_chunk> chunk;
        const std::size_t n = socket.read_some(asio::buffer(chunk), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            ec = {};
            return false;
        }
        if (ec == asio::error::eof) {
            ec = {};
            socket_eof = true;
            BIO_set_mem_eof_return(rbio(), 0);  // OpenSSL now sees the end of the stream
            return true;
        }
        if (ec) return false;
        std::size_t written = 0;
        (void)BIO_write_ex(rbio(), chunk.data(), n, &written);
        return true;
    }

    // One step of `op` (SSL_read or the handshake) until it is done or fails: waits for
    // the socket when OpenSSL wants more bytes, flushes what OpenSSL wrote meanwhile.
    template <class Handler>
    void read_step(asio::mutable_buffer b, Handler&& h) {
        for (;;) {
            std::size_t n = 0;
            ERR_clear_error();
            const int r = SSL_read_ex(ssl.get(), b.data(), b.size(), &n);
            kick();  // TLS 1.3 tickets, a key update's answer, an alert
            if (r == 1) return complete(std::forward<Handler>(h), error_code{}, n);
            const int e = SSL_get_error(ssl.get(), r);
            if (e != SSL_ERROR_WANT_READ || socket_eof)
                return complete(std::forward<Handler>(h), ssl_error(e, socket_eof), 0);
            error_code ec;
            if (fill(ec)) continue;
            if (ec) return complete(std::forward<Handler>(h), ec, 0);
            before_wait();
            // The caller's allocator, and its cancellation (a deadline racing the read).
            auto alloc = asio::get_associated_allocator(h);
            auto slot = asio::get_associated_cancellation_slot(h);
            socket.async_wait(
                asio::socket_base::wait_read,
                asio::bind_cancellation_slot(
                    slot, asio::bind_allocator(
                              alloc, [self = shared_from_this(), b,
                                      h = std::forward<Handler>(h)](const error_code& ec) mutable {
                                  if (ec) return std::move(h)(ec, std::size_t{0});
                                  self->read_step(b, std::move(h));
                              })));
            return;
        }
    }

    // A result found without waiting goes through the executor, as Asio's own would.
    template <class Handler>
    void complete(Handler&& h, error_code ec, std::size_t n) {
        auto alloc = asio::get_associated_allocator(h);
        asio::post(socket.get_executor(),
                   asio::bind_allocator(alloc, [h = std::forward<Handler>(h), ec, n]() mutable {
                       std::move(h)(ec, n);
                   }));
    }

    // The server handshake (or the rest of it, bytes already in the read BIO included).
    asio::awaitable<error_code> accept() {
        auto self = shared_from_this();
        for (;;) {
            ERR_clear_error();
            const int r = SSL_do_handshake(ssl.get());
            const int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl.get(), r);
            error_code failed;
            if (e != SSL_ERROR_NONE && (e != SSL_ERROR_WANT_READ || socket_eof))
                failed = ssl_error(e, socket_eof);
            // Our flight (or the alert saying why not) goes out first.
            const auto wec = co_await flush_all();
            if (failed) co_return failed;
            if (wec) co_return wec;
            if (e == SSL_ERROR_NONE) co_return error_code{};
            error_code ec;
            while (!fill(ec)) {
                if (ec) co_return ec;
                auto [wait] = co_await socket.async_wait(asio::socket_base::wait_read, nothrow);
                if (wait) co_return wait;
            }
        }
    }
};

struct start_read {
    std::shared_ptr<tls_core> core;
    template <class Handler>
    void operator()(Handler&& h, asio::mutable_buffer b) const {
        core->read_step(b, std::forward<Handler>(h));
    }
};

class tls_mem_transport final : public transport {
  public:
    tls_mem_transport(std::shared_ptr<tls_core> core, bool handshaken)
        : core_(std::move(core)), handshaken_(handshaken) {}
    ~tls_mem_transport() override { close(); }

    asio::awaitable<error_code> handshake(std::chrono::milliseconds timeout,
                                          std::string& why) override {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer timer{core_->socket.get_executor(), timeout};
        auto r = co_await (exchange(why) || timer.async_wait(nothrow));
        if (r.index() == 1) {
            why = "no TLS handshake within " + std::to_string(timeout.count()) + " ms";
            co_return asio::error::timed_out;
        }
        co_return std::get<0>(r);
    }

    void async_read_some(asio::mutable_buffer b, read_handler h) override {
        core_->read_step(b, std::move(h));
    }
    // The operation's awaitable itself, no coroutine frame (GCC 12 destroys a lambda
    // temporary of a co_await expression twice).
    asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
        return asio::async_initiate<decltype(nothrow), void(error_code, std::size_t)>(
            start_read{core_}, nothrow, b);
    }

    // A coroutine of its own: write_gathered() starts only when awaited, after a plain
    // function's `one` would be gone (ASan: stack-buffer-overflow).
    asio::awaitable<io_result> write(asio::const_buffer b) override {
        const asio::const_buffer one[] = {b};
        co_return co_await write_gathered(one);
    }

    asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> bufs) override {
        auto core = core_;
        std::size_t total = 0;
        std::size_t batch = 0;
        for (const auto& b : bufs) {
            const auto* p = static_cast<const unsigned char*>(b.data());
            std::size_t left = b.size();
            while (left > 0) {
                const std::size_t n = std::min(left, write_chunk);
                std::size_t done = 0;
                ERR_clear_error();
                const int r = SSL_write_ex(core->ssl.get(), p, n, &done);
                if (r != 1) {
                    const int e = SSL_get_error(core->ssl.get(), r);
                    co_return io_result{ssl_error(e, core->socket_eof), total};
                }
                p += done;
                left -= done;
                total += done;
                batch += done;
                // Small buffers (a gathered batch of packets) share one socket write.
                if (batch >= write_chunk) {
                    batch = 0;
                    if (auto ec = co_await core->flush_all(); ec) co_return io_result{ec, total};
                }
            }
        }
        auto ec = co_await core->flush_all();
        co_return io_result{ec, total};
    }

    // close_notify without waiting for the peer's (as Mosquitto does), then FIN.
    asio::awaitable<void> shutdown() override {
        auto core = core_;
        if (handshaken_ && core->socket.is_open()) {
            ERR_clear_error();
            (void)SSL_shutdown(core->ssl.get());
            ERR_clear_error();
            (void)co_await core->flush_all();
        }
        error_code ignored;
        core->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }
    void close() override {
        error_code ec;
        core_->socket.close(ec);
        core_->flushed.cancel();
    }
    asio::any_io_executor get_executor() override { return core_->socket.get_executor(); }
    const char* name() const noexcept override { return "tls"; }

    std::optional<std::string> peer_common_name() const override {
        return tls_peer_common_name(core_->ssl.get());
    }
    std::optional<std::string> peer_subject() const override {
        return tls_peer_subject(core_->ssl.get());
    }

    // What OpenSSL wrote goes out first: no write may be pending on this loop once the
    // descriptor is someone else's.
    asio::awaitable<bool> release(tls_parts& out) {
        auto core = core_;
        auto& c = *core;
        if (!handshaken_ || c.socket_eof) co_return false;
        if (auto ec = co_await c.flush_all(); ec) co_return false;
        if (c.flushing || !c.socket.is_open()) co_return false;
        error_code ec;
        out.protocol = c.socket.local_endpoint(ec).protocol();
        if (ec) co_return false;
        const int fd = c.socket.release(ec);
        if (ec || fd < 0) co_return false;
        out.fd = fd;
        out.ssl = std::move(c.ssl);
        co_return true;
    }

  private:
    asio::awaitable<error_code> exchange(std::string& why) {
        auto core = core_;
        auto ec = co_await check_tls_first_byte(core->socket, why);
        if (ec) co_return ec;
        ec = co_await core->accept();
        if (ec) {
            why = describe_tls_handshake_error(ec, core->ssl.get());
            co_return ec;
        }
        handshaken_ = true;
        co_return error_code{};
    }

    std::shared_ptr<tls_core> core_;
    bool handshaken_;
};

std::unique_ptr<transport> make_core(asio::ip::tcp::socket socket, ssl_ptr ssl, bool handshaken) {
    error_code ec;
    socket.non_blocking(true, ec);  // fill() reads what is there without waiting
    return std::make_unique<tls_mem_transport>(
        std::make_shared<tls_core>(std::move(socket), std::move(ssl)), handshaken);
}

}  // namespace

std::unique_ptr<transport> make_tls_server_transport(asio::ip::tcp::socket socket,
                                                     tls_context_ptr ctx) {
    ssl_ptr ssl{SSL_new(ctx->native_handle())};
    BIO* in = new_mem_bio();
    BIO* out = new_mem_bio();
    if (!ssl || !in || !out) {
        BIO_free(in);
        BIO_free(out);
        throw std::bad_alloc{};
    }
    SSL_set_bio(ssl.get(), in, out);
    SSL_set_accept_state(ssl.get());
    SSL_set_options(ssl.get(), SSL_OP_NO_RENEGOTIATION);
    // OpenSSL frees its record buffers (about 34 KiB) while the connection is idle.
    SSL_set_mode(ssl.get(), SSL_MODE_RELEASE_BUFFERS);
    return make_core(std::move(socket), std::move(ssl), false);
}

asio::awaitable<bool> release_tls_server_transport(transport& t, tls_parts& out) {
    auto* m = dynamic_cast<tls_mem_transport*>(&t);
    if (m == nullptr) co_return false;
    co_return co_await m->release(out);
}

std::unique_ptr<transport> resume_tls_server_transport(asio::ip::tcp::socket socket, ssl_ptr ssl) {
    return make_core(std::move(socket), std::move(ssl), true);
}

}  // namespace mqtt::net
