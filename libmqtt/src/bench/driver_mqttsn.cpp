// The bench's MQTT-SN connections: the same roles as driver.cpp's (reader, writer, timer per
// client; the publisher coroutine and the counting are shared), with a client::mqttsn::session
// over a connected UDP socket to a gateway. MQTT-SN 1.2 clients have one request outstanding
// at a time (6.13), so a publisher's QoS 1/2 window is one message; at QoS 0 the session's
// queue and the datagrams not yet written are bounded instead.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "driver.hpp"

namespace mqtt::bench::detail {
namespace {

namespace msn = client::mqttsn;
using udp = asio::ip::udp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// QoS 0 datagrams a publisher may have queued (in the session and for the writer).
constexpr std::size_t max_queued_datagrams = 64;
constexpr const char* unreachable = "no MQTT-SN gateway answers (port unreachable)";

}  // namespace

asio::awaitable<void> run_state::connect_client_sn(bench_client& c) {
    const auto target = endpoints_.begin()->endpoint();
    const udp::endpoint ep(target.address(), target.port());
    c.udp = std::make_unique<udp::socket>(c.loop.io);
    boost::system::error_code ec;
    c.udp->open(ep.protocol(), ec);
    if (!ec && !sources_.empty())
        c.udp->bind(udp::endpoint(sources_[c.id % sources_.size()], 0), ec);
    if (!ec) c.udp->connect(ep, ec);  // datagrams from other addresses are not ours
    if (!ec) c.udp->non_blocking(true, ec);
    if (!ec) {
        // The gateway's deliveries to a subscriber come in bursts; a refusal is not fatal.
        boost::system::error_code ignored;
        c.udp->set_option(udp::socket::receive_buffer_size(msn::udp_receive_buffer), ignored);
    }
    if (ec) {
        c.failed = true;
        error(c, "MQTT-SN: cannot open a UDP socket to " + cfg_.host + ":" +
              std::to_string(cfg_.port) + ": " + ec.message());
        co_return;
    }
    c.open = true;
    c.sn->start(clock::now());
    asio::co_spawn(c.loop.io, read_loop_sn(c), asio::detached);
    asio::co_spawn(c.loop.io, write_loop_sn(c), asio::detached);
    asio::co_spawn(c.loop.io, timer_loop_sn(c), asio::detached);
    changed_sn(c);
}

// After every call into the session: its datagrams to the writer, its events handled, and
// the timer re-armed when the deadline moved earlier.
void run_state::changed_sn(bench_client& c) {
    const auto now = clock::now();
    for (auto& d : c.sn->take_output(now)) c.datagrams.push_back(std::move(d));
    for (auto& e : c.sn->take_events()) dispatch_sn(c, e, now);
    c.wake_writer.cancel();
    if (c.sn->deadline() < c.armed || c.sn->closed()) c.timer.cancel();
}

void run_state::dispatch_sn(bench_client& c, msn::event& e, clock::time_point now) {
    if (auto* m = std::get_if<msn::message_event>(&e)) {
        on_payload(c, m->payload, now);
    } else if (auto* d = std::get_if<msn::publish_done_event>(&e)) {
        on_ack(c, d->token,
               d->code == msn::sn::return_code::accepted ? std::string_view{}
                                                         : msn::sn::to_string(d->code),
               now);
    } else if (std::holds_alternative<msn::connected_event>(e)) {
        on_connected(c, now);
    } else if (auto* a = std::get_if<msn::suback_event>(&e)) {
        on_suback(c, a->code == msn::sn::return_code::accepted);
    } else if (auto* cl = std::get_if<msn::closed_event>(&e)) {
        on_lost(c, cl->why.empty() ? "closed" : cl->why);  // empty: our DISCONNECT answered
    }
}

asio::awaitable<void> run_state::read_loop_sn(bench_client& c) {
    // One datagram at a time: room for the largest PUBLISH of this run.
    std::vector<std::uint8_t> buf(std::max<std::size_t>(2048, cfg_.size + 256));
    while (c.open && !c.sn->closed()) {
        auto [ec, n] = co_await c.udp->async_receive(asio::buffer(buf), nothrow);
        if (!c.open || c.sn->closed()) break;
        if (ec) {
            // ICMP port unreachable for a datagram we sent, or the socket failed.
            on_lost(c, ec == asio::error::connection_refused ? unreachable : ec.message());
            close_socket(c);
            break;
        }
        const auto now = clock::now();
        c.sn->on_datagram({buf.data(), n}, now);
        changed_sn(c);
    }
}

asio::awaitable<void> run_state::write_loop_sn(bench_client& c) {
    for (;;) {
        while (!c.datagrams.empty() && c.open) {
            boost::system::error_code ec;
            c.udp->send(asio::buffer(c.datagrams.front()), 0, ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                // The socket's send buffer is full: wait until it takes more.
                c.writer_busy = true;
                auto [wec] = co_await c.udp->async_wait(udp::socket::wait_write, nothrow);
                c.writer_busy = false;
                if (wec && c.open)
                    ec = wec;
                else
                    continue;
            }
            if (ec) {
                if (c.open)
                    on_lost(c, ec == asio::error::connection_refused ? unreachable : ec.message());
                close_socket(c);
                co_return;
            }
            c.datagrams.pop_front();
        }
        c.wake.cancel();  // a publisher held back by queued datagrams may go on
        if (c.sn->closed() || !c.open) break;
        auto [ec] = co_await c.wake_writer.async_wait(nothrow);
        (void)ec;
    }
    // Everything the session wanted said (a last DISCONNECT) is said.
    if (c.sn->closed()) close_socket(c);
}

asio::awaitable<void> run_state::timer_loop_sn(bench_client& c) {
    while (c.open && !c.sn->closed()) {
        c.armed = c.sn->deadline();
        c.timer.expires_at(c.armed);
        auto [ec] = co_await c.timer.async_wait(nothrow);
        (void)ec;
        if (!c.open || c.sn->closed()) break;
        const auto now = clock::now();
        if (c.sn->deadline() <= now) c.sn->on_timer(now);
        changed_sn(c);
    }
}

bool run_state::window_open_sn(const bench_client& c) const {
    if (cfg_.qos == protocol::qos::at_most_once)
        return c.datagrams.size() + c.sn->pending() < max_queued_datagrams;
    return c.unacked.empty() && c.sn->pending() == 0;
}

bool run_state::publish_sn(bench_client& c, const std::string& payload, std::uint64_t& key) {
    const auto q = static_cast<msn::sn::qos>(static_cast<int>(cfg_.qos));
    key = c.sn->publish({c.topic, std::nullopt}, payload, q, false);
    return true;
}

}  // namespace mqtt::bench::detail
