#pragma once

// The HTTP side of a WebSocket listener (RFC 6455 4.2): reads the upgrade request with
// Beast's parser over any transport, checks it (path, subprotocol, key, version) and answers
// 101, or 400/404/426 with a body a person can read. Shared words for logs, too.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/transport/transport.hpp"

namespace mqtt::net {

bool ws_iequals(std::string_view a, std::string_view b);
// For logs: `s` cut to `max` characters, control characters replaced.
std::string ws_printable(std::string_view s, std::size_t max = 80);
// The subprotocol to select from the client's offer ("a, mqtt, b"): mqtt, else mqttv3.1
// (MQTT 3.1 clients); "" when the client offers none; nullopt when it offers only others.
std::optional<std::string> ws_pick_subprotocol(std::string_view offer);

// One upgrade: run() reads the request from `t` (headers at most `header_limit` bytes) and
// answers it; on success `rest` holds what the client sent after the request (its first
// frames), on failure `why` says what was wrong.
struct ws_upgrade {
    transport& t;
    const std::string& path;  // empty: any path
    std::size_t header_limit;
    std::vector<std::uint8_t> rest;

    asio::awaitable<boost::system::error_code> run(std::string& why);
};

}  // namespace mqtt::net
