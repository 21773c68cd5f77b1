// The bench's connection driver: per connection a reader, a writer and a timer coroutine move
// bytes and time between a transport (TCP or TLS) and a client::session, like the client's own
// driver, but many connections share their loop's io_context and the session's events are
// handled as they come (counted, timed into the loop's tally) instead of queued for a caller.
// A publisher coroutine feeds each publishing session within its in-flight window. Everything
// here runs on the client's own loop.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>

#include <netinet/in.h>

#include "driver.hpp"
#include "mqtt/bench/payload.hpp"

namespace mqtt::bench::detail {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// Small reads: thousands of mostly idle connections must not each hold 64 KiB. The rest of a
// large packet whose header is in goes in one read (up to max_read_chunk) instead of 16 KiB
// pieces into a buffer grown by copying: the bench costs less per large message, so it gets
// less in the way of the broker it measures.
constexpr std::size_t read_chunk = 16 * 1024;
constexpr std::size_t max_read_chunk = 1024 * 1024;
// PUBLISH packets queued per turn before the publisher lets reads and writes run.
constexpr unsigned batch = 64;
// ... and bytes: 64 large payloads in one output buffer (64 MiB at 1 MiB) made the buffer
// grow by doubling, each step a copy of all of it into fresh pages, and kept that much
// memory per publisher; the socket's send buffer, not ours, keeps the broker fed.
constexpr std::size_t batch_bytes = 1024 * 1024;

}  // namespace

std::uint64_t to_ns(clock::time_point t) noexcept {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch());
    return ns.count() < 0 ? 0 : static_cast<std::uint64_t>(ns.count());
}

bench_client::bench_client(loop_state& l, std::size_t n, role r, unsigned i,
                           client::session_config cfg)
    : loop(l),
      id(n),
      kind(r),
      index(i),
      s(std::move(cfg)),
      socket(l.io),
      wake_writer(l.io, clock::time_point::max()),
      timer(l.io),
      wake(l.io) {}

void run_state::close_socket(bench_client& c) {
    boost::system::error_code ec;
    c.socket.close(ec);
    if (c.transport) c.transport->close();
    if (c.udp) c.udp->close(ec);
    c.open = false;
    c.timer.cancel();
    c.wake_writer.cancel();
    c.wake.cancel();
}

// After every call into the session: hand its events out, wake the writer, and re-arm the
// timer only when the deadline moved earlier.
void run_state::changed(bench_client& c) {
    if (c.s.has_events()) {
        const auto now = clock::now();
        for (auto& e : c.s.take_events()) dispatch(c, e, now);
    }
    c.wake_writer.cancel();
    if (c.s.deadline() < c.armed || c.s.closed()) c.timer.cancel();
}

void run_state::dispatch(bench_client& c, client::event& e, clock::time_point now) {
    if (auto* m = std::get_if<client::message_event>(&e)) {
        on_message(c, m->message, now);
    } else if (auto* a = std::get_if<client::publish_done_event>(&e)) {
        on_ack(c, a->packet_id,
               protocol::is_error(a->code) ? protocol::to_string(a->code) : std::string_view{},
               now);
    } else if (std::holds_alternative<client::connected_event>(e)) {
        on_connected(c, now);
    } else if (auto* sa = std::get_if<client::suback_event>(&e)) {
        bool ok = true;
        for (auto code : sa->codes) ok = ok && !protocol::is_error(code);
        on_suback(c, ok);
    } else if (auto* cl = std::get_if<client::closed_event>(&e)) {
        on_closed(c, *cl);
    }
}

void run_state::on_connected(bench_client& c, clock::time_point now) {
    c.connected = true;
    c.loop.tally.connect_latency.record(to_ns(now) - to_ns(c.connect_start));
    c.loop.tally.last_connack = now;
}

