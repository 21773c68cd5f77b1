#include "connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
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
static_assert(read_chunk <= UINT16_MAX, "connection::next_read_ is 16 bits");
// How long a closing connection may take to accept its last bytes (a DISCONNECT) before
// the socket is closed anyway: a peer that stops reading cannot hold us.
constexpr auto close_grace_period = std::chrono::seconds{3};
// The pending read of a connection may wait as long as its client is quiet: exactly its size
// from the heap (see exact_allocator).
template <class Handler>
auto long_lived(Handler&& h) {
    return asio::bind_allocator(net::exact_allocator<void>{}, std::forward<Handler>(h));
}

// Note: GCC 12 miscompiled `if (!co_await ...)` in these loops (SIGILL at run time), so
// every co_await result goes through a named variable first.

}  // namespace

void write_deferral::batch_end() noexcept {
    if (--depth_ != 0 || pending_.empty()) return;
    if (before_writes) {
        try {
            before_writes();
        } catch (...) {  // the channels are published at the end of the turn anyway
        }
    }
    // Outside the batch now: a writer woken while these start takes the usual way.
    auto starting = std::move(pending_);
    pending_.clear();
    for (auto& c : starting) {
        try {
            // Not inside any session: the writer's first write may happen right here.
            c->write_inline(c);
        } catch (...) {
            c->fail(std::current_exception());
        }
    }
    starting.clear();
    if (pending_.empty()) pending_ = std::move(starting);  // keeps the capacity for the next
}

connection::connection(std::unique_ptr<transport> t, connection_context& ctx, std::string peer,
                       std::uint32_t tag, broker::clock::time_point accepted)
    : tag_(tag),
      transport_(std::move(t)),
      framer_(ctx.engine.config().max_packet_size),
      session_(ctx.engine, accepted, std::move(peer)),
      ctx_(&ctx),
      next_read_(small_read) {
    session_.set_observer(this);
    if (store() != nullptr) store()->enlist(*this);
}

connection::~connection() {
    ctx_->timers.cancel(*this);
    if (store() != nullptr) store()->forget(*this);
    session_.set_observer(nullptr);
}

void connection::wake() {
    if (read_paused_) resume_input();
    if (!writer_running_ && !writer_done_ && has_work()) start_writer();
    if (session_.closing() && !grace_armed_) arm_grace();
}

void connection::deadline_moved() {
    if (!grace_armed_ && !input_done_ && session_.deadline() < scheduled_at()) arm_watchdog();
}

// ---- input ------------------------------------------------------------------------------

void connection::start(const std::shared_ptr<connection>& self) {
    self->end_pending_ = true;
    self->arm_watchdog();
    self->read_more();
}

void connection::prefill(std::span<const std::uint8_t> bytes) {
    if (bytes.empty()) return;
    framer_.feed(bytes);
    ctx_->engine.stats().bytes_received += bytes.size();
}

void connection::read_more() {
    if (reading_ || input_done_) return;
    read_paused_ = false;
    const auto keep = std::move(paused_self_);  // this call decides again
    // Closing: no more input; the writer flushes, then closes the transport.
    if (session_.closing() || writer_done_) return end_input();
    // Backpressure, a password check or max_publish_rate: the packets wait in the framer
    // (and the socket) until wake() says the session takes input again.
    if (session_.input_paused()) return pause_input();
    process_input();  // whole packets already in the framer go first
    if (session_.closing()) return end_input();
    if (session_.input_paused()) return pause_input();
    // The rest of a large packet in one read, straight into its place in the buffer
    // (capped: a header alone must not make us allocate a huge buffer).
    const auto want = std::clamp(framer_.missing(), std::size_t{next_read_}, max_read_chunk);
    if (transport_->can_wait_readable()) return read_ready(want);
    const auto room = framer_.prepare(want);
    reading_ = true;
    transport_->async_read_some(
        asio::buffer(room.data(), room.size()),
        long_lived([self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
            try {
                self->on_read(ec, n);
            } catch (...) {
                self->fail(std::current_exception());
            }
        }));
}

// Reads what the socket holds now; when it holds nothing, waits for it to become readable
// with no buffer held, so an idle connection costs its wait operation and no read buffer.
void connection::read_ready(std::size_t want) {
    const auto room = framer_.prepare(want);
    boost::system::error_code ec;
    const auto n = transport_->read_now(asio::buffer(room.data(), room.size()), ec);
    reading_ = true;
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        if (framer_.buffered() == 0) framer_.release();
        // The aliasing constructor: a private base does not convert implicitly.
        transport_->async_wait_readable(std::shared_ptr<readable_listener>{
            shared_from_this(), static_cast<readable_listener*>(this)});
        return;
    }
    // Bytes, the end of the stream or an error: handled on the next turn of the loop, as a
    // completed read would be, so a busy client does not keep the loop to itself. (Up to 4
    // reads of a connection handled at once were measured on 2026-12-03 against this: no
    // difference in throughput, CPU per message or latency beyond the noise;
    // docs/benchmarks.md.)
    asio::post(transport_->get_executor(), [self = shared_from_this(), ec, n] {
        try {
            self->on_read(ec, n);
        } catch (...) {
            self->fail(std::current_exception());
        }
    });
}

