#pragma once

// A minimal JSON object writer for the broker's app-layer output (--print-config, JSON log
// lines), which must not pull a JSON library into the broker library.

#include <cstdint>
#include <string>
#include <string_view>

namespace mqtt::broker::detail {

// Strings go through format::append_json_text (mqtt/format/json_string.hpp): bytes that are
// not valid UTF-8 become U+FFFD, so a line stays valid JSON whatever a client id holds.

// Writes `"key":` after a comma when the object already has members.
class json_object {
  public:
    explicit json_object(std::string& out) : out_(out) { out_ += '{'; }
    json_object& key(std::string_view k);
    json_object& string(std::string_view k, std::string_view v);
    json_object& number(std::string_view k, std::uint64_t v);
    json_object& boolean(std::string_view k, bool v);
    json_object& null(std::string_view k);
    json_object& raw(std::string_view k, std::string_view json);
    void close() { out_ += '}'; }

  private:
    std::string& out_;
    bool first_ = true;
};

}  // namespace mqtt::broker::detail
