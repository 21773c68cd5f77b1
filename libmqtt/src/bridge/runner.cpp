// The Asio side of tern-bridge. Per bridge two endpoints (local, remote); per endpoint a
// connect loop with back-off and fail-over, and while connected a reader, a writer and a
// timer coroutine around a client::session, as in the client and bench drivers. All on one
// io_context thread: nothing is locked; coroutines wake each other by cancelling timers.
// Forwarding decisions are in forwarder.cpp.

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <csignal>

#include "mqtt/broker/metrics.hpp"
#include "net/metrics/metrics_listener.hpp"
#include "runtime.hpp"

namespace mqtt::bridge::detail {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 64 * 1024;

}  // namespace

endpoint::endpoint(asio::io_context& io, bridge_runtime& b, bool remote_side)
    : owner(b),
      remote(remote_side),
      socket(io),
      wake_writer(io, clock::time_point::max()),
      timer(io),
      wake_reader(io, clock::time_point::max()),
      loops_done(io, clock::time_point::max()),
      pause(io),
      probe_timer(io),
      retry(b.cfg.restart_base, b.cfg.restart_max) {
    // Not towards this process's own broker (tern-broker refuses the bridge bit).
    const bool in_process = !side().addresses.empty() && side().addresses.front().in_process;
    use_private = b.cfg.try_private && !protocol::is_v5(b.cfg.version) && !in_process;
    dq = b.queue_for(remote_side);
    make_session();
}

const side_config& endpoint::side() const {
    return remote ? owner.cfg.remote : owner.cfg.local;
}

void endpoint::make_session() {
    const auto& c = owner.cfg;
    client::session_config sc;
    sc.connect.version = c.version;
    sc.connect.client_id = side().client_id;
    sc.connect.username = side().username;
    sc.connect.password = side().password;
    sc.connect.keep_alive = c.keepalive;
    const bool clean = remote ? c.clean_session : c.local_clean_session.value_or(c.clean_session);
    sc.connect.clean_start = clean;
    if (protocol::is_v5(c.version) && !clean)
        sc.connect.props.session_expiry_interval = 86'400;  // a day without the bridge
    sc.connect.bridge = use_private;
    if (remote && c.notifications) {
        protocol::will_message w;
        w.topic = c.state_topic();
        w.payload = "0";
        w.retain = true;
        w.qos_level = protocol::qos::at_least_once;
        sc.connect.will = std::move(w);
    }
    sc.connect_timeout = owner.opts.connect_timeout;
    sc.keep_unacknowledged = true;
    sc.manual_ack = true;
    if (dq) {
        // Queued records go out with ids derived from their sequence; PUBREC is recorded
        // before PUBREL; what an earlier run had past PUBREC waits for its PUBCOMP.
        sc.first_auto_id = static_cast<std::uint16_t>(queue_id_space + 1);
        sc.report_pubrec = true;
    }
    s.emplace(std::move(sc));
    if (dq)
        for (auto seq : dq->released_at_open()) (void)s->restore_released(packet_id_for(seq));
}

void endpoint::close_socket() {
    boost::system::error_code ec;
    socket.close(ec);
    if (transport) transport->close();
    open = false;
    timer.cancel();
    wake_writer.cancel();
    wake_reader.cancel();
}

// After every call into the session: hand its events to the bridge, wake the writer,
// re-arm the timer when the deadline moved earlier.
void endpoint::changed() {
    if (s->has_events()) {
        auto events = s->take_events();
        for (auto& e : events) owner.on_event(*this, e);
    }
    wake_writer.cancel();
    if (s->deadline() < armed || s->closed()) timer.cancel();
}

asio::awaitable<void> endpoint::read_loop() {
    while (!s->closed() && open) {
        if (paused) {
            auto [ec] = co_await wake_reader.async_wait(nothrow);
            (void)ec;
            continue;
        }
        const auto room = framer.prepare(read_chunk);
        auto [ec, n] = co_await transport->read_some(asio::buffer(room.data(), room.size()));
        if (ec) {
            // TLS 1.3: a broker that refuses our certificate says so after the handshake.
            if (const auto tls_error = net::describe_tls_error(ec);
                !tls_error.empty() && s->state() == client::session_state::connecting) {
                refused_tls = "the broker refused the TLS connection: " + tls_error;
            }
            if (!s->closed())
                s->on_transport_closed(ec == asio::error::eof ? std::error_code{}
                                                              : std::error_code(ec));
            changed();
            break;
        }
        framer.commit(n);
        const auto now = clock::now();
        while (!s->closed()) {
            auto next = framer.next();
            if (!next) {
                s->on_framing_error(next.error());
                break;
            }
            if (!*next) break;
            s->on_frame(**next, now);
            changed();
        }
        changed();
        owner.after_input(*this);
    }
}

