#pragma once

// The per-connection driver: moves bytes between a transport (TCP, TLS) and a
// broker::session with Asio C++20 coroutines. Private to mqtt_net (it includes Asio).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "auth_worker.hpp"
#include "deadlines.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/framer.hpp"
#include "net/transport/epoll_tcp.hpp"
#include "net/transport/transport.hpp"
#include "store_driver.hpp"

namespace mqtt::net::detail {

namespace asio = boost::asio;

class connection;

// Writers woken while a loop handles a batch of input (a batch of readiness events, a batch
// from another shard, a completed read) start when the batch is done, at once: not a turn
// of the loop later (a turn that also polls the reactor), and each with everything the
// batch gave it. Outside a batch a woken writer starts a turn later, as before.
class write_deferral final : public batch_observer {
  public:
    write_deferral() = default;
    write_deferral(write_deferral&& other) noexcept
        : before_writes(std::move(other.before_writes)), pending_(std::move(other.pending_)) {}
    write_deferral& operator=(write_deferral&&) = delete;

    bool active() const noexcept { return depth_ > 0; }
    void defer(std::shared_ptr<connection> c) { pending_.push_back(std::move(c)); }
    void batch_begin() noexcept override { ++depth_; }
    void batch_end() noexcept override;

    // A batch for as long as it lives.
    class scope {
      public:
        explicit scope(write_deferral& d) noexcept : d_(d) { d_.batch_begin(); }
        ~scope() { d_.batch_end(); }
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;

      private:
        write_deferral& d_;
    };

    // The gather list of the writer running at the batch's end (one at a time).
    std::vector<asio::const_buffer> gather;
    // Run at the batch's end before its writers (threads > 1: what the batch sends to other
    // shards is published first), so a SUBACK never goes out before the subscription's news
    // has left for the other shards.
    std::function<void()> before_writes;

