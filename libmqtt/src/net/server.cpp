#include "mqtt/net/server.hpp"

#include "server_impl.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "auth_worker.hpp"
#include "mqtt/bridge/runner.hpp"
#include "connection.hpp"
#include "net/metrics/metrics_listener.hpp"
#include "mqtt/broker/metrics.hpp"
#include "mqtt/broker/sys_topics.hpp"
#include "mqtt/version.hpp"
#include "mqttsn_udp.hpp"
#include "net/transport/epoll_tcp.hpp"
#include "net/transport/tls.hpp"
#include "net/transport/ws.hpp"
#include "store_driver.hpp"

namespace mqtt::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

std::string to_string(const tcp::endpoint& ep) {
    const auto addr = ep.address().to_string();
    const auto port = std::to_string(ep.port());
    return ep.address().is_v6() ? "[" + addr + "]:" + port : addr + ":" + port;
}

bool is_missing_ipv6(const boost::system::error_code& ec) {
    return ec == asio::error::address_family_not_supported ||
           ec == boost::system::errc::address_not_available;
}

}  // namespace

void server::impl::note(int verbosity, broker::log_level level, std::string_view kind,
                        std::string_view msg) {
    if (!opts.events) {
        engine.log(verbosity, msg);
        return;
    }
    if (!engine.logging(verbosity)) return;
    broker::log_event e;
    e.verbosity = verbosity;
    e.level = level;
    e.event = kind;
    e.msg = msg;
    opts.events(e);
}

boost::system::error_code server::impl::bind(const tcp::endpoint& ep, tcp::acceptor& a) {
    boost::system::error_code ec;
    a.open(ep.protocol(), ec);
    if (ec) return ec;
    a.set_option(asio::socket_base::reuse_address(true), ec);
    if (ep.address().is_v6()) a.set_option(asio::ip::v6_only(true), ec);
    a.bind(ep, ec);
    if (ec) return ec;
    a.listen(asio::socket_base::max_listen_connections, ec);
    return ec;
}

// Port 0 means one free port shared by every address of a group, so "127.0.0.1 and ::1 on
// port 0" ends up on one port; if the second family has it taken, start over with another.
boost::system::error_code server::impl::bind_all() {
    boost::system::error_code ec;
    for (const auto& l : opts.listeners) {
        groups.try_emplace(
            l.group, group_state{l.max_connections, 0, nullptr, l.websockets, l.websockets_path});
    }
    for (int attempt = 0; attempt < 20; ++attempt) {
        acceptors.clear();
        acceptor_groups.clear();
        warnings.clear();
        std::map<std::size_t, std::uint16_t> picked_by_group;
        bool retry = false;
        for (const auto& l : opts.listeners) {
            failed_address = l.host + " port " + std::to_string(l.port);
            const auto addr = asio::ip::make_address(l.host, ec);
            if (ec) return ec;
            std::uint16_t& picked = picked_by_group[l.group];
            const std::uint16_t port = l.port != 0 ? l.port : picked;
            tcp::acceptor a{io};
            ec = bind(tcp::endpoint{addr, port}, a);
            if (ec && addr.is_v6() && is_missing_ipv6(ec) && opts.listeners.size() > 1) {
                warnings.push_back("IPv6 listener " + l.host + " skipped: " + ec.message());
                ec.clear();
                continue;
            }
            if (ec == boost::system::errc::address_in_use && l.port == 0 && picked != 0) {
                retry = true;
                break;
            }
            if (ec) return ec;
            if (l.port == 0 && picked == 0) picked = a.local_endpoint().port();
            acceptors.push_back(std::move(a));
            acceptor_groups.push_back(l.group);
        }
        if (retry) continue;
        if (acceptors.empty()) {
            return boost::system::errc::make_error_code(boost::system::errc::address_not_available);
        }
        return ec;
    }
    return boost::system::errc::make_error_code(boost::system::errc::address_in_use);
}

