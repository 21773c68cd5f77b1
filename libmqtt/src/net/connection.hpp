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

// Few coroutine frames per connection, since they are most of an idle connection's memory:
//   serve():      the reader for the connection's whole life, then waits for the writer;
//   write_loop(): started when there is output (or a close to flush) and gone when it is
//                 written, so an idle connection has no writer;
//   the keep-alive watchdog and the close grace period are plain timer callbacks.
// The writer ends every connection: after the last bytes (and the shutdown) or a write
// error it closes the transport, which ends a read still pending. Every bit of protocol
// logic is in the session; this file only moves bytes and time. With a store that holds
// output (persistence_sync always / batch), bytes the session produced while records were
// not yet on disk are written only after the store's flush.
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
    bool has_work() const noexcept;  // something for a writer to do
    void start_writer();

    static asio::awaitable<void> write_loop(std::shared_ptr<connection> self);
    // Writes writing_: one buffer, or a gathered write around the shared payloads.
    asio::awaitable<io_result> write_batch();
    void arm_watchdog();
    void on_watchdog();
    void arm_grace();
    void finish();  // closes the transport: the writer's last step
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
    // Never expires: the reader sleeps on it and signal_.cancel() wakes it to re-check.
    asio::steady_timer signal_;
    asio::steady_timer keep_alive_;
    broker::clock::time_point armed_deadline_ = broker::clock::time_point::max();
    asio::steady_timer grace_;
    broker::output_batch writing_;            // the batch being written; swaps with the session's
    std::vector<asio::const_buffer> gather_;  // writing_ as buffers for one gathered write
    store_driver* store_ = nullptr;           // set when output waits for the store's syncs
    std::vector<std::uint8_t> staged_;  // output covered by a flush, written once it is synced
    std::size_t next_read_;             // the size of the next read, following the last one
    bool released_ = true;              // staged_ may be written
    bool writer_running_ = false;
    bool writer_done_ = false;  // the transport is closed: no writer starts again
    bool input_done_ = false;
    bool grace_armed_ = false;
};

}  // namespace mqtt::net::detail
