#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "mqtt/format/json_string.hpp"

using mqtt::format::append_json_string;
using mqtt::format::append_json_text;

namespace {

std::string text(std::string_view bytes) {
    std::string out;
    append_json_text(out, bytes);
    return out;
}

}  // namespace

TEST_CASE("json_string: escapes what JSON requires, keeps UTF-8 as it is") {
    std::string out;
    append_json_string(out, std::string_view{"a\"b\\c\n\t\x01\x7f\0z\xC3\xA9", 13});
    CHECK(out == "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\\u0000z\xC3\xA9\"");
    CHECK(nlohmann::json::parse(out).get<std::string>() ==
          std::string{"a\"b\\c\n\t\x01\x7f\0z\xC3\xA9", 13});
}

TEST_CASE("json_depth_within: arrays and objects counted, brackets in strings not") {
    using mqtt::format::json_depth_within;
    CHECK(json_depth_within("", 0));
    CHECK(json_depth_within("1", 0));
    CHECK_FALSE(json_depth_within("[]", 0));
    CHECK(json_depth_within("[[]] [[]]", 2));
    CHECK_FALSE(json_depth_within("[{\"a\":[]}]", 2));
    CHECK(json_depth_within("[{\"a\":[]}]", 3));
    CHECK(json_depth_within(R"(["[[[", "\"[[["])", 1));  // in strings, an escaped quote too
    CHECK(json_depth_within("]]]][", 1));                // stray closers do not go below 0
    CHECK_FALSE(json_depth_within(std::string(1001, '{')));
    CHECK(json_depth_within(std::string(1000, '{')));
}

TEST_CASE("json_string: bytes that are not UTF-8 become U+FFFD, the rest is kept") {
    CHECK(text("client-1") == "\"client-1\"");
    CHECK(text("a\xFF"
               "b") ==
          "\"a\xEF\xBF\xBD"
          "b\"");
    CHECK(text("\xC3") == "\"\xEF\xBF\xBD\"");                  // truncated sequence
    CHECK(text("\xC0\xAF") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");  // overlong '/'
    CHECK(text("\xED\xA0\x80") ==                               // a surrogate: 3 bytes, 3 marks
          "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
    CHECK(text(std::string_view{"x\0\xE2\x82\xAC\xF0", 6}) ==  // NUL escaped, euro kept
          "\"x\\u0000\xE2\x82\xAC\xEF\xBF\xBD\"");
    // Whatever the bytes, the result parses as JSON.
    std::string all;
    for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
    CHECK(nlohmann::json::accept(text(all)));
}
