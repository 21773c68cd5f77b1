#pragma once

// The metrics endpoint's network side (tern-broker's metrics_listener, tern-bridge's
// --metrics-listener), private to libmqtt: a TCP acceptor on the caller's event loop and one
// short coroutine per HTTP request. What is said is decided by the
// sans-I/O part (broker/metrics.hpp); this file bounds what a client can make it hold: the
// request head (max_http_head_bytes), the time (one deadline per connection for reading,
// writing and closing) and the number of connections at once.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

namespace mqtt::net::detail {

namespace asio = boost::asio;

class metrics_listener {
  public:
    using render_function = std::function<std::string()>;

    static constexpr std::size_t max_open = 16;  // more are closed at accept
    static constexpr std::chrono::seconds deadline{5};

    metrics_listener(asio::io_context& io, render_function render);
    metrics_listener(const metrics_listener&) = delete;
    metrics_listener& operator=(const metrics_listener&) = delete;

    // With threads > 1 the figures come from every shard's loop first: for GET /metrics
    // `render` is called on this loop with a callback that it (or a handler it posts to
    // this loop) calls with the body; the render function of the constructor is not used.
    using async_render_function = std::function<void(std::function<void(std::string)>)>;
    void set_async_render(async_render_function render) { async_render_ = std::move(render); }

    // `host` is a numeric address; port 0 picks a free port.
    boost::system::error_code bind(const std::string& host, std::uint16_t port);
    std::string local_address() const;  // "127.0.0.1:40123", "[::1]:40123"
    void start();
    void stop();  // closes the acceptor and every open request

  private:
    using socket_ptr = std::shared_ptr<asio::ip::tcp::socket>;
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> serve(socket_ptr s);
    asio::awaitable<std::string> render_async();

    asio::io_context& io_;
    asio::ip::tcp::acceptor acceptor_;
    render_function render_;
    async_render_function async_render_;
    std::set<socket_ptr> open_;
    bool stopping_ = false;
};

}  // namespace mqtt::net::detail
