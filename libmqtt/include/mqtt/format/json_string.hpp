#pragma once

// JSON string literals, shared by every JSON writer in Tern (tern-sub's messages, tern-bench's
// results, the broker's log lines and --print-config) so escaping lives in one place.

#include <string>
#include <string_view>

namespace mqtt::format {

// A JSON string literal, quotes included, for text already known to be valid UTF-8.
void append_json_string(std::string& out, std::string_view utf8);

// The same for bytes that may not be valid UTF-8 (a client id, a reason from a peer): each
// byte that does not start a valid sequence is written as U+FFFD, so the output stays JSON.
void append_json_text(std::string& out, std::string_view bytes);

}  // namespace mqtt::format
