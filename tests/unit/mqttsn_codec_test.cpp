// The MQTT-SN 1.2 codec: the hex vectors of tests/vectors/mqttsn/*.json (written by hand
// from the specification, one SUBCASE each, in the format of tests/vectors/*.json without
// "version"), round trips of every message type, the 3-octet Length form, the Flags byte,
// and what the encoder refuses.

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mqtt/protocol/mqttsn.hpp"
#include "packet_json.hpp"

#ifndef TERN_VECTORS_DIR
#error "TERN_VECTORS_DIR must name the tests/vectors directory"
#endif

namespace sn = mqtt::protocol::mqttsn;
using nlohmann::json;

namespace {

std::string hex(std::string_view s) { return mqtt::test::to_hex(s); }
std::string hex(const std::vector<std::uint8_t>& b) {
    return hex(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

bool parse_hex(const std::string& s, std::vector<std::uint8_t>& out) {
    std::string digits;
    for (char c : s)
        if (c != ' ') digits += c;
    if (digits.size() % 2) return false;
    for (std::size_t i = 0; i < digits.size(); i += 2) {
        const auto v = std::stoul(digits.substr(i, 2), nullptr, 16);
        out.push_back(static_cast<std::uint8_t>(v));
    }
    return true;
}

std::string name_of(std::error_code ec) {
    if (ec.category() != sn::mqttsn_category()) return "foreign error: " + ec.message();
    return std::string(sn::to_string(static_cast<sn::errc>(ec.value())));
}

int qos_json(sn::qos q) { return q == sn::qos::minus_one ? -1 : static_cast<int>(q); }
const char* type_json(sn::topic_id_type t) {
    switch (t) {
        case sn::topic_id_type::normal: return "normal";
        case sn::topic_id_type::predefined: return "predefined";
        case sn::topic_id_type::short_name: return "short_name";
    }
    return "?";
}

json to_json(const sn::message& m);

template <class Will>
void will_json(json& j, const Will& w) {
    j["qos"] = qos_json(w.qos);
    j["retain"] = w.retain;
    j["topic"] = w.topic;
}

template <class Sub>
void sub_json(json& j, const Sub& s) {
    j["topic_id_type"] = type_json(s.topic_type);
    j["msg_id"] = s.msg_id;
    j["topic_name"] = s.topic_name;
    j["topic_id"] = s.topic_id;
}

// A JSON view of a message with the field names of the specification, lower case.
json to_json(const sn::message& m) {
    json j;
    j["type"] = std::string(sn::to_string(sn::type_of(m)));
    std::visit(
        [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, sn::advertise>) {
                j["gw_id"] = v.gw_id;
                j["duration"] = v.duration;
            } else if constexpr (std::is_same_v<T, sn::searchgw>) {
                j["radius"] = v.radius;
            } else if constexpr (std::is_same_v<T, sn::gwinfo>) {
                j["gw_id"] = v.gw_id;
                j["gw_address"] = hex(v.gw_address);
            } else if constexpr (std::is_same_v<T, sn::connect>) {
                j["will"] = v.will;
                j["clean_session"] = v.clean_session;
                j["duration"] = v.duration;
                j["client_id"] = v.client_id;
            } else if constexpr (std::is_same_v<T, sn::connack> || std::is_same_v<T, sn::willtopicresp> ||
                                 std::is_same_v<T, sn::willmsgresp>) {
                j["code"] = std::string(sn::to_string(v.code));
            } else if constexpr (std::is_same_v<T, sn::willtopic> || std::is_same_v<T, sn::willtopicupd>) {
                will_json(j, v);
            } else if constexpr (std::is_same_v<T, sn::willmsg> || std::is_same_v<T, sn::willmsgupd>) {
                j["message"] = v.message;
            } else if constexpr (std::is_same_v<T, sn::register_>) {
                j["topic_id"] = v.topic_id;
                j["msg_id"] = v.msg_id;
                j["topic_name"] = v.topic_name;
            } else if constexpr (std::is_same_v<T, sn::regack> || std::is_same_v<T, sn::puback>) {
                j["topic_id"] = v.topic_id;
                j["msg_id"] = v.msg_id;
                j["code"] = std::string(sn::to_string(v.code));
            } else if constexpr (std::is_same_v<T, sn::publish>) {
                j["dup"] = v.dup;
                j["qos"] = qos_json(v.qos);
                j["retain"] = v.retain;
                j["topic_id_type"] = type_json(v.topic_type);
                j["topic_id"] = v.topic_id;
                j["msg_id"] = v.msg_id;
                j["data"] = v.data;
            } else if constexpr (std::is_same_v<T, sn::pubrec> || std::is_same_v<T, sn::pubrel> ||
                                 std::is_same_v<T, sn::pubcomp> || std::is_same_v<T, sn::unsuback>) {
                j["msg_id"] = v.msg_id;
            } else if constexpr (std::is_same_v<T, sn::subscribe>) {
                j["dup"] = v.dup;
                j["qos"] = qos_json(v.qos);
                sub_json(j, v);
            } else if constexpr (std::is_same_v<T, sn::unsubscribe>) {
                sub_json(j, v);
            } else if constexpr (std::is_same_v<T, sn::suback>) {
                j["qos"] = qos_json(v.qos);
                j["topic_id"] = v.topic_id;
                j["msg_id"] = v.msg_id;
                j["code"] = std::string(sn::to_string(v.code));
            } else if constexpr (std::is_same_v<T, sn::pingreq>) {
                j["client_id"] = v.client_id;
            } else if constexpr (std::is_same_v<T, sn::disconnect>) {
                j["duration"] = v.duration ? json(*v.duration) : json(nullptr);
            } else if constexpr (std::is_same_v<T, sn::encapsulated>) {
                j["radius"] = v.radius;
                j["wireless_node_id"] = hex(v.wireless_node_id);
                auto inner = sn::decode(v.inner);
                j["inner"] = inner ? to_json(*inner) : json("undecodable");
            }
        },
        m);
    return j;
}

// Every key of `expected` must be in `actual` with an equal value (objects recursively).
bool subset(const json& expected, const json& actual, std::string& why) {
    if (!expected.is_object()) {
        if (expected != actual) why = "expected " + expected.dump() + ", got " + actual.dump();
        return expected == actual;
    }
    if (!actual.is_object()) {
        why = "expected an object, got " + actual.dump();
        return false;
    }
    for (const auto& [k, v] : expected.items()) {
        if (!actual.contains(k)) {
            why = k + " missing in " + actual.dump();
            return false;
        }
        if (!subset(v, actual.at(k), why)) {
            why = k + ": " + why;
            return false;
        }
    }
    return true;
}

std::vector<json> load_vectors() {
    std::vector<json> out;
    std::vector<std::filesystem::path> paths;
    for (const auto& e : std::filesystem::directory_iterator(std::string(TERN_VECTORS_DIR) + "/mqttsn"))
        if (e.path().extension() == ".json") paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
    for (const auto& p : paths) {
        std::ifstream in(p);
        auto doc = json::parse(in, nullptr, false);
        REQUIRE_MESSAGE(!doc.is_discarded(), "unparsable " << p);
        for (const auto& v : doc.at("vectors")) out.push_back(v);
    }
    return out;
}

void run_vector(const json& v) {
    std::vector<std::uint8_t> bytes;
    REQUIRE(parse_hex(v.at("hex").get<std::string>(), bytes));
    REQUIRE_MESSAGE(v.contains("spec"), "vector without spec");
    auto decoded = sn::decode(bytes);
    if (v.contains("error")) {
        const auto want = v.at("error").get<std::string>();
        if (decoded)
            FAIL_CHECK("decoded as " << to_json(*decoded).dump() << ", expected " << want);
        else
            CHECK_MESSAGE(name_of(decoded.error()) == want, "got " << name_of(decoded.error()));
        return;
    }
    if (!decoded) {
        FAIL_CHECK("error " << name_of(decoded.error()));
        return;
    }
    std::string why;
    CHECK_MESSAGE(subset(v.at("expect"), to_json(*decoded), why), why);
    auto encoded = sn::encode(*decoded);
    REQUIRE_MESSAGE(encoded, "re-encoding failed: " << name_of(encoded.error()));
    if (v.value("reencode", true)) CHECK(hex(*encoded) == hex(bytes));
    auto again = sn::decode(*encoded);
    REQUIRE(again);
    CHECK(*again == *decoded);
}

std::vector<std::uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()),
            reinterpret_cast<const std::uint8_t*>(s.data()) + s.size()};
}

}  // namespace

