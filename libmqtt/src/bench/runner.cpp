// The phases of a bench run: resolve, connect (paced), subscribe, publish, drain, disconnect;
// then the counters of every connection are added up into run_results. The orchestrator runs
// on the first event loop; it acts on a client on the client's own loop (on_each_loop).
// Waiting is polling views of the clients every few milliseconds: cheap next to the traffic,
// and it keeps every phase bounded by its own deadline and the run's hard time limit.

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <random>

#include "driver.hpp"
#include "mqtt/bench/runner.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::bench::detail {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto poll_step = std::chrono::milliseconds(10);

template <class F>
asio::awaitable<void> call_on(F& f, loop_state& l) {
    f(l);
    co_return;
}

double since(clock::time_point from, clock::time_point to) {
    if (from == clock::time_point{} || to <= from) return 0;
    return std::chrono::duration<double>(to - from).count();
}

clock::duration seconds(double s) {
    return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

run_state::run_state(const bench_config& cfg, std::ostream* progress, std::ostream* log)
    : cfg_(cfg), progress_(progress), log_(log), run_id_(std::random_device{}()) {
    r_.config = cfg;
    for (unsigned k = 0; k < std::max(1u, cfg.threads); ++k)
        loops_.push_back(std::make_unique<loop_state>());
}

run_state::~run_state() {
    idle_.clear();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
}

void run_state::run() {
    asio::co_spawn(loops_.front()->io, orchestrate(), asio::detached);
    loops_.front()->io.run();
    // The orchestrator is done and every client closed: the other loops end with their
    // clients' last coroutines.
    idle_.clear();
    for (auto& t : threads_) t.join();
    threads_.clear();
}

void run_state::start_threads() {
    for (std::size_t k = 1; k < loops_.size(); ++k) {
        auto& io = loops_[k]->io;
        idle_.push_back(asio::make_work_guard(io));
        threads_.emplace_back([&io] { io.run(); });
    }
}

template <class F>
asio::awaitable<void> run_state::on_each_loop(F f) {
    for (auto& l : loops_) {
        if (l == loops_.front()) {
            f(*l);  // the orchestrator's own loop
            continue;
        }
        co_await asio::co_spawn(l->io, call_on(f, *l), asio::use_awaitable);
    }
}

asio::awaitable<void> run_state::refresh() {
    errors_seen_ = 0;
    co_await on_each_loop([this](loop_state& l) {
        for (const auto* c : l.clients) {
            auto& v = views_[c->id];
            v.connected = c->connected;
            v.failed = c->failed;
            v.subscribed = c->subscribed;
            v.publishing = c->publishing;
            v.open = c->open;
            v.acks_pending = !c->unacked.empty();
            v.published = c->next_seq;
            v.acked = c->acked;
            v.unique = c->unique;
        }
        errors_seen_ += l.tally.errors.size();
        last_connack_ = std::max(last_connack_, l.tally.last_connack);
    });
}

asio::awaitable<void> run_state::sleep_until(clock::time_point t) {
    asio::steady_timer timer(loops_.front()->io, t);
    auto [ec] = co_await timer.async_wait(nothrow);
    (void)ec;
}

template <class Pred>
asio::awaitable<bool> run_state::wait_for(Pred done, clock::time_point deadline) {
    for (;;) {
        co_await refresh();
        if (done()) co_return true;
        const auto now = clock::now();
        print_progress(now);
        if (now >= hard_stop_) r_.timed_out = true;
        if (now >= deadline || now >= hard_stop_) co_return false;
        // Not std::min({...}): GCC 12 cannot put an initializer_list in a coroutine frame.
        const auto until = std::min(std::min(deadline, hard_stop_), now + poll_step);
        co_await sleep_until(until);
    }
}

void run_state::make_clients() {
    client::session_config sc;
    sc.connect = cfg_.connect;
    sc.connect_timeout = cfg_.connect_timeout;
    char run_hex[9];
    std::snprintf(run_hex, sizeof run_hex, "%08x", run_id_);
    // Short enough for MQTT 3.1's 23 characters with the default prefix.
    const auto id_of = [&](std::size_t n) {
        return cfg_.client_id_prefix + run_hex + "-" + std::to_string(n);
    };
    // Round-robin over the loops, in the order the clients are made.
    const auto add = [&](role r, unsigned index) -> bench_client& {
        const auto id = clients_.size();
        auto& loop = *loops_[id % loops_.size()];
        sc.connect.client_id = id_of(id);
        clients_.push_back(std::make_unique<bench_client>(loop, id, r, index, sc));
        loop.clients.push_back(clients_.back().get());
        views_.emplace_back();
        if (cfg_.mqttsn) {
            client::mqttsn::session_config snc;
            snc.client_id = sc.connect.client_id;
            snc.keep_alive = cfg_.connect.keep_alive;
            snc.clean_session = cfg_.connect.clean_start;
            clients_.back()->sn = std::make_unique<client::mqttsn::session>(std::move(snc));
        }
        return *clients_.back();
    };
    if (cfg_.scenario == scenario::conn) {
        for (unsigned i = 0; i < cfg_.clients; ++i) add(role::idle, i);
        return;
    }
    for (unsigned j = 0; j < cfg_.subscribers; ++j) {
        auto& c = add(role::subscriber, j);
        // pairs: %c in the filter is the paired publisher's id (publishers come after the
        // subscribers), so the default filter, the topic template, still matches.
        c.filter = expand_template(
            cfg_.filter, j,
            cfg_.scenario == scenario::pairs ? id_of(cfg_.subscribers + j) : sc.connect.client_id);
        subscribers_.push_back(&c);
    }
    for (unsigned i = 0; i < cfg_.publishers; ++i) {
        auto& c = add(role::publisher, i);
        c.topic = expand_template(cfg_.topic, i, sc.connect.client_id);
        if (cfg_.scenario == scenario::reqresp)
            c.response_topic = expand_template(response_topic_template, i, sc.connect.client_id);
        publishers_.push_back(&c);
    }
    if (cfg_.scenario == scenario::reqresp) return;  // each requester counts its own responses
    if (cfg_.scenario == scenario::shared) {
        // One group: what matters is what the group as a whole received.
        const auto filter = expand_template(cfg_.filter, 0);
        for (auto* p : publishers_)
            if (protocol::topic_matches(filter, p->topic)) group_sources_.push_back(p->index);
        return;
    }
    for (auto* s : subscribers_)
        for (auto* p : publishers_)
            if (protocol::topic_matches(s->filter, p->topic)) s->sources.push_back(p->index);
}

asio::awaitable<bool> run_state::connect_all() {
    const auto start = clock::now();
    for (std::size_t i = 0; i < clients_.size(); ++i) {
        if (cfg_.connect_rate > 0)
            co_await sleep_until(std::min(hard_stop_, start + seconds(i / cfg_.connect_rate)));
        if (clock::now() >= hard_stop_) break;
        if (progress_due(clock::now())) {
            co_await refresh();
            print_progress(clock::now());
        }
        auto& c = *clients_[i];
        asio::co_spawn(c.loop.io, connect_client(c), asio::detached);
    }
    const auto settled = [&] {
        return std::all_of(clients_.begin(), clients_.end(), [&](const auto& c) {
            return view(c.get()).connected || view(c.get()).failed;
        });
    };
    co_await wait_for(settled, clock::now() + cfg_.connect_timeout);
    // On each client's loop: a CONNACK may still arrive while this runs.
    std::size_t up = 0;
    co_await on_each_loop([&](loop_state& l) {
        for (auto* c : l.clients) {
            if (c->connected) {
                ++up;
                continue;
            }
            if (!c->failed && c->attempted)
                error(*c, "connect: no CONNACK within the connect timeout");
            c->failed = true;
        }
    });
    co_await refresh();
    log("connected " + std::to_string(up) + "/" + std::to_string(clients_.size()));
    r_.connect_seconds = since(start, std::max(last_connack_, start));
    co_return up == clients_.size();
}

asio::awaitable<bool> run_state::subscribe_all() {
    // reqresp: the requesters subscribe to their Response Topics too; several responders
    // share the requests, so that each is answered once.
    std::vector<bench_client*> subscribing = subscribers_;
    if (cfg_.scenario == scenario::reqresp)
        for (auto* p : publishers_) subscribing.push_back(p);
    co_await on_each_loop([&](loop_state& l) {
        for (auto* c : subscribing) {
            if (&c->loop != &l) continue;
            std::string filter = c->kind == role::publisher ? c->response_topic : c->filter;
            if (cfg_.scenario == scenario::shared ||
                (cfg_.scenario == scenario::reqresp && c->kind == role::subscriber &&
                 subscribers_.size() > 1))
                filter = shared_filter(cfg_, filter);
            subscribe_one(*c, std::move(filter));
        }
    });
    const auto settled = [&] {
        return std::all_of(subscribing.begin(), subscribing.end(),
                           [&](auto* c) { return view(c).subscribed || view(c).failed; });
    };
    co_await wait_for(settled, clock::now() + cfg_.connect_timeout);
    co_await refresh();
    bool all = true;
    for (auto* c : subscribing) all = all && view(c).subscribed && !view(c).failed;
    if (!all && errors_seen_ == 0)
        orchestrator_error("subscribe: no SUBACK within the connect timeout");
    if (all) log("subscribed " + std::to_string(subscribers_.size()));
    co_return all;
}

bool run_state::publishers_finished() const {
    return std::none_of(publishers_.begin(), publishers_.end(),
                        [&](auto* c) { return view(c).publishing; });
}

bool run_state::deliveries_complete() const {
    const bool acked = cfg_.qos == protocol::qos::at_most_once ||
                       std::all_of(publishers_.begin(), publishers_.end(), [&](auto* c) {
                           return view(c).failed || !view(c).acks_pending;
                       });
    if (!acked) return false;
    if (cfg_.scenario == scenario::reqresp)
        return std::all_of(publishers_.begin(), publishers_.end(), [&](auto* c) {
            return view(c).failed || view(c).unique >= view(c).published;
        });
    if (cfg_.scenario == scenario::shared) {
        std::uint64_t expected = 0, unique = 0;
        for (auto i : group_sources_) expected += view(publishers_[i]).published;
        for (auto* s : subscribers_) unique += view(s).unique;
        return unique >= expected;
    }
    for (auto* s : subscribers_) {
        if (view(s).failed) continue;
        std::uint64_t expected = 0;
        for (auto i : s->sources) expected += view(publishers_[i]).published;
        if (view(s).unique < expected) return false;
    }
    return true;
}

asio::awaitable<void> run_state::publish_all() {
    t_start_ = clock::now();
    t_warm_ = t_start_ + seconds(cfg_.warmup);
    if (cfg_.scenario == scenario::sub) {
        // Nothing to pace: count deliveries until the count or the duration is reached.
        const auto warm_ns = static_cast<std::uint64_t>(cfg_.warmup * 1e9);
        co_await on_each_loop([&](loop_state& l) { l.warm_ns = warm_ns; });
        const auto end = cfg_.duration > 0 ? t_start_ + seconds(cfg_.duration) : hard_stop_;
        co_await wait_for(
            [&] {
                return cfg_.count > 0 &&
                       std::all_of(subscribers_.begin(), subscribers_.end(), [&](auto* c) {
                           return view(c).failed || view(c).unique >= cfg_.count;
                       });
            },
            end);
        co_return;
    }
    const auto warm_ns = to_ns(t_warm_);
    co_await on_each_loop([&](loop_state& l) {
        l.warm_ns = warm_ns;
        for (auto* p : l.clients) {
            if (p->kind != role::publisher) continue;
            p->limiter = share_of(cfg_.rate, p->index, cfg_.publishers, t_start_);
            p->publishing = true;
            asio::co_spawn(l.io, publish_loop(*p), asio::detached);
        }
    });
    log("publishing");
    co_await wait_for([&] { return publishers_finished(); }, hard_stop_);
    co_await on_each_loop([](loop_state& l) { l.stop_publishing = true; });
    log("draining");
    co_await wait_for([&] { return deliveries_complete(); }, clock::now() + seconds(cfg_.drain));
}

asio::awaitable<void> run_state::shutdown_all() {
    co_await on_each_loop([&](loop_state& l) {
        for (auto* c : l.clients) {
            c->done = true;
            c->wake.cancel();
            if (c->open && !session_closed(*c)) {
                disconnect_one(*c);
            } else if (!c->open) {
                close_socket(*c);  // aborts a connect still under way
            }
        }
    });
    // The writers send DISCONNECT and close; a broker that stopped reading gets 2 s.
    co_await wait_for(
        [&] {
            return std::none_of(clients_.begin(), clients_.end(),
                                [&](auto& c) { return view(c.get()).open; });
        },
        clock::now() + std::chrono::seconds(2));
    co_await on_each_loop([&](loop_state& l) {
        for (auto* c : l.clients) close_socket(*c);
    });
}

asio::awaitable<void> run_state::orchestrate() {
    t0_ = clock::now();
    hard_stop_ = t0_ + seconds(cfg_.time_limit);
    tcp::resolver resolver(loops_.front()->io);
    auto [ec, endpoints] =
        co_await resolver.async_resolve(cfg_.host, std::to_string(cfg_.port), nothrow);
    if (ec) {
        orchestrator_error("resolve " + cfg_.host + ": " + ec.message());
        co_return;
    }
    endpoints_ = std::move(endpoints);
    for (const auto& a : cfg_.sources) {
        boost::system::error_code aec;
        const auto from = asio::ip::make_address(a, aec);  // checked by the config already
        const bool reachable = std::any_of(
            endpoints_.begin(), endpoints_.end(),
            [&](const auto& e) { return e.endpoint().address().is_v4() == from.is_v4(); });
        if (aec || !reachable) {
            orchestrator_error("--source " + a + ": " + cfg_.host + " has no " +
                               (from.is_v4() ? "IPv4" : "IPv6") + " address");
            co_return;
        }
        sources_.push_back(from);
    }
    if (cfg_.tls) {
        std::string why;
        tls_ = net::make_client_context(*cfg_.tls, why);
        if (!tls_) {
            orchestrator_error("TLS: " + why);
            co_return;
        }
    }
    make_clients();
    start_threads();  // after the clients are made: the threads see them whole
    const bool connected = co_await connect_all();
    if (cfg_.scenario == scenario::conn) {
        const auto hold_end = clock::now() + seconds(cfg_.hold);
        co_await wait_for([] { return false; }, hold_end);
    } else if (connected) {
        const bool subscribed = co_await subscribe_all();
        if (subscribed) co_await publish_all();
    }
    co_await shutdown_all();
}

}  // namespace mqtt::bench::detail
