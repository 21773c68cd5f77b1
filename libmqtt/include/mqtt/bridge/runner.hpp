#pragma once

// Runs bridges: for each, a connection to the local and one to the remote broker on one
// io_context, messages forwarded by the topic rules, a QoS 1/2 message acknowledged to its
// source only once the destination has acknowledged it; SIGHUP reloads (see
// run_options::reload). Returns when SIGINT or SIGTERM arrives. The header stays free of
// Asio; runner.cpp holds it all.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/bridge/config.hpp"
#include "mqtt/bridge/state.hpp"

namespace boost::asio {
class io_context;
}
namespace mqtt::net {
class transport;
}

namespace mqtt::bridge {

// What SIGHUP reads: the bridges anew, or why they cannot be had (the old ones then stay).
struct reload_result {
    std::vector<bridge_config> bridges;
    std::string error;  // "FILE:LINE: ..." for example; empty: use `bridges`
};

struct run_options {
    bool json = false;  // one JSON event per line on `out`; otherwise text lines on `log`
    int verbosity = 0;  // -1 errors only, 0 connects and disconnects, 1 and more: statistics
    std::chrono::milliseconds stats_interval{5'000};
    // Messages waiting for one destination (offline queue and unacknowledged) before the
    // bridge stops reading from the source broker, which then keeps them in its session.
    std::size_t max_pending = 10'000;
    std::chrono::milliseconds connect_timeout{10'000};
    // Called on SIGHUP (e.g. reads the -c file again). Unset: SIGHUP only says there is
    // nothing to reload. A bridge of the same name is updated in place when it can be (topic
    // rules; addresses, credentials and TLS of a side, which then reconnects; back-off),
    // started anew when client ids, protocol version, keep-alive, clean session, the bridge
    // flag or notifications changed (what it held unacknowledged its sources send again);
    // new names start, missing names stop.
    std::function<reload_result()> reload;
    // Set: events go here as text lines ("connected bridge=b side=remote ...") with the
    // verbosity from which tern-bridge would print them (-1 always, 0 by default, 1 with -v),
    // instead of to the streams (tern-broker's log).
    std::function<void(std::string_view event, int level, const std::string& text)> log;
    // Opens an `in_process` address: a connection to the broker this process runs
    // (tern-broker's bridges); nullptr and `why` when it cannot.
    std::function<std::unique_ptr<net::transport>(const bridge_config&, std::string& why)>
        connect_local;
    // run() only (tern-broker has its own): GET /metrics (the tern_bridge_* families) and
    // /healthz over HTTP on this numeric address and port (0: a free one); a
    // `metrics_listening` event gives the URL. Empty host: no listener.
    std::string metrics_host;
    std::uint16_t metrics_port = 0;
};

namespace detail {
class bridge_set;
}

// Bridges on an io_context someone else runs (tern-broker's event loop); tern-bridge's run()
// uses the same. All calls from that io_context's thread.
class host {
  public:
    host(boost::asio::io_context& io, run_options opts, std::ostream& out, std::ostream& log);
    ~host();
    host(const host&) = delete;
    host& operator=(const host&) = delete;

    // Opens the on-disk queues and starts the bridges: empty, or what stops the start
    // ("bridge 'b': queue_dir /x: ...").
    std::string start(std::vector<bridge_config> bridges);
    // A reload (SIGHUP): bridges matched by name are updated in place or restarted, new
    // ones start, missing ones stop; a `reloaded` event for each.
    void reload(std::vector<bridge_config> next);
    // DISCONNECT on both sides of every bridge; closed() once all connections are gone.
    void stop();
    bool closed() const;
    // Closes whatever is still open (after stop() and a grace period).
    void force_close();
    std::vector<bridge_state> states() const;

  private:
    std::unique_ptr<detail::bridge_set> set_;
};

// Loads the TLS files of every side of `b` that uses TLS, as a connection would: empty when
// they are fine, else what is wrong ("remote: cafile /x: cannot read: No such file or
// directory"), so a front end can refuse a bad configuration at once.
std::string check_tls(const bridge_config& b);

// Exit status: 0 after SIGINT or SIGTERM; 2 when a queue directory or the metrics listener
// cannot be had at start.
int run(std::vector<bridge_config> bridges, const run_options& opts, std::ostream& out,
        std::ostream& log);

}  // namespace mqtt::bridge
