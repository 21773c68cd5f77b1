#pragma once

// tern-pub and tern-sub over MQTT-SN 1.2 (an mqttsn:// URL): the same requests as over MQTT
// (pub_request, sub_request: host, port, client id, keep-alive, clean session, topic, QoS,
// payload sources, -C, -W, -T, -v, -F, --json) and the same output, through a UDP socket to a
// gateway and client::mqttsn::session. What has no MQTT-SN counterpart (properties, TLS,
// --reconnect, --json-in, retained-message options) is refused by the front ends.

#include <cstdint>
#include <map>
#include <ostream>
#include <string>

#include "mqtt/client/pub.hpp"
#include "mqtt/client/sub.hpp"

namespace mqtt::client {

struct mqttsn_request {
    // --sn-predefined ID:TOPIC: topic ids the gateway has predefined. A topic (or filter)
    // that is one of them is published (subscribed) by its id, without REGISTER; messages
    // arriving by one of these ids are named by it.
    std::map<std::uint16_t, std::string> predefined;
    // tern-pub --qos-minus-one: QoS -1, PUBLISH datagrams without a connection, to a
    // predefined id or a two-character topic (short topic name).
    bool qos_minus_one = false;
    // T_RETRY, N_RETRY of the client.
    unsigned retry_seconds = 10;
    unsigned retry_count = 3;
};

// Exit statuses as run_pub / run_sub: 0 done, 1 with "<tool>: error: ..." on `err` (and a
// JSON error object with --json), 27 when tern-sub's -W ran out.
int run_mqttsn_pub(const pub_request& req, const mqttsn_request& sn, std::ostream& out,
                   std::ostream& err, const std::string& tool = "tern-pub");
int run_mqttsn_sub(const sub_request& req, const mqttsn_request& sn, std::ostream& out,
                   std::ostream& err, const std::string& tool = "tern-sub");

}  // namespace mqtt::client
