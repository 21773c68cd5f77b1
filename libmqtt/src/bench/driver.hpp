#pragma once

// Internal to the bench: one bench connection (socket, session, timers), the event loops that
// drive them and the state of the run. Each loop is an io_context run by one thread; a client
// belongs to one loop, and only that loop's thread touches the client and the loop's tally
// while the run goes, so the message path takes no locks. The orchestrator (a coroutine on the
// first loop) reaches the other loops only by running a function on them and waiting for it
// (run_state::on_each_loop); what it reads of the clients are the client_view copies made
// there. Coroutines wake each other by cancelling never-expiring timers.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/rate.hpp"
#include "mqtt/bench/results.hpp"
#include "mqtt/bench/sequence.hpp"
#include "mqtt/bench/tally.hpp"
#include "mqtt/client/mqttsn_session.hpp"
#include "mqtt/client/session.hpp"
#include "mqtt/protocol/framer.hpp"
#include "net/transport/tls.hpp"
#include "net/transport/transport.hpp"
#include "net/transport/ws.hpp"

namespace mqtt::bench::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

enum class role : std::uint8_t { publisher, subscriber, idle };

struct pending_ack {
    std::uint64_t stamp_ns = 0;
    bool measured = false;
};

struct loop_state;

struct bench_client {
    bench_client(loop_state& l, std::size_t id, role r, unsigned index, client::session_config cfg);

    loop_state& loop;  // the event loop that drives it
    std::size_t id;    // its place among the run's clients (and their views)
    role kind;
    unsigned index;  // among the clients of its role
    client::session s;
    tcp::socket socket;                         // while connecting
    std::unique_ptr<net::transport> transport;  // once connected: TCP or TLS over `socket`
    asio::steady_timer wake_writer;             // never expires: cancelled when there is output
    asio::steady_timer timer;                   // the session's deadline
    asio::steady_timer wake;  // the publisher's pause: window full, or not due yet
    protocol::framer framer;
    std::vector<std::uint8_t> writing;
    // MQTT-SN (bench_config::mqttsn): this session over a connected UDP socket instead of
    // `s` over a transport; the datagrams it gave wait in `datagrams` for the writer.
    std::unique_ptr<client::mqttsn::session> sn;
    std::unique_ptr<asio::ip::udp::socket> udp;
    std::deque<std::vector<std::uint8_t>> datagrams;
    clock::time_point armed = clock::time_point::max();
    clock::time_point connect_start{};
    bool writer_busy = false;
    std::uint64_t writes = 0;  // transport writes made (-v reports them per publisher)
    bool open = false;       // socket connected and not yet closed by us
    bool attempted = false;  // connect started
    bool connected = false;  // CONNACK accepted
    bool failed = false;     // could not connect, or lost the connection
    bool done = false;       // being shut down by the run: no more errors from it

    // Publisher.
    std::string topic;
    rate_limiter limiter{0, clock::time_point{}};
    std::uint64_t next_seq = 0;
    unsigned queued = 0;  // PUBLISH packets queued since the writer last took the output
    std::uint64_t acked = 0;
    std::uint64_t refused = 0;
    // By packet id (MQTT) or publish token (MQTT-SN).
    std::unordered_map<std::uint64_t, pending_ack> unacked;
    bool publishing = false;

    // reqresp: a requester's Response Topic (it subscribes to it); a responder answers.
    std::string response_topic;
    std::uint64_t answered = 0;

    // Subscriber.
    std::string filter;
    bool subscribed = false;
    std::vector<unsigned> sources;  // indexes of this run's publishers whose topic matches
    std::unordered_map<std::uint64_t, sequence_tracker> seen;  // by run id << 32 | publisher
    std::uint64_t received = 0;                                // bench payloads, duplicates too
    std::uint64_t unique = 0;
    std::uint64_t foreign = 0;
};

// One event loop: an io_context run by one thread, the clients it drives and what they
// measured. The settings below are written by the orchestrator through on_each_loop, so on
// this loop's thread too.
struct loop_state {
    asio::io_context io{1};
    std::vector<bench_client*> clients;
    loop_tally tally;
    std::uint64_t warm_ns = 0;         // the warm-up's end as a payload stamp (sub: its length)
    std::uint64_t first_stamp_ns = 0;  // sub: the send stamp of the run's first delivery
    bool stop_publishing = false;
};

// What the orchestrator reads of a client: a copy made on the client's loop.
struct client_view {
    bool connected = false;
    bool failed = false;
    bool subscribed = false;
    bool publishing = false;
    bool open = false;
    bool acks_pending = false;
    std::uint64_t published = 0;
    std::uint64_t acked = 0;
    std::uint64_t unique = 0;
};

class run_state {
  public:
    run_state(const bench_config& cfg, std::ostream* progress, std::ostream* log);
    ~run_state();
    // Runs the whole run: the orchestrator and the first loop on the calling thread, the
    // other loops on threads of their own, joined before it returns.
    void run();
    run_results finish();

  private:
    asio::awaitable<void> orchestrate();

