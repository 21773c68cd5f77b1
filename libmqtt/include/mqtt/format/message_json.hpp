#pragma once

// How a received message is printed: text, or one JSON object per line (NDJSON). Every
// field name of the JSON lines is defined here and nowhere else.

#include <chrono>
#include <string>
#include <string_view>

#include "mqtt/format/json_string.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::format {

namespace json_field {
inline constexpr std::string_view topic = "topic";
inline constexpr std::string_view payload = "payload";                // valid UTF-8 payloads
inline constexpr std::string_view payload_base64 = "payload_base64";  // any other payload
inline constexpr std::string_view qos = "qos";
inline constexpr std::string_view retain = "retain";
inline constexpr std::string_view dup = "dup";
inline constexpr std::string_view mid = "mid";  // packet identifier, QoS 1 and 2 only
inline constexpr std::string_view received_at = "received_at";
inline constexpr std::string_view properties = "properties";  // MQTT 5.0 only
// tern-pub --json: what became of each message.
inline constexpr std::string_view seq = "seq";    // 1 for the run's first message
inline constexpr std::string_view bytes = "bytes";  // payload size
inline constexpr std::string_view reason_code = "reason_code";
inline constexpr std::string_view reason = "reason";
}  // namespace json_field

// Well-formed UTF-8 (RFC 3629); U+0000 is allowed, since JSON can carry it as \u0000.
bool is_utf8_text(std::string_view bytes) noexcept;

// RFC 4648 base64 with padding.
std::string base64_encode(std::string_view bytes);

// "2026-11-22T06:08:19.123456Z": UTC, microseconds.
std::string iso8601_utc(std::chrono::system_clock::time_point t);

// One JSON object, no newline: topic, payload or payload_base64, qos, retain, dup, mid (QoS
// 1/2), received_at, and properties (an object, MQTT 5.0 only; user properties as an array of
// [key, value] pairs, since keys may repeat).
void append_message_json(std::string& out, const protocol::publish_packet& msg,
                         protocol::protocol_version version,
                         std::chrono::system_clock::time_point received_at);

// How tern-sub shapes its JSON lines beyond the fixed schema.
struct json_options {
    // A payload that is a JSON text goes in "payload_json" as a value (re-serialised on one
    // line) instead of "payload"; other payloads are written as usual.
    bool payload_as_json = false;
    // Indented over several lines, for people (not NDJSON any more).
    bool pretty = false;
};

inline constexpr std::string_view payload_json_field = "payload_json";

// A message tern-pub handed over: at QoS 0 once written to the connection, at QoS 1 and 2
// once acknowledged (reason_code from the PUBACK or PUBREC/PUBCOMP; 0 in MQTT 3.1.1).
struct publish_result {
    std::uint64_t seq = 0;
    std::string_view topic;
    protocol::qos qos = protocol::qos::at_most_once;
    bool retain = false;
    std::uint16_t mid = 0;  // 0: none (QoS 0)
    std::size_t bytes = 0;
    protocol::reason_code code = protocol::reason_code::success;
    bool qos_minus_one = false;  // MQTT-SN QoS -1 (no connection): "qos":-1
};

// {"seq":1,"topic":"a/b","qos":1,"retain":false,"mid":1,"bytes":5,"reason_code":0,
//  "reason":"success"}, no newline; mid only at QoS 1 and 2.
void append_publish_result_json(std::string& out, const publish_result& r);

// The error object tern-sub --json writes on stderr after its error line:
// {"error":"<the message>","exit_status":1}, no newline.
void append_error_json(std::string& out, std::string_view message, int exit_status);

// append_message_json() with json_options.
void append_message_json(std::string& out, const protocol::publish_packet& msg,
                         protocol::protocol_version version,
                         std::chrono::system_clock::time_point received_at,
                         const json_options& options);

// The payload as raw bytes, after "<topic> " when with_topic (mosquitto_sub -v), no newline.
void append_message_text(std::string& out, const protocol::publish_packet& msg, bool with_topic);

}  // namespace mqtt::format