void run_state::on_suback(bench_client& c, bool ok) {
    if (ok) {
        c.subscribed = true;
        return;
    }
    c.failed = true;
    error(c, "subscriber " + std::to_string(c.index) + ": the broker refused the subscription to " +
                 c.filter);
}

void run_state::on_closed(bench_client& c, const client::closed_event& e) {
    std::string what = e.error ? e.error.message() : "closed";
    if (e.reason != protocol::reason_code::success)
        what += " (reason: " + std::string(protocol::to_string(e.reason)) + ")";
    if (!e.reason_string.empty()) what += ": " + e.reason_string;
    on_lost(c, std::move(what));
}

void run_state::on_lost(bench_client& c, std::string what) {
    c.wake.cancel();
    if (c.done) return;  // our own DISCONNECT
    c.failed = true;
    const char* name = c.kind == role::publisher    ? "publisher "
                       : c.kind == role::subscriber ? "subscriber "
                                                    : "connection ";
    error(c, name + std::to_string(c.index) + (c.connected ? ": connection lost: " : ": ") + what);
}

bool run_state::session_closed(const bench_client& c) const {
    return c.sn ? c.sn->closed() : c.s.closed();
}

void run_state::subscribe_one(bench_client& c, std::string filter) {
    if (c.sn) {
        const auto q = static_cast<client::mqttsn::sn::qos>(static_cast<int>(cfg_.qos));
        c.sn->subscribe({std::move(filter), std::nullopt}, q);
        changed_sn(c);
        return;
    }
    protocol::subscription sub{std::move(filter), {}};
    sub.options.max_qos = cfg_.qos;
    auto id = c.s.subscribe({std::move(sub)}, {}, clock::now());
    if (!id) {
        error(c, "subscribe " + c.filter + ": " + id.error().message());
        c.failed = true;
    }
    changed(c);
}

void run_state::disconnect_one(bench_client& c) {
    if (c.sn) {
        c.sn->disconnect();
        changed_sn(c);
        return;
    }
    c.s.disconnect();
    changed(c);
}

// reqresp: a responder sends the request's payload back to its Response Topic with its
// Correlation Data, at the run's QoS; the requester times the round trip from the stamp.
void run_state::respond(bench_client& c, const protocol::publish_packet& m, clock::time_point now) {
    if (!m.props.response_topic) {
        ++c.foreign;
        return;
    }
    protocol::publish_packet answer;
    answer.topic = *m.props.response_topic;
    answer.payload = m.payload;
    answer.qos_level = cfg_.qos;
    answer.props.correlation_data = m.props.correlation_data;
    if (auto id = c.s.publish(std::move(answer), now); !id) {
        error(c, "responder " + std::to_string(c.index) + ": " + id.error().message());
        return;
    }
    ++c.answered;
    c.wake_writer.cancel();
}

void run_state::on_message(bench_client& c, const protocol::publish_packet& m,
                           clock::time_point now) {
    if (cfg_.scenario == scenario::reqresp && c.kind == role::subscriber) {
        respond(c, m, now);
        return;
    }
    on_payload(c, m.payload, now);
}

