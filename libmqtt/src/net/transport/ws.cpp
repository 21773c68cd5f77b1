#include "net/transport/ws.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <cctype>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace mqtt::net {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using error_code = boost::system::error_code;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// An upgrade request is a few hundred bytes; a peer that sends more before the blank line
// is not a WebSocket client.
constexpr std::size_t header_limit = 8 * 1024;
// Bounds the closing handshake (close frame, then TLS close_notify) of a wss connection.
constexpr auto close_timeout = std::chrono::seconds{3};

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The subprotocol to select from the client's offer ("a, mqtt, b"): mqtt, else mqttv3.1
// (MQTT 3.1 clients); "" when the client offers none; nullopt when it offers only others.
std::optional<std::string> pick_subprotocol(std::string_view offer) {
    if (trim(offer).empty()) return std::string{};
    bool v31 = false;
    while (!offer.empty()) {
        const auto comma = offer.find(',');
        const auto token = trim(offer.substr(0, comma));
        if (iequals(token, ws_subprotocol)) return std::string{ws_subprotocol};
        if (iequals(token, "mqttv3.1")) v31 = true;
        offer = comma == std::string_view::npos ? std::string_view{} : offer.substr(comma + 1);
    }
    if (v31) return std::string{"mqttv3.1"};
    return std::nullopt;
}

std::string hex_byte(unsigned char b) {
    static constexpr char digits[] = "0123456789abcdef";
    return std::string{"0x"} + digits[b >> 4] + digits[b & 0xf];
}

// For logs: a request line cut to a readable length, control characters replaced.
std::string printable(std::string_view s, std::size_t max = 80) {
    std::string out;
    for (char c : s.substr(0, max)) out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
    if (s.size() > max) out += "...";
    return out;
}

template <class Next>
class ws_transport final : public transport {
    static constexpr bool secure = std::is_same_v<Next, tls_stream>;

  public:
    ws_transport(asio::ip::tcp::socket s, tls_context_ptr tls, bool server, ws_server_settings ss,
                 ws_client_settings cs)
        : tls_(std::move(tls)),
          ws_(make_stream(std::move(s), tls_.get())),
          server_(server),
          server_settings_(std::move(ss)),
          client_settings_(std::move(cs)) {}

    asio::awaitable<error_code> handshake(std::chrono::milliseconds timeout,
                                          std::string& why) override {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer timer{ws_.get_executor(), timeout};
        auto r = co_await (exchange(why) || timer.async_wait(nothrow));
        if (r.index() == 1) {
            why = std::string{"no "} + (secure ? "TLS and WebSocket" : "WebSocket") +
                  " handshake within " + std::to_string(timeout.count()) + " ms";
            co_return asio::error::timed_out;
        }
        co_return std::get<0>(r);
    }

    asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
        auto [ec, n] = co_await ws_.async_read_some(b, nothrow);
        co_return io_result{checked(ec), n};
    }
    void async_read_some(asio::mutable_buffer b, read_handler h) override {
        ws_.async_read_some(b, [this, h = std::move(h)](error_code ec, std::size_t n) mutable {
            std::move(h)(checked(ec), n);
        });
    }
    asio::awaitable<io_result> write(asio::const_buffer b) override {
        // One binary message per batch the driver writes.
        return ws_.async_write(b, nothrow);
    }
    asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> b) override {
        return ws_.async_write(b, nothrow);  // still one message per batch
    }
    // A close frame (and with wss the TLS close_notify), bounded by close_timeout, then FIN.
    asio::awaitable<void> shutdown() override {
        if (ws_.is_open()) {
            ws_.set_option(websocket::stream_base::timeout{close_timeout,
                                                           websocket::stream_base::none(), false});
            auto [ec] = co_await ws_.async_close(websocket::close_code::normal, nothrow);
            (void)ec;
        }
        error_code ignored;
        socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }
    void close() override {
        error_code ec;
        socket().close(ec);
    }
    asio::any_io_executor get_executor() override { return ws_.get_executor(); }
    asio::ip::tcp::socket& socket() { return beast::get_lowest_layer(ws_); }
    const char* name() const noexcept override { return secure ? "wss" : "ws"; }

    std::optional<std::string> peer_common_name() const override {
        if constexpr (secure) {
            return tls_peer_common_name(const_cast<stream_type&>(ws_).next_layer().native_handle());
        } else {
            return std::nullopt;
        }
    }
    std::optional<std::string> peer_subject() const override {
        if constexpr (secure) {
            return tls_peer_subject(const_cast<stream_type&>(ws_).next_layer().native_handle());
        } else {
            return std::nullopt;
        }
    }

  private:
    // A read's error as the driver should see it.
    error_code checked(error_code ec) const {
        if (ec == websocket::error::closed) return asio::error::eof;  // the peer's close frame
        // MQTT 5.0 6.0.0-1 (3.1.1: 6.0.0-1 too): a non-binary message closes the connection.
        if (!ec && ws_.got_text()) {
            return boost::system::errc::make_error_code(boost::system::errc::protocol_error);
        }
        return ec;
    }

    using stream_type = websocket::stream<Next>;

    static stream_type make_stream(asio::ip::tcp::socket s, asio::ssl::context* ctx) {
        if constexpr (secure) {
            return stream_type(std::move(s), *ctx);
        } else {
            (void)ctx;
            return stream_type(std::move(s));
        }
    }

    asio::awaitable<error_code> exchange(std::string& why) {
        if constexpr (secure) {
            auto ec = co_await tls_exchange(ws_.next_layer(), server_, client_settings_.host,
                                            client_settings_.insecure, why);
            if (ec) {
                if (!server_) why = "TLS handshake failed: " + why;
                co_return ec;
            }
        }
        ws_.binary(true);
        ws_.auto_fragment(false);  // a batch goes out as one frame
        ws_.read_message_max(server_ ? server_settings_.max_message : client_settings_.max_message);
        if (server_) {
            auto ec = co_await accept(why);
            co_return ec;
        }
        auto ec = co_await connect(why);
        co_return ec;
    }

    // GCC 12 mishandles temporaries with destructors inside a co_await expression: the
    // callers pass named strings.
    asio::awaitable<void> reply(http::status status, const std::string& body) {
        http::response<http::string_body> res{status, 11};
        res.set(http::field::server, "tern");
        res.set(http::field::content_type, "text/plain");
        res.set(http::field::connection, "close");
        res.body() = body;
        res.prepare_payload();
        auto [ec, n] = co_await http::async_write(ws_.next_layer(), res, nothrow);
        (void)ec;
        (void)n;
    }

    asio::awaitable<error_code> accept(std::string& why) {
        beast::flat_buffer buffer{header_limit + 1024};
        http::request_parser<http::empty_body> parser;
        parser.header_limit(header_limit);
        auto [ec, n] = co_await http::async_read(ws_.next_layer(), buffer, parser, nothrow);
        (void)n;
        if (ec) {
            if (ec == http::error::end_of_stream || ec == asio::error::eof ||
                ec == asio::error::connection_reset) {
                why = "the peer closed the connection before the WebSocket handshake";
                co_return ec;
            }
            why = "not a WebSocket handshake (" + ec.message() + ")";
            // An HTTP client gets a 400 it can show; a peer that does not speak HTTP (a
            // plain MQTT or TLS client) just sees the connection closed.
            bool http_like = true;
            if (buffer.size() > 0) {
                const auto first = *static_cast<const unsigned char*>(buffer.data().data());
                http_like = std::isupper(first) != 0;
                if (first == 0x10) {
                    why += ": a plain MQTT client on a WebSocket port";
                } else if (first == 0x16) {
                    why += ": a TLS client on a plain WebSocket port";
                } else if (!std::isprint(first)) {
                    why += ", first byte " + hex_byte(first);
                }
            }
            if (http_like && ec != asio::error::operation_aborted) {
                const std::string body =
                    "This port serves MQTT over WebSocket: send a WebSocket upgrade request.\n";
                co_await reply(http::status::bad_request, body);
            }
            co_return ec;
        }
        const auto& req = parser.get();
        const std::string request_line =
            printable(std::string{req.method_string()} + " " + std::string{req.target()});
        if (!websocket::is_upgrade(req)) {
            why = "not a WebSocket upgrade request (" + request_line + ")";
            const std::string body =
                "This port serves MQTT over WebSocket (subprotocol mqtt): send a WebSocket "
                "upgrade request.\n";
            co_await reply(http::status::bad_request, body);
            co_return error_code{asio::error::no_protocol_option};
        }
        const auto& path = server_settings_.path;
        const auto target = std::string_view{req.target()};
        if (!path.empty() && target.substr(0, target.find('?')) != path) {
            why = "WebSocket request for another path (" + request_line +
                  "; this listener serves " + path + ")";
            const std::string body = "MQTT over WebSocket is served on " + path + "\n";
            co_await reply(http::status::not_found, body);
            co_return error_code{asio::error::no_protocol_option};
        }
        const auto offer = std::string_view{req[http::field::sec_websocket_protocol]};
        const auto chosen = pick_subprotocol(offer);
        if (!chosen) {
            why = "the client offers the WebSocket subprotocols '" + printable(offer) +
                  "' but not mqtt";
            const std::string body = "This port serves the WebSocket subprotocol mqtt only.\n";
            co_await reply(http::status::bad_request, body);
            co_return error_code{asio::error::no_protocol_option};
        }
        ws_.set_option(
            websocket::stream_base::decorator([p = *chosen](websocket::response_type& r) {
                r.set(http::field::server, "tern");
                if (!p.empty()) r.set(http::field::sec_websocket_protocol, p);
            }));
        auto [aec] = co_await ws_.async_accept(req, nothrow);
        if (aec) {
            why = "WebSocket handshake refused (" + request_line + "): " + aec.message();
            co_return aec;
        }
        co_return error_code{};
    }

    asio::awaitable<error_code> connect(std::string& why) {
        const auto& c = client_settings_;
        ws_.set_option(websocket::stream_base::decorator([](websocket::request_type& r) {
            r.set(http::field::user_agent, "tern");
            r.set(http::field::sec_websocket_protocol, ws_subprotocol);
        }));
        // Host: an IPv6 address in brackets; the port unless it is the scheme's default.
        std::string host = c.host.find(':') != std::string::npos ? "[" + c.host + "]" : c.host;
        if (c.port != (secure ? 443 : 80)) host += ":" + std::to_string(c.port);
        const std::string path = c.path.empty() ? std::string{"/"} : c.path;
        websocket::response_type res;
        auto [ec] = co_await ws_.async_handshake(res, host, path, nothrow);
        if (ec) {
            if (ec == websocket::error::upgrade_declined) {
                why = "the server declined the WebSocket upgrade of " + c.path + ": HTTP " +
                      std::to_string(res.result_int()) + " " + std::string{res.reason()};
            } else {
                why = "WebSocket handshake failed: " + ec.message();
            }
            co_return ec;
        }
        const auto selected = std::string_view{res[http::field::sec_websocket_protocol]};
        if (!selected.empty() && !iequals(selected, ws_subprotocol)) {
            why = "the server selected the WebSocket subprotocol '" + printable(selected) +
                  "', not mqtt";
            co_return error_code{asio::error::no_protocol_option};
        }
        co_return error_code{};
    }

    tls_context_ptr tls_;  // before ws_: with wss its SSL object came from it
    stream_type ws_;
    bool server_;
    ws_server_settings server_settings_;
    ws_client_settings client_settings_;
};

}  // namespace

std::unique_ptr<transport> make_ws_server_transport(asio::ip::tcp::socket socket,
                                                    tls_context_ptr tls, ws_server_settings s) {
    if (tls) {
        return std::make_unique<ws_transport<tls_stream>>(std::move(socket), std::move(tls), true,
                                                          std::move(s), ws_client_settings{});
    }
    return std::make_unique<ws_transport<asio::ip::tcp::socket>>(
        std::move(socket), nullptr, true, std::move(s), ws_client_settings{});
}

std::unique_ptr<transport> make_ws_client_transport(asio::ip::tcp::socket socket,
                                                    tls_context_ptr tls, ws_client_settings s) {
    if (tls) {
        return std::make_unique<ws_transport<tls_stream>>(std::move(socket), std::move(tls), false,
                                                          ws_server_settings{}, std::move(s));
    }
    return std::make_unique<ws_transport<asio::ip::tcp::socket>>(
        std::move(socket), nullptr, false, ws_server_settings{}, std::move(s));
}

}  // namespace mqtt::net