asio::awaitable<void> server::impl::accept_loop(tcp::acceptor& a, std::size_t group) {
    for (;;) {
        auto [ec, socket] = co_await a.async_accept(nothrow);
        if (stopping || ec == asio::error::operation_aborted) co_return;
        if (ec) {
            // Out of file descriptors and the like: log, breathe, go on.
            note(0, broker::log_level::error, broker::log_kind::error,
                 "accept failed: " + ec.message());
            asio::steady_timer pause{io, std::chrono::milliseconds{100}};
            co_await pause.async_wait(nothrow);
            continue;
        }
        start_connection(std::move(socket), group);
    }
}

// Runs engine.on_timer() at engine.next_expiry(); the engine's hook cancels the wait when
// that deadline moves earlier, and the loop arms the timer again.
asio::awaitable<void> server::impl::expiry_loop() {
    while (!stopping) {
        expiry.expires_at(engine.next_expiry());
        co_await expiry.async_wait(nothrow);
        if (stopping) co_return;
        engine.on_timer(broker::clock::now());
    }
}

// Publishes the $SYS topics at sys.next_due() (never when sys_interval is 0). With threads
// > 1 sys_tick() does, with every shard's figures summed.
asio::awaitable<void> server::impl::sys_loop() {
    while (!stopping && sys.enabled()) {
        sys_timer.expires_at(sys.next_due());
        co_await sys_timer.async_wait(nothrow);
        if (stopping) co_return;
        sys.on_timer(broker::clock::now());
    }
}

void server::impl::start_connection(tcp::socket socket, std::size_t group) {
    ++engine.stats().connections_accepted;
    auto& g = groups[group];
    // A listener with a max_connections of its own is held to it alone; the others share
    // the broker's default bound (limits::max_connections).
    const bool over_group = g.max_connections && g.open >= *g.max_connections;
    const std::size_t open_now = sharded() ? open_total : engine.session_count();
    const bool over_default = !g.max_connections && open_now >= opts.limits.max_connections;
    if (over_group || over_default) {
        ++engine.stats().connections_refused;
        if (engine.logging(1)) {
            boost::system::error_code ignored;
            const auto local = socket.local_endpoint(ignored);
            note(1, broker::log_level::warning, broker::log_kind::refused,
                 "connection refused on " + to_string(local) + ": max_connections (" +
                     std::to_string(over_group ? *g.max_connections : opts.limits.max_connections) +
                     ") reached");
        }
        return;  // the socket closes here
    }
    ++g.open;
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    const auto remote = socket.remote_endpoint(ec);
    std::string peer = ec ? std::string{"?"} : to_string(remote);
    if (sharded() && (g.tls || g.websockets)) {  // the handshake, the CONNECT, then its shard
        ++open_total;
        const auto local = socket.local_endpoint(ec);
        auto t = g.websockets ? make_ws_server_transport(std::move(socket), g.tls,
                                                         ws_server_settings{
                                                             g.websockets_path,
                                                             opts.limits.max_packet_size})
                              : make_tls_server_transport(std::move(socket), g.tls);
        asio::co_spawn(io,
                       handshake_first_packet(std::move(t), std::move(peer), to_string(local),
                                              group),
                       [this, group](std::exception_ptr e) {
                           if (e) connection_ended(group, e);
                       });
        return;
    }
    if (sharded()) {  // to the shard of its client id, once its CONNECT is read
        ++open_total;
        auto h = std::make_shared<handoff>(std::move(socket), std::move(peer), group,
                                           security_slot(group));
        handoffs.insert(h);
        read_first_packet(std::move(h));
        return;
    }
    // connection_ended() once per accepted connection: when it has ended, or its handshake
    // failed.
    auto failed = [this, group](std::exception_ptr e, bool started) {
        if (e || !started) connection_ended(group, e);
    };
    if (g.websockets) {
        const auto local = socket.local_endpoint(ec);
        auto t = make_ws_server_transport(
            std::move(socket), g.tls,
            ws_server_settings{g.websockets_path, opts.limits.max_packet_size});
        asio::co_spawn(io,
                       handshake_and_start(std::move(t), std::move(peer), to_string(local),
                                           g.username_from, security_slot(group), group),
                       failed);
        return;
    }
    if (g.tls) {
        const auto local = socket.local_endpoint(ec);
        auto t = make_tls_server_transport(std::move(socket), g.tls);
        asio::co_spawn(io,
                       handshake_and_start(std::move(t), std::move(peer), to_string(local),
                                           g.username_from, security_slot(group), group),
                       failed);
        return;
    }
    // Plain TCP: on the loop's own epoll set, not a descriptor in Asio's reactor each.
    auto c =
        std::make_shared<detail::connection>(make_epoll_tcp_transport(std::move(socket)), conns,
                                             std::move(peer), static_cast<std::uint32_t>(group));
    c->set_security_slot(security_slot(group));
    c->set_listener(group + 1);
    detail::connection::start(c);
}

