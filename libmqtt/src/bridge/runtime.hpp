#pragma once

// Internal to the bridge runner: one endpoint (a connection to one broker) and one running
// bridge (two endpoints, the topic map, the counters). Everything runs on one io_context
// thread, so nothing here is locked.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "mqtt/bridge/config.hpp"
#include "mqtt/bridge/disk_queue.hpp"
#include "mqtt/bridge/echo_filter.hpp"
#include "mqtt/bridge/runner.hpp"
#include "mqtt/bridge/topic_map.hpp"
#include "mqtt/client/backoff.hpp"
#include "mqtt/client/session.hpp"
#include "mqtt/protocol/framer.hpp"
#include "net/transport/tls.hpp"
#include "net/transport/transport.hpp"
#include "net/transport/ws.hpp"

namespace mqtt::bridge::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using client::clock;

class bridge_runtime;
struct endpoint;

// Events for people (text on the log stream) or programs (JSON lines on stdout).
class output {
  public:
    // With `lines` set, events go there as text (run_options::log) instead of the streams.
    output(std::ostream& out, std::ostream& log, bool json, int verbosity,
           std::function<void(std::string_view, int, const std::string&)> lines = {})
        : out_(out), log_(log), json_(json), verbosity_(verbosity), lines_(std::move(lines)) {}

    struct field {
        std::string_view name;
        std::string text;  // used when !is_number
        std::uint64_t number = 0;
        bool is_number = false;
        bool is_bool = false;
    };
    static field str(std::string_view n, std::string v) {
        return {n, std::move(v), 0, false, false};
    }
    static field num(std::string_view n, std::uint64_t v) { return {n, {}, v, true, false}; }
    static field boolean(std::string_view n, bool v) { return {n, {}, v ? 1u : 0u, false, true}; }

    // `level`: the verbosity from which the text form is printed (JSON always is).
    void event(std::string_view name, const std::vector<field>& fields, int level = 0);

  private:
    std::ostream& out_;
    std::ostream& log_;
    bool json_;
    int verbosity_;
    std::function<void(std::string_view, int, const std::string&)> lines_;
};

// A message received from one side, waiting for the other side to be connected.
struct pending_message {
    protocol::publish_packet message;
    std::uint64_t token = 0;  // the source session's ack token (0: nothing to acknowledge)
};

struct endpoint {
    endpoint(asio::io_context& io, bridge_runtime& b, bool remote_side);

    bridge_runtime& owner;
    bool remote;  // which side of the bridge
    std::optional<client::session> s;
    tcp::socket socket;                         // while connecting; then moved into `transport`
    std::unique_ptr<net::transport> transport;  // TCP or TLS, while connected
    net::tls_context_ptr tls;                   // built at the first TLS connect, kept
    asio::steady_timer wake_writer;             // never expires: cancelled when there is output
    asio::steady_timer timer;                   // the session's deadline
    asio::steady_timer wake_reader;  // never expires: cancelled to resume a paused reader
    asio::steady_timer loops_done;   // never expires: cancelled when the three loops ended
    asio::steady_timer pause;        // the back-off between attempts
    asio::steady_timer probe_timer;  // on a secondary address: when to try the main one
    unsigned generation = 0;         // connections served, so a probe knows its own
    protocol::framer framer;
    std::vector<std::uint8_t> writing;
    clock::time_point armed = clock::time_point::max();
    client::backoff retry;
    std::size_t index = 0;    // into side().addresses
    std::string peer;         // "host:port" of the current or last attempt
    std::string refused_tls;  // set when the broker refused our TLS connection after the handshake
    int loops = 0;
    unsigned failures_in_row = 0;  // connection attempts since the last CONNACK
    std::uint64_t connects = 0;    // CONNACKs received since the bridge started
    bool open = false;
    bool connected = false;
    bool ever_connected = false;
    bool ever_connected_this_time = false;
    bool use_private = false;    // set by the runtime from try_private
    bool paused = false;         // not reading: the other side has too much waiting
    bool renew_session = false;  // a new session (without the bridge flag) before the next try
    bool reconnect_now = false;  // after a reload changed this side: no back-off wait
    // What this session asked the broker for (filter -> QoS), so a reload can unsubscribe
    // what no rule needs any more; cleared when the broker did not keep the session.
    std::map<std::string, protocol::qos> subscribed;

    // Messages published to this side: our packet id -> the source's ack token.
    std::unordered_map<std::uint16_t, std::uint64_t> awaiting;
    // Messages for this side while it is down, in arrival order; with the on-disk queue,
    // the QoS 1/2 messages that found it full (block): the source is paused meanwhile.
    std::deque<pending_message> queue;
    // The on-disk queue of QoS 1/2 messages for this side (queue_dir), owned by the bridge.
    disk_queue* dq = nullptr;
    // Source ack tokens of records appended to `dq` and not yet committed.
    std::vector<std::uint64_t> commit_tokens;
    bool dq_blocked = false;        // the queue was full (block): `queue` holds what waits
    bool save_before_send = false;  // a PUBREC arrived: the state goes to disk before PUBREL
    bool dq_failing = false;        // a write failed (reported once until one succeeds)
    // What we published to this broker, to recognise it when it comes back (before 5.0).
    echo_filter echoes{65536, std::chrono::seconds{10}};