  private:
    std::vector<std::shared_ptr<connection>> pending_;
    unsigned depth_ = 0;
};

// What the connections of one event loop share (the server's, or a shard's): each connection
// holds one pointer to it, not a reference per member and an end handler of its own. It
// outlives its connections (declared before the io_context that destroys them).
struct connection_context {
    broker::engine& engine;
    auth_worker& auth;
    detail::deadlines& timers;  // the watchdog's and the grace period's deadline
    // Set when output waits for the store's syncs (persistence_sync always / batch).
    store_driver* store = nullptr;
    // Called once per started connection when both directions have ended (nullptr), or with
    // the exception that ended it; `tag` is the connection's (the server's listener group).
    std::function<void(std::uint32_t tag, std::exception_ptr)> ended;
    // The writers woken in the batch being handled (see write_deferral).
    write_deferral writes{};
};

// What an idle connection holds is most of the broker's memory per connection, so:
//   the reader is a chain of completion handlers, not a coroutine: while a client is
//   quiet only the pending read operation exists (no coroutine frame);
//   the writer runs only while there is output (or a close to flush): at a batch's end
//   write_inline() writes what the socket takes at once, without a coroutine; otherwise,
//   and for what the socket does not take, write_loop() is a coroutine gone when it is
//   written. So an idle connection has no writer, and the batch being written and its
//   gather list live in the writer, not in the connection;
//   the keep-alive watchdog and the close grace period are plain timer callbacks.
// The writer ends every connection: after the last bytes (and the shutdown) or a write
// error it closes the transport, which ends a read still pending. Every bit of protocol
// logic is in the session; this file only moves bytes and time. With a store that holds
// output (persistence_sync always / batch), bytes the session produced while records were
// not yet on disk are written only after the store's flush.
// deadline_owner is the last base: tag_, the first member, takes the rest of its last word.
class connection final : public std::enable_shared_from_this<connection>,
                         private broker::session_observer,
                         private held_output,
                         private readable_listener,
                         private deadline_owner {
  public:
    // `t` has done its opening exchange (the TLS handshake) already. The CONNECT deadline
    // (connect_timeout_ms) counts from `accepted`, the TCP accept before that exchange.
    // `tag` is handed to ctx.ended() when the connection ends.
    connection(std::unique_ptr<transport> t, connection_context& ctx, std::string peer,
               std::uint32_t tag, broker::clock::time_point accepted = broker::clock::now());
    ~connection();

    // Runs the connection to its end (then ctx.ended()); its pending operations keep it
    // alive meanwhile.
    static void start(const std::shared_ptr<connection>& self);

    const broker::session& session() const noexcept { return session_; }
    void use_certificate_username(std::optional<std::string> name) {
        session_.use_certificate_username(std::move(name));
    }
    void set_security_slot(std::size_t slot) { session_.set_security_slot(slot); }
    void set_listener(std::size_t listener) { session_.set_listener(listener); }
    // Bytes already read from the transport by someone else (with threads > 1, the shard
    // that accepted the socket and read its CONNECT), handled before anything read here.
    // Before start().
    void prefill(std::span<const std::uint8_t> bytes);

  private:
    void wake() override;     // session_observer: output appended, or closing
    void deadline_moved() override;  // session_observer: it began to hold up others
    void stage(std::uint64_t target) override;  // held_output: a flush covers the output so far
    void release() override;  // held_output: it is on disk
    void refuse() override;   // held_output: it is not on disk; close without it
    bool unwritten() const override {
        return !refused_ && (has_staged() || session_.has_output());
    }
    // Moves what may be written now into `into`; false when nothing may.
    bool next_batch(broker::output_batch& into);
    bool has_work() const noexcept;  // something for a writer to do
    // `inline_start`: the caller is not inside the session (a release by the store), so the
    // first write may start at once instead of after a trip through the executor.
    void start_writer(bool inline_start = false);
    friend class write_deferral;  // starts the writers it deferred

    // `writing`: a batch of which write_inline() wrote the first `written` bytes.
    static asio::awaitable<void> write_loop(std::shared_ptr<connection> self, bool inline_start,
                                            broker::output_batch writing = {},
                                            std::size_t written = 0);
    void write_inline(std::shared_ptr<connection> self);
    // Writes `b` from byte `skip`: one buffer, or a gathered write (through `gather`) around
    // the shared payloads.
    asio::awaitable<io_result> write_batch(const broker::output_batch& b,
                                           std::vector<asio::const_buffer>& gather,
                                           std::size_t skip);
    static void gather_batch(const broker::output_batch& b,
                             std::vector<asio::const_buffer>& gather, std::size_t skip);
    void arm_watchdog();
    void on_deadline() override;  // deadline_owner: the watchdog's or the grace period's
    void on_watchdog();
    void arm_grace();
    void finish();  // closes the transport: the writer's last step
    // Input: the next read unless the session is closing or paused; one read at a time.
    void read_more();
    void read_ready(std::size_t want);  // read_now(), or a readiness wait if nothing is there
    void on_read(const boost::system::error_code& ec, std::size_t n);
    void took(std::size_t n);  // `n` bytes read into the framer's room
    void on_readable(const boost::system::error_code& ec) override;  // readable_listener
    void pause_input();   // the session holds its input: no read until resume_input()
    void resume_input();  // a paused reader reads again (posted: never inside the session)
    void end_input();     // no more input: the session learns the transport closed
    void maybe_ended();   // both directions done: ctx_->ended
    void fail(std::exception_ptr e);  // an exception in a handler ends the connection
    void process_input();
    void submit_auth();            // hands a password check to the worker
    void on_auth_result(bool ok);  // back on the loop

    std::uint32_t tag_;  // given to ctx_->ended
    std::unique_ptr<transport> transport_;
    protocol::framer framer_;
    broker::session session_;
    // The engine's counters (bytes read and written), the password worker, the deadline
    // heap (the keep-alive watchdog until the session closes, then the close grace period),
    // the store, the end handler.
    connection_context* ctx_;
    store_driver* store() const noexcept { return ctx_->store; }
    // Output covered by a flush, written once a sync reaches its target, oldest first (more
    // than one when the connection had more to say while the first group was syncing).
    struct staged_output {
        std::uint64_t target = 0;
        broker::output_batch out;
    };
    // Allocated at the first stage(): only connections whose output waited for a sync.
    std::unique_ptr<std::vector<staged_output>> staged_;
    bool has_staged() const noexcept { return staged_ && !staged_->empty(); }
    std::uint16_t next_read_;  // the size of the next read, following the last one
    // Flags as bits: this object is in every connection.
    bool refused_ : 1 = false;  // the store refused what was held: only the close is written
    bool wrote_ : 1 = false;    // something was written (so the CONNACK is out)
    bool writer_running_ : 1 = false;
    bool writer_done_ : 1 = false;  // the transport is closed: no writer starts again
    bool input_done_ : 1 = false;
    bool grace_armed_ : 1 = false;
    bool reading_ : 1 = false;        // a read (or a readiness wait, or its posted result) is pending
    bool read_paused_ : 1 = false;    // no read pending because the session holds its input
    bool resume_posted_ : 1 = false;  // resume_input() is on its way
    bool end_pending_ : 1 = false;    // started, ctx_->ended not called yet
    // Set while paused (see pause_input()): one word here, the reference on the heap then.
    std::unique_ptr<std::shared_ptr<connection>> paused_self_;
};

}  // namespace mqtt::net::detail
