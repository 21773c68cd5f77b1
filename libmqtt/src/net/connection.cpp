#include "connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <chrono>
#include <utility>

namespace mqtt::net::detail {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// Reads follow the traffic: twice the last read, between a small read (an idle client's
// next packet is usually a PINGREQ: no 16 KiB buffer held for it) and read_chunk; the rest
// of a large packet in one read of up to max_read_chunk.
constexpr std::size_t small_read = 256;
constexpr std::size_t read_chunk = 16 * 1024;
constexpr std::size_t max_read_chunk = 1024 * 1024;
// How long a closing connection may take to accept its last bytes (a DISCONNECT) before
// the socket is closed anyway: a peer that stops reading cannot hold us.
constexpr auto close_grace_period = std::chrono::seconds{3};
// Note: GCC 12 miscompiled `if (!co_await ...)` in these loops (SIGILL at run time), so
// every co_await result goes through a named variable first.

}  // namespace

connection::connection(std::unique_ptr<transport> t, broker::engine& engine, std::string peer,
                       auth_worker& auth, store_driver* store)
    : transport_(std::move(t)),
      framer_(engine.config().max_packet_size),
      session_(engine, broker::clock::now(), std::move(peer)),
      auth_(auth),
      stats_(engine.stats()),
      signal_(transport_->socket().get_executor(), asio::steady_timer::time_point::max()),
      keep_alive_(transport_->socket().get_executor()),
      grace_(transport_->socket().get_executor()),
      store_(store != nullptr && store->holds_output() ? store : nullptr),
      next_read_(small_read) {
    session_.set_observer(this);
}

connection::~connection() {
    if (store_ != nullptr) store_->forget(*this);
    session_.set_observer(nullptr);
}

void connection::wake() {
    signal_.cancel();
    if (!writer_running_ && !writer_done_ && has_work()) start_writer();
    if (session_.closing() && !grace_armed_) arm_grace();
}

asio::awaitable<bool> connection::wait_signal() {
    co_await signal_.async_wait(nothrow);
    const auto state = co_await asio::this_coro::cancellation_state;
    co_return state.cancelled() == asio::cancellation_type::none;
}

// ---- input ------------------------------------------------------------------------------

// The reader, for the connection's whole life (one coroutine frame: the read loop is not a
// coroutine of its own), then the wait for the writer's end.
asio::awaitable<void> connection::serve(std::shared_ptr<connection> self) {
    auto& c = *self;
    c.arm_watchdog();
    for (;;) {
        // Backpressure: stop reading while this client's own output is over the limit.
        while (c.session_.input_paused() && !c.session_.closing() && !c.writer_done_) {
            const bool woken = co_await c.wait_signal();
            (void)woken;
        }
        // Closing: no more input; the writer flushes, then closes the transport, which
        // ends a read still pending.
        if (c.session_.closing() || c.writer_done_) break;
        // Whole packets left in the framer when the input was paused go first.
        c.process_input();
        if (c.session_.closing()) break;
        if (c.session_.input_paused()) continue;
        // The rest of a large packet in one read, straight into its place in the buffer
        // (capped: a header alone must not make us allocate a huge buffer).
        const auto room =
            c.framer_.prepare(std::clamp(c.framer_.missing(), c.next_read_, max_read_chunk));
        auto [ec, n] = co_await c.transport_->read_some(asio::buffer(room.data(), room.size()));
        if (ec) break;  // EOF or I/O error: the Will goes out below
        c.framer_.commit(n);
        c.stats_.bytes_received += n;
        c.next_read_ = std::clamp(2 * n, small_read, read_chunk);
        if (c.session_.closing()) break;
        c.process_input();
    }
    c.input_done_ = true;
    c.keep_alive_.cancel();
    c.session_.on_transport_closed(broker::clock::now());  // nothing if the session closed itself
    c.wake();  // the writer flushes what is left, then closes the transport
    while (!c.writer_done_) {
        const bool woken = co_await c.wait_signal();
        (void)woken;
    }
}

void connection::process_input() {
    const auto now = broker::clock::now();
    for (;;) {
        auto next = framer_.next();
        if (!next) {
            session_.on_framing_error(next.error());
            break;
        }
        if (!*next) break;
        session_.on_frame(**next, now);
        if (store_ != nullptr) store_->after_packet();  // always: synced before the ack
        // Paused (back-pressure): the packets after this one wait in the framer, so a
        // throttled publisher adds at most one message to a congested subscriber's queue.
        if (session_.closing() || session_.input_paused()) break;
    }
    // A quiet connection keeps no read buffer beyond its next small read.
    if (next_read_ < read_chunk && framer_.buffered() == 0) framer_.release();
    submit_auth();
    if (session_.has_output() || session_.closing()) wake();
    // Deadlines usually move later (activity), which the watchdog finds when it fires; an
    // earlier one (the keep-alive replacing the connect timeout) needs it woken now.
    if (session_.deadline() < armed_deadline_) keep_alive_.cancel();
}

