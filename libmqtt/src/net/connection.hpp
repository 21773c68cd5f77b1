#pragma once

// The per-connection driver: moves bytes between a transport (TCP, TLS) and a
// broker::session with Asio C++20 coroutines. Private to mqtt_net (it includes Asio).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "auth_worker.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/framer.hpp"
#include "net/transport/transport.hpp"
#include "store_driver.hpp"

namespace mqtt::net::detail {

namespace asio = boost::asio;

// Three coroutines per connection, joined in serve():
//   input:  read_loop || watchdog || wait_closing   (reading ends when any of them ends)
//   output: write_loop || close_grace               (flush, bounded by a grace period)
// Every bit of protocol logic is in the session; this file only moves bytes and time.
// With a store that holds output (persistence_sync always / batch), bytes the session
// produced while records were not yet on disk are written only after the store's flush.
class connection final : public std::enable_shared_from_this<connection>,
                         private broker::session_observer,
                         private held_output {
  public:
    // `t` has done its opening exchange (the TLS handshake) already.
    connection(std::unique_ptr<transport> t, broker::engine& engine, std::string peer,
               auth_worker& auth, store_driver* store = nullptr);
    ~connection();

    // Runs the connection to its end; `self` keeps it alive meanwhile.
    static asio::awaitable<void> serve(std::shared_ptr<connection> self);

    const broker::session& session() const noexcept { return session_; }
    void use_certificate_username(std::optional<std::string> name) {
        session_.use_certificate_username(std::move(name));
    }
    void set_security_slot(std::size_t slot) { session_.set_security_slot(slot); }

  private:
    void wake() override;     // session_observer: output appended, or closing
    void stage() override;    // held_output: the store's flush covers the output so far
    void release() override;  // held_output: it is on disk
    // Moves what may be written now into writing_; false when nothing may.
    bool next_batch();

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
    void submit_auth();            // hands a password check to the worker
    void on_auth_result(bool ok);  // back on the loop

    std::unique_ptr<transport> transport_;
    protocol::framer framer_;
    broker::session session_;
    auth_worker& auth_;
    broker::stats& stats_;  // the engine's counters: bytes read and written
    // Never expires: waiters sleep on it and signal_.cancel() wakes them all to re-check.
    asio::steady_timer signal_;
    asio::steady_timer keep_alive_;
    broker::clock::time_point armed_deadline_ = broker::clock::time_point::max();
    asio::steady_timer grace_;
    std::vector<std::uint8_t> writing_;  // the batch being written; swaps with the session's
    store_driver* store_ = nullptr;      // set when output waits for the store's syncs
    std::vector<std::uint8_t> staged_;   // output covered by a flush, written once it is synced
    bool released_ = true;               // staged_ may be written
};

}  // namespace mqtt::net::detail