TEST_CASE("mqttsn: hex vectors from the specification") {
    static const std::vector<json> vectors = load_vectors();
    REQUIRE(vectors.size() >= 90);
    for (const auto& v : vectors) {
        const std::string label = v.value("name", "?") + " [" + v.value("spec", "?") + "]";
        SUBCASE(label.c_str()) { run_vector(v); }
    }
}

TEST_CASE("mqttsn: every message type round-trips") {
    std::vector<sn::message> all = {
        sn::advertise{3, 60},
        sn::searchgw{2},
        sn::gwinfo{9, "\x0a\x00\x00\x01"},
        sn::connect{true, false, 300, "sensor-1"},
        sn::connack{sn::return_code::congestion},
        sn::willtopicreq{},
        sn::willtopic{sn::qos::exactly_once, true, "will/t"},
        sn::willtopic{},
        sn::willmsgreq{},
        sn::willmsg{std::string("\0\xff", 2)},
        sn::register_{7, 8, "a/b/c"},
        sn::regack{7, 8, sn::return_code::invalid_topic_id},
        sn::publish{true, sn::qos::at_least_once, true, sn::topic_id_type::short_name,
                    sn::short_topic_id('t', '1'), 65535, std::string("\0x", 2)},
        sn::publish{false, sn::qos::minus_one, false, sn::topic_id_type::predefined, 1, 0, "v"},
        sn::puback{1, 2, sn::return_code::not_supported},
        sn::pubrec{1},
        sn::pubrel{2},
        sn::pubcomp{3},
        sn::subscribe{false, sn::qos::exactly_once, sn::topic_id_type::normal, 4, "+/x/#", 0},
        sn::subscribe{true, sn::qos::at_most_once, sn::topic_id_type::predefined, 4, "", 12},
        sn::suback{sn::qos::at_least_once, 12, 4, sn::return_code::accepted},
        sn::unsubscribe{sn::topic_id_type::short_name, 5, "", sn::short_topic_id('a', 'b')},
        sn::unsuback{5},
        sn::pingreq{"sleepy"},
        sn::pingresp{},
        sn::disconnect{},
        sn::disconnect{std::uint16_t{0}},
        sn::willtopicupd{sn::qos::at_least_once, false, "w"},
        sn::willtopicresp{},
        sn::willmsgupd{"m"},
        sn::willmsgresp{sn::return_code::not_supported},
        sn::encapsulated{3, "node", {0x04, 0x15, 0x00, 0x05}},
    };
    std::vector<bool> seen(std::variant_size_v<sn::message>);
    for (const auto& m : all) {
        CAPTURE(to_json(m).dump());
        seen[m.index()] = true;
        auto size = sn::encoded_size(m);
        REQUIRE(size);
        auto bytes = sn::encode(m);
        REQUIRE(bytes);
        CHECK(bytes->size() == *size);
        auto back = sn::decode(*bytes);
        REQUIRE_MESSAGE(back, name_of(back.error()));
        CHECK(*back == m);
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](bool b) { return b; }));
}