asio::awaitable<void> endpoint::write_loop() {
    for (;;) {
        if (s->has_output() && open) {
            s->take_output(writing);
            auto [ec, n] = co_await transport->write(asio::buffer(writing));
            (void)n;
            if (ec) {
                if (!s->closed()) s->on_transport_closed(std::error_code(ec));
                changed();
                break;
            }
            continue;
        }
        if (s->closed() || !open) break;
        auto [ec] = co_await wake_writer.async_wait(nothrow);
        (void)ec;
    }
    if (s->closed()) close_socket();
}

asio::awaitable<void> endpoint::timer_loop() {
    while (!s->closed() && open) {
        armed = s->deadline();
        timer.expires_at(armed);
        auto [ec] = co_await timer.async_wait(nothrow);
        (void)ec;
        if (s->closed() || !open) break;
        s->on_timer(clock::now());
        changed();
    }
}

asio::awaitable<boost::system::error_code> endpoint::tcp_connect(const address& a,
                                                                 tcp::socket& socket) {
    auto& io = owner.io;
    tcp::resolver resolver(io);
    auto [ec, results] = co_await resolver.async_resolve(a.host, std::to_string(a.port), nothrow);
    if (ec) co_return ec;
    asio::steady_timer guard(io);
    guard.expires_after(owner.opts.connect_timeout);
    bool timed_out = false;
    guard.async_wait([&socket, &timed_out](boost::system::error_code e) {
        if (e) return;
        timed_out = true;
        boost::system::error_code ignored;
        socket.close(ignored);
    });
    auto [cec, ep] = co_await asio::async_connect(socket, results, nothrow);
    (void)ep;
    guard.cancel();
    if (timed_out) co_return asio::error::timed_out;
    if (!cec) socket.set_option(tcp::no_delay(true), cec);
    co_return cec;
}

// Serves one TCP connection until the session closes and the three loops have ended.
asio::awaitable<void> endpoint::serve() {
    open = true;
    refused_tls.clear();
    framer = protocol::framer{};
    if (s->state() == client::session_state::idle)
        s->start(clock::now());
    else
        s->reconnect(clock::now());
    loops = 3;
    const auto done = [this](std::exception_ptr) {
        if (--loops == 0) loops_done.cancel();
    };
    asio::co_spawn(owner.io, read_loop(), done);
    asio::co_spawn(owner.io, write_loop(), done);
    asio::co_spawn(owner.io, timer_loop(), done);
    changed();
    if (remote && !owner.cfg.round_robin && index != 0)
        asio::co_spawn(owner.io, return_to_main(generation), asio::detached);
    while (loops > 0) {
        loops_done.expires_at(clock::time_point::max());
        auto [ec] = co_await loops_done.async_wait(nothrow);
        (void)ec;
    }
    if (open) close_socket();
    transport.reset();
    ++generation;
    probe_timer.cancel();
}

// Connected to a secondary address: every restart_max, try the main one; once it answers,
// say goodbye here, and the connect loop starts again from the main address.
asio::awaitable<void> endpoint::return_to_main(unsigned gen) {
    const address main_address = side().addresses.front();  // a reload may change the list
    while (gen == generation && !owner.stopping) {
        probe_timer.expires_after(owner.cfg.restart_max);
        auto [ec] = co_await probe_timer.async_wait(nothrow);
        (void)ec;
        if (gen != generation || owner.stopping || !connected) co_return;
        tcp::socket probe(owner.io);
        auto pec = co_await tcp_connect(main_address, probe);
        boost::system::error_code ignored;
        probe.close(ignored);
        if (pec || gen != generation || owner.stopping || !connected) continue;
        owner.on_main_back(*this);
        s->disconnect();
        changed();
        co_return;
    }
}

