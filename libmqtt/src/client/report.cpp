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

}  // namespace mqtt::client
