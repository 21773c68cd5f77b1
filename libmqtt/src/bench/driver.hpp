#pragma once

// Internal to the bench: one bench connection (socket, session, timers) and the state of a
// run that all connections share. Everything runs on one io_context thread, so nothing here
// is locked; coroutines wake each other by cancelling never-expiring timers.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <ostream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mqtt/bench/config.hpp"
#include "mqtt/bench/rate.hpp"
#include "mqtt/bench/results.hpp"
#include "mqtt/bench/sequence.hpp"
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

struct bench_client {
    bench_client(asio::io_context& io, role r, unsigned index, client::session_config cfg);

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
    bool open = false;       // socket connected and not yet closed by us
    bool attempted = false;  // connect started
    bool connected = false;  // CONNACK accepted
    bool failed = false;     // could not connect, or lost the connection
    bool done = false;       // being shut down by the run: no more errors from it

    // Publisher.
    std::string topic;
    rate_limiter limiter{0, clock::time_point{}};
    std::uint64_t next_seq = 0;
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

class run_state {
  public:
    run_state(const bench_config& cfg, std::ostream* progress, std::ostream* log);
    run_results finish();
    asio::io_context io{1};

    asio::awaitable<void> orchestrate();

  private:
    // Connection driver (driver.cpp).
    asio::awaitable<void> connect_client(bench_client& c);
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
    void publish_one(bench_client& c, clock::time_point now, std::string& payload);
    void close_socket(bench_client& c);
    void error(std::string message);
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
    void print_progress(clock::time_point now);
    void log(const std::string& line);
    void collect(run_results& r) const;

    bench_config cfg_;
    std::ostream* progress_;
    std::ostream* log_;
    std::uint32_t run_id_;
    tcp::resolver::results_type endpoints_;
    net::tls_context_ptr tls_;  // with cfg_.tls: built once before connecting
    std::vector<std::unique_ptr<bench_client>> clients_;  // subscribers first, then publishers
    std::vector<bench_client*> publishers_;
    std::vector<bench_client*> subscribers_;
    // shared: the group receives each message once, whichever member gets it. Its view of
    // each publisher (by index), and the publishers whose topics its filter matches.
    std::unordered_map<std::uint32_t, sequence_tracker> group_seen_;
    std::vector<unsigned> group_sources_;
    run_results r_;
    std::vector<std::pair<std::string, std::uint64_t>> errors_;  // distinct, with counts
    clock::time_point t0_{};                                     // run start
    clock::time_point hard_stop_{};                              // t0 + time_limit
    clock::time_point t_start_{};       // publishing (sub: receiving) starts
    clock::time_point t_warm_{};        // warm-up ends
    std::uint64_t warm_ns_ = 0;         // t_warm_ as a payload stamp (sub: the warm-up length)
    std::uint64_t first_stamp_ns_ = 0;  // sub: the send stamp of the first delivery
    clock::time_point last_publish_{};
    clock::time_point last_ack_{};
    clock::time_point first_receive_{};
    clock::time_point last_receive_{};
    clock::time_point last_progress_{};
    clock::time_point last_connack_{};
    bool stop_publishing_ = false;
};

std::uint64_t to_ns(clock::time_point t) noexcept;

}  // namespace mqtt::bench::detail