asio::awaitable<bool> endpoint::open_transport(const address& a, std::string& why) {
    transport.reset();
    if (a.in_process) {  // the broker this process runs (tern-broker's bridges)
        if (owner.opts.connect_local) transport = owner.opts.connect_local(owner.cfg, why);
        if (!transport && why.empty()) why = "no broker in this process";
        co_return transport != nullptr;
    }
    const auto started = clock::now();
    auto ec = co_await tcp_connect(a, socket);
    if (ec) {
        why = ec.message();
        co_return false;
    }
    if (!a.tls && !a.websocket) {
        transport = net::make_tcp_transport(std::move(socket));
        co_return true;
    }
    const auto& settings = side().tls;
    if (a.tls && !tls) {
        std::string error;
        tls = net::make_client_context(settings, error);
        if (!tls) {
            why = "TLS: " + error;
            socket.close(ec);
            co_return false;
        }
    }
    const auto& name = settings.server_name.empty() ? a.host : settings.server_name;
    if (a.websocket) {
        net::ws_client_settings ws;
        ws.host = name;
        ws.port = a.port;
        ws.path = a.path;
        ws.insecure = a.tls && settings.insecure;
        transport =
            net::make_ws_client_transport(std::move(socket), a.tls ? tls : nullptr, std::move(ws));
    } else {
        transport = net::make_tls_client_transport(std::move(socket), tls, name, settings.insecure);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        owner.opts.connect_timeout - (clock::now() - started));
    ec = co_await transport->handshake(std::max(left, std::chrono::milliseconds{1}), why);
    if (ec) {
        if (!a.websocket) why = "TLS handshake failed: " + why;  // WebSocket's say which
        transport->close();
        transport.reset();
        co_return false;
    }
    co_return true;
}

asio::awaitable<void> endpoint::run() {
    const auto& addrs = side().addresses;  // assigned in place by a reload
    while (!owner.stopping) {
        const address a = addrs[index % addrs.size()];
        peer = a.in_process ? std::string("in-process") : a.host + ":" + std::to_string(a.port);
        std::string why;
        const bool ok = co_await open_transport(a, why);
        if (owner.stopping) break;
        bool was_connected = false;
        if (!ok) {
            owner.on_connect_failed(*this, why);
        } else {
            co_await serve();
            was_connected = ever_connected_this_time;
            ever_connected_this_time = false;
            if (renew_session) {  // now that no loop uses the old one
                renew_session = false;
                make_session();
                if (!owner.stopping) continue;  // at once, without the bridge flag
            }
        }
        if (owner.stopping) break;
        if (was_connected) {
            // Without round_robin the first address is the main one: back to it first.
            if (!owner.cfg.round_robin) index = 0;
        } else if (addrs.size() > 1) {
            index = (index + 1) % addrs.size();  // fail-over
        }
        const auto wait = retry.next(owner.random());
        if (reconnect_now) {
            reconnect_now = false;
            continue;
        }
        pause.expires_after(wait);
        auto [pec] = co_await pause.async_wait(nothrow);
        (void)pec;
        reconnect_now = false;  // a reload during the wait ended it early
    }
}

void endpoint::restart_connection() {
    s->set_credentials(side().username, side().password);
    tls.reset();
    index = 0;
    reconnect_now = true;
    if (open && s->state() == client::session_state::connected) {
        s->disconnect();
        changed();
    } else {
        close_socket();  // a connect or handshake in progress starts again
    }
    pause.cancel();
    probe_timer.cancel();
}

void endpoint::stop() {
    pause.cancel();
    probe_timer.cancel();
    if (open && s->state() == client::session_state::connected) {
        s->disconnect();
        changed();
    } else {
        close_socket();  // also cancels a connect in progress
    }
}

// ---- the run ----------------------------------------------------------------------------

bridge_runtime::bridge_runtime(asio::io_context& i, bridge_config c, const run_options& o,
                               output& sink, std::mt19937_64& rng)
    : io(i),
      cfg(std::move(c)),
      opts(o),
      out(sink),
      rng_(rng),
      map_(cfg.topics),
      queues_(open_queue_pair(cfg, sink)),
      queue_timer_(i),
      local(i, *this, false),
      remote(i, *this, true) {}