void server::impl::connection_ended(std::size_t group, std::exception_ptr e) {
    const bool bridge = group == bridge_tag;
    if (!bridge) {
        --groups[group].open;
        if (sharded()) --open_total;
    }
    if (!e) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        note(0, broker::log_level::error, broker::log_kind::error,
             std::string{bridge ? "bridge connection" : "connection"} +
                 " ended by an exception: " + ex.what());
    }
}

void server::impl::refuse_handshake(transport& t, const std::string& peer, const std::string& local,
                                    const std::string& why) {
    ++engine.stats().connections_refused;
    const std::string_view kind = t.name();
    const char* label = kind == "ws" ? "WebSocket" : kind == "wss" ? "secure WebSocket" : "TLS";
    note(0, broker::log_level::notice, broker::log_kind::refused,
         std::string{label} + " connection from " + peer + " on " + local + " refused: " + why);
    t.close();
}

// The TLS and/or WebSocket handshake within its deadline, then the MQTT connection; a failed
// handshake is logged with its reason (wrong CA, expired certificate, a plaintext client, an
// HTTP request that is no WebSocket upgrade, ...).
asio::awaitable<bool> server::impl::handshake_and_start(
    std::unique_ptr<transport> t, std::string peer, std::string local,
    tls_server_settings::username_source username_from, std::size_t slot, std::size_t group) {
    std::string why;
    // Slowloris over TLS or WebSocket: the handshake is part of the time a client has
    // between the accept and its CONNECT.
    const auto accepted = broker::clock::now();
    const auto limit = std::min(opts.tls_handshake_timeout,
                                std::chrono::duration_cast<std::chrono::milliseconds>(
                                    engine.config().connect_timeout));
    handshaking.insert(t.get());
    const auto ec = co_await t->handshake(limit, why);
    handshaking.erase(t.get());
    if (stopping) co_return false;
    if (ec) {
        refuse_handshake(*t, peer, local, why);
        co_return false;
    }
    using source = tls_server_settings::username_source;
    std::optional<std::string> cert_name;
    if (username_from == source::identity) cert_name = t->peer_common_name();
    if (username_from == source::subject) cert_name = t->peer_subject();
    auto c = std::make_shared<detail::connection>(std::move(t), conns, std::move(peer),
                                                  static_cast<std::uint32_t>(group), accepted);
    if (username_from != source::none) c->use_certificate_username(std::move(cert_name));
    c->set_security_slot(slot);
    c->set_listener(group + 1);
    detail::connection::start(c);
    co_return true;
}

std::string server::impl::load_tls() {
    for (const auto& l : opts.listeners) {
        if (!l.tls) continue;
        auto& g = groups[l.group];
        if (g.tls) continue;
        std::string error;
        g.tls = make_server_context(*l.tls, error);
        if (!g.tls) return error;
        g.username_from = l.tls->username_from;
    }
    return {};
}

std::string server::impl::render_metrics() const {
    auto f = broker::figures_of(engine);
    f.store_file_bytes = store ? store->file_bytes() : 0;
    return render_metrics(f);
}

std::string server::impl::render_metrics(const broker::figures& f) const {
    broker::metrics_context c;
    c.version = version_string;
    c.uptime_seconds = std::chrono::duration<double>(broker::clock::now() - started).count();
    c.persistence = store.has_value();
    c.mqttsn = !mqttsn.empty();
    c.store_file_bytes = f.store_file_bytes;
    if (bridges) c.bridges = bridges->states();
    return broker::render_metrics(f, c);
}

