// Plain TCP: one template over the socket type (the io_context's own executor type where it
// can, see make_tcp_transport).

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <limits>
#include <utility>

#include "net/transport/transport.hpp"
#include "net/transport/ws.hpp"

namespace mqtt::net {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// Asio's default completion condition (transfer_all) hands each write_some at most 64 KiB, so
// a 1 MiB PUBLISH took 16 sendmsg calls and a 64 KiB one two; with no cap every call gives
// the kernel all that is left and it takes what the socket's send buffer holds.
struct transfer_everything {
    std::size_t operator()(const boost::system::error_code& ec, std::size_t) const noexcept {
        return ec ? 0 : std::numeric_limits<std::size_t>::max();
    }
};

template <class Socket>
class stream_transport final : public transport {
  public:
    explicit stream_transport(Socket s) : socket_(std::move(s)) {}

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
    bool can_wait_readable() const noexcept override { return true; }
    std::size_t read_now(asio::mutable_buffer b, boost::system::error_code& ec) override {
        // The socket's own mode, set once: a synchronous read then answers would_block
        // instead of waiting (Asio's asynchronous operations are not affected by it).
        if (!non_blocking_) {
            socket_.non_blocking(true, ec);
            if (ec) return 0;
            non_blocking_ = true;
        }
        return socket_.read_some(b, ec);
    }
    // The operation holds the listener and nothing else of its own: what an idle broker
    // connection costs while it waits.
    void async_wait_readable(std::shared_ptr<readable_listener> l) override {
        socket_.async_wait(Socket::wait_read,
                           asio::bind_allocator(exact_allocator<void>{},
                                                [l = std::move(l)](const boost::system::error_code& ec) {
                                                    l->on_readable(ec);
                                                }));
    }
    asio::awaitable<io_result> write(asio::const_buffer b) override {
        return asio::async_write(socket_, b, transfer_everything{}, nothrow);
    }
    asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> b) override {
        return asio::async_write(socket_, b, transfer_everything{}, nothrow);
    }
    asio::awaitable<void> shutdown() override {
        boost::system::error_code ec;
        socket_.shutdown(Socket::shutdown_send, ec);
        co_return;
    }
    void close() override {
        boost::system::error_code ec;
        socket_.close(ec);
    }
    asio::any_io_executor get_executor() override { return socket_.get_executor(); }
    const char* name() const noexcept override { return "tcp"; }

    bool release(int& fd, asio::ip::tcp& protocol) {
        boost::system::error_code ec;
        const auto local = socket_.local_endpoint(ec);
        if (ec) return false;
        const int handle = socket_.release(ec);
        if (ec || handle < 0) return false;
        fd = handle;
        protocol = local.protocol();
        return true;
    }

  private:
    Socket socket_;
    bool non_blocking_ = false;  // no name_ member: 8 bytes less puts the object in a smaller malloc bin
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

std::size_t transport::read_now(asio::mutable_buffer, boost::system::error_code& ec) {
    ec = asio::error::operation_not_supported;
    return 0;
}

std::size_t transport::write_now(std::span<const asio::const_buffer>,
                                 boost::system::error_code& ec) {
    ec = asio::error::operation_not_supported;
    return 0;
}

void transport::async_wait_readable(std::shared_ptr<readable_listener> l) {
    asio::post(get_executor(), [l = std::move(l)] { l->on_readable(asio::error::operation_not_supported); });
}

namespace {

template <class Socket>
bool release_as(transport& t, int& fd, asio::ip::tcp& protocol) {
    auto* s = dynamic_cast<stream_transport<Socket>*>(&t);
    if (s == nullptr) return false;
    return s->release(fd, protocol);
}

}  // namespace

bool release_tcp_transport(transport& t, int& fd, asio::ip::tcp& protocol) {
    using native_socket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
    return release_as<native_socket>(t, fd, protocol) ||
           release_as<asio::ip::tcp::socket>(t, fd, protocol);
}

std::unique_ptr<transport> make_tcp_transport(asio::ip::tcp::socket socket) {
    // A connected socket of an io_context moves onto that io_context's own executor type. With
    // the type-erased any_io_executor every operation keeps a heap copy of it for its
    // outstanding work (64 bytes that an idle broker connection's readiness wait holds for
    // hours); with the concrete type it is two words in the operation.
    using native_socket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
    const auto* ex = socket.get_executor().target<asio::io_context::executor_type>();
    boost::system::error_code ec;
    const auto local = socket.is_open() ? socket.local_endpoint(ec) : asio::ip::tcp::endpoint{};
    if (ex != nullptr && socket.is_open() && !ec) {
        const auto handle = socket.release(ec);
        if (!ec) {
            native_socket native{*ex};
            native.assign(local.protocol(), handle, ec);
            if (!ec) return std::make_unique<stream_transport<native_socket>>(std::move(native));
            socket.assign(local.protocol(), handle, ec);  // as it was
        }
    }
    return std::make_unique<stream_transport<asio::ip::tcp::socket>>(std::move(socket));
}

}  // namespace mqtt::net
