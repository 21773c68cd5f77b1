#pragma once

// tern-pub's program: connect, publish from one payload source, wait until every message is
// handed over at its QoS, disconnect. The front end (tools/pub/main.cpp) only fills this in.

#include <cstdio>
#include <ostream>
#include <string>

#include "mqtt/client/connection.hpp"

namespace mqtt::client {

// json_lines: --json-in, one message per line as a JSON object (mqtt/format/message_json_in.hpp).
enum class payload_source { message, file, stdin_all, stdin_lines, empty, json_lines };

struct pub_request {
    connection_config connection;
    std::string topic;
    protocol::qos qos = protocol::qos::at_most_once;
    bool retain = false;
    payload_source source = payload_source::message;
    std::string message;  // -m
    std::string file;     // -f
    unsigned repeat = 1;
    double repeat_delay = 0;                // seconds
    int verbosity = 0;                      // > 0: a line on stderr per acknowledged message
    int input_fd = 0;                       // where -s, -l and --json-in read
    protocol::properties props;             // -D publish: on every message
    protocol::properties disconnect_props;  // -D disconnect
    double rate = 0;         // messages per second at most; 0: as fast as acknowledged
    bool reconnect = false;  // a lost connection: back off, reconnect, resend (else exit 1)
                             // (the first connection too)
    bool json = false;       // a JSON line on `out` per message handed over, errors as JSON too
};

// 0 when every message was acknowledged as its QoS promises (QoS 0: written, then
// DISCONNECT written); 1 with a line "<tool>: error: ..." on `err` otherwise (with --json-in,
// a line that is not a message stops the program: "line N: why"; the lines before it are
// still handed over). With `reconnect`, a failed first connection or a lost one is reported
// on `err` and retried with jittered exponential back-off until it succeeds, the broker
// refuses the connection, or a signal arrives. With `json`, each message handed over is a
// line on `out` (format::append_publish_result_json), and an error is followed by a JSON
// error object on `err`.
int run_pub(const pub_request& req, std::ostream& out, std::ostream& err,
            const std::string& tool = "tern-pub");

}  // namespace mqtt::client
