#pragma once

// tern-pub's program: connect, publish from one payload source, wait until every message is
// handed over at its QoS, disconnect. The front end (tools/pub/main.cpp) only fills this in.

#include <cstdio>
#include <ostream>
#include <string>

#include "mqtt/client/connection.hpp"

namespace mqtt::client {

enum class payload_source { message, file, stdin_all, stdin_lines, empty };

struct pub_request {
    connection_config connection;
    std::string topic;
    protocol::qos qos = protocol::qos::at_most_once;
    bool retain = false;
    payload_source source = payload_source::message;
    std::string message;  // -m
    std::string file;     // -f
    unsigned repeat = 1;
    double repeat_delay = 0;  // seconds
    int verbosity = 0;        // > 0: a line on stderr per acknowledged message
    int input_fd = 0;         // where -s and -l read
};

// 0 when every message was acknowledged as its QoS promises (QoS 0: written, then
// DISCONNECT written); 1 with a line "<tool>: error: ..." on `err` otherwise.
int run_pub(const pub_request& req, std::ostream& err, const std::string& tool = "tern-pub");

}  // namespace mqtt::client