double bridge_runtime::random() {
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

void bridge_runtime::start() {
    asio::co_spawn(io, local.run(), asio::detached);
    asio::co_spawn(io, remote.run(), asio::detached);
    if (local.dq || remote.dq) queue_tick();
}

void bridge_runtime::force_close() {
    local.pause.cancel();
    remote.pause.cancel();
    local.probe_timer.cancel();
    remote.probe_timer.cancel();
    local.close_socket();
    remote.close_socket();
}

void bridge_runtime::stop() {
    stopping = true;
    if (cfg.notifications && remote.connected) {
        // A clean DISCONNECT sends no will: say it ourselves.
        publish_state(false);
    }
    // Committed records are acknowledged to their sources before the DISCONNECT; the queues
    // are closed for a new bridge of this name to open at once (a reload).
    close_queues();
    local.stop();
    remote.stop();
}

}  // namespace mqtt::bridge::detail

namespace mqtt::bridge {

using detail::clock;

std::string check_tls(const bridge_config& b) {
    for (const auto* side : {&b.local, &b.remote}) {
        const bool uses_tls = std::any_of(side->addresses.begin(), side->addresses.end(),
                                          [](const address& a) { return a.tls; });
        if (!uses_tls) continue;
        std::string error;
        if (!net::make_client_context(side->tls, error))
            return std::string(side == &b.local ? "local" : "remote") + ": " + error;
    }
    return {};
}

// ---- the bridges of a process --------------------------------------------------------

namespace detail {

class bridge_set {
  public:
    bridge_set(asio::io_context& i, run_options o, std::ostream& out, std::ostream& log)
        : io(i),
          opts(std::move(o)),
          sink(out, log, opts.json, opts.verbosity, opts.log),
          rng{std::random_device{}()},
          stats(i) {}

    std::string start(std::vector<bridge_config> bridges) {
        for (auto& b : bridges)
            runs.push_back(std::make_unique<bridge_runtime>(io, std::move(b), opts, sink, rng));
        for (auto& r : runs)
            if (!r->queue_error().empty())
                return "bridge '" + r->cfg.name + "': " + r->queue_error();
        for (auto& r : runs) r->start();
        tick();
        return {};
    }

    void tick() {
        stats.expires_after(opts.stats_interval);
        stats.async_wait([this](boost::system::error_code ec) {
            if (ec || stopping) return;
            for (auto& r : runs) r->report_stats();
            tick();
        });
    }

    void stop() {
        stopping = true;
        stats.cancel();
        for (auto& r : runs) r->stop();
    }

    bool closed() const {
        bool all = true;
        for (const auto& r : runs) all = all && r->closed();
        for (const auto& r : retired) all = all && r->closed();
        return all;
    }

    void force_close() {
        for (auto& r : runs) r->force_close();
        for (auto& r : retired) r->force_close();
    }

    void reload(std::vector<bridge_config> next) {
        using field = output;
        std::vector<std::unique_ptr<bridge_runtime>> kept;
        for (auto& b : next) {
            auto it = std::find_if(runs.begin(), runs.end(),
                                   [&](const auto& r) { return r && r->cfg.name == b.name; });
            const auto name = b.name;
            std::string action;
            bridge_runtime::change c;
            if (it != runs.end() && !(*it)->needs_restart(b)) {
                c = (*it)->reconfigure(std::move(b));
                action = c.rules || c.local || c.remote ? "updated" : "unchanged";
                kept.push_back(std::move(*it));
            } else {
                if (it != runs.end()) {
                    (*it)->stop();
                    retired.push_back(std::move(*it));
                    action = "restarted";
                } else {
                    action = "added";
                }
                kept.push_back(std::make_unique<bridge_runtime>(io, std::move(b), opts, sink, rng));
                kept.back()->start();
            }
            sink.event("reloaded", {field::str("bridge", name), field::str("action", action),
                                    field::boolean("rules_changed", c.rules),
                                    field::boolean("local_reconnect", c.local),
                                    field::boolean("remote_reconnect", c.remote)});
        }
        for (auto& r : runs) {
            if (!r) continue;
            sink.event(
                "reloaded",
                {field::str("bridge", r->cfg.name), field::str("action", "removed"),
                 field::boolean("rules_changed", false), field::boolean("local_reconnect", false),
                 field::boolean("remote_reconnect", false)});
            r->stop();
            retired.push_back(std::move(r));
        }
        runs = std::move(kept);
    }

