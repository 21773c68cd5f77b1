// Hex packet vectors (tests/vectors/*.json): packets written by hand from the MQTT 3.1,
// 3.1.1 and 5.0 specifications, each tagged with the requirement it checks. One SUBCASE
// per vector, named "file: name [spec] version".
//
// A vector is {"name", "spec", "version", "hex", and either "error" or "expect"}:
//   error     the mqtt::to_string(errc) name decode_packet() must fail with;
//   expect    a subset of the packet's JSON view (packet_json.hpp) that must match: every
//             key given must be present and equal; arrays must have the same length; an
//             empty object {} must match an empty object (so "properties": {} means none);
//   reencode  (default true for expect) the hex is the canonical encoding, so encoding
//             the decoded packet must give back exactly these bytes.
// Every vector is also fed to the framer one byte at a time; a valid one must come out as
// exactly one frame, which decode_into() must decode to the same packet.

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "mqtt/error.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"
#include "packet_json.hpp"

#ifndef TERN_VECTORS_DIR
#error "TERN_VECTORS_DIR must name the tests/vectors directory"
#endif

namespace {

using mqtt::protocol::protocol_version;
using nlohmann::json;

struct vector_file {
    std::string stem;
    json vectors;
};

// Parsed once: doctest re-enters the test case once per SUBCASE.
const std::vector<vector_file>& vector_files() {
    static const std::vector<vector_file> files = [] {
        std::vector<vector_file> out;
        std::vector<std::filesystem::path> paths;
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(TERN_VECTORS_DIR, ec))
            if (e.is_regular_file() && e.path().extension() == ".json") paths.push_back(e.path());
        std::sort(paths.begin(), paths.end());
        for (const auto& p : paths) {
            std::ifstream in(p);
            vector_file f{p.stem().string(), json::parse(in, nullptr, /*allow_exceptions=*/false)};
            out.push_back(std::move(f));
        }
        return out;
    }();
    return files;
}

bool parse_hex(const std::string& s, std::vector<std::uint8_t>& out) {
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    int hi = -1;
    for (char c : s) {
        if (c == ' ' || c == '\n' || c == '\t') {
            if (hi >= 0) return false;  // a digit pair split by a space
            continue;
        }
        const int v = nibble(c);
        if (v < 0) return false;
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(static_cast<std::uint8_t>(hi << 4 | v));
            hi = -1;
        }
    }
    return hi < 0;
}