void run_state::on_payload(bench_client& c, std::string_view payload, clock::time_point now) {
    const auto h = decode_payload(payload);
    // In-process scenarios only count their own run; `sub` counts any bench publisher.
    if (!h || (cfg_.scenario != scenario::sub &&
               (h->run_id != run_id_in(*h, run_id_) || h->publisher >= publishers_.size()))) {
        ++c.foreign;
        return;
    }
    ++c.received;
    auto& tally = c.loop.tally;
    // A compact header carries 16 bits of the run id: in-process scenarios know it is theirs.
    const std::uint32_t run = cfg_.scenario != scenario::sub ? run_id_ : h->run_id;
    auto& t = c.seen[(std::uint64_t{run} << 32) | h->publisher];
    auto arrival = t.record(h->sequence);
    // shared: a message is new when the group had not seen it, whichever member got it; the
    // member's own tracker still says whether its share came in order. Members on other
    // loops are counted when the tallies are merged.
    if (cfg_.scenario == scenario::shared)
        arrival = tally.group_seen[h->publisher].record(h->sequence);
    if (arrival == sequence_tracker::arrival::duplicate ||
        arrival == sequence_tracker::arrival::invalid)
        return;
    ++c.unique;
    if (tally.first_receive == clock::time_point{}) {
        tally.first_receive = now;
        // The run's first delivery, whichever loop got it: the first to get one sets it.
        std::uint64_t first = 0;
        first_stamp_ns_.compare_exchange_strong(first, h->sent_ns);
        c.loop.first_stamp_ns = first_stamp_ns_.load();
    }
    tally.last_receive = now;
    if (!h->timed) {  // a compact header: counted, no latency (no warm-up either)
        ++tally.measured_received;
        return;
    }
    const auto now_ns = to_ns(now);
    // sub: the warm-up counts from the first message's send time, the only start it knows.
    const auto warm =
        cfg_.scenario == scenario::sub ? c.loop.first_stamp_ns + c.loop.warm_ns : c.loop.warm_ns;
    if (h->sent_ns >= warm) {
        tally.latency.record(now_ns > h->sent_ns ? now_ns - h->sent_ns : 0);
        ++tally.measured_received;
    }
}

void run_state::on_ack(bench_client& c, std::uint64_t key, std::string_view refusal,
                       clock::time_point now) {
    const auto it = c.unacked.find(key);
    if (it == c.unacked.end()) return;
    if (!refusal.empty()) {
        ++c.refused;
        error(c, "publisher " + std::to_string(c.index) +
                     ": the broker refused a message: " + std::string(refusal));
    } else {
        ++c.acked;
        c.loop.tally.last_ack = now;
        if (it->second.measured) {
            const auto now_ns = to_ns(now);
            c.loop.tally.ack_latency.record(
                now_ns > it->second.stamp_ns ? now_ns - it->second.stamp_ns : 0);
            ++c.loop.tally.measured_acked;
        }
    }
    c.unacked.erase(it);
    c.wake.cancel();
}

asio::awaitable<void> run_state::connect_client(bench_client& c) {
    c.attempted = true;
    c.connect_start = clock::now();
    if (c.sn) {
        co_await connect_client_sn(c);
        co_return;
    }
    boost::system::error_code ec;
    if (sources_.empty()) {
        auto [cec, ep] = co_await asio::async_connect(c.socket, endpoints_, nothrow);
        (void)ep;
        ec = cec;
    } else {
        ec = co_await connect_from(c, sources_[c.id % sources_.size()]);
    }
    if (ec || c.done) {
        if (!c.done) {
            c.failed = true;
            error(c, "connect to " + cfg_.host + ":" + std::to_string(cfg_.port) + ": " +
                         ec.message());
        }
        co_return;
    }
    c.socket.set_option(tcp::no_delay(true), ec);
    if (tls_ || cfg_.websocket_path) {
        if (cfg_.websocket_path) {
            net::ws_client_settings ws;
            ws.host = cfg_.host;
            ws.port = cfg_.port;
            ws.path = *cfg_.websocket_path;
            ws.insecure = cfg_.tls && cfg_.tls->insecure;
            c.transport = net::make_ws_client_transport(std::move(c.socket), tls_, std::move(ws));
        } else {
            c.transport = net::make_tls_client_transport(std::move(c.socket), tls_, cfg_.host,
                                                         cfg_.tls->insecure);
        }
        std::string why;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            c.connect_start + std::chrono::seconds{10} - clock::now());
        const auto hec =
            co_await c.transport->handshake(std::max(left, std::chrono::milliseconds{1}), why);
        if (hec || c.done) {
            if (!c.done) {
                c.failed = true;
                error(c, std::string{cfg_.websocket_path ? "WebSocket" : "TLS"} +
                             " handshake with " + cfg_.host + ":" + std::to_string(cfg_.port) +
                             " failed: " + why);
            }
            c.transport->close();
            co_return;
        }
    } else {
        c.transport = net::make_tcp_transport(std::move(c.socket));
    }
    c.open = true;
    c.s.start(clock::now());
    asio::co_spawn(c.loop.io, read_loop(c), asio::detached);
    asio::co_spawn(c.loop.io, write_loop(c), asio::detached);
    asio::co_spawn(c.loop.io, timer_loop(c), asio::detached);
    changed(c);
}

