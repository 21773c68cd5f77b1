#pragma once

// TLS over TCP with OpenSSL (Asio's ssl::stream): the contexts built from the settings of
// mqtt/net/tls.hpp, and the transports that use them.

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <optional>
#include <string>

#include "mqtt/net/tls.hpp"
#include "net/transport/transport.hpp"

namespace mqtt::net {

using tls_context_ptr = std::shared_ptr<asio::ssl::context>;

// nullptr with `error` set when a file cannot be read or OpenSSL refuses a setting; the
// message names the option (with its FILE:LINE origin when the settings carry one) and why.
tls_context_ptr make_server_context(const tls_server_settings& s, std::string& error);
tls_context_ptr make_client_context(const tls_client_settings& s, std::string& error);

// An OpenSSL error of a TLS read or write in words ("tlsv13 alert certificate required");
// empty for any other error.
std::string describe_tls_error(const boost::system::error_code& ec);

using tls_stream = asio::ssl::stream<asio::ip::tcp::socket>;

// The TLS handshake of `stream` (no deadline: the caller bounds it). The server side first
// refuses a peer whose first byte is not a TLS handshake record; the client side sends SNI
// with `host` (unless it is an IP address) and, unless `insecure`, checks that the
// certificate names `host`. On failure `why` says what went wrong in words.
asio::awaitable<boost::system::error_code> tls_exchange(tls_stream& stream, bool server,
                                                        const std::string& host, bool insecure,
                                                        std::string& why);
// The verified peer certificate's subject commonName, or its whole subject (RFC 2253).
std::optional<std::string> tls_peer_common_name(SSL* ssl);
std::optional<std::string> tls_peer_subject(SSL* ssl);

// A handshake error of `ssl` in words: the certificate check's own reason when that is what
// failed ("certificate verify failed: certificate has expired").
std::string describe_tls_handshake_error(const boost::system::error_code& ec, SSL* ssl);
// The server side's first look: refuses (with `why`) a peer whose first byte is not a TLS
// handshake record, a plaintext MQTT client on a TLS port. Peeks, consumes nothing.
asio::awaitable<boost::system::error_code> check_tls_first_byte(asio::ip::tcp::socket& socket,
                                                                std::string& why);

struct ssl_deleter {
    void operator()(SSL* s) const noexcept;
};
using ssl_ptr = std::unique_ptr<SSL, ssl_deleter>;

// The broker side of a TLS connection (tls_mem.cpp): OpenSSL over memory BIOs, so that
// the connection can move to another loop. handshake() refuses a peer whose first byte is
// not a TLS handshake record (a plaintext MQTT client on a TLS port) with a message saying so.
std::unique_ptr<transport> make_tls_server_transport(asio::ip::tcp::socket socket,
                                                     tls_context_ptr ctx);
// A handshaken server transport taken apart to go to another loop: its socket's descriptor
// and the SSL object holding all the TLS state (bytes read and not yet returned included).
struct tls_parts {
    int fd = -1;
    asio::ip::tcp protocol = asio::ip::tcp::v4();
    ssl_ptr ssl;
};
// On the transport's loop, with no read or write pending: flushes what OpenSSL wrote, then
// gives up the descriptor and the SSL object (the transport is then only to be destroyed).
// false: not a handshaken server transport, or its socket failed.
asio::awaitable<bool> release_tls_server_transport(transport& t, tls_parts& out);
// The transport again, on the loop of `socket` (the descriptor assigned there): no new
// handshake.
std::unique_ptr<transport> resume_tls_server_transport(asio::ip::tcp::socket socket, ssl_ptr ssl);
// The client side: SNI with `host` (unless it is an IP address) and, unless `insecure`, a
// check that the certificate names `host`.
std::unique_ptr<transport> make_tls_client_transport(asio::ip::tcp::socket socket,
                                                     tls_context_ptr ctx, const std::string& host,
                                                     bool insecure);

}  // namespace mqtt::net
