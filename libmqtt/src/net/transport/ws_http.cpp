#include "net/transport/ws_http.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <cctype>
#include <span>

#include "net/transport/ws.hpp"

namespace mqtt::net {
namespace {

namespace http = boost::beast::http;
using error_code = boost::system::error_code;

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::string hex_byte(unsigned char b) {
    static constexpr char digits[] = "0123456789abcdef";
    return std::string{"0x"} + digits[b >> 4] + digits[b & 0xf];
}

// Sec-WebSocket-Accept (RFC 6455 4.2.2): base64(SHA-1(key + the GUID)).
std::string accept_key(std::string_view key) {
    std::string in{key};
    in += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    if (EVP_Digest(in.data(), in.size(), md.data(), &len, EVP_sha1(), nullptr) != 1) return {};
    std::array<unsigned char, 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1> out{};
    const int n = EVP_EncodeBlock(out.data(), md.data(), static_cast<int>(len));
    return std::string{reinterpret_cast<const char*>(out.data()), static_cast<std::size_t>(n)};
}

// A client's Sec-WebSocket-Key: 16 bytes in base64 (RFC 6455 4.1).
bool valid_key(std::string_view k) {
    if (k.size() != 24 || k.substr(22) != "==") return false;
    return std::all_of(k.begin(), k.begin() + 22, [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '/';
    });
}

// An answer that ends the exchange. GCC 12 mishandles temporaries with destructors inside
// a co_await expression: the text is built first, the write takes a named buffer.
std::string http_reply(int status, const char* reason, const std::string& body,
                       const char* extra = "") {
    return "HTTP/1.1 " + std::to_string(status) + " " + reason +
           "\r\nServer: tern\r\nContent-Type: text/plain\r\nConnection: close\r\n" + extra +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

using request_parser = http::request_parser<http::empty_body>;
using request = http::request<http::empty_body>;

// Reads `t` into `buf` until `parser` has the whole request: the error Beast's
// http::async_read would give. `parsed` bytes of the `have` read are the request's.
asio::awaitable<error_code> read_request(transport& t, request_parser& parser,
                                         std::vector<std::uint8_t>& buf, std::size_t& have,
                                         std::size_t& parsed) {
    error_code ec;
    while (!parser.is_done()) {
        if (parsed < have) {
            const auto n = parser.put(asio::buffer(buf.data() + parsed, have - parsed), ec);
            parsed += n;
            if (ec == http::error::need_more) ec = {};
            if (ec || parser.is_done()) co_return ec;
            if (n > 0) continue;
        }
        if (have == buf.size()) co_return http::error::buffer_overflow;
        auto [rec, n] = co_await t.read_some(asio::buffer(buf.data() + have, buf.size() - have));
        have += n;
        if (rec == asio::error::eof) {
            if (!parser.got_some() && parsed == have) co_return http::error::end_of_stream;
            parser.put_eof(ec);
            co_return ec ? ec : error_code{http::error::partial_message};
        }
        if (rec) co_return rec;
    }
    co_return ec;
}

// A request that could not be read: `why` says what it was, and the answer is a 400 for an
// HTTP client, nothing (empty) for a peer that does not speak HTTP (a plain MQTT or TLS
// client), which just sees the connection closed.
std::string unreadable(error_code ec, std::span<const std::uint8_t> got, std::string& why) {
    why = "not a WebSocket handshake (" + ec.message() + ")";
    bool http_like = true;
    if (!got.empty()) {
        const auto first = got[0];
        http_like = std::isupper(first) != 0;
        if (first == 0x10) {
            why += ": a plain MQTT client on a WebSocket port";
        } else if (first == 0x16) {
            why += ": a TLS client on a plain WebSocket port";
        } else if (!std::isprint(first)) {
            why += ", first byte " + hex_byte(first);
        }
    }
    if (!http_like || ec == asio::error::operation_aborted) return {};
    return http_reply(400, "Bad Request",
                      "This port serves MQTT over WebSocket: send a WebSocket upgrade request.\n");
}

// The answer refusing `req`, with `why`; empty when it is a WebSocket upgrade to accept.
std::string refusal(const request& req, const std::string& path,
                    const std::optional<std::string>& chosen, std::string& why) {
    const std::string line =
        ws_printable(std::string{req.method_string()} + " " + std::string{req.target()});
    if (!boost::beast::websocket::is_upgrade(req)) {
        why = "not a WebSocket upgrade request (" + line + ")";
        return http_reply(400, "Bad Request",
                          "This port serves MQTT over WebSocket (subprotocol mqtt): send a "
                          "WebSocket upgrade request.\n");
    }
    const auto target = std::string_view{req.target()};
    if (!path.empty() && target.substr(0, target.find('?')) != path) {
        why =
            "WebSocket request for another path (" + line + "; this listener serves " + path + ")";
        return http_reply(404, "Not Found", "MQTT over WebSocket is served on " + path + "\n");
    }
    if (!chosen) {
        why = "the client offers the WebSocket subprotocols '" +
              ws_printable(req[http::field::sec_websocket_protocol]) + "' but not mqtt";
        return http_reply(400, "Bad Request",
                          "This port serves the WebSocket subprotocol mqtt only.\n");
    }
    // The checks of RFC 6455 4.2.1 that is_upgrade() leaves (Beast's accept made them).
    const auto key = trim(std::string_view{req[http::field::sec_websocket_key]});
    const auto version = trim(std::string_view{req[http::field::sec_websocket_version]});
    const char* refused = nullptr;
    if (req.version() != 11) {
        refused = "the request is not HTTP/1.1";
    } else if (req.find(http::field::host) == req.end()) {
        refused = "the Host field is missing";
    } else if (key.empty()) {
        refused = "the Sec-WebSocket-Key field is missing";
    } else if (!valid_key(key)) {
        refused = "the Sec-WebSocket-Key field is invalid";
    } else if (version.empty()) {
        refused = "the Sec-WebSocket-Version field is missing";
    }
    if (refused != nullptr) {
        why = "WebSocket handshake refused (" + line + "): " + refused;
        return http_reply(400, "Bad Request", std::string{refused} + "\n");
    }
    if (version != "13") {
        why = "WebSocket handshake refused (" + line + "): Sec-WebSocket-Version is not 13";
        return http_reply(426, "Upgrade Required", "Sec-WebSocket-Version 13 only.\n",
                          "Sec-WebSocket-Version: 13\r\n");
    }
    return {};
}

}  // namespace

bool ws_iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    }
    return true;
}

