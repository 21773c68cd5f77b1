#pragma once

// tern-sub -F: Mosquitto's output format strings, so existing mosquitto_sub scripts work.
// %-sequences print the message (%t topic, %p payload, %x/%X hex, %l length, %q QoS, %r retain,
// %m packet id, the MQTT 5.0 properties %A %C %D %E %F %P %R %S, %I %U %j %J times and JSON),
// @-sequences go to strftime (@N: nanoseconds, @@: '@'), and \-escapes (\n \t \r \a \e \v \0
// \\) give characters that are awkward to type. Flags '-' and '0', a field width and a
// precision (maximum width of %C %I %R %t) follow the '%' as in printf.

#include <chrono>
#include <string>
#include <string_view>

#include "mqtt/protocol/packet.hpp"

namespace mqtt::format {

// Empty when `fmt` is a valid format string, else why not (an unknown %X, a dangling %, @ or \).
std::string check_format_string(std::string_view fmt);

// Appends `msg` formatted by a checked `fmt` (no newline: the caller adds it unless -N).
// Returns false when %J met a payload that is not JSON (nothing useful was printed then).
bool append_formatted(std::string& out, std::string_view fmt, const protocol::publish_packet& msg,
                      std::chrono::system_clock::time_point received_at);

}  // namespace mqtt::format