std::string hex_of(const std::vector<std::uint8_t>& b) {
    return mqtt::test::to_hex(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

bool parse_version(const std::string& s, protocol_version& v) {
    if (s == "3.1")
        v = protocol_version::v3_1;
    else if (s == "3.1.1")
        v = protocol_version::v3_1_1;
    else if (s == "5.0")
        v = protocol_version::v5;
    else
        return false;
    return true;
}

std::string error_name(std::error_code ec) {
    if (ec.category() != mqtt::mqtt_category()) return "foreign error: " + ec.message();
    return std::string(mqtt::to_string(static_cast<mqtt::errc>(ec.value())));
}

// Subset match of `expected` against `actual`; on mismatch, `why` says where.
bool subset_match(const json& expected, const json& actual, const std::string& path,
                  std::string& why) {
    if (expected.is_object()) {
        if (!actual.is_object()) {
            why = path + ": expected an object, got " + actual.dump();
            return false;
        }
        if (expected.empty() && !actual.empty()) {
            why = path + ": expected {}, got " + actual.dump();
            return false;
        }
        for (const auto& [k, v] : expected.items()) {
            if (!actual.contains(k)) {
                why = path + "." + k + ": not in the decoded packet " + actual.dump();
                return false;
            }
            if (!subset_match(v, actual.at(k), path + "." + k, why)) return false;
        }
        return true;
    }
    if (expected.is_array()) {
        if (!actual.is_array() || actual.size() != expected.size()) {
            why = path + ": expected " + expected.dump() + ", got " + actual.dump();
            return false;
        }
        for (std::size_t i = 0; i < expected.size(); ++i)
            if (!subset_match(expected[i], actual[i], path + "[" + std::to_string(i) + "]", why))
                return false;
        return true;
    }
    if (expected != actual) {
        why = path + ": expected " + expected.dump() + ", got " + actual.dump();
        return false;
    }
    return true;
}

const std::set<std::string> known_keys = {"name",  "spec",   "version", "hex",
                                          "error", "expect", "reencode"};

// A PUBLISH decoded as views (as the broker's read loop does), into one view shared by
// every vector so that the properties of one must not leak into the next: the same
// result as decode_packet(), the topic and payload pointing into the body.
void check_publish_view(std::uint8_t first_byte, const std::vector<std::uint8_t>& body,
                        protocol_version version,
                        const mqtt::result<mqtt::protocol::packet>& decoded) {
    using mqtt::protocol::publish_packet;
    if (first_byte >> 4 != 3) return;
    static mqtt::protocol::publish_view view;
    const auto ec = mqtt::protocol::decode_publish_view(first_byte, body, version, view);
    if (!decoded) {
        CHECK_MESSAGE(ec == decoded.error(),
                      "decode_publish_view gave " << (ec ? error_name(ec) : "no error"));
        return;
    }
    REQUIRE_MESSAGE(!ec, "decode_publish_view failed: " << error_name(ec));
    const auto& p = std::get<publish_packet>(*decoded);
    const publish_packet copied{std::string{view.topic},
                                std::string{view.payload},
                                view.qos_level,
                                view.retain,
                                view.dup,
                                view.packet_id,
                                view.props};
    CHECK_MESSAGE(copied == p, "decode_publish_view gave "
                                   << mqtt::test::to_json(mqtt::protocol::packet{copied}).dump());
    CHECK(view.has_props == !p.props.empty());
    const auto* begin = reinterpret_cast<const char*>(body.data());
    const auto* end = begin + body.size();
    CHECK((view.topic.empty() || (view.topic.data() >= begin && view.topic.data() < end)));
    CHECK(view.payload.data() + view.payload.size() == end);
}

// The framer, fed one byte at a time, must agree on the packet boundary, and decoding the
// frame with decode_into() into one packet object shared by every vector (as a
// connection's read loop does, whatever it decoded last) must give the same result as
// decode_packet(). Error vectors whose framing fails or leaves bytes over are skipped.
void check_framed(const std::vector<std::uint8_t>& bytes, protocol_version version,
                  const mqtt::result<mqtt::protocol::packet>& decoded, bool must_frame) {
    static mqtt::protocol::packet reused;
    mqtt::protocol::framer fr;
    std::vector<std::uint8_t> first_bytes;
    std::vector<std::vector<std::uint8_t>> bodies;
    for (auto b : bytes) {
        fr.feed(std::span<const std::uint8_t>(&b, 1));
        for (;;) {
            auto f = fr.next();
            if (!f) {
                if (must_frame) FAIL("framer error " << error_name(f.error()));
                return;
            }
            if (!*f) break;
            first_bytes.push_back((*f)->first_byte);
            bodies.emplace_back((*f)->body.begin(), (*f)->body.end());
        }
    }
    const bool one_frame = bodies.size() == 1 && fr.buffered() == 0;
    if (!one_frame) {
        if (must_frame)
            FAIL("framer yielded " << bodies.size() << " frames, " << fr.buffered()
                                   << " bytes left over");
        return;
    }
    const auto ec = mqtt::protocol::decode_into(first_bytes[0], bodies[0], version, reused);
    if (decoded) {
        REQUIRE_MESSAGE(!ec, "decode_into failed: " << error_name(ec));
        CHECK_MESSAGE(reused == *decoded,
                      "decode_into gave " << mqtt::test::to_json(reused).dump());
    } else {
        CHECK_MESSAGE(ec == decoded.error(),
                      "decode_into gave " << (ec ? error_name(ec) : "no error"));
    }
    check_publish_view(first_bytes[0], bodies[0], version, decoded);
}

void run_vector(const json& v) {
    for (const auto& [k, _] : v.items())
        if (!known_keys.count(k)) FAIL("unknown key \"" << k << "\" in vector " << v.dump());
    REQUIRE_MESSAGE(v.contains("name"), "vector without name");
    REQUIRE_MESSAGE(v.contains("spec"),
                    "vector without spec: tag it with the requirement it checks");
    REQUIRE_MESSAGE(v.contains("hex"), "vector without hex");
    REQUIRE_MESSAGE(v.contains("version"), "vector without version");
    const bool has_error = v.contains("error"), has_expect = v.contains("expect");
    if (!has_error && !has_expect) FAIL("vector has neither \"error\" nor \"expect\"");
    if (has_error && has_expect) FAIL("vector has both \"error\" and \"expect\"");
    if (has_error && v.contains("reencode")) FAIL("\"reencode\" on an error vector");

    protocol_version version{};
    REQUIRE_MESSAGE(parse_version(v.at("version").get<std::string>(), version),
                    "unknown version " << v.at("version"));
    std::vector<std::uint8_t> bytes;
    REQUIRE_MESSAGE(parse_hex(v.at("hex").get<std::string>(), bytes), "bad hex: " << v.at("hex"));

    auto decoded = mqtt::protocol::decode_packet(bytes, version);

    if (has_error) {
        const auto want = v.at("error").get<std::string>();
        if (decoded) {
            FAIL_CHECK("decoded, but expected error " << want << "; got "
                                                      << mqtt::test::to_json(*decoded).dump());
        } else {
            CHECK_MESSAGE(error_name(decoded.error()) == want,
                          "expected " << want << ", got " << error_name(decoded.error()));
        }
        check_framed(bytes, version, decoded, /*must_frame=*/false);
        return;
    }

    const auto& expect = v.at("expect");
    const bool typed = expect.is_object() && expect.contains("type");
    REQUIRE_MESSAGE(typed, "\"expect\" must be an object with a \"type\"");
    if (!decoded) {
        FAIL_CHECK("expected a " << expect.at("type") << ", got error "
                                 << error_name(decoded.error()));
        return;
    }
    const auto actual = mqtt::test::to_json(*decoded);
    std::string why;
    CHECK_MESSAGE(subset_match(expect, actual, "expect", why), why);

    if (v.value("reencode", true)) {
        auto encoded = mqtt::protocol::encode(*decoded, version);
        if (!encoded) {
            FAIL_CHECK("re-encoding failed: " << error_name(encoded.error()));
        } else {
            CHECK_MESSAGE(hex_of(*encoded) == hex_of(bytes),
                          "re-encoded as " << hex_of(*encoded) << ", vector is " << hex_of(bytes));
        }
    }

    check_framed(bytes, version, decoded, /*must_frame=*/true);
}

// Per-file and per-version counts, printed once.
void report_counts(const std::vector<vector_file>& files) {
    std::map<std::string, int> total_per_version;
    std::size_t total = 0;
    for (const auto& f : files) {
        const auto& list = f.vectors.at("vectors");
        std::map<std::string, int> per_version;
        std::size_t errors = 0;
        for (const auto& v : list) {
            ++per_version[v.value("version", "?")];
            ++total_per_version[v.value("version", "?")];
            errors += v.contains("error") ? 1 : 0;
        }
        total += list.size();
        std::ostringstream s;
        s << f.stem << ".json: " << list.size() << " vectors (" << list.size() - errors
          << " valid, " << errors << " malformed;";
        for (const auto& [ver, n] : per_version) s << " " << ver << ": " << n;
        s << ")";
        MESSAGE(s.str());
    }
    std::ostringstream s;
    s << "all vectors: " << total << " in " << files.size() << " files (";
    for (const auto& [ver, n] : total_per_version) s << " " << ver << ": " << n;
    s << " )";
    MESSAGE(s.str());
}

}  // namespace

TEST_CASE("hex packet vectors from the specifications") {
    const auto& files = vector_files();
    REQUIRE_MESSAGE(!files.empty(), "no *.json vectors in " TERN_VECTORS_DIR);
    for (const auto& f : files) {
        REQUIRE_MESSAGE(!f.vectors.is_discarded(), f.stem << ".json is not valid JSON");
        REQUIRE_MESSAGE(f.vectors.contains("vectors"), f.stem << ".json has no \"vectors\"");
        const auto& list = f.vectors.at("vectors");
        const bool non_empty = list.is_array() && !list.empty();
        REQUIRE_MESSAGE(non_empty, f.stem << ".json has no vectors");
    }

    static bool first_pass = true;
    if (first_pass) report_counts(files);

    std::set<std::string> seen;
    for (const auto& f : files) {
        for (const auto& v : f.vectors.at("vectors")) {
            const std::string name = f.stem + ": " + v.value("name", "<unnamed>") + " [" +
                                     v.value("spec", "<no spec>") + "] " + v.value("version", "?");
            // Doctest tells SUBCASEs apart by name: a duplicate would silently not run.
            const bool unique = seen.insert(name).second;
            if (first_pass) CHECK_MESSAGE(unique, "duplicate vector name: " << name);
            SUBCASE(name.c_str()) {
                run_vector(v);
            }
        }
    }
    first_pass = false;
}
