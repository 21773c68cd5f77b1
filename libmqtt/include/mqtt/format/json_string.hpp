#pragma once

// JSON string literals, shared by every JSON writer in Tern (tern-sub's messages, tern-bench's
// results, the broker's log lines and --print-config) so escaping lives in one place.

#include <cstddef>
#include <string>
#include <string_view>

namespace mqtt::format {

// A JSON string literal, quotes included, for text already known to be valid UTF-8.
void append_json_string(std::string& out, std::string_view utf8);

// The same for bytes that may not be valid UTF-8 (a client id, a reason from a peer): each
// byte that does not start a valid sequence is written as U+FFFD, so the output stays JSON.
void append_json_text(std::string& out, std::string_view bytes);

// How deep the JSON Tern reads from others (a message's payload for --payload-format json and
// %J, a tern-pub --json-in line) may nest arrays and objects, as cJSON's default. Parsing
// is iterative but writing and comparing values recurse, so a payload of 100,000 '[' would
// overflow the stack.
inline constexpr std::size_t max_json_depth = 1000;

// False when `text`, read as JSON, opens more than `limit` arrays and objects inside each
// other (brackets inside strings do not count). A quick scan, not a validation: true says
// nothing of whether the text is JSON.
bool json_depth_within(std::string_view text, std::size_t limit = max_json_depth) noexcept;

}  // namespace mqtt::format