// --source: the socket bound to the address with the port left to connect()
// (IP_BIND_ADDRESS_NO_PORT), which then picks one free for this source and destination; a
// plain bind() would take a port of its own for every socket instead, and run out at the
// size of the ephemeral range whatever the destination.
asio::awaitable<boost::system::error_code> run_state::connect_from(bench_client& c,
                                                                   const asio::ip::address& from) {
    boost::system::error_code ec = asio::error::address_family_not_supported;
    for (const auto& e : endpoints_) {
        const auto to = e.endpoint();
        if (to.address().is_v4() != from.is_v4()) continue;
        c.socket.open(to.protocol(), ec);
#ifdef IP_BIND_ADDRESS_NO_PORT
        if (!ec) {
            boost::system::error_code ignored;  // without it: a port per socket at bind()
            c.socket.set_option(
                asio::detail::socket_option::boolean<IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT>(true),
                ignored);
        }
#endif
        if (!ec) c.socket.bind(tcp::endpoint(from, 0), ec);
        if (ec) co_return ec;
        auto [cec] = co_await c.socket.async_connect(to, nothrow);
        co_return cec;
    }
    co_return ec;
}

asio::awaitable<void> run_state::read_loop(bench_client& c) {
    while (!c.s.closed() && c.open) {
        const auto room =
            c.framer.prepare(std::clamp(c.framer.missing(), read_chunk, max_read_chunk));
        auto [ec, n] = co_await c.transport->read_some(asio::buffer(room.data(), room.size()));
        if (ec) {
            if (!c.s.closed())
                c.s.on_transport_closed(ec == asio::error::eof ? std::error_code{}
                                                               : std::error_code(ec));
            changed(c);
            co_return;
        }
        c.framer.commit(n);
        const auto now = clock::now();
        while (!c.s.closed()) {
            auto next = c.framer.next();
            if (!next) {
                c.s.on_framing_error(next.error());
                break;
            }
            if (!*next) break;
            c.s.on_frame(**next, now);
            // Events are handled per frame so a delivery is timed when it is read, not
            // after a whole 16 KiB of them.
            if (c.s.has_events())
                for (auto& e : c.s.take_events()) dispatch(c, e, now);
        }
        changed(c);
    }
}

asio::awaitable<void> run_state::write_loop(bench_client& c) {
    for (;;) {
        if (c.s.has_output() && c.open) {
            c.s.take_output(c.writing);
            c.queued = 0;
            ++c.writes;
            c.writer_busy = true;
            auto [ec, n] = co_await c.transport->write(asio::buffer(c.writing));
            (void)n;
            c.writer_busy = false;
            c.wake.cancel();  // a publisher held back by queued bytes may go on
            if (ec) {
                if (!c.s.closed()) c.s.on_transport_closed(std::error_code(ec));
                changed(c);
                break;
            }
            continue;
        }
        if (c.s.closed() || !c.open) break;
        auto [ec] = co_await c.wake_writer.async_wait(nothrow);
        (void)ec;
    }
    // Everything the session wanted said (a last DISCONNECT) is said.
    if (c.s.closed()) close_socket(c);
}

