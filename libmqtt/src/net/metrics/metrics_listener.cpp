#include "net/metrics/metrics_listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <utility>
#include <vector>

#include "mqtt/broker/metrics.hpp"

namespace mqtt::net::detail {
namespace {

using tcp = asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// After the response, what the client still sends is read and dropped (up to this much)
// until it closes, so that the close does not reset the connection under the response.
constexpr std::size_t max_drain_bytes = 64 * 1024;

}  // namespace

metrics_listener::metrics_listener(asio::io_context& io, render_function render)
    : io_(io), acceptor_(io), render_(std::move(render)) {}

boost::system::error_code metrics_listener::bind(const std::string& host, std::uint16_t port) {
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(host, ec);
    if (ec) return ec;
    const tcp::endpoint ep{addr, port};
    acceptor_.open(ep.protocol(), ec);
    if (ec) return ec;
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    acceptor_.bind(ep, ec);
    if (ec) return ec;
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    return ec;
}

std::string metrics_listener::local_address() const {
    boost::system::error_code ec;
    const auto ep = acceptor_.local_endpoint(ec);
    if (ec) return "?";
    const auto addr = ep.address().to_string();
    const auto port = std::to_string(ep.port());
    return ep.address().is_v6() ? "[" + addr + "]:" + port : addr + ":" + port;
}

void metrics_listener::start() {
    asio::co_spawn(io_, accept_loop(), asio::detached);
}

void metrics_listener::stop() {
    stopping_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    for (const auto& s : open_) s->close(ec);
}

asio::awaitable<void> metrics_listener::accept_loop() {
    while (!stopping_) {
        auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
        if (stopping_ || ec == asio::error::operation_aborted) co_return;
        if (ec) {  // out of file descriptors and the like: breathe, go on
            asio::steady_timer pause{io_, std::chrono::milliseconds{100}};
            co_await pause.async_wait(nothrow);
            continue;
        }
        if (open_.size() >= max_open) continue;  // the socket closes here
        auto s = std::make_shared<tcp::socket>(std::move(socket));
        open_.insert(s);
        asio::co_spawn(io_, serve(s), asio::detached);
    }
}

asio::awaitable<std::string> metrics_listener::render_async() {
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::string)>(
        [this](auto handler) {
            // std::function needs a copyable callback; the handler is move-only.
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            async_render_([h](std::string body) {
                auto& complete = *h;
                std::move(complete)(std::move(body));
            });
        },
        asio::use_awaitable);
}

// One request, one response, then close; the whole exchange within `deadline`.
asio::awaitable<void> metrics_listener::serve(socket_ptr s) {
    asio::steady_timer timer{io_, deadline};
    timer.async_wait([s](const boost::system::error_code& ec) {
        boost::system::error_code ignored;
        if (!ec) s->close(ignored);  // a slow or silent client
    });
    std::string head;
    std::vector<char> chunk(2048);
    std::string response;
    for (;;) {
        auto [ec, n] = co_await s->async_read_some(asio::buffer(chunk), nothrow);
        if (ec) break;
        head.append(chunk.data(), n);
        broker::http_request request;
        const auto parsed = broker::parse_http_request(head, request);
        if (parsed == broker::http_parse::incomplete) continue;
        if (parsed != broker::http_parse::complete) {
            response = broker::http_error_response(parsed);
        } else if (async_render_ && broker::asks_for_metrics(request)) {
            const auto body = co_await render_async();
            response = broker::metrics_http_response(request, [&body] { return body; });
        } else {
            response = broker::metrics_http_response(request, render_);
        }
        break;
    }
    if (!response.empty()) {
        auto [ec, n] = co_await asio::async_write(*s, asio::buffer(response), nothrow);
        boost::system::error_code ignored;
        if (!ec) s->shutdown(tcp::socket::shutdown_send, ignored);
        std::size_t drained = 0;
        while (!ec && drained < max_drain_bytes) {
            auto [rec, m] = co_await s->async_read_some(asio::buffer(chunk), nothrow);
            if (rec) break;
            drained += m;
        }
    }
    timer.cancel();
    boost::system::error_code ignored;
    s->close(ignored);
    open_.erase(s);
}

}  // namespace mqtt::net::detail