void connection::on_readable(const boost::system::error_code& ec) {
    reading_ = false;
    try {
        if (ec) return end_input();  // the close (operation_aborted) or an error
        read_more();
    } catch (...) {
        fail(std::current_exception());
    }
}

// No read is pending while paused, the deadline heap holds a plain pointer and the password
// check a weak one: the connection holds itself until it reads again or ends.
void connection::pause_input() {
    read_paused_ = true;
    if (!paused_self_) {
        paused_self_ = std::make_unique<std::shared_ptr<connection>>(shared_from_this());
    }
}

void connection::on_read(const boost::system::error_code& ec, std::size_t n) {
    const write_deferral::scope batch{ctx_->writes};
    reading_ = false;
    if (ec) return end_input();  // EOF, an I/O error or the close: the Will goes out
    took(n);
    read_more();
}

void connection::took(std::size_t n) {
    framer_.commit(n);
    ctx_->engine.stats().bytes_received += n;
    next_read_ = static_cast<std::uint16_t>(std::clamp(2 * n, small_read, read_chunk));
}

void connection::resume_input() {
    if (resume_posted_ || input_done_) return;
    auto self = weak_from_this().lock();
    if (!self) return;  // being destroyed
    resume_posted_ = true;
    asio::post(transport_->get_executor(), [self = std::move(self)] {
        self->resume_posted_ = false;
        try {
            self->read_more();
        } catch (...) {
            self->fail(std::current_exception());
        }
    });
}

void connection::end_input() {
    if (input_done_) return;
    const auto keep = std::move(paused_self_);
    input_done_ = true;
    read_paused_ = false;
    if (!grace_armed_) ctx_->timers.cancel(*this);  // the watchdog; the grace period bounds the flush
    session_.on_transport_closed(broker::clock::now());  // nothing if the session closed itself
    wake();  // the writer flushes what is left, then closes the transport
    maybe_ended();
}

void connection::maybe_ended() {
    if (!input_done_ || !writer_done_ || reading_ || !end_pending_) return;
    end_pending_ = false;
    ctx_->ended(tag_, nullptr);
}

void connection::fail(std::exception_ptr e) {
    const auto keep = std::move(paused_self_);
    reading_ = false;
    input_done_ = true;
    read_paused_ = false;
    writer_done_ = true;
    ctx_->timers.cancel(*this);
    transport_->close();
    if (end_pending_) {
        end_pending_ = false;
        ctx_->ended(tag_, e);
    }
}

void connection::process_input() {
    const auto now = broker::clock::now();
    for (;;) {
        // A SUBSCRIBE waits (in the framer) while this shard's retained replica lacks what
        // another shard changed before it (threads > 1; docs/broker.md, "Threading").
        if ((framer_.peek_first_byte() >> 4) == 8 && session_.hold_subscribe()) break;
        auto next = framer_.next();
        if (!next) {
            session_.on_framing_error(next.error());
            break;
        }
        if (!*next) break;
        // Items this packet sends to other shards hold this connection's output until
        // those shards have synced them (threads > 1).
        if (store() != nullptr) store()->set_current(this);
        session_.on_frame(**next, now);
        if (store() != nullptr) store()->set_current(nullptr);
        if (store() != nullptr) store()->after_packet();  // always: synced before the ack
        // Paused (back-pressure): the packets after this one wait in the framer, so a
        // throttled publisher adds at most one message to a congested subscriber's queue.
        if (session_.closing() || session_.input_paused()) break;
    }
    // A quiet connection keeps no read buffer beyond its next small read.
    if (next_read_ < read_chunk && framer_.buffered() == 0) framer_.release();
    submit_auth();
    if (session_.has_output() || session_.closing()) wake();
    // Deadlines usually move later (activity), which the watchdog finds when it fires; an
    // earlier one (the keep-alive replacing the connect timeout) is scheduled now.
    if (!grace_armed_ && session_.deadline() < scheduled_at()) arm_watchdog();
}

void connection::submit_auth() {
    auto request = session_.take_auth_request();
    if (!request) return;
    ctx_->auth.submit(std::move(*request),
                 [weak = weak_from_this(), ex = transport_->get_executor()](bool ok) {
                     asio::post(ex, [weak, ok] {
                         if (auto self = weak.lock()) self->on_auth_result(ok);
                     });
                 });
}