TEST_CASE("mqttsn: the 3-octet Length form from 256 octets on") {
    // 250 octets of data: 2 + 5 + 250 = 257 with a 1-octet Length, so 0x01 + 2 octets.
    sn::publish p;
    p.topic_id = 1;
    p.data.assign(250, 'x');
    auto bytes = sn::encode(p);
    REQUIRE(bytes);
    REQUIRE(bytes->size() == 259);
    CHECK(hex(std::vector<std::uint8_t>(bytes->begin(), bytes->begin() + 5)) == "010103" "0c" "00");
    auto back = sn::decode(*bytes);
    REQUIRE(back);
    CHECK(std::get<sn::publish>(*back) == p);

    // 248 octets: 2 + 5 + 248 = 255 still fits the 1-octet form.
    p.data.assign(248, 'y');
    bytes = sn::encode(p);
    REQUIRE(bytes);
    CHECK(bytes->size() == 255);
    CHECK((*bytes)[0] == 0xFF);
    CHECK((*bytes)[1] == 0x0C);

    // 249 octets would make 256: the 3-octet form, 258 in all.
    p.data.assign(249, 'z');
    bytes = sn::encode(p);
    REQUIRE(bytes);
    CHECK(bytes->size() == 258);
    CHECK(hex(std::vector<std::uint8_t>(bytes->begin(), bytes->begin() + 4)) == "0101020c");

    // The largest message: Length 65535.
    p.data.assign(65535 - 9, 'm');
    bytes = sn::encode(p);
    REQUIRE(bytes);
    CHECK(bytes->size() == 65535);
    CHECK(sn::decode(*bytes));
    p.data.push_back('m');
    CHECK(sn::encode(p).error() == sn::errc::message_too_large);
}

TEST_CASE("mqttsn: 3-octet Length disagreeing with the datagram") {
    std::vector<std::uint8_t> d = {0x01, 0x01, 0x03, 0x0C, 0x00, 0x00, 0x01, 0x00, 0x00};
    d.resize(0x0103 - 1, 'x');  // one octet short
    CHECK(sn::decode(d).error() == sn::errc::length_mismatch);
    d.push_back('x');
    CHECK(sn::decode(d));
    d.push_back('x');
    CHECK(sn::decode(d).error() == sn::errc::length_mismatch);
}

