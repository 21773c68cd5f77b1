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
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <utility>

namespace mqtt::net {

namespace asio = boost::asio;

using io_result = std::tuple<boost::system::error_code, std::size_t>;
// The completion of async_read_some(): the error and the number of bytes read.
using read_handler = asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
// Told when a readiness wait (transport::async_wait_readable) ends: the socket is readable,
// or the wait failed (operation_aborted once the transport is closed). The pending wait
// holds it (and nothing else), so an operation destroyed unrun with its io_context takes the
// listener with it.
class readable_listener {
  public:
    virtual void on_readable(const boost::system::error_code& ec) = 0;

  protected:
    ~readable_listener() = default;
};

// The memory of an operation that may wait as long as a client is quiet (a broker
// connection's pending read or readiness wait): exactly its size from the heap. Asio's
// default for handlers, including std::allocator, is a per-thread recycling cache that hands
// an operation any larger block an earlier one left (a 335-byte accept, say), which idle
// connections then hold for hours. A type of its own keeps Asio from mapping it to that cache.
template <class T>
struct exact_allocator {
    using value_type = T;
    exact_allocator() noexcept = default;
    template <class U>
    exact_allocator(const exact_allocator<U>&) noexcept {}  // NOLINT: rebinding converts
    T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
    void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>{}.deallocate(p, n); }
    friend bool operator==(const exact_allocator&, const exact_allocator&) noexcept { return true; }
};

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
    // Readiness instead of a pending read, so that an idle connection holds no read buffer:
    // read_now() reads what is there without waiting (would_block when nothing is), and
    // async_wait_readable() completes when bytes arrive. A caller waits only after read_now()
    // said would_block (the sockets are edge-triggered underneath). Plain TCP and local
    // sockets can; TLS and WebSocket, which keep decrypted or unframed bytes of their own,
    // cannot (the defaults answer operation_not_supported).
    virtual bool can_wait_readable() const noexcept { return false; }
    virtual std::size_t read_now(asio::mutable_buffer b, boost::system::error_code& ec);
    virtual void async_wait_readable(std::shared_ptr<readable_listener> l);
    virtual asio::awaitable<io_result> write(asio::const_buffer b) = 0;
    // Writes what the kernel takes of `b` now, without waiting: the bytes written, all of
    // them or fewer (would_block when it refused the rest). Plain TCP can; the others
    // (which write through their own framing) answer operation_not_supported, having written
    // nothing: the caller then uses write_gathered().
    virtual bool can_write_now() const noexcept { return false; }
    virtual std::size_t write_now(std::span<const asio::const_buffer> b,
                                  boost::system::error_code& ec);
    // Writes all of `b`, in order (a gathered write: writev on plain TCP). The buffers
    // must stay valid until it completes. By default one write() per buffer.
    virtual asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> b);
    // No more bytes from us (TCP: FIN; TLS: close_notify, then FIN). Best effort.
    virtual asio::awaitable<void> shutdown() = 0;
    // Closes at once; pending operations complete with operation_aborted.
    virtual void close() = 0;

    // The executor the transport's operations complete on.
    virtual asio::any_io_executor get_executor() = 0;
    // "tcp", "tls", "ws", "wss" or "memory", for logs.
    virtual const char* name() const noexcept = 0;
    // TLS with a verified client certificate: its subject's commonName, or the whole
    // subject; nullopt otherwise.
    virtual std::optional<std::string> peer_common_name() const { return std::nullopt; }
    virtual std::optional<std::string> peer_subject() const { return std::nullopt; }
};

// Plain TCP over a connected (or to be connected) socket.
std::unique_ptr<transport> make_tcp_transport(asio::ip::tcp::socket socket);

// Two connected in-memory byte streams on `ex` (memory.cpp): what one writes the other
// reads, with no socket and no system call: tern-broker's own bridges reaching its engine.
// A write waits while the peer has `capacity` bytes or more unread (back-pressure); after
// close() or shutdown() the peer reads what is left, then EOF.
std::pair<std::unique_ptr<transport>, std::unique_ptr<transport>> make_memory_pair(
    const asio::any_io_executor& ex, std::size_t capacity = 256 * 1024);

}  // namespace mqtt::net