    std::vector<bridge_state> states() const {
        std::vector<bridge_state> out;
        for (const auto& r : runs) out.push_back(r->state());
        return out;
    }

    asio::io_context& io;
    run_options opts;  // the runtimes refer to it
    output sink;
    std::mt19937_64 rng;
    std::vector<std::unique_ptr<bridge_runtime>> runs;
    // Bridges a reload stopped or replaced: kept until the end, as their coroutines may
    // still be finishing.
    std::vector<std::unique_ptr<bridge_runtime>> retired;
    asio::steady_timer stats;
    bool stopping = false;
};

}  // namespace detail

host::host(boost::asio::io_context& io, run_options opts, std::ostream& out, std::ostream& log)
    : set_(std::make_unique<detail::bridge_set>(io, std::move(opts), out, log)) {}
host::~host() = default;
std::string host::start(std::vector<bridge_config> bridges) {
    return set_->start(std::move(bridges));
}
void host::reload(std::vector<bridge_config> next) {
    set_->reload(std::move(next));
}
void host::stop() {
    set_->stop();
}
bool host::closed() const {
    return set_->closed();
}
void host::force_close() {
    set_->force_close();
}
std::vector<bridge_state> host::states() const {
    return set_->states();
}

int run(std::vector<bridge_config> bridges, const run_options& opts, std::ostream& out,
        std::ostream& log) {
    namespace asio = boost::asio;
    asio::io_context io{1};
    host bridges_host(io, opts, out, log);
    if (auto error = bridges_host.start(std::move(bridges)); !error.empty()) {
        log << "tern-bridge: " << error << '\n';
        return 2;
    }
    detail::output sink(out, log, opts.json, opts.verbosity, opts.log);
    // Declared after bridges_host: stopped and destroyed before it.
    std::optional<net::detail::metrics_listener> metrics;
    if (!opts.metrics_host.empty()) {
        metrics.emplace(
            io, [&bridges_host] { return broker::render_bridge_metrics(bridges_host.states()); });
        if (const auto ec = metrics->bind(opts.metrics_host, opts.metrics_port)) {
            log << "tern-bridge: metrics listener " << opts.metrics_host << " port "
                << opts.metrics_port << ": " << ec.message() << '\n';
            return 2;
        }
        metrics->start();
        using field = detail::output;
        sink.event("metrics_listening",
                   {field::str("url", "http://" + metrics->local_address() + "/metrics")});
    }

    asio::signal_set signals(io, SIGINT, SIGTERM);
    asio::signal_set hangup(io, SIGHUP);
    asio::steady_timer grace(io);
    bool stopping = false;
    clock::time_point deadline{};
    // After a signal: stop once every connection said goodbye, or after three seconds.
    std::function<void()> check = [&] {
        if (bridges_host.closed() || clock::now() >= deadline) {
            io.stop();
            return;
        }
        grace.expires_after(std::chrono::milliseconds{20});
        grace.async_wait([&](boost::system::error_code e) {
            if (!e) check();
        });
    };
    signals.async_wait([&](boost::system::error_code ec, int) {
        if (ec) return;
        stopping = true;
        hangup.cancel();
        if (metrics) metrics->stop();
        bridges_host.stop();
        deadline = clock::now() + std::chrono::seconds{3};
        check();
    });
    const auto reload = [&] {
        using field = detail::output;
        if (!opts.reload) {
            sink.event("reload_failed",
                       {field::str("reason", "nothing to reload: no configuration file (-c)")}, -1);
            return;
        }
        auto next = opts.reload();
        if (!next.error.empty()) {
            sink.event("reload_failed",
                       {field::str("reason", next.error + " (the running bridges are kept)")}, -1);
            return;
        }
        bridges_host.reload(std::move(next.bridges));
    };
    std::function<void()> wait_hangup = [&] {
        hangup.async_wait([&](boost::system::error_code ec, int) {
            if (ec || stopping) return;
            reload();
            wait_hangup();
        });
    };
    wait_hangup();
    io.run();
    return 0;
}

}  // namespace mqtt::bridge