void server::impl::stop_now() {
    if (stopping) return;
    stopping = true;
    boost::system::error_code ec;
    for (auto& a : acceptors) a.close(ec);
    if (metrics) metrics->stop();
    for (auto* t : handshaking) t->close();
    if (signals) signals->cancel(ec);
    if (reload_signal) reload_signal->cancel(ec);
    expiry.cancel();
    sys_timer.cancel();
    if (store) store->cancel_timer();
    store_set_timer.cancel();
    if (bridges) {
        // DISCONNECT towards the remote brokers; whatever has not closed in 3 s is closed.
        bridges->stop();
        bridges_deadline = broker::clock::now() + std::chrono::seconds{3};
        wait_bridges_closed();
    }
    // With shards: every shard's connections, counted on shard 0 (those still reading their
    // first packet included).
    const std::size_t open = sharded() ? open_total : engine.session_count();
    note(1, broker::log_level::info, broker::log_kind::stop,
         "shutting down: closing " + std::to_string(open) + " connection(s)");
    engine.shutdown();
    if (sharded()) {
        memory_holds[0]->timer.cancel();
        retained_orders[0]->timer.cancel();
        // From here on what the other shards send shard 0 is posted (work for io), so that
        // io.run(), which returns once shard 0 has no work left, does not leave it undrained.
        runtime->stop_waiting(0);
        shutdown_shards();
    }
    for (auto& g : mqttsn) g->stop();
}

void server::impl::wait_bridges_closed() {
    if (bridges->closed()) return;
    if (broker::clock::now() >= bridges_deadline) {
        bridges->force_close();
        return;
    }
    bridges_grace.expires_after(std::chrono::milliseconds{20});
    bridges_grace.async_wait([this](boost::system::error_code ec) {
        if (!ec) wait_bridges_closed();
    });
}

// A bridge's local side: one end of an in-memory pair served as an accepted connection
// (the same driver, session, security slot and store as a TCP client), the other end for
// the bridge's client session. No socket, no file descriptor, no system call per batch.
std::unique_ptr<transport> server::impl::connect_bridge(const bridge::bridge_config& b,
                                                        std::string& why) {
    if (stopping) {
        why = "the broker is stopping";
        return nullptr;
    }
    auto [ours, theirs] = make_memory_pair(io.get_executor());
    auto c = std::make_shared<detail::connection>(std::move(ours), conns, "bridge:" + b.name,
                                                  bridge_tag);
    c->set_security_slot(bridge_slot);
    detail::connection::start(c);
    return std::move(theirs);
}

std::string server::impl::start_bridges(std::vector<bridge::bridge_config> b) {
    bridge::run_options ro;
    ro.verbosity = 1;  // statistics lines too; the broker's log level filters them (-vv)
    ro.log = [this](std::string_view event, int level, const std::string& text) {
        // tern-bridge's levels: -1 always (problems), 0 by default (connects), 1 with -v
        // (statistics every few seconds go to -vv here).
        const bool stats = event == "stats";
        const int verbosity = level < 0 ? 0 : stats ? 2 : level;
        const auto l = level < 0 ? broker::log_level::warning
                       : level == 0 ? broker::log_level::notice
                       : stats      ? broker::log_level::debug
                                    : broker::log_level::info;
        note(verbosity, l, broker::log_kind::bridge, "bridge " + text);
    };
    ro.connect_local = [this](const bridge::bridge_config& c, std::string& why) {
        return connect_bridge(c, why);
    };
    bridges.emplace(io, std::move(ro), std::cout, std::cerr);
    return bridges->start(std::move(b));
}

// ---- server -----------------------------------------------------------------------------

