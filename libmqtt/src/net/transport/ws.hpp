#pragma once

// MQTT over WebSocket (MQTT 5.0 section 6, RFC 6455) with Boost.Beast: `ws` over TCP and
// `wss` over the TLS stream of tls.hpp. Every MQTT byte travels in binary messages; packets
// may span messages and a message may hold several packets (the framer sees only bytes).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "net/transport/tls.hpp"
#include "net/transport/transport.hpp"

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