TEST_CASE("mqttsn: Flags byte bit by bit") {
    sn::flags f;
    f.dup = true;
    CHECK(sn::encode_flags(f) == 0x80);
    f = {};
    f.qos = sn::qos::minus_one;
    CHECK(sn::encode_flags(f) == 0x60);
    f.qos = sn::qos::exactly_once;
    CHECK(sn::encode_flags(f) == 0x40);
    f = {};
    f.retain = true;
    CHECK(sn::encode_flags(f) == 0x10);
    f = {};
    f.will = true;
    CHECK(sn::encode_flags(f) == 0x08);
    f = {};
    f.clean_session = true;
    CHECK(sn::encode_flags(f) == 0x04);
    f = {};
    f.topic_type = sn::topic_id_type::short_name;
    CHECK(sn::encode_flags(f) == 0x02);
    for (unsigned b = 0; b < 256; ++b) {
        auto d = sn::decode_flags(static_cast<std::uint8_t>(b));
        if ((b & 3) == 3) {
            CHECK(d.error() == sn::errc::reserved_topic_id_type);
            continue;
        }
        REQUIRE(d);
        CHECK(sn::encode_flags(*d) == b);
    }
}

TEST_CASE("mqttsn: short topic names") {
    CHECK(sn::short_topic_id('a', 'b') == 0x6162);
    CHECK(sn::short_topic_name(0x6162) == "ab");
    CHECK(sn::short_topic_name(sn::short_topic_id('\xff', '\0')) == std::string("\xff\0", 2));
}

TEST_CASE("mqttsn: what the encoder refuses") {
    CHECK(sn::encode(sn::register_{0, 1, ""}).error() == sn::errc::invalid_topic_name);
    CHECK(sn::encode(sn::register_{0, 1, "a/#"}).error() == sn::errc::invalid_topic_name);
    CHECK(sn::encode(sn::subscribe{false, sn::qos::at_most_once, sn::topic_id_type::normal, 1, "a#", 0})
              .error() == sn::errc::invalid_topic_filter);
    CHECK(sn::encode(sn::subscribe{false, sn::qos::at_most_once, sn::topic_id_type::predefined, 1, "a", 1})
              .error() == sn::errc::invalid_field);
    CHECK(sn::encode(sn::willtopic{sn::qos::at_least_once, false, ""}).error() ==
          sn::errc::will_flags_without_topic);
    CHECK(sn::encode(sn::connack{static_cast<sn::return_code>(4)}).error() ==
          sn::errc::invalid_return_code);
    sn::publish p;
    p.topic_type = static_cast<sn::topic_id_type>(3);
    CHECK(sn::encode(p).error() == sn::errc::reserved_topic_id_type);
    CHECK(sn::encode(sn::encapsulated{4, "", {0x02, 0x16}}).error() == sn::errc::invalid_field);
    CHECK(sn::encode(sn::encapsulated{0, "", {0x02}}).error() == sn::errc::invalid_field);
    CHECK(sn::encode(sn::encapsulated{0, "", {0x03, 0xFE, 0x00, 0x02, 0x16}}).error() ==
          sn::errc::invalid_field);
}

TEST_CASE("mqttsn: no prefix of a valid message decodes, nor does it read past the end") {
    // Each message cut short at every length must fail cleanly (ASan checks the reads).
    const std::vector<std::string> wire = {
        std::string("\x09\x04\x04\x01\x00\x3c\x61\x62\x63", 9),
        std::string("\x08\x0c\xb2\x61\x62\x00\x07\x78", 8),
        std::string("\x07\x12\x01\x00\x02\x00\x03", 7),
        std::string("\x05\xfe\x01\xab\xcd\x02\x16", 7),
    };
    for (const auto& w : wire) {
        const auto full = bytes_of(w);
        REQUIRE(sn::decode(full));
        for (std::size_t n = 0; n < full.size(); ++n) {
            // A copy of exactly n octets, so ASan sees a read past it.
            std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
            CHECK_FALSE(sn::decode(cut));
        }
    }
}

TEST_CASE("mqttsn: error messages and names") {
    const std::error_code ec = sn::errc::length_mismatch;
    CHECK(std::string(ec.category().name()) == "mqttsn");
    CHECK(ec.message() == "MQTT-SN Length differs from the datagram size");
    CHECK(sn::to_string(sn::errc::nested_encapsulation) == "nested_encapsulation");
    CHECK(sn::to_string(sn::msg_type::register_) == "register");
}
