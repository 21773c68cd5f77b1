// A byte stream inside the process: one end of an AF_UNIX socket pair. tern-broker's own
// bridges reach its engine this way: the broker side is served like an accepted
// connection, the bridge's client session talks over the other end. The kernel's socket
// buffers give both sides the back-pressure and the close (EOF, ECONNRESET) semantics of a
// TCP connection, with no port and no listener.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <utility>

#include "net/transport/transport.hpp"

namespace mqtt::net {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
using local_socket = asio::local::stream_protocol::socket;

class local_transport final : public transport {
  public:
    explicit local_transport(local_socket s) : socket_(std::move(s)) {}

    asio::awaitable<boost::system::error_code> handshake(std::chrono::milliseconds,
                                                         std::string&) override {
        co_return boost::system::error_code{};
    }
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
        socket_.shutdown(local_socket::shutdown_send, ec);
        co_return;
    }
    void close() override {
        boost::system::error_code ec;
        socket_.close(ec);
    }
    asio::any_io_executor get_executor() override { return socket_.get_executor(); }
    const char* name() const noexcept override { return "local"; }

  private:
    local_socket socket_;
};

}  // namespace

std::unique_ptr<transport> make_local_transport(local_socket socket) {
    return std::make_unique<local_transport>(std::move(socket));
}

}  // namespace mqtt::net