server::server(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
server::~server() = default;

void server::impl::wait_reload() {
    reload_signal->async_wait([this](const boost::system::error_code& ec, int) {
        if (ec || stopping) return;
        opts.on_reload();
        wait_reload();
    });
}

result<std::unique_ptr<server>> server::create(server_options opts, std::string* failed) {
    auto i = std::make_unique<impl>(std::move(opts));
    if (i->opts.threads > 1) i->create_shards();
    for (const auto& l : i->opts.listeners) {
        i->groups.try_emplace(l.group, impl::group_state{l.max_connections, 0, nullptr,
                                                         l.websockets, l.websockets_path});
    }
    if (auto error = i->load_tls(); !error.empty()) {
        if (failed) *failed = std::move(error);
        return std::make_error_code(std::errc::invalid_argument);
    }
    if (const auto ec = i->bind_all()) {
        if (failed) *failed = i->failed_address;
        return std::error_code{ec};
    }
    for (const auto& l : i->opts.mqttsn_listeners) {
        boost::system::error_code ec;
        const auto addr = asio::ip::make_address(l.host, ec);
        auto settings = l.settings;
        settings.listener = l.group + 1;
        auto g = std::make_unique<detail::mqttsn_udp>(i->io, i->engine, std::move(settings));
        g->set_max_clients(l.max_connections);
        if (!ec) ec = g->bind({addr, l.port});
        if (ec) {
            if (failed) *failed = l.host + " port " + std::to_string(l.port) + " (MQTT-SN, UDP)";
            return std::error_code{ec};
        }
        i->mqttsn.push_back(std::move(g));
        i->mqttsn_groups.push_back(l.group);
    }
    i->sys.set_mqttsn(!i->mqttsn.empty());
    if (const auto& m = i->opts.metrics) {
        auto* raw = i.get();
        i->metrics.emplace(i->io, [raw] { return raw->render_metrics(); });
        if (i->sharded()) {
            i->metrics->set_async_render([raw](std::function<void(std::string)> done) {
                raw->collect_figures([raw, done = std::move(done)](broker::figures f) {
                    done(raw->render_metrics(f));
                });
            });
        }
        if (const auto ec = i->metrics->bind(m->host, m->port)) {
            if (failed) {
                *failed = "metrics_listener " + m->host + " port " + std::to_string(m->port);
            }
            return std::error_code{ec};
        }
    }
    if (i->opts.persistence.enabled) {
        if (const auto ec = i->open_stores(failed)) return ec;
    }
    if (!i->opts.bridges.empty()) {
        if (auto error = i->start_bridges(std::move(i->opts.bridges)); !error.empty()) {
            if (failed) *failed = std::move(error);
            return std::make_error_code(std::errc::invalid_argument);
        }
    }
    return std::unique_ptr<server>{new server{std::move(i)}};
}

void server::set_bridges(std::vector<bridge::bridge_config> b) {
    auto& s = *impl_;
    if (s.stopping) return;
    if (!s.bridges) {
        if (b.empty()) return;
        if (auto error = s.start_bridges(std::move(b)); !error.empty()) {
            s.note(0, broker::log_level::error, broker::log_kind::bridge, error);
            s.bridges.reset();
        }
        return;
    }
    s.bridges->reload(std::move(b));
}

std::vector<std::string> server::local_addresses() const {
    std::vector<std::string> out;
    for (const auto& a : impl_->acceptors) {
        boost::system::error_code ec;
        const auto ep = a.local_endpoint(ec);
        if (!ec) out.push_back(to_string(ep));
    }
    return out;
}

std::vector<std::string> server::mqttsn_addresses() const {
    std::vector<std::string> out;
    for (const auto& g : impl_->mqttsn) out.push_back(g->local_address());
    return out;
}

std::uint16_t server::port() const {
    boost::system::error_code ec;
    if (impl_->acceptors.empty()) return 0;
    const auto ep = impl_->acceptors.front().local_endpoint(ec);
    return ec ? 0 : ep.port();
}

std::string server::metrics_address() const {
    return impl_->metrics ? impl_->metrics->local_address() : std::string{};
}

const std::vector<std::string>& server::warnings() const {
    return impl_->warnings;
}

void server::run() {
    auto& s = *impl_;
    for (std::size_t k = 0; k < s.acceptors.size(); ++k) {
        asio::co_spawn(s.io, s.accept_loop(s.acceptors[k], s.acceptor_groups[k]), asio::detached);
    }
    s.engine.set_expiry_hook([&s] { s.expiry.cancel(); });
    asio::co_spawn(s.io, s.expiry_loop(), asio::detached);
    if (s.sys.enabled() && s.sharded()) s.sys_tick();
    if (s.sys.enabled() && !s.sharded()) asio::co_spawn(s.io, s.sys_loop(), asio::detached);
    if (s.metrics) s.metrics->start();
    if (s.opts.handle_signals) {
        s.signals.emplace(s.io, SIGINT, SIGTERM);
        s.signals->async_wait([&s](const boost::system::error_code& ec, int sig) {
            if (ec) return;
            s.note(0, broker::log_level::notice, broker::log_kind::signal,
                   std::string{"caught "} + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
            s.stop_now();
        });
        if (s.opts.on_reload) {
            s.reload_signal.emplace(s.io, SIGHUP);
            s.wait_reload();
        }
    }
    for (auto& g : s.mqttsn) g->start();
    if (s.store) s.store->start();
    for (std::size_t k = 1; k < s.shards.size(); ++k) {
        if (s.shards[k]->store) s.shards[k]->store->start();
    }
    if (s.sharded()) s.start_shards();
    s.io.run();
    if (s.sharded()) s.end_shards();
    s.close_stores();
    if (s.engine.logging(1)) {
        const auto st = s.sharded() ? s.summed_stats() : s.engine.stats();
        s.note(1, broker::log_level::info, broker::log_kind::stats,
               "stopped: " + std::to_string(st.connections_accepted) + " connections, " +
                   std::to_string(st.messages_received) + " messages in, " +
                   std::to_string(st.messages_sent) + " out, " +
                   std::to_string(st.protocol_errors) + " protocol errors, dropped " +
                   std::to_string(st.dropped_qos0_slow) + " QoS 0 (slow), " +
                   std::to_string(st.dropped_queue_full) + " (queue full), " +
                   std::to_string(st.dropped_too_large) + " (too large)");
    }
}

void server::set_limits(const broker::limits& l) {
    impl_->engine.reload_limits(l);
    if (impl_->sharded()) impl_->post_to_shards([l](broker::engine& e) { e.reload_limits(l); });
}

void server::set_mqttsn(const broker::mqttsn_settings& s) {
    for (auto& g : impl_->mqttsn) g->reload(s);
}

void server::set_security(std::shared_ptr<const broker::security_policy> p) {
    if (impl_->sharded()) impl_->post_to_shards([p](broker::engine& e) { e.set_security(p); });
    impl_->engine.set_security(std::move(p));
}

void server::set_listener_security(std::size_t group,
                                   std::shared_ptr<const broker::security_policy> p) {
    impl_->opts.listener_security[group] = p;
    if (impl_->sharded()) {
        impl_->post_to_shards([p, group](broker::engine& e) { e.set_security(p, group + 1); });
    }
    impl_->engine.set_security(std::move(p), group + 1);
}

void server::set_max_connections(std::size_t group, std::optional<std::size_t> max) {
    impl_->groups[group].max_connections = max;
    for (std::size_t k = 0; k < impl_->mqttsn.size(); ++k)
        if (impl_->mqttsn_groups[k] == group) impl_->mqttsn[k]->set_max_clients(max);
}

std::string server::set_tls(std::size_t group, const tls_server_settings& s) {
    std::string error;
    auto ctx = make_server_context(s, error);
    if (ctx) {
        impl_->groups[group].tls = std::move(ctx);
        impl_->groups[group].username_from = s.username_from;
    }
    return error;
}

std::string check_tls_settings(const tls_server_settings& s) {
    std::string error;
    (void)make_server_context(s, error);
    return error;
}

void server::stop() {
    asio::post(impl_->io, [i = impl_.get()] { i->stop_now(); });
}

broker::stats server::stats() const {
    return impl_->sharded() ? impl_->summed_stats() : impl_->engine.stats();
}

}  // namespace mqtt::net