void connection::on_auth_result(bool ok) {
    session_.on_auth_result(ok, broker::clock::now());
    wake();  // the CONNACK to write, the held input to read
    if (!grace_armed_ && session_.deadline() < scheduled_at()) arm_watchdog();  // the refusal's time
}

// The keep-alive watchdog: the session's next deadline in the server's deadline heap (no
// timer or pending wait of its own), moved when it fires early or the deadline comes closer.
void connection::arm_watchdog() {
    ctx_->timers.schedule(*this, session_.deadline());
}

// The watchdog's deadline, or the close grace period once that is armed.
void connection::on_deadline() {
    const auto self = shared_from_this();  // the action may end the connection
    if (grace_armed_) return finish();    // the peer did not take the last bytes in time
    on_watchdog();
}

void connection::on_watchdog() {
    if (input_done_ || session_.closing()) return;  // ending: the grace period rules now
    // The deadline it was armed for passed; on_timer() acts only if the session's deadline
    // has (activity moves it later, and then it is scheduled again).
    session_.on_timer(broker::clock::now());
    if (session_.closing()) {
        wake();
        return;
    }
    arm_watchdog();
}

// ---- output -----------------------------------------------------------------------------

bool connection::has_work() const noexcept {
    return session_.has_output() || session_.closing() ||
           (has_staged() && store()->covers(*this, staged_->front().target));
}

void connection::start_writer(bool inline_start) {
    auto self = weak_from_this().lock();
    if (!self) return;  // being destroyed
    writer_running_ = true;
    if (!inline_start && ctx_->writes.active()) {  // at the end of the batch being handled
        ctx_->writes.defer(std::move(self));
        return;
    }
    asio::co_spawn(transport_->get_executor(), write_loop(std::move(self), inline_start),
                   asio::detached);
}

// Runs while there is something to write: ends when the batch is written and nothing
// else waits (the next wake() with output starts another), or, once the session is
// closing and everything is out, with the shutdown and the close of the transport.
// The writer of a batch's end (write_deferral): what the socket takes at once is written
// here, with no coroutine; what it does not take, or a close to make, goes to write_loop().
void connection::write_inline(std::shared_ptr<connection> self) {
    if (!transport_->can_write_now()) {
        asio::co_spawn(transport_->get_executor(), write_loop(std::move(self), true),
                       asio::detached);
        return;
    }
    // The batch being written (it swaps buffers with the session's, as in write_loop).
    broker::output_batch writing;
    auto& gather = ctx_->writes.gather;  // used only until this returns
    while (!writer_done_) {
        if (!next_batch(writing)) {
            if (session_.closing() && !session_.has_output() && !has_staged()) break;
            writing.clear();
            session_.recycle_output(writing);
            writer_running_ = false;
            return;
        }
        gather_batch(writing, gather, 0);
        boost::system::error_code ec;
        const auto n = transport_->write_now(gather, ec);
        if (n > 0) {
            ctx_->engine.stats().bytes_sent += n;
            wrote_ = true;
        }
        if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
            session_.on_transport_closed(broker::clock::now());
            finish();
            break;
        }
        if (n < writing.size()) {  // the rest when the socket takes it
            asio::co_spawn(transport_->get_executor(),
                           write_loop(std::move(self), true, std::move(writing), n),
                           asio::detached);
            return;
        }
        writing.clear();
        session_.on_written();
        if (read_paused_) resume_input();
    }
    if (writer_done_) {
        writing.clear();
        session_.recycle_output(writing);
        writer_running_ = false;
        return;
    }
    // Closing with everything written: the shutdown and the close.
    asio::co_spawn(transport_->get_executor(), write_loop(std::move(self), true), asio::detached);
}

asio::awaitable<void> connection::write_loop(std::shared_ptr<connection> self, bool inline_start,
                                             broker::output_batch writing, std::size_t written) {
    auto& c = *self;
    // The batch being written (it swaps buffers with the session's, so two buffers take
    // turns while output flows) and its gather list: here, so a connection that is not
    // writing holds neither. `writing` may come with its first `written` bytes written.
    std::vector<asio::const_buffer> gather;
    // Started from wake(), possibly inside the session: the first step goes through the
    // executor, so the session is never re-entered from its own call. A release by the
    // store comes from outside any session (co_spawn runs the coroutine at once on the
    // loop's thread): the acknowledgements a sync has covered go out without that trip.
    if (!inline_start) co_await asio::post(c.transport_->get_executor(), asio::use_awaitable);
    while (!c.writer_done_) {
        if (writing.empty() && !c.next_batch(writing)) {
            if (c.session_.closing() && !c.session_.has_output() && !c.has_staged()) {
                co_await c.transport_->shutdown();
                c.finish();
            }
            break;
        }
        auto [ec, n] = co_await c.write_batch(writing, gather, std::exchange(written, 0));
        if (ec) {
            c.session_.on_transport_closed(broker::clock::now());
            c.finish();
            break;
        }
        c.ctx_->engine.stats().bytes_sent += n;
        c.wrote_ = true;
        writing.clear();  // written: nothing to hold or count for it (capacity kept)
        c.session_.on_written();  // may queue more (messages waiting for the buffer to drain)
        if (c.read_paused_) c.resume_input();  // a paused reader may go on
    }
    // The next burst appends into this buffer rather than a new one, if the session has none.
    writing.clear();
    c.session_.recycle_output(writing);
    c.writer_running_ = false;
}

