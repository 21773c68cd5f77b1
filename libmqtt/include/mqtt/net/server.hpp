#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mqtt/broker/config.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/limits.hpp"
#include "mqtt/broker/mqttsn_gateway.hpp"
#include "mqtt/broker/log_event.hpp"
#include "mqtt/net/tls.hpp"
#include "mqtt/result.hpp"

namespace mqtt::net {

struct listen_address {
    std::string host;        // a numeric IPv4 or IPv6 address: "127.0.0.1", "::1", "0.0.0.0"
    std::uint16_t port = 0;  // 0: a free port, the same one for every address of the group
    // Addresses with the same group are one listener of the configuration file ("listener
    // 1883" is 0.0.0.0 and ::): they share a free port and the max_connections bound.
    std::size_t group = 0;
    std::optional<std::size_t> max_connections{};  // per group, from its first address
    // Set: the group speaks TLS with these settings (per group, from its first address).
    std::shared_ptr<const tls_server_settings> tls{};
    // MQTT over WebSocket (wss with tls), per group; the request path it accepts, empty: any.
    bool websockets = false;
    std::string websockets_path{};
};

// An MQTT-SN gateway on UDP (docs/mqtt-sn.md): its clients are sessions of the engine.
struct mqttsn_listen_address {
    std::string host;        // numeric IPv4 or IPv6 address
    std::uint16_t port = 0;  // 0: a free port
    std::size_t group = 0;   // the listener of the configuration file (set_max_connections)
    // Its max_connections: the clients one address holds at most (a CONNECT over it gets
    // CONNACK rejected: congestion). nullopt: the broker's bound, limits::max_connections,
    // which counts every connected session (MQTT and MQTT-SN).
    std::optional<std::size_t> max_connections{};
    broker::mqttsn_settings settings;
};

// Loads the certificates and keys of `s` as a listener would; empty when they are usable,
// otherwise what is wrong ("FILE:LINE: certfile /x.pem: cannot read: No such file or
// directory"), for a front end to report before it starts serving.
std::string check_tls_settings(const tls_server_settings& s);

struct server_options {
    std::vector<listen_address> listeners{{"127.0.0.1", 1883}, {"::1", 1883}};
    broker::limits limits;
    // Stop on SIGINT and SIGTERM (5.0 clients get DISCONNECT 0x8B).
    bool handle_signals = false;
    broker::log_function log;  // may be empty
    // When set, every log record goes here as a structured event instead of to `log`
    // (the engine's text lines are classified by broker::classify_log_line).
    broker::event_function events;
    int verbosity = 0;
    // How long a TLS or WebSocket client has for its handshake(s) after the TCP accept, at
    // most: the CONNECT deadline (limits::connect_timeout) counts from the accept too and
    // cuts the handshake short when it is shorter.
    std::chrono::milliseconds tls_handshake_timeout{10'000};
    // Seconds between updates of the $SYS/broker/... topics (broker::sys_topics); 0: none.
    std::chrono::seconds sys_interval{0};
    // allow_anonymous, password_file, acl_file; nullptr: anonymous clients, no checks.
    std::shared_ptr<const broker::security_policy> security;
    // per_listener_settings: the policy of each listener group (listen_address::group, and
    // the index of an MQTT-SN listener); the group's clients use it instead of `security`.
    // The engine holds it in security slot group + 1.
    std::map<std::size_t, std::shared_ptr<const broker::security_policy>> listener_security;
    // With handle_signals: called on SIGHUP, on the run() thread.
    std::function<void()> on_reload;
    // The store on disk (docs/persistence.md); enabled = false keeps everything in memory.
    broker::persistence_config persistence;
    // MQTT-SN gateways on UDP, beside the TCP listeners.
    std::vector<mqttsn_listen_address> mqttsn_listeners;
    // metrics_listener: HTTP /metrics and /healthz on this address (port 0: a free port);
    // nullopt: none (docs/metrics.md).
    std::optional<listen_address> metrics;
    // `connection` blocks: bridges run on the broker's event loop with the bridge code of
    // tern-bridge; their local side is an in-process connection to this broker (an in-memory
    // byte stream pair, no socket), not subject to allow_anonymous, password_file or acl_file.
    std::vector<bridge::bridge_config> bridges;
    // Event loops (`threads`, docs/broker.md "Threading"): with more than one, each loop (a
    // shard) has its own engine and every connection is served by the shard of its client
    // id. Only plain TCP listeners, no store, bridges, MQTT-SN, metrics or $SYS then (the
    // configuration refuses the rest).
    std::size_t threads = 1;
    // With threads > 1: messages in flight from one shard to another (shard_channel_limits::
    // max_items); publishers pause at this / (threads + 1). Past it, what a shard sends
    // waits in memory on the sending shard. Not a configuration option: tests make it
    // small to reach it.
    std::size_t shard_channel_items = 65'536;
    // With threads > 1: publishers also pause from this many message bytes in flight from
    // one shard to another (shard_channel_limits::high_water_bytes), so that large messages
    // wait in their publishers' sockets, not in memory (at 1 MiB, 16 of them, not a third of
    // shard_channel_items). Not a configuration option.
    std::size_t shard_channel_bytes = 16u << 20;
};

// The TCP MQTT server: listeners, one driver per connection, one broker engine, all on one
// event loop (one thread) in this slice. The header stays free of Asio so a front end that
// only starts a server compiles in a blink. Not copyable; create() binds, run() serves.
class server {
  public:
    // Binds every listener. A listener that cannot be bound fails the whole call, except
    // an IPv6 one on a host without IPv6, which is skipped and reported in warnings().
    // On failure, `failed` (when given) names the address that could not be bound, or is
    // "store PATH" when the persistence store cannot be written.
    static result<std::unique_ptr<server>> create(server_options opts,
                                                  std::string* failed = nullptr);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // "127.0.0.1:40123", "[::1]:40123": what is actually bound, in listener order.
    std::vector<std::string> local_addresses() const;
    std::uint16_t port() const;  // the first listener's port
    // The MQTT-SN gateways' UDP addresses, "127.0.0.1:40123", in order.
    std::vector<std::string> mqttsn_addresses() const;
    // The metrics listener's "127.0.0.1:40123"; empty without one.
    std::string metrics_address() const;
    const std::vector<std::string>& warnings() const;