asio::awaitable<void> run_state::timer_loop(bench_client& c) {
    while (!c.s.closed() && c.open) {
        c.armed = c.s.deadline();
        c.timer.expires_at(c.armed);
        auto [ec] = co_await c.timer.async_wait(nothrow);
        (void)ec;
        if (c.s.closed() || !c.open) break;
        c.s.on_timer(clock::now());
        changed(c);
    }
}

bool run_state::window_open(const bench_client& c) const {
    if (c.sn) return window_open_sn(c);
    // One batch may queue while the previous one is being written, no more: QoS 0 has no
    // acknowledgements to pace it, and memory must stay bounded when the broker is slower.
    // (Stopping at the first queued packet instead made every later write one PUBLISH long:
    // a syscall per message at QoS 0.)
    if (c.writer_busy && (c.queued >= batch || c.s.output_size() >= batch_bytes)) return false;
    return cfg_.qos == protocol::qos::at_most_once || c.unacked.size() < cfg_.inflight;
}

void run_state::publish_one(bench_client& c, clock::time_point now, protocol::publish_packet& p) {
    const auto k = c.next_seq;
    const auto stamp = to_ns(c.limiter.stamp(k, now));
    encode_payload({run_id_, c.index, k, stamp}, cfg_.size, p.payload);
    std::uint64_t key = 0;
    if (c.sn) {
        if (!publish_sn(c, p.payload, key)) return;
    } else {
        if (p.topic != c.topic) p.topic = c.topic;
        p.qos_level = cfg_.qos;
        if (cfg_.scenario == scenario::reqresp) {
            p.props.response_topic = c.response_topic;
            p.props.correlation_data = std::to_string(k);
        }
        // Borrowed, not moved: the payload is not copied into a new packet per message, and
        // the next message rewrites only its header.
        auto id = c.s.publish_borrowed(p, now);
        if (!id) {
            c.failed = true;
            error(c, "publisher " + std::to_string(c.index) + ": " + id.error().message());
            return;
        }
        key = *id;
    }
    ++c.next_seq;
    ++c.queued;
    c.loop.tally.last_publish = now;
    const bool measured = stamp >= c.loop.warm_ns;
    if (measured) ++c.loop.tally.measured_published;
    if (cfg_.qos != protocol::qos::at_most_once) c.unacked[key] = {stamp, measured};
}

asio::awaitable<void> run_state::publish_loop(bench_client& c) {
    const auto end = cfg_.duration > 0
                         ? t_start_ + std::chrono::duration_cast<clock::duration>(
                                          std::chrono::duration<double>(cfg_.duration))
                         : clock::time_point::max();
    const auto more = [&] { return cfg_.count == 0 || c.next_seq < cfg_.count; };
    protocol::publish_packet packet;
    c.publishing = true;
    while (!c.done && !c.failed && !session_closed(c) && !c.loop.stop_publishing && more()) {
        auto now = clock::now();
        if (now >= end) break;
        const bool due = !c.limiter.open_loop() || c.limiter.due(c.next_seq, now);
        if (!due || !window_open(c)) {
            // Woken by an ack or a finished write; the timeout covers the schedule and end.
            auto until = std::min(end, now + std::chrono::milliseconds(100));
            if (!due) until = std::min(until, c.limiter.intended(c.next_seq));
            c.wake.expires_at(until);
            auto [ec] = co_await c.wake.async_wait(nothrow);
            (void)ec;
            continue;
        }
        for (unsigned n = 0;
             n < batch && more() && window_open(c) && !c.failed && c.s.output_size() < batch_bytes;
             ++n) {
            now = clock::now();
            if (c.limiter.open_loop() && !c.limiter.due(c.next_seq, now)) break;
            publish_one(c, now, packet);
        }
        if (c.sn)
            changed_sn(c);
        else
            changed(c);
        // Let reads (acks, deliveries) and writes run between batches.
        co_await asio::post(c.loop.io, asio::use_awaitable);
    }
    c.publishing = false;
}

}  // namespace mqtt::bench::detail
