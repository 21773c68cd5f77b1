#include "net/transport/ws.hpp"

#include "net/transport/ws_http.hpp"

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

// Bounds the closing handshake (close frame, then TLS close_notify) of a wss connection.
constexpr auto close_timeout = std::chrono::seconds{3};

template <class Next>
class ws_transport final : public transport {
    static constexpr bool secure = std::is_same_v<Next, tls_stream>;

  public:
    ws_transport(asio::ip::tcp::socket s, tls_context_ptr tls, ws_client_settings cs)
        : tls_(std::move(tls)),
          ws_(make_stream(std::move(s), tls_.get())),
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
            auto ec = co_await tls_exchange(ws_.next_layer(), false, client_settings_.host,
                                            client_settings_.insecure, why);
            if (ec) {
                why = "TLS handshake failed: " + why;
                co_return ec;
            }
        }
        ws_.binary(true);
        ws_.auto_fragment(false);  // a batch goes out as one frame
        ws_.read_message_max(client_settings_.max_message);
        auto ec = co_await connect(why);
        co_return ec;
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
        if (!selected.empty() && !ws_iequals(selected, ws_subprotocol)) {
            why = "the server selected the WebSocket subprotocol '" + ws_printable(selected) +
                  "', not mqtt";
            co_return error_code{asio::error::no_protocol_option};
        }
        co_return error_code{};
    }

    tls_context_ptr tls_;  // before ws_: with wss its SSL object came from it
    stream_type ws_;
    ws_client_settings client_settings_;
};

}  // namespace

std::unique_ptr<transport> make_ws_client_transport(asio::ip::tcp::socket socket,
                                                    tls_context_ptr tls, ws_client_settings s) {
    if (tls) {
        return std::make_unique<ws_transport<tls_stream>>(std::move(socket), std::move(tls),
                                                          std::move(s));
    }
    return std::make_unique<ws_transport<asio::ip::tcp::socket>>(std::move(socket), nullptr,
                                                                 std::move(s));
}

}  // namespace mqtt::net