    // Serves until stop() (or a signal, with handle_signals) and every connection is closed.
    void run();
    // Thread-safe, idempotent: closes the listeners and every connection.
    void stop();

    // Changes the max_connections bound of a listener group (TCP or MQTT-SN); from the run()
    // thread only (on_reload). Connections (MQTT-SN clients) already open stay.
    void set_max_connections(std::size_t group, std::optional<std::size_t> max);

    // New TLS settings for a listener group (SIGHUP: renewed certificates); from the run()
    // thread only. Connections already open keep theirs. Empty on success, otherwise what
    // is wrong, and the group keeps its current settings.
    std::string set_tls(std::size_t group, const tls_server_settings& s);

    // The limits a reload may change (broker::copy_reloadable), from the run() thread.
    void set_limits(const broker::limits& l);

    // Replaces allow_anonymous, the passwords and the ACL (SIGHUP); from the run() thread
    // only. The ACL applies to connected clients at once; passwords to the next CONNECT.
    void set_security(std::shared_ptr<const broker::security_policy> p);
    // The same for one listener group's own policy (per_listener_settings).
    void set_listener_security(std::size_t group, std::shared_ptr<const broker::security_policy> p);

    // New mqttsn_* settings for every MQTT-SN gateway (SIGHUP), from the run() thread; each
    // value from its next use (a retransmission already scheduled keeps its time, a connected
    // client its in-flight window). The listeners' security slots and ADVERTISE stay.
    void set_mqttsn(const broker::mqttsn_settings& s);

    // The bridges after a reload (SIGHUP), from the run() thread: each bridge is updated in
    // place, restarted, started or stopped as tern-bridge does on SIGHUP (docs/bridge.md).
    void set_bridges(std::vector<bridge::bridge_config> bridges);

    // Counters, every shard's summed (threads > 1); read them after run() returned (with one
    // thread also from the run() thread).
    broker::stats stats() const;

    struct impl;

  private:
    explicit server(std::unique_ptr<impl> i);
    std::unique_ptr<impl> impl_;
};

}  // namespace mqtt::net
