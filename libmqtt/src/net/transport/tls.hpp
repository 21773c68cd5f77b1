#pragma once

// TLS over TCP with OpenSSL (Asio's ssl::stream): the contexts built from the settings of
// mqtt/net/tls.hpp, and the transports that use them.

#include <boost/asio/ssl/context.hpp>
#include <memory>
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

// The broker side of a TLS connection. handshake() refuses a peer whose first byte is not
// a TLS handshake record (a plaintext MQTT client on a TLS port) with a message saying so.
std::unique_ptr<transport> make_tls_server_transport(asio::ip::tcp::socket socket,
                                                     tls_context_ptr ctx);
// The client side: SNI with `host` (unless it is an IP address) and, unless `insecure`, a
// check that the certificate names `host`.
std::unique_ptr<transport> make_tls_client_transport(asio::ip::tcp::socket socket,
                                                     tls_context_ptr ctx, const std::string& host,
                                                     bool insecure);

}  // namespace mqtt::net
