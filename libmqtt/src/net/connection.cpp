#include "connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <utility>

namespace mqtt::net::detail {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;
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
      store_(store != nullptr && store->holds_output() ? store : nullptr) {
    session_.set_observer(this);
}

connection::~connection() {
    if (store_ != nullptr) store_->forget(*this);
    session_.set_observer(nullptr);
}

asio::awaitable<void> connection::serve(std::shared_ptr<connection> self) {
    using namespace asio::experimental::awaitable_operators;
    co_await (self->input_side() && self->output_side());
    self->transport_->close();
}

void connection::wake() {
    signal_.cancel();
}

asio::awaitable<bool> connection::wait_signal() {
    co_await signal_.async_wait(nothrow);
    const auto state = co_await asio::this_coro::cancellation_state;
    co_return state.cancelled() == asio::cancellation_type::none;
}

// ---- input ------------------------------------------------------------------------------

asio::awaitable<void> connection::input_side() {
    using namespace asio::experimental::awaitable_operators;
    co_await (read_loop() || watchdog() || wait_closing());
    session_.on_transport_closed(broker::clock::now());  // nothing if the session closed itself
    wake();  // the writer flushes what is left and finishes
}

asio::awaitable<void> connection::read_loop() {
    for (;;) {
        // Backpressure: stop reading while this client's own output is over the limit.
        while (session_.input_paused() && !session_.closing()) {
            const bool woken = co_await wait_signal();
            if (!woken) co_return;
        }
        if (session_.closing()) co_return;
        // Whole packets left in the framer when the input was paused go first.
        process_input();
        if (session_.closing()) co_return;
        if (session_.input_paused()) continue;
        const auto room = framer_.prepare(read_chunk);
        auto [ec, n] = co_await transport_->read_some(asio::buffer(room.data(), room.size()));
        if (ec) {
            // EOF or I/O error: the will goes out (input_side calls on_transport_closed).
            co_return;
        }
        framer_.commit(n);
        stats_.bytes_received += n;
        process_input();
        if (session_.closing()) co_return;
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
    submit_auth();
    if (session_.has_output() || session_.closing()) wake();
    // Deadlines usually move later (activity), which the watchdog finds when it wakes; an
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

asio::awaitable<void> connection::watchdog() {
    for (;;) {
        armed_deadline_ = session_.deadline();
        keep_alive_.expires_at(armed_deadline_);
        co_await keep_alive_.async_wait(nothrow);
        const auto state = co_await asio::this_coro::cancellation_state;
        if (state.cancelled() != asio::cancellation_type::none) co_return;  // ending
        // Fired, or cancelled by process_input() because the deadline moved earlier (CONNECT
        // accepted): on_timer() acts only if the deadline has really passed.
        session_.on_timer(broker::clock::now());
        if (session_.closing()) {
            wake();
            co_return;
        }
    }
}

asio::awaitable<void> connection::wait_closing() {
    while (!session_.closing()) {
        const bool woken = co_await wait_signal();
        if (!woken) co_return;
    }
}

// ---- output -----------------------------------------------------------------------------

asio::awaitable<void> connection::output_side() {
    using namespace asio::experimental::awaitable_operators;
    co_await (write_loop() || close_grace());
}

asio::awaitable<void> connection::write_loop() {
    for (;;) {
        if (!next_batch()) {
            if (session_.closing() && !session_.has_output() && staged_.empty()) break;
            const bool woken = co_await wait_signal();
            if (!woken) co_return;
            continue;
        }
        auto [ec, n] = co_await transport_->write(asio::buffer(writing_));
        if (ec) {
            session_.on_transport_closed(broker::clock::now());
            wake();
            co_return;
        }
        stats_.bytes_sent += n;
        session_.on_written();  // may queue more (messages waiting for the buffer to drain)
        wake();                 // a paused reader may go on
    }
    co_await transport_->shutdown();
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
        std::swap(writing_, staged_);
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

asio::awaitable<void> connection::close_grace() {
    while (!session_.closing()) {
        const bool woken = co_await wait_signal();
        if (!woken) co_return;
    }
    grace_.expires_after(close_grace_period);
    co_await grace_.async_wait(nothrow);
}

}  // namespace mqtt::net::detail
