#pragma once

// The byte stream under an MQTT connection: plain TCP or TLS today, WebSocket later. The
// drivers (the broker's net/connection.cpp, the client's net_client.cpp) see only this
// interface. read_some() and write() return the awaitable of the underlying stream's
// operation itself (no coroutine frame of their own), so plain TCP costs one virtual call
// per read or write more than a bare socket.

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>

namespace mqtt::net {

namespace asio = boost::asio;

using io_result = std::tuple<boost::system::error_code, std::size_t>;
// The completion of async_read_some(): the error and the number of bytes read.
using read_handler = asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;

class transport {
  public:
    virtual ~transport() = default;

    // The opening exchange before MQTT bytes flow (the TLS handshake), bounded by
    // `timeout`; plain TCP has none. On failure `why` says what went wrong in words a
    // log reader can act on ("certificate verify failed: certificate has expired").
    virtual asio::awaitable<boost::system::error_code> handshake(std::chrono::milliseconds timeout,
                                                                 std::string& why) = 0;
    virtual asio::awaitable<io_result> read_some(asio::mutable_buffer b) = 0;
    // The same read with a completion handler instead of a coroutine: nothing but the
    // operation itself is held while it waits, which is what an idle broker connection
    // costs. `h` runs on the transport's executor. By default it runs read_some() in a
    // coroutine of its own; TCP and TLS start the stream's operation directly.
    virtual void async_read_some(asio::mutable_buffer b, read_handler h);
    virtual asio::awaitable<io_result> write(asio::const_buffer b) = 0;
    // Writes all of `b`, in order (a gathered write: writev on plain TCP). The buffers
    // must stay valid until it completes. By default one write() per buffer.
    virtual asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> b);
    // No more bytes from us (TCP: FIN; TLS: close_notify, then FIN). Best effort.
    virtual asio::awaitable<void> shutdown() = 0;
    // Closes at once; pending operations complete with operation_aborted.
    virtual void close() = 0;

    // The executor the transport's operations complete on.
    virtual asio::any_io_executor get_executor() = 0;
    // "tcp", "tls", "ws", "wss" or "local", for logs.
    virtual const char* name() const noexcept = 0;
    // TLS with a verified client certificate: its subject's commonName, or the whole
    // subject; nullopt otherwise.
    virtual std::optional<std::string> peer_common_name() const { return std::nullopt; }
    virtual std::optional<std::string> peer_subject() const { return std::nullopt; }
};

// Plain TCP over a connected (or to be connected) socket.
std::unique_ptr<transport> make_tcp_transport(asio::ip::tcp::socket socket);

// One end of a connected AF_UNIX stream pair (asio::local::connect_pair): a connection inside
// the process, such as tern-broker's own bridges reaching its engine (local.cpp).
std::unique_ptr<transport> make_local_transport(asio::local::stream_protocol::socket socket);

}  // namespace mqtt::net