// The end of the connection: no more writes, and a pending read ends.
void connection::finish() {
    if (writer_done_) return;
    writer_done_ = true;
    ctx_->timers.cancel(*this);
    transport_->close();  // a pending read ends with operation_aborted, then input ends
    if (!reading_) end_input();  // no read pending (paused): input ends now
    maybe_ended();
}

void connection::arm_grace() {
    grace_armed_ = true;
    // The watchdog has nothing left to watch: its deadline becomes the grace period's end,
    // cancelled by finish() when the flush is done in time.
    ctx_->timers.schedule(*this, broker::clock::now() + close_grace_period);
}

asio::awaitable<io_result> connection::write_batch(const broker::output_batch& b,
                                                   std::vector<asio::const_buffer>& gather,
                                                   std::size_t skip) {
    gather_batch(b, gather, skip);
    if (gather.size() == 1) return transport_->write(gather.front());
    return transport_->write_gathered(gather);
}

// The bytes around the shared payloads, and the payloads themselves, in order, from `skip`.
void connection::gather_batch(const broker::output_batch& b,
                              std::vector<asio::const_buffer>& gather, std::size_t skip) {
    gather.clear();
    const auto add = [&](asio::const_buffer part) {
        if (skip >= part.size()) {
            skip -= part.size();
            return;
        }
        gather.push_back(part + skip);
        skip = 0;
    };
    std::size_t from = 0;
    for (const auto& p : b.payloads()) {
        if (p.at != from) add(asio::buffer(b.bytes.data() + from, p.at - from));
        add(asio::buffer(p.msg->payload));
        from = p.at;
    }
    if (from != b.bytes.size() || gather.empty()) {
        add(asio::buffer(b.bytes.data() + from, b.bytes.size() - from));
    }
}

bool connection::next_batch(broker::output_batch& into) {
    auto* const st = store();
    if (st == nullptr) {
        if (!session_.has_output()) return false;
        // Everything queued since the last write goes out as one batch.
        session_.take_output(into);
        return true;
    }
    if (refused_) {  // closing: only what the session said after the refusal (DISCONNECT)
        if (!session_.has_output()) return false;
        session_.take_output(into);
        return true;
    }
    if (has_staged()) {
        auto& s = staged_->front();
        if (!st->covers(*this, s.target)) {
            // What came since waits for the next group (which may sync meanwhile).
            if (session_.has_output()) st->hold(*this);
            return false;
        }
        into.clear();
        std::swap(into, s.out);  // moved, payload references and all: no copy
        staged_->erase(staged_->begin());
        return true;
    }
    if (!session_.has_output()) return false;
    if (st->all_synced(*this)) {  // every record this output depends on is on disk
        session_.take_output(into);
        return true;
    }
    st->hold(*this);  // staged at the next flush, released after its sync
    return false;
}

void connection::stage(std::uint64_t target) {
    if (!session_.has_output()) return;
    // The session's batch moves here whole (with its charge against memory_limit).
    if (!staged_) staged_ = std::make_unique<std::vector<staged_output>>();
    session_.take_output(staged_->emplace_back(staged_output{target, {}}).out);
}

// Called by the store's completion of a sync (or a flush with nothing to write), never from
// inside a session.
void connection::release() {
    if (!read_paused_ && !writer_running_ && !writer_done_ && !session_.closing() && has_work()) {
        start_writer(true);
        return;
    }
    wake();
}

// The acknowledgements in what is held refer to records that are not on disk: none of it is
// written, and the connection closes, so the client keeps (and sends again) what it was
// not told was received. A 5.0 client is told why, once its CONNACK is out.
void connection::refuse() {
    const auto keep = weak_from_this().lock();  // the close may end the connection
    if (refused_) return;
    refused_ = true;
    if (staged_) staged_->clear();
    broker::output_batch dropped;
    session_.take_output(dropped);
    session_.close_by_server(protocol::reason_code::quota_exceeded, broker::clock::now());
    // Before the CONNACK a DISCONNECT would break the protocol: nothing at all then.
    if (!wrote_) session_.take_output(dropped);
    wake();
}

}  // namespace mqtt::net::detail
