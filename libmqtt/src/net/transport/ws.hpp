#pragma once

// MQTT over WebSocket (MQTT 5.0 section 6, RFC 6455): `ws` over TCP and `wss` over TLS.
// The broker side (ws_server.cpp) frames with ws_frame.hpp over the TCP or memory-BIO TLS
// transport, so a connection can move between loops; the client side uses Boost.Beast.
// Every MQTT byte travels in binary messages; packets may span messages and a message may
// hold several packets (the framer sees only bytes).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "net/transport/tls.hpp"
#include "net/transport/transport.hpp"
#include "net/transport/ws_frame.hpp"

namespace mqtt::net {

// The subprotocol MQTT 3.1.1 and 5.0 clients offer ("mqttv3.1" for MQTT 3.1).
inline constexpr const char* ws_subprotocol = "mqtt";

struct ws_server_settings {
    // Empty: any request path is accepted (as Mosquitto does); otherwise only this one
    // (the query string is ignored), other paths get 404.
    std::string path;
    // The largest WebSocket message accepted (the announced size is checked before any of
    // it is read); bytes are handed to the framer as they arrive, so this bounds what a
    // hostile frame header can announce, not a buffer.
    std::uint64_t max_message = 1u << 20;
};

// The broker side: handshake() reads the HTTP upgrade request (headers at most 8 KiB),
// answers a request that is not a WebSocket upgrade with 400 (the path of another one with
// 404), selects subprotocol mqtt (or mqttv3.1) when the client offers it, accepts a client
// that offers none, and refuses one that offers only others. With `tls`, the TLS handshake
// comes first (wss).
std::unique_ptr<transport> make_ws_server_transport(asio::ip::tcp::socket socket,
                                                    tls_context_ptr tls, ws_server_settings s);

// A plain TCP transport's descriptor, given up (tcp.cpp; the transport is then only to be
// destroyed): false when `t` is no TCP transport or its socket failed.
bool release_tcp_transport(transport& t, int& fd, asio::ip::tcp& protocol);

// A handshaken server transport taken apart to go to another loop (tern-broker with
// threads > 1): the descriptor (and with wss the SSL object), the framing state and the
// bytes read but not decoded yet.
struct ws_parts {
    tls_parts stream;  // ssl is null with ws
    ws::decoder decoder{0};
    std::vector<std::uint8_t> unread;
};
// On the transport's loop, with no read or write pending: sends the control frames a read
// queued (a pong), then gives up its parts (the transport is then only to be destroyed).
// false: not a handshaken server transport, its input ended, or its socket failed.
asio::awaitable<bool> release_ws_server_transport(transport& t, ws_parts& out);
// The transport again, on the loop of `socket` (the descriptor assigned there): no new
// handshake; the unread bytes are decoded first.
std::unique_ptr<transport> resume_ws_server_transport(asio::ip::tcp::socket socket, ws_parts parts);

struct ws_client_settings {
    std::string host;  // for the Host header (and TLS: SNI, certificate check)
    std::uint16_t port = 80;
    std::string path = "/";
    bool insecure = false;                    // TLS: do not check that the certificate names `host`
    std::uint64_t max_message = 268'435'460;  // the largest MQTT packet
};

// The client side: offers subprotocol mqtt and refuses a server that selects another one.
// With `tls`, TLS first (wss).
std::unique_ptr<transport> make_ws_client_transport(asio::ip::tcp::socket socket,
                                                    tls_context_ptr tls, ws_client_settings s);

}  // namespace mqtt::net