    const side_config& side() const;
    void make_session();
    void changed();
    void close_socket();
    void stop();
    // The side's addresses, credentials or TLS changed (a reload): new credentials for the
    // next CONNECT, a new TLS context, and a new connection at once, from the first address;
    // the session (and what waits in it) is kept.
    void restart_connection();
    asio::awaitable<void> run();
    asio::awaitable<void> serve();
    asio::awaitable<boost::system::error_code> tcp_connect(const address& a, tcp::socket& socket);
    // TCP, then the TLS handshake for a TLS address; on failure `why` says what went wrong.
    asio::awaitable<bool> open_transport(const address& a, std::string& why);
    asio::awaitable<void> return_to_main(unsigned gen);
    asio::awaitable<void> read_loop();
    asio::awaitable<void> write_loop();
    asio::awaitable<void> timer_loop();
};

struct counters {
    std::uint64_t forwarded_out = 0;  // local -> remote, handed over (acknowledged at QoS > 0)
    std::uint64_t forwarded_in = 0;   // remote -> local
    std::uint64_t dropped_loop = 0;   // our own messages coming back
    std::uint64_t dropped_no_route = 0;
    std::uint64_t dropped_refused = 0;     // the destination refused or could not take it
    std::uint64_t dropped_offline = 0;     // QoS 0 while the destination was down
    std::uint64_t dropped_queue_full = 0;  // the on-disk queue was full (drop-new, drop-oldest)
};

// The on-disk queues of one bridge, one per destination side (none without queue_dir).
struct queue_pair {
    std::unique_ptr<disk_queue> to_local;
    std::unique_ptr<disk_queue> to_remote;
    std::string error;  // a directory that cannot be used
};
// Opens DIR/<bridge>.local and DIR/<bridge>.remote, reporting what recovery found.
queue_pair open_queue_pair(const bridge_config& cfg, output& out);

class bridge_runtime {
  public:
    bridge_runtime(asio::io_context& io, bridge_config cfg, const run_options& opts, output& out,
                   std::mt19937_64& rng);

    void start();
    void stop();

    // A reload: whether `next` differs from the running configuration in what only a new
    // bridge can take (client ids, protocol version, keep-alive, clean session, the bridge
    // flag, notifications), and otherwise apply it in place: new topic rules (subscribe and
    // unsubscribe on the connected sides), new addresses, credentials or TLS settings (that
    // side reconnects), new back-off. Messages waiting or in flight are kept.
    bool needs_restart(const bridge_config& next) const;
    struct change {
        bool rules = false;
        bool local = false;  // the local side reconnects
        bool remote = false;
    };
    change reconfigure(bridge_config next);
    bool closed() const { return !local.open && !remote.open; }
    void report_stats();
    bridge_state state() const;
    // Closes both connections at once (after stop() and a grace period).
    void force_close();

    // A queue directory that cannot be used (the bridge then runs without the queue).
    const std::string& queue_error() const { return queues_.error; }
    disk_queue* queue_for(bool remote_side) const {
        return remote_side ? queues_.to_remote.get() : queues_.to_local.get();
    }
    // From the endpoints.
    void on_event(endpoint& e, client::event& ev);
    // After a batch of frames, before anything is written: the state of the on-disk queue
    // goes to disk when a PUBREC arrived (its PUBREL waits in the session's output).
    void after_input(endpoint& e);
    void on_connect_failed(endpoint& e, const std::string& why);
    void on_main_back(endpoint& e);
    double random();

    // Declared before the endpoints, which read them while they are built.
    asio::io_context& io;
    bridge_config cfg;  // changed in place by reconfigure()
    const run_options& opts;
    output& out;
    bool stopping = false;

  private:
    std::mt19937_64& rng_;
    topic_map map_;
    counters n_;
    queue_pair queues_;  // before the endpoints, which take their queue when built
    asio::steady_timer queue_timer_;
    bool commit_posted_ = false;

  public:
    endpoint local;
    endpoint remote;

  private:
    endpoint& other(endpoint& e) { return e.remote ? local : remote; }
    void on_connected(endpoint& e, const client::connected_event& c);
    void on_closed(endpoint& e, const client::closed_event& c);
    void on_message(endpoint& from, client::message_event& m);
    void on_done(endpoint& to, const client::publish_done_event& d);
    void send(endpoint& to, pending_message m);
    void acknowledge(endpoint& from, std::uint64_t token);
    void update_pause(endpoint& to);
    // The on-disk queue (queue.cpp).
    void close_queues();
    bool enqueue(endpoint& to, pending_message& m, std::uint16_t source_id, bool dup);
    void schedule_commit();
    void commit_queues();
    void pump(endpoint& to);
    bool on_queue_done(endpoint& to, const client::publish_done_event& d);
    void queue_tick();
    void report_queue_problems(endpoint& to);
    std::vector<std::uint8_t> queue_body(const protocol::publish_packet& p) const;
    // Subscribes to what the rules need on `e` (all of it with `all`, else what is new or
    // changed) and unsubscribes from what they no longer need.
    void sync_subscriptions(endpoint& e, bool all);
    void publish_state(bool up);
    std::vector<output::field> base_fields(const endpoint& e) const;
};

}  // namespace mqtt::bridge::detail
