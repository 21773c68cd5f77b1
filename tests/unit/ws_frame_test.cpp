// The server side of RFC 6455 framing (net/transport/ws_frame.hpp), byte for byte: frames
// written by hand from RFC 6455 5.2 (the masked examples of 5.7 among them).

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "net/transport/ws_frame.hpp"

using namespace mqtt::net::ws;
using bytes = std::vector<std::uint8_t>;

namespace {

// Decodes `in` in chunks of `chunk` bytes (0: at once), in place, and returns the payload.
bytes run(decoder& d, bytes in, std::size_t chunk = 0, std::size_t* consumed = nullptr) {
    bytes out;
    std::size_t at = 0;
    std::size_t taken = 0;
    while (at < in.size()) {
        const std::size_t n = chunk == 0 ? in.size() - at : std::min(chunk, in.size() - at);
        auto r = d.decode(std::span(in.data() + at, n), in.data() + at);  // in place
        out.insert(out.end(), in.begin() + static_cast<std::ptrdiff_t>(at),
                   in.begin() + static_cast<std::ptrdiff_t>(at + r.payload));
        taken += r.consumed;
        if (r.consumed < n) break;
        at += n;
    }
    if (consumed != nullptr) *consumed = taken;
    return out;
}

// A masked client frame: `b0` (FIN, opcode), the payload masked with `key`.
bytes frame(std::uint8_t b0, const bytes& payload,
            std::array<std::uint8_t, 4> key = {0x37, 0xfa, 0x21, 0x3d}) {
    bytes f{b0};
    const auto n = payload.size();
    if (n < 126) {
        f.push_back(static_cast<std::uint8_t>(0x80 | n));
    } else if (n <= 0xFFFF) {
        f.push_back(0xFE);
        f.push_back(static_cast<std::uint8_t>(n >> 8));
        f.push_back(static_cast<std::uint8_t>(n));
    } else {
        f.push_back(0xFF);
        for (int k = 7; k >= 0; --k) f.push_back(static_cast<std::uint8_t>(n >> (8 * k)));
    }
    for (auto k : key) f.push_back(k);
    for (std::size_t i = 0; i < n; ++i) f.push_back(payload[i] ^ key[i % 4]);
    return f;
}

bytes cat(std::initializer_list<bytes> parts) {
    bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

}  // namespace

TEST_CASE("ws frames: RFC 6455 5.7's masked 'Hello' as a binary frame, in any chunks") {
    // 5.7: 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58 is a masked text "Hello";
    // the same bytes with the binary opcode.
    const bytes in{0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    for (std::size_t chunk : {0, 1, 2, 3, 5}) {
        decoder d{1024};
        std::size_t consumed = 0;
        CHECK(run(d, in, chunk, &consumed) == bytes{'H', 'e', 'l', 'l', 'o'});
        CHECK(consumed == in.size());
        CHECK_FALSE(d.done());
        CHECK(d.at_frame_boundary());
    }
}

TEST_CASE("ws frames: 16- and 64-bit lengths, fragments with a ping between them") {
    bytes big(300);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7);
    bytes huge(70000, 0xA5);
    // "Hel" (not FIN), a ping "x" between the fragments, then "lo" (continuation, FIN).
    const auto in = cat({frame(0x82, big), frame(0x82, huge), frame(0x02, {'H', 'e', 'l'}),
                         frame(0x89, {'x'}), frame(0x80, {'l', 'o'})});
    CHECK(frame(0x82, big)[1] == 0xFE);
    CHECK(frame(0x82, huge)[1] == 0xFF);
    for (std::size_t chunk : {0, 1, 7, 4096}) {
        decoder d{100000};
        const auto out = run(d, in, chunk);
        REQUIRE(out.size() == 300 + 70000 + 5);
        CHECK(bytes(out.begin(), out.begin() + 300) == big);
        CHECK(bytes(out.begin() + 300, out.begin() + 70300) == huge);
        CHECK(bytes(out.begin() + 70300, out.end()) == bytes{'H', 'e', 'l', 'l', 'o'});
        CHECK(d.ping_pending());
        CHECK(bytes(d.ping_payload().begin(), d.ping_payload().end()) == bytes{'x'});
        d.take_ping();
        CHECK_FALSE(d.ping_pending());
        CHECK_FALSE(d.done());
    }
}

TEST_CASE("ws frames: a close frame ends the input, its code is kept for the echo") {
    decoder d{1024};
    const auto in =
        cat({frame(0x82, {1, 2}), frame(0x88, {0x03, 0xE8, 'b', 'y', 'e'}), frame(0x82, {3})});
    std::size_t consumed = 0;
    CHECK(run(d, in, 0, &consumed) == bytes{1, 2});
    CHECK(consumed == 8 + 11);  // the frame after the close is not taken
    CHECK(d.peer_closed());
    CHECK(d.peer_code() == 1000);
    CHECK(d.error() == 0);

    // A reason in UTF-8, U+0000 included (WebSocket allows it, unlike MQTT strings).
    decoder reason{1024};
    run(reason, frame(0x88, {0x03, 0xE9, 0xC3, 0xA9, 0x00, 0xE2, 0x82, 0xAC, 'x', 'y', 'z', 'w',
                             'v', 'u', 't', 's'}));
    CHECK(reason.peer_closed());
    CHECK(reason.peer_code() == 1001);
    CHECK(reason.error() == 0);

    decoder empty{1024};
    run(empty, frame(0x88, {}));
    CHECK(empty.peer_closed());
    CHECK(empty.peer_code() == 0);
    // Pongs are taken and ignored.
    decoder pong{1024};
    CHECK(run(pong, cat({frame(0x8A, {'p'}), frame(0x82, {9})})) == bytes{9});
    CHECK_FALSE(pong.done());
}

TEST_CASE("ws frames: protocol errors close with 1002, text with 1003, a reason not UTF-8 with 1007, size with 1009") {
    struct bad {
        const char* what;
        bytes in;
        std::uint16_t code;
        std::uint64_t max = 1024;
    };
    const bytes unmasked{0x82, 0x02, 'h', 'i'};
    const bad cases[] = {
        {"unmasked", unmasked, close_protocol_error},
        {"text", frame(0x81, {'h', 'i'}), close_unsupported_data},
        {"text fragment", frame(0x01, {'h'}), close_unsupported_data},
        {"RSV1", frame(0xC2, {'h'}), close_protocol_error},
        {"RSV3", frame(0x92, {'h'}), close_protocol_error},
        {"opcode 3", frame(0x83, {'h'}), close_protocol_error},
        {"opcode 0xB", frame(0x8B, {}), close_protocol_error},
        {"continuation first", frame(0x80, {'h'}), close_protocol_error},
        {"binary inside a fragmented message", cat({frame(0x02, {'a'}), frame(0x82, {'b'})}),
         close_protocol_error},
        {"fragmented ping", frame(0x09, {}), close_protocol_error},
        {"ping of 126 bytes", frame(0x89, bytes(126, 'p')), close_protocol_error},
        {"close with a 1-byte body", frame(0x88, {0x03}), close_protocol_error},
        {"close code 1005", frame(0x88, {0x03, 0xED}), close_protocol_error},
        {"close code 999", frame(0x88, {0x03, 0xE7}), close_protocol_error},
        // RFC 6455 5.5.1 and 8.1: the reason is UTF-8, else 1007.
        {"close reason 0xFF", frame(0x88, {0x03, 0xE8, 'a', 0xFF}), close_invalid_data},
        {"close reason cut in a character", frame(0x88, {0x03, 0xE8, 0xC3}), close_invalid_data},
        {"close reason a surrogate", frame(0x88, {0x03, 0xE8, 0xED, 0xA0, 0x80}),
         close_invalid_data},
        {"close reason bad after a NUL", frame(0x88, {0x03, 0xE8, 0x00, 0xC0, 0xAF}),
         close_invalid_data},
        {"16-bit length under 126", {0x82, 0xFE, 0x00, 0x7D, 1, 2, 3, 4}, close_protocol_error},
        {"64-bit length under 65536",
         {0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4},
         close_protocol_error},
        {"64-bit length with the top bit",
         {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
         close_protocol_error},
        // mqttjs_ws_test.mjs's hostile frame: 2^40 bytes announced.
        {"2^40 bytes", {0x82, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4}, close_too_big},
        {"a message over the limit in fragments",
         cat({frame(0x02, bytes(600, 1)), frame(0x80, bytes(500, 2))}), close_too_big},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        for (std::size_t chunk : {0, 1}) {
            decoder d{c.max};
            std::size_t consumed = 0;
            const auto out = run(d, c.in, chunk, &consumed);
            CHECK(d.done());
            CHECK(d.error() == c.code);
            CHECK_FALSE(d.peer_closed());
            CHECK_FALSE(std::string{d.why()}.empty());
            // Nothing of the offending frame's payload is handed on.
            if (std::string{c.what} == "a message over the limit in fragments") {
                CHECK(out.size() == 600);
            } else if (std::string{c.what} == "binary inside a fragmented message") {
                CHECK(out == bytes{'a'});
            } else {
                CHECK(out.empty());
            }
        }
    }
    // The size is checked from the header, before any payload: exactly the limit passes.
    decoder at{5};
    CHECK(run(at, frame(0x82, bytes(5, 1))).size() == 5);
    CHECK_FALSE(at.done());
    decoder over{5};
    std::size_t consumed = 0;
    run(over, frame(0x82, bytes(6, 1)), 0, &consumed);
    CHECK(over.error() == close_too_big);
    CHECK(consumed == 6);  // the header only
}

TEST_CASE("ws frames: the server's headers and close frames") {
    std::array<std::uint8_t, max_header> h{};
    CHECK(encode_header(opcode::binary, 5, h) == 2);
    CHECK(bytes(h.begin(), h.begin() + 2) == bytes{0x82, 0x05});
    CHECK(encode_header(opcode::binary, 125, h) == 2);
    CHECK(h[1] == 125);
    CHECK(encode_header(opcode::binary, 126, h) == 4);
    CHECK(bytes(h.begin(), h.begin() + 4) == bytes{0x82, 0x7E, 0x00, 0x7E});
    CHECK(encode_header(opcode::binary, 65535, h) == 4);
    CHECK(bytes(h.begin(), h.begin() + 4) == bytes{0x82, 0x7E, 0xFF, 0xFF});
    CHECK(encode_header(opcode::binary, 65536, h) == 10);
    CHECK(bytes(h.begin(), h.end()) == bytes{0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0});
    CHECK(encode_header(opcode::pong, 3, h) == 2);
    CHECK(bytes(h.begin(), h.begin() + 2) == bytes{0x8A, 0x03});
    std::array<std::uint8_t, 4> c{};
    CHECK(encode_close(close_protocol_error, c) == 4);
    CHECK(bytes(c.begin(), c.end()) == bytes{0x88, 0x02, 0x03, 0xEA});
    CHECK(encode_close(0, c) == 2);
    CHECK(bytes(c.begin(), c.begin() + 2) == bytes{0x88, 0x00});
}
