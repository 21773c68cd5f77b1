#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <utility>

#include "net/transport/transport.hpp"

namespace mqtt::net {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

class tcp_transport final : public transport {
  public:
    explicit tcp_transport(asio::ip::tcp::socket s) : socket_(std::move(s)) {}

    asio::awaitable<boost::system::error_code> handshake(std::chrono::milliseconds,
                                                         std::string&) override {
        co_return boost::system::error_code{};
    }
    // Not coroutines: the socket's own awaitable is handed back as it is.
    asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
        return socket_.async_read_some(b, nothrow);
    }
    void async_read_some(asio::mutable_buffer b, read_handler h) override {
        socket_.async_read_some(b, std::move(h));
    }
    asio::awaitable<io_result> write(asio::const_buffer b) override {
        return asio::async_write(socket_, b, nothrow);
    }
    asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> b) override {
        return asio::async_write(socket_, b, nothrow);
    }
    asio::awaitable<void> shutdown() override {
        boost::system::error_code ec;
        socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        co_return;
    }
    void close() override {
        boost::system::error_code ec;
        socket_.close(ec);
    }
    asio::any_io_executor get_executor() override { return socket_.get_executor(); }
    const char* name() const noexcept override { return "tcp"; }

  private:
    asio::ip::tcp::socket socket_;
};

}  // namespace

asio::awaitable<io_result> transport::write_gathered(std::span<const asio::const_buffer> b) {
    std::size_t total = 0;
    for (const auto& one : b) {
        auto [ec, n] = co_await write(one);
        total += n;
        if (ec) co_return io_result{ec, total};
    }
    co_return io_result{boost::system::error_code{}, total};
}

void transport::async_read_some(asio::mutable_buffer b, read_handler h) {
    asio::co_spawn(get_executor(), read_some(b),
                   [h = std::move(h)](std::exception_ptr e, io_result r) mutable {
                       if (e) {  // read_some() does not throw; a failure ends the read
                           std::move(h)(make_error_code(boost::system::errc::io_error), 0);
                           return;
                       }
                       std::move(h)(std::get<0>(r), std::get<1>(r));
                   });
}

std::unique_ptr<transport> make_tcp_transport(asio::ip::tcp::socket socket) {
    return std::make_unique<tcp_transport>(std::move(socket));
}

}  // namespace mqtt::net
