#include "net/transport/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <utility>
#include <variant>

namespace mqtt::net {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
using error_code = boost::system::error_code;

// The first byte of a TLS handshake record (ContentType handshake, RFC 8446 5.1).
constexpr unsigned char tls_handshake_record = 0x16;

std::string hex_byte(unsigned char b) {
    char text[8];
    std::snprintf(text, sizeof text, "0x%02x", static_cast<unsigned>(b));
    return text;
}

std::optional<std::string> name_entry(X509_NAME* name, int nid) {
    const int i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0) return std::nullopt;
    ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char* utf8 = nullptr;
    const int n = ASN1_STRING_to_UTF8(&utf8, data);
    if (n < 0) return std::nullopt;
    std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
    OPENSSL_free(utf8);
    return out;
}

template <class F>
std::optional<std::string> with_peer_name(SSL* ssl, F f) {
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (!cert) return std::nullopt;
    auto out = f(X509_get_subject_name(cert));
    X509_free(cert);
    return out;
}

}  // namespace

// A handshake error in words: the certificate check's own reason when that is what failed.
std::string describe_tls_handshake_error(const error_code& ec, SSL* ssl) {
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ||
        ec == asio::error::connection_reset) {
        return "the peer closed the connection during the TLS handshake";
    }
    if (ec.category() == asio::error::get_ssl_category()) {
        const auto code = static_cast<unsigned long>(ec.value());
        if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
            ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
            const long v = SSL_get_verify_result(ssl);
            return std::string{"certificate verify failed: "} + X509_verify_cert_error_string(v);
        }
        if (const char* r = ERR_reason_error_string(code)) return r;
    }
    return ec.message();
}

// A plaintext MQTT client starts with CONNECT (0x10), not a TLS record: say so instead of
// OpenSSL's "wrong version number".
asio::awaitable<error_code> check_tls_first_byte(asio::ip::tcp::socket& socket, std::string& why) {
    unsigned char first = 0;
    auto [ec, n] = co_await socket.async_receive(asio::buffer(&first, 1),
                                                 asio::socket_base::message_peek, nothrow);
    if (ec || n == 0) {
        why = "the peer closed the connection before the TLS handshake";
        co_return ec ? ec : error_code{asio::error::eof};
    }
    if (first != tls_handshake_record) {
        why = "not a TLS handshake (first byte " + hex_byte(first) + ")" +
              (first == 0x10 ? ": a plaintext MQTT client on a TLS port" : "");
        co_return error_code{asio::error::no_protocol_option};
    }
    co_return error_code{};
}

asio::awaitable<error_code> tls_exchange(tls_stream& stream, bool server, const std::string& host,
                                         bool insecure, std::string& why) {
    SSL* ssl = stream.native_handle();
    if (server) {
        auto ec = co_await check_tls_first_byte(stream.next_layer(), why);
        if (ec) co_return ec;
    } else {
        error_code not_address;
        (void)asio::ip::make_address(host, not_address);
        const bool is_address = !not_address;
        if (!is_address) SSL_set_tlsext_host_name(ssl, host.c_str());
        if (!insecure) {
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
            if (is_address) {
                X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
            } else {
                X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
            }
        }
    }
    auto [ec] = co_await stream.async_handshake(
        server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client, nothrow);
    if (ec) {
        why = describe_tls_handshake_error(ec, ssl);
        co_return ec;
    }
    co_return error_code{};
}

std::optional<std::string> tls_peer_common_name(SSL* ssl) {
    return with_peer_name(ssl, [](X509_NAME* n) { return name_entry(n, NID_commonName); });
}

std::optional<std::string> tls_peer_subject(SSL* ssl) {
    return with_peer_name(ssl, [](X509_NAME* n) -> std::optional<std::string> {
        BIO* bio = BIO_new(BIO_s_mem());
        if (!bio) return std::nullopt;
        X509_NAME_print_ex(bio, n, 0, XN_FLAG_RFC2253);
        char* data = nullptr;
        const long len = BIO_get_mem_data(bio, &data);
        std::optional<std::string> out;
        if (len >= 0) out.emplace(data, static_cast<std::size_t>(len));
        BIO_free(bio);
        return out;
    });
}

namespace {

class tls_transport final : public transport {
  public:
    tls_transport(asio::ip::tcp::socket s, tls_context_ptr ctx, bool server, std::string host,
                  bool insecure)
        : ctx_(std::move(ctx)),
          stream_(std::move(s), *ctx_),
          server_(server),
          host_(std::move(host)),
          insecure_(insecure) {}

    asio::awaitable<error_code> handshake(std::chrono::milliseconds timeout,
                                          std::string& why) override {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer timer{stream_.get_executor(), timeout};
        auto r = co_await (exchange(why) || timer.async_wait(nothrow));
        if (r.index() == 1) {
            why = "no TLS handshake within " + std::to_string(timeout.count()) + " ms";
            co_return asio::error::timed_out;
        }
        co_return std::get<0>(r);
    }

    asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
        return stream_.async_read_some(b, nothrow);
    }
    void async_read_some(asio::mutable_buffer b, read_handler h) override {
        stream_.async_read_some(b, std::move(h));
    }
    asio::awaitable<io_result> write(asio::const_buffer b) override {
        return asio::async_write(stream_, b, nothrow);
    }
    // close_notify without waiting for the peer's (as Mosquitto does), then FIN.
    asio::awaitable<void> shutdown() override {
        if (handshaken_) {
            SSL_set_shutdown(stream_.native_handle(), SSL_RECEIVED_SHUTDOWN);
            auto [ec] = co_await stream_.async_shutdown(nothrow);
            (void)ec;
        }
        error_code ignored;
        stream_.next_layer().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }
    void close() override {
        error_code ec;
        stream_.next_layer().close(ec);
    }
    asio::any_io_executor get_executor() override { return stream_.get_executor(); }
    const char* name() const noexcept override { return "tls"; }

    std::optional<std::string> peer_common_name() const override {
        return tls_peer_common_name(const_cast<tls_stream&>(stream_).native_handle());
    }
    std::optional<std::string> peer_subject() const override {
        return tls_peer_subject(const_cast<tls_stream&>(stream_).native_handle());
    }

  private:
    asio::awaitable<error_code> exchange(std::string& why) {
        auto ec = co_await tls_exchange(stream_, server_, host_, insecure_, why);
        handshaken_ = !ec;
        co_return ec;
    }

    tls_context_ptr ctx_;  // before stream_: the stream's SSL object came from it
    tls_stream stream_;
    bool server_;
    std::string host_;
    bool insecure_;
    bool handshaken_ = false;
};

}  // namespace

std::string describe_tls_error(const boost::system::error_code& ec) {
    if (ec.category() != asio::error::get_ssl_category()) return {};
    const char* r = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    return r ? r : ec.message();
}

std::unique_ptr<transport> make_tls_client_transport(asio::ip::tcp::socket socket,
                                                     tls_context_ptr ctx, const std::string& host,
                                                     bool insecure) {
    return std::make_unique<tls_transport>(std::move(socket), std::move(ctx), false, host,
                                           insecure);
}

}  // namespace mqtt::net
