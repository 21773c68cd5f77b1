#pragma once

// Plain TCP for tern-broker's connections without a per-socket Asio descriptor: each event
// loop (io_context) has one epoll set of its own, registered with Asio as a single
// descriptor, and its sockets are in that set. What an idle connection then holds for its
// socket is a 24-byte transport and a 24-byte slot in the loop's table, where Asio's reactor
// kept a descriptor state and a pending wait operation (about 288 bytes).
//
// The sockets are edge-triggered (EPOLLET, added once with EPOLLIN | EPOLLOUT | EPOLLRDHUP):
// one epoll_ctl when a connection starts and one when it ends, none per read or write. That
// fits the transport contract, which waits for readability only after read_now() said
// would_block, and writes until the kernel refuses before waiting for EPOLLOUT. (Level-
// triggered with EPOLLONESHOT would need an epoll_ctl to re-arm every wait.)
//
// Events carry a slot index and the slot's generation, not a pointer: an event fetched for a
// socket that a handler earlier in the same batch closed finds a newer generation and is
// dropped, and nothing freed is touched.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>

#include "net/transport/transport.hpp"

namespace mqtt::net {

// A transport over `socket`, taken out of Asio's reactor into its io_context's epoll set.
// Falls back to the Asio transport (make_tcp_transport) when the socket is not on an
// io_context's own executor or the epoll set refuses it.
std::unique_ptr<transport> make_epoll_tcp_transport(asio::ip::tcp::socket socket);
// The same for a connected descriptor no Asio object owns (one handed over by another
// loop); the transport owns `fd` from here on, whatever happens.
std::unique_ptr<transport> make_epoll_tcp_transport(asio::io_context& io, int fd,
                                                    asio::ip::tcp protocol);

// Told around each batch of readiness events a loop's epoll set hands out: what the batch's
// handlers defer to its end (tern-broker: the writers they woke) is done once per batch, at
// once, and not a turn of the loop later.
class batch_observer {
  public:
    virtual void batch_begin() noexcept = 0;
    virtual void batch_end() noexcept = 0;

  protected:
    ~batch_observer() = default;
};
// `o` (or nullptr) is told of `io`'s batches from now on; it outlives `io`'s run.
void set_batch_observer(asio::io_context& io, batch_observer* o);

// For tests: how many sockets `io`'s epoll set holds now (0 when it has none yet).
std::size_t epoll_tcp_registered(asio::io_context& io);

}  // namespace mqtt::net
