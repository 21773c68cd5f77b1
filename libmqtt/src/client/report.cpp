// describe_failure(): the one place that words a connection's end for stderr.

#include <cstdio>

#include "mqtt/client/connection.hpp"

namespace mqtt::client {
namespace {

std::string hex(protocol::reason_code rc) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(rc));
    return buf;
}

}  // namespace

std::string describe_failure(const session& s, std::error_code ec, protocol::reason_code reason,
                             const std::string& reason_string) {
    std::string out;
    if (ec == errc::connection_refused) {
        out = "the broker refused the connection: ";
        if (protocol::is_v5(s.version())) {
            out += std::string(protocol::to_string(reason)) + " (" + hex(reason) + ")";
        } else {
            const auto code = static_cast<int>(protocol::to_connect_return_code(reason));
            out += "return code " + std::to_string(code) + " (" +
                   std::string(protocol::to_string(reason)) + ")";
        }
    } else if (ec == errc::disconnected_by_server) {
        out = "the broker sent DISCONNECT: " + std::string(protocol::to_string(reason)) + " (" +
              hex(reason) + ")";
    } else if (s.state() != session_state::idle && ec.category() != client_category()) {
        out = "connection lost: " + ec.message();  // an I/O error after TCP connected
    } else {
        out = ec.message();
    }
    if (!reason_string.empty()) out += ": " + reason_string;
    return out;
}

std::string describe_failure(const connection& c, std::error_code ec) {
    if (ec == errc::tls_failed || ec == errc::websocket_failed) return c.transport_error();
    const auto& info = c.state().close_info();
    return describe_failure(c.state(), ec, info.reason, info.reason_string);
}

int connect_failure_status(const session& s, std::error_code ec, protocol::reason_code reason) {
    if (ec != errc::connection_refused) return 1;
    if (protocol::is_v5(s.version())) return static_cast<int>(reason);
    return static_cast<int>(protocol::to_connect_return_code(reason));
}

std::string connack_exit_status_help() {
    return "  1-5  the broker refused the connection (MQTT 3.1/3.1.1): its CONNACK return "
           "code (1 protocol version, 2 client id, 3 server unavailable, 4 user name or "
           "password, 5 not authorized); stderr names it, as 1, 2 and 3 also have the meanings "
           "above\n"
           "  128-162  the broker refused the connection (MQTT 5.0): its CONNACK reason code "
           "(e.g. 134 bad user name or password, 135 not authorized)\n";
}

}  // namespace mqtt::client