void connection::submit_auth() {
    auto request = session_.take_auth_request();
    if (!request) return;
    auth_.submit(std::move(*request),
                 [weak = weak_from_this(), ex = transport_->socket().get_executor()](bool ok) {
                     asio::post(ex, [weak, ok] {
                         if (auto self = weak.lock()) self->on_auth_result(ok);
                     });
                 });
}

void connection::on_auth_result(bool ok) {
    session_.on_auth_result(ok, broker::clock::now());
    wake();  // the CONNACK to write, the held input to read
    if (session_.deadline() < armed_deadline_) keep_alive_.cancel();  // the refusal's time
}

// The keep-alive watchdog: a timer callback, not a coroutine (no frame while it waits).
void connection::arm_watchdog() {
    armed_deadline_ = session_.deadline();
    keep_alive_.expires_at(armed_deadline_);
    keep_alive_.async_wait([weak = weak_from_this()](const boost::system::error_code&) {
        if (auto self = weak.lock()) self->on_watchdog();
    });
}

void connection::on_watchdog() {
    if (input_done_ || session_.closing()) return;  // ending: the reader cancelled it
    // Fired, or cancelled by process_input() because the deadline moved earlier (CONNECT
    // accepted): on_timer() acts only if the deadline has really passed.
    session_.on_timer(broker::clock::now());
    if (session_.closing()) {
        wake();
        return;
    }
    arm_watchdog();
}

// ---- output -----------------------------------------------------------------------------

bool connection::has_work() const noexcept {
    return session_.has_output() || session_.closing() || (!staged_.empty() && released_);
}

void connection::start_writer() {
    auto self = weak_from_this().lock();
    if (!self) return;  // being destroyed
    writer_running_ = true;
    asio::co_spawn(signal_.get_executor(), write_loop(std::move(self)), asio::detached);
}

// Runs while there is something to write: ends when the batch is written and nothing
// else waits (the next wake() with output starts another), or, once the session is
// closing and everything is out, with the shutdown and the close of the transport.
asio::awaitable<void> connection::write_loop(std::shared_ptr<connection> self) {
    auto& c = *self;
    // Started from wake(), possibly inside the session: the first step goes through the
    // executor, so the session is never re-entered from its own call.
    co_await asio::post(c.signal_.get_executor(), asio::use_awaitable);
    while (!c.writer_done_) {
        if (!c.next_batch()) {
            if (c.session_.closing() && !c.session_.has_output() && c.staged_.empty()) {
                co_await c.transport_->shutdown();
                c.finish();
            }
            break;
        }
        auto [ec, n] = co_await c.write_batch();
        if (ec) {
            c.session_.on_transport_closed(broker::clock::now());
            c.finish();
            break;
        }
        c.stats_.bytes_sent += n;
        c.writing_.release_payloads();  // written: the messages need not be held for us
        c.session_.on_written();  // may queue more (messages waiting for the buffer to drain)
        c.signal_.cancel();       // a paused reader may go on
    }
    c.writer_running_ = false;
}

// The end of the connection: no more writes, and a pending read ends.
void connection::finish() {
    if (writer_done_) return;
    writer_done_ = true;
    grace_.cancel();
    transport_->close();
    signal_.cancel();
}

void connection::arm_grace() {
    grace_armed_ = true;
    grace_.expires_after(close_grace_period);
    grace_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
        if (ec) return;  // cancelled: finished in time
        if (auto self = weak.lock()) self->finish();
    });
}

asio::awaitable<io_result> connection::write_batch() {
    if (writing_.payloads.empty()) return transport_->write(asio::buffer(writing_.bytes));
    // The bytes around the shared payloads, and the payloads themselves, in order.
    gather_.clear();
    std::size_t from = 0;
    for (const auto& p : writing_.payloads) {
        if (p.at != from) gather_.push_back(asio::buffer(writing_.bytes.data() + from, p.at - from));
        gather_.push_back(asio::buffer(p.msg->payload));
        from = p.at;
    }
    if (from != writing_.bytes.size()) {
        gather_.push_back(asio::buffer(writing_.bytes.data() + from, writing_.bytes.size() - from));
    }
    return transport_->write_gathered(gather_);
}

bool connection::next_batch() {
    if (store_ == nullptr) {
        if (!session_.has_output()) return false;
        // Everything queued since the last write goes out as one batch.
        session_.take_output(writing_);
        return true;
    }
    if (!staged_.empty()) {
        if (!released_) return false;
        writing_.clear();
        std::swap(writing_.bytes, staged_);
        staged_.clear();
        return true;
    }
    if (!session_.has_output()) return false;
    if (store_->all_synced()) {  // every record this output depends on is on disk
        session_.take_output(writing_);
        return true;
    }
    store_->hold(*this);  // staged at the next flush, released after its sync
    return false;
}

void connection::stage() {
    if (!session_.has_output()) return;
    std::vector<std::uint8_t> more;
    session_.take_output(more);
    staged_.insert(staged_.end(), more.begin(), more.end());
    released_ = false;
}

void connection::release() {
    released_ = true;
    wake();
}

}  // namespace mqtt::net::detail