std::string ws_printable(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s.substr(0, max)) out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
    if (s.size() > max) out += "...";
    return out;
}

std::optional<std::string> ws_pick_subprotocol(std::string_view offer) {
    if (trim(offer).empty()) return std::string{};
    bool v31 = false;
    while (!offer.empty()) {
        const auto comma = offer.find(',');
        const auto token = trim(offer.substr(0, comma));
        if (ws_iequals(token, ws_subprotocol)) return std::string{ws_subprotocol};
        if (ws_iequals(token, "mqttv3.1")) v31 = true;
        offer = comma == std::string_view::npos ? std::string_view{} : offer.substr(comma + 1);
    }
    if (v31) return std::string{"mqttv3.1"};
    return std::nullopt;
}

asio::awaitable<error_code> ws_upgrade::run(std::string& why) {
    request_parser parser;
    parser.header_limit(static_cast<std::uint32_t>(header_limit));
    std::vector<std::uint8_t> buf(header_limit + 1024);
    std::size_t have = 0;
    std::size_t parsed = 0;
    const auto ec = co_await read_request(t, parser, buf, have, parsed);
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
        why = "the peer closed the connection before the WebSocket handshake";
        co_return ec;
    }
    if (ec) {
        const auto text = unreadable(ec, std::span(buf.data(), have), why);
        if (!text.empty()) (void)co_await t.write(asio::buffer(text));
        co_return ec;
    }
    rest.assign(buf.begin() + static_cast<std::ptrdiff_t>(parsed),
                buf.begin() + static_cast<std::ptrdiff_t>(have));
    const auto& req = parser.get();
    const auto chosen = ws_pick_subprotocol(req[http::field::sec_websocket_protocol]);
    auto text = refusal(req, path, chosen, why);
    if (!text.empty()) {
        (void)co_await t.write(asio::buffer(text));
        co_return error_code{asio::error::no_protocol_option};
    }
    const auto key = trim(std::string_view{req[http::field::sec_websocket_key]});
    text =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        accept_key(key) + "\r\nServer: tern\r\n";
    if (!chosen->empty()) text += "Sec-WebSocket-Protocol: " + *chosen + "\r\n";
    text += "\r\n";
    auto [wec, n] = co_await t.write(asio::buffer(text));
    (void)n;
    if (wec) {
        why = "WebSocket handshake failed: " + wec.message();
        co_return wec;
    }
    co_return error_code{};
}

}  // namespace mqtt::net
