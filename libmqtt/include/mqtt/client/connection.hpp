#pragma once

// One client connection over TCP: the Asio coroutine driver of a client::session, behind a
// blocking facade for programs that do one thing at a time (tern-pub, tern-sub). Requests
// queue work and return at once; run_until() serves the socket and the timers until the
// caller's condition holds. The header stays free of Asio; net_client.cpp holds it all.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "mqtt/client/session.hpp"
#include "mqtt/net/tls.hpp"

namespace mqtt::client {

struct connection_config {
    std::string host = "localhost";
    std::uint16_t port = 1883;
    session_config session;
    // Set: TLS towards the broker (mqtts://, --cafile, ...); the certificate must name
    // `host` unless tls->insecure.
    std::optional<net::tls_client_settings> tls;
    // Set: MQTT over WebSocket (ws://, or wss:// with tls) with this request path ("/").
    std::optional<std::string> websocket_path;
    // SIGINT and SIGTERM end run_until() and set interrupted(), so the program can say
    // goodbye (DISCONNECT) instead of dying mid-write.
    bool handle_signals = false;
    // How long disconnect() waits for the last bytes to be written.
    std::chrono::milliseconds close_grace{3'000};
};

class connection {
  public:
    explicit connection(connection_config cfg);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // Resolves the host, connects over TCP and, with TLS, shakes hands (all within the
    // session's connect timeout), sends CONNECT and waits for CONNACK. Errors: a system error
    // (refused, unreachable, name not found), errc::tls_failed (see transport_error()),
    // errc::connect_timeout, errc::connection_refused (see session().connack()),
    // std::errc::interrupted on a signal, or whatever closed the session.
    std::error_code connect();

    result<std::uint16_t> publish(protocol::publish_packet p);
    result<std::uint16_t> subscribe(std::vector<protocol::subscription> subs,
                                    protocol::properties props = {});
    result<std::uint16_t> unsubscribe(std::vector<std::string> filters,
                                      protocol::properties props = {});

    // Serves I/O until done() holds, the session closed, a signal arrived, or the deadline
    // passed; returns done(). Events queue up in the session meanwhile: take_events().
    bool run_until(const std::function<bool()>& done,
                   clock::time_point deadline = clock::time_point::max());
    // Runs what is ready (completed reads and writes, expired timers) without waiting.
    void poll();
    std::vector<event> take_events() { return session_.take_events(); }

    // Sends DISCONNECT (if connected), waits up to close_grace for every queued byte to be
    // written, and closes the socket. True when everything was written.
    bool disconnect(protocol::reason_code rc = protocol::reason_code::success);
    // The same with DISCONNECT properties (MQTT 5.0).
    bool disconnect(protocol::reason_code rc, protocol::properties props);

    // Once the session closed (a lost connection): a new TCP connection, then the session's
    // reconnect() (clean start off, unacknowledged messages sent again at CONNACK); returns
    // as connect() does. Back-off between attempts is the caller's (see backoff.hpp).
    std::error_code reconnect();
    // Serves the connection and the signals until `until` or a signal (for back-off waits).
    void sleep_until(clock::time_point until);

    bool interrupted() const noexcept;
    // Why the last connect() or reconnect() failed with errc::tls_failed, in words
    // ("certificate verify failed: certificate has expired").
    const std::string& transport_error() const noexcept;
    const session& state() const noexcept { return session_; }
    // Whether bytes are still queued in the session or being written to the socket.
    bool output_pending() const noexcept;

    struct impl;

  private:
    session session_;
    std::unique_ptr<impl> impl_;
};

// One line for stderr about why a connection ended or could not start: the error, and the
// broker's reason code (with its 3.1.1 return code or 5.0 Reason String) when it gave one.
std::string describe_failure(const session& s, std::error_code ec, protocol::reason_code reason,
                             const std::string& reason_string);

// The same for a connect() or reconnect() that failed with `ec`: the session's close
// information, or the transport's error for errc::tls_failed.
std::string describe_failure(const connection& c, std::error_code ec);

// The exit status for a connection that could not start: the broker's CONNACK code when it
// refused (1 to 5 in MQTT 3.1/3.1.1, 0x80 to 0xA2 in 5.0, as mosquitto_pub and mosquitto_sub
// do), 1 for anything else.
int connect_failure_status(const session& s, std::error_code ec, protocol::reason_code reason);

// The CONNACK part of the exit status table, for the --help of tern-pub and tern-sub.
std::string connack_exit_status_help();

}  // namespace mqtt::client
