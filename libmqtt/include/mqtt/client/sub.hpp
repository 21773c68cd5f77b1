#pragma once

// tern-sub's program: connect, subscribe, print each message as text or one JSON object per
// line (flushed per message, so `| jq` streams), until -C, -W, a signal or the connection ends.

#include <ostream>
#include <string>
#include <vector>

#include "mqtt/client/connection.hpp"
#include "mqtt/format/message_json.hpp"

namespace mqtt::client {

struct sub_request {
    connection_config connection;
    std::vector<std::string> topics;
    std::vector<std::string> filter_out;  // -T: do not print topics matching these
    protocol::qos qos = protocol::qos::at_most_once;
    bool json = false;
    bool print_topic = false;           // -v (text)
    bool no_eol = false;                // -N (text)
    bool skip_retained = false;         // -R
    bool exit_after_subscribe = false;  // -E
    unsigned count = 0;                 // -C; 0: no limit
    unsigned timeout = 0;               // -W seconds; 0: none
    int verbosity = 0;  // > 0: "subscribed ..." on stderr once the broker acknowledged
    std::vector<std::string> unsubscribe;    // -U: sent after SUBSCRIBE; alone: exit at UNSUBACK
    bool retained_only = false;              // print retained messages, end at the first other
    bool remove_retained = false;            // clear each retained message received
    protocol::subscription_options options;  // --no-local, --retain-as-published, ...
    protocol::properties subscribe_props;    // -D subscribe, --subscription-id
    protocol::properties unsubscribe_props;  // -D unsubscribe
    protocol::properties disconnect_props;   // -D disconnect
    format::json_options json_options;       // --pretty, --payload-format json
    bool reconnect = false;  // a lost connection: back off, reconnect, resubscribe if needed
    std::string format;      // -F: Mosquitto's format string (mqtt/format/format_string.hpp)
};

// Exit status of run_sub() when -W ran out (mosquitto_sub's value).
inline constexpr int sub_timeout_status = 27;

// 0 after -C messages, a signal (SIGINT/SIGTERM) or a clean end; 27 when -W ran out; 1 with
// a line "<tool>: error: ..." on `err` when the connection failed or a subscription was
// refused (with `json`, followed by {"error":"...","exit_status":1} on a line of its own).
int run_sub(const sub_request& req, std::ostream& out, std::ostream& err,
            const std::string& tool = "tern-sub");

}  // namespace mqtt::client
