#pragma once

// The per-connection driver: moves bytes between a TCP socket and a broker::session with
// Asio C++20 coroutines. Private to mqtt_net (it includes Asio).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/framer.hpp"

namespace mqtt::net::detail {

namespace asio = boost::asio;

// Three coroutines per connection, joined in serve():
//   input:  read_loop || watchdog || wait_closing   (reading ends when any of them ends)
//   output: write_loop || close_grace               (flush, bounded by a grace period)
// Every bit of protocol logic is in the session; this file only moves bytes and time.
class connection final : public std::enable_shared_from_this<connection>,
                         private broker::session_observer {
  public:
    connection(asio::ip::tcp::socket socket, broker::engine& engine, std::string peer);
    ~connection();

    // Runs the connection to its end; `self` keeps it alive meanwhile.
    static asio::awaitable<void> serve(std::shared_ptr<connection> self);

    const broker::session& session() const noexcept { return session_; }

  private:
    void wake() override;  // session_observer: output appended, or closing

    asio::awaitable<void> input_side();
    asio::awaitable<void> read_loop();
    asio::awaitable<void> watchdog();
    asio::awaitable<void> wait_closing();
    asio::awaitable<void> output_side();
    asio::awaitable<void> write_loop();
    asio::awaitable<void> close_grace();
    // Waits for the next wake(); false when this coroutine was cancelled instead.
    asio::awaitable<bool> wait_signal();
    void process_input();

    asio::ip::tcp::socket socket_;
    protocol::framer framer_;
    broker::session session_;
    broker::stats& stats_;  // the engine's counters: bytes read and written
    // Never expires: waiters sleep on it and signal_.cancel() wakes them all to re-check.
    asio::steady_timer signal_;
    asio::steady_timer keep_alive_;
    broker::clock::time_point armed_deadline_ = broker::clock::time_point::max();
    asio::steady_timer grace_;
    std::vector<std::uint8_t> writing_;  // the batch being written; swaps with the session's
};

}  // namespace mqtt::net::detail
