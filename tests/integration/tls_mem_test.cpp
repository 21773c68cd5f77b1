// The server TLS transport over memory BIOs (net/transport/tls_mem.cpp) against the client
// transport (asio::ssl::stream) on loopback sockets in one io_context: both directions at
// once, a connection released and resumed on another io_context with bytes OpenSSL had
// already read, close_notify, and refusals with their reasons. The certificate is made here
// in memory (a self-signed EC key), so no file is needed.

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "net/transport/tls.hpp"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace mqtt::net;
using namespace std::chrono_literals;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

struct pem_pair {
    std::string cert, key;
};

// A self-signed certificate for CN localhost with a P-256 key.
pem_pair make_certificate() {
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, key, EVP_sha256());
    auto to_pem = [](auto write) {
        BIO* b = BIO_new(BIO_s_mem());
        write(b);
        char* data = nullptr;
        const long n = BIO_get_mem_data(b, &data);
        std::string out(data, static_cast<std::size_t>(n));
        BIO_free(b);
        return out;
    };
    pem_pair p{to_pem([&](BIO* b) { PEM_write_bio_X509(b, x); }), to_pem([&](BIO* b) {
                   PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
               })};
    X509_free(x);
    EVP_PKEY_free(key);
    return p;
}

struct contexts {
    tls_context_ptr server, client;
    contexts() {
        const auto p = make_certificate();
        server = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
        server->use_certificate_chain(asio::buffer(p.cert));
        server->use_private_key(asio::buffer(p.key), asio::ssl::context::pem);
        client = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
        client->add_certificate_authority(asio::buffer(p.cert));
        client->set_verify_mode(asio::ssl::verify_peer);
    }
};

// A connected pair of loopback sockets on `io`.
std::pair<tcp::socket, tcp::socket> socket_pair(asio::io_context& io) {
    tcp::acceptor a{io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    tcp::socket c{io};
    c.connect(a.local_endpoint());
    tcp::socket s = a.accept();
    return {std::move(s), std::move(c)};
}

std::vector<unsigned char> pattern(std::size_t n, unsigned seed) {
    std::vector<unsigned char> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>(i * 31 + seed);
    return v;
}

asio::awaitable<std::vector<unsigned char>> read_exactly(transport& t, std::size_t n) {
    std::vector<unsigned char> out;
    std::vector<unsigned char> buf(7000);  // not a record size: reads split records
    while (out.size() < n) {
        auto [ec, got] =
            co_await t.read_some(asio::buffer(buf.data(), std::min(buf.size(), n - out.size())));
        if (ec) break;
        out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got));
    }
    co_return out;
}

template <class F>
void run(asio::io_context& io, F f) {
    bool done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await f();
            done = true;
        },
        asio::detached);
    io.run_for(20s);
    REQUIRE(done);
}

}  // namespace

TEST_CASE("tls_mem: handshake, both directions at once, close_notify") {
    contexts ctx;
    asio::io_context io;
    auto [s, c] = socket_pair(io);
    auto server = make_tls_server_transport(std::move(s), ctx.server);
    auto client = make_tls_client_transport(std::move(c), ctx.client, "localhost", false);
    const auto up = pattern(300000, 1);
    const auto down = pattern(250000, 2);
    std::vector<unsigned char> got_up, got_down;
    std::string why_s, why_c;
    boost::system::error_code hs_s, hs_c, end_c;
    run(io, [&]() -> asio::awaitable<void> {
        int pending = 2;
        asio::steady_timer both{io, asio::steady_timer::time_point::max()};
        auto side = [&](bool is_server) -> asio::awaitable<void> {
            if (is_server) {
                hs_s = co_await server->handshake(5s, why_s);
            } else {
                hs_c = co_await client->handshake(5s, why_c);
            }
            if (--pending == 0) both.cancel();
        };
        asio::co_spawn(io, side(true), asio::detached);
        asio::co_spawn(io, side(false), asio::detached);
        (void)co_await both.async_wait(nothrow);
        if (hs_s || hs_c) co_return;
        // The server writes and reads at once, as a broker connection does.
        pending = 3;
        both.expires_at(asio::steady_timer::time_point::max());
        auto finished = [&] {
            if (--pending == 0) both.cancel();
        };
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                const asio::const_buffer parts[] = {
                    asio::buffer(down.data(), 1000),
                    asio::buffer(down.data() + 1000, down.size() - 1000)};
                (void)co_await server->write_gathered(parts);
                finished();
            },
            asio::detached);
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                got_up = co_await read_exactly(*server, up.size());
                finished();
            },
            asio::detached);
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                (void)co_await client->write(asio::buffer(up));
                got_down = co_await read_exactly(*client, down.size());
                finished();
            },
            asio::detached);
        (void)co_await both.async_wait(nothrow);
        co_await server->shutdown();
        unsigned char b[16];
        auto [ec, n] = co_await client->read_some(asio::buffer(b));
        (void)n;
        end_c = ec;
    });
    CHECK_MESSAGE(!hs_s, why_s);
    CHECK_MESSAGE(!hs_c, why_c);
    CHECK(got_up == up);
    CHECK(got_down == down);
    CHECK(end_c == asio::error::eof);  // close_notify: a clean end, not a truncation
}