    // Connection driver (driver.cpp).
    asio::awaitable<void> connect_client(bench_client& c);
    asio::awaitable<boost::system::error_code> connect_from(bench_client& c,
                                                            const asio::ip::address& from);
    asio::awaitable<void> read_loop(bench_client& c);
    asio::awaitable<void> write_loop(bench_client& c);
    asio::awaitable<void> timer_loop(bench_client& c);
    asio::awaitable<void> publish_loop(bench_client& c);
    void changed(bench_client& c);
    void dispatch(bench_client& c, client::event& e, clock::time_point now);
    void on_message(bench_client& c, const protocol::publish_packet& m, clock::time_point now);
    void on_payload(bench_client& c, std::string_view payload, clock::time_point now);
    void respond(bench_client& c, const protocol::publish_packet& m, clock::time_point now);
    // `refusal`: empty when the broker accepted the message, else its reason.
    void on_ack(bench_client& c, std::uint64_t key, std::string_view refusal,
                clock::time_point now);
    void on_connected(bench_client& c, clock::time_point now);
    void on_suback(bench_client& c, bool ok);
    void on_closed(bench_client& c, const client::closed_event& e);
    void on_lost(bench_client& c, std::string what);
    bool window_open(const bench_client& c) const;
    // `p`: the publisher's packet, reused for every message (its payload rewritten in place).
    void publish_one(bench_client& c, clock::time_point now, protocol::publish_packet& p);
    void close_socket(bench_client& c);
    // A runtime error of a client, counted on its loop; of the orchestrator, on the first.
    void error(bench_client& c, std::string message) { c.loop.tally.error(std::move(message)); }
    void orchestrator_error(std::string message) {
        loops_.front()->tally.error(std::move(message));
    }
    // Either protocol: the session's state and requests.
    bool session_closed(const bench_client& c) const;
    void subscribe_one(bench_client& c, std::string filter);
    void disconnect_one(bench_client& c);

    // MQTT-SN driver (driver_mqttsn.cpp): the same roles over UDP.
    asio::awaitable<void> connect_client_sn(bench_client& c);
    asio::awaitable<void> read_loop_sn(bench_client& c);
    asio::awaitable<void> write_loop_sn(bench_client& c);
    asio::awaitable<void> timer_loop_sn(bench_client& c);
    void changed_sn(bench_client& c);
    void dispatch_sn(bench_client& c, client::mqttsn::event& e, clock::time_point now);
    bool window_open_sn(const bench_client& c) const;
    bool publish_sn(bench_client& c, const std::string& payload, std::uint64_t& key);

    // Loops (runner.cpp): f(loop) on each loop's thread in turn, the first's inline; the
    // views of every client and the loops' error count and last CONNACK, fresh.
    template <class F>
    asio::awaitable<void> on_each_loop(F f);
    asio::awaitable<void> refresh();
    const client_view& view(const bench_client* c) const { return views_[c->id]; }
    void start_threads();

    // Phases (runner.cpp).
    asio::awaitable<void> sleep_until(clock::time_point t);
    template <class Pred>
    asio::awaitable<bool> wait_for(Pred done, clock::time_point deadline);
    asio::awaitable<bool> connect_all();
    asio::awaitable<bool> subscribe_all();
    asio::awaitable<void> publish_all();
    asio::awaitable<void> shutdown_all();
    void make_clients();
    bool publishers_finished() const;
    bool deliveries_complete() const;
    bool progress_due(clock::time_point now) const;
    void print_progress(clock::time_point now);
    void log(const std::string& line);
    void collect(run_results& r);

    bench_config cfg_;
    std::ostream* progress_;
    std::ostream* log_;
    std::uint32_t run_id_;
    std::vector<std::unique_ptr<loop_state>> loops_;  // the first one runs the orchestrator
    std::vector<std::thread> threads_;                // the other loops'
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> idle_;
    // sub: the send stamp of the run's first delivery, whichever loop got it (0: none yet).
    std::atomic<std::uint64_t> first_stamp_ns_{0};
    std::vector<client_view> views_;    // by client id, as of the last refresh()
    std::size_t errors_seen_ = 0;       // distinct errors on every loop, as of refresh()
    clock::time_point last_connack_{};  // as of refresh()
    tcp::resolver::results_type endpoints_;
    net::tls_context_ptr tls_;  // with cfg_.tls: built once before connecting
    // cfg_.sources; client n connects from sources_[n % size].
    std::vector<asio::ip::address> sources_;
    std::vector<std::unique_ptr<bench_client>> clients_;  // subscribers first, then publishers
    std::vector<bench_client*> publishers_;
    std::vector<bench_client*> subscribers_;
    // shared: the group receives each message once, whichever member gets it (each loop
    // keeps the view of its members in its tally); the publishers whose topics its filter
    // matches.
    std::vector<unsigned> group_sources_;
    run_results r_;
    clock::time_point t0_{};         // run start
    clock::time_point hard_stop_{};  // t0 + time_limit
    clock::time_point t_start_{};    // publishing (sub: receiving) starts
    clock::time_point t_warm_{};     // warm-up ends
    clock::time_point last_progress_{};
};

std::uint64_t to_ns(clock::time_point t) noexcept;

}  // namespace mqtt::bench::detail
