#pragma once

// tern-pub --json-in: one JSON object per line into a PUBLISH. The shape is tern-sub --json's
// (docs/json.md), so `tern-sub --json | tern-pub --json-in` republishes what it receives.

#include <optional>
#include <string>
#include <string_view>

#include "mqtt/protocol/packet.hpp"

namespace mqtt::format {

// RFC 4648 base64 with padding (whitespace not allowed); std::nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view text);

// What a line does not say: the command line's -t, -q and -r.
struct json_in_defaults {
    std::string topic;  // empty: every line needs "topic"
    protocol::qos qos = protocol::qos::at_most_once;
    bool retain = false;
};

// The message of one line, or why the line is not one. Fields: "topic" (string), exactly one
// of "payload" (string) and "payload_base64" (string), "qos" (0, 1 or 2), "retain" (bool),
// "properties" (object as tern-sub --json prints it). tern-sub's output-only fields ("dup",
// "mid", "received_at", and the properties "subscription_identifier" and "topic_alias") are
// accepted and ignored; any other field is an error, so a misspelt one does not go unnoticed.
struct json_in_result {
    protocol::publish_packet message;
    std::string error;  // empty when `message` is good
};
json_in_result parse_message_json(std::string_view line, const json_in_defaults& defaults);

}  // namespace mqtt::format