TEST_CASE("tls_mem: released on one io_context, resumed on another without a handshake") {
    contexts ctx;
    asio::io_context io;
    asio::io_context other;
    auto [s, c] = socket_pair(io);
    auto server = make_tls_server_transport(std::move(s), ctx.server);
    auto client = make_tls_client_transport(std::move(c), ctx.client, "localhost", false);
    const auto first = pattern(100, 3);
    const auto rest = pattern(50000, 4);
    std::vector<unsigned char> got_first;
    tls_parts parts;
    bool released = false;
    std::string why;
    run(io, [&]() -> asio::awaitable<void> {
        std::string why_c;
        asio::co_spawn(io, client->handshake(5s, why_c), asio::detached);
        if (co_await server->handshake(5s, why)) co_return;
        // Both writes arrive before the server reads: OpenSSL holds the second.
        (void)co_await client->write(asio::buffer(first));
        (void)co_await client->write(asio::buffer(rest));
        asio::steady_timer settle{io, 200ms};
        (void)co_await settle.async_wait(nothrow);
        got_first = co_await read_exactly(*server, first.size());
        released = co_await release_tls_server_transport(*server, parts);
    });
    REQUIRE_MESSAGE(released, why);
    CHECK(got_first == first);
    server.reset();
    tcp::socket moved{other};
    moved.assign(parts.protocol, parts.fd);
    auto resumed = resume_tls_server_transport(std::move(moved), std::move(parts.ssl));
    std::vector<unsigned char> got_rest;
    const auto reply = pattern(20000, 5);
    run(other, [&]() -> asio::awaitable<void> {
        got_rest = co_await read_exactly(*resumed, rest.size());
        (void)co_await resumed->write(asio::buffer(reply));
    });
    CHECK(got_rest == rest);
    std::vector<unsigned char> got_reply;
    io.restart();
    run(io, [&]() -> asio::awaitable<void> {
        got_reply = co_await read_exactly(*client, reply.size());
    });
    CHECK(got_reply == reply);
}

TEST_CASE("tls_mem: a plaintext client, garbage, and a silent client are refused with reasons") {
    contexts ctx;
    asio::io_context io;
    auto check_refusal = [&](std::string_view send, std::chrono::milliseconds limit,
                             std::string_view want) {
        auto [s, c] = socket_pair(io);
        auto server = make_tls_server_transport(std::move(s), ctx.server);
        if (!send.empty()) asio::write(c, asio::buffer(send.data(), send.size()));
        std::string why;
        boost::system::error_code ec;
        io.restart();
        run(io, [&]() -> asio::awaitable<void> { ec = co_await server->handshake(limit, why); });
        CHECK(ec);
        CHECK_MESSAGE(why.find(want) != std::string::npos, why);
    };
    check_refusal(std::string_view{"\x10\x0c\x00\x04MQTT", 8}, 5s,
                  "not a TLS handshake (first byte 0x10): a plaintext MQTT client");
    check_refusal(std::string_view{"\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff\xff", 11}, 5s, "");
    check_refusal(std::string_view{"\x16\x03\x01\x02\x00\x01", 6}, 300ms,
                  "no TLS handshake within 300 ms");
    check_refusal({}, 300ms, "no TLS handshake within 300 ms");
}
