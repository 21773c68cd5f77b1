// libFuzzer target: the server side of RFC 6455 framing (net/transport/ws_frame.hpp), the
// first code a WebSocket client's bytes reach after the upgrade.
//
// The first input byte chooses the size limit, the chunk size and how the rest is used:
// - as bytes from the network: decoded at once into a separate buffer, and again in
//   chunks in place (the way the connection decodes); both must agree on every payload
//   byte, the bytes consumed and the end state (close, error, pending ping);
// - as a list of valid frames the target masks and encodes itself (binary messages,
//   fragmented or not, pings and pongs between the fragments, in every length form, a close
//   at the end): the payload must come out exactly, without an error.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "net/transport/ws_frame.hpp"

using namespace mqtt::net::ws;
using bytes = std::vector<std::uint8_t>;

namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "ws_fuzz: %s\n", what);
        std::abort();
    }
}

struct outcome {
    bytes payload;
    std::size_t consumed = 0;
    bool done = false;
    bool peer_closed = false;
    std::uint16_t peer_code = 0;
    std::uint16_t error = 0;
    bool ping_pending = false;
    bytes ping;
    bool operator==(const outcome&) const = default;
};

outcome finish(const decoder& d, outcome o) {
    o.done = d.done();
    o.peer_closed = d.peer_closed();
    o.peer_code = d.peer_code();
    o.error = d.error();
    o.ping_pending = d.ping_pending();
    if (o.ping_pending) o.ping.assign(d.ping_payload().begin(), d.ping_payload().end());
    check(d.peer_closed() || d.error() != 0 || !d.done(), "done without a close or an error");
    check(!(d.peer_closed() && d.error() != 0), "both a close and an error");
    return o;
}

// All of `in` at once, into a buffer of its own.
outcome at_once(std::uint64_t limit, std::span<const std::uint8_t> in) {
    decoder d{limit};
    bytes out(in.size() + 1);
    const auto r = d.decode(in, out.data());
    check(r.consumed <= in.size() && r.payload <= r.consumed, "more out than in");
    check(d.done() || r.consumed == in.size(), "input left without a reason");
    outcome o;
    o.payload.assign(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(r.payload));
    o.consumed = r.consumed;
    return finish(d, std::move(o));
}

// In chunks of `chunk` bytes, each decoded in place as the connection does.
outcome in_chunks(std::uint64_t limit, std::span<const std::uint8_t> in, std::size_t chunk) {
    decoder d{limit};
    outcome o;
    bytes buf;
    for (std::size_t at = 0; at < in.size() && !d.done(); at += chunk) {
        const std::size_t n = std::min(chunk, in.size() - at);
        buf.assign(in.begin() + static_cast<std::ptrdiff_t>(at),
                   in.begin() + static_cast<std::ptrdiff_t>(at + n));
        const auto r = d.decode(buf, buf.data());
        check(r.consumed <= n && r.payload <= r.consumed, "more out than in (in place)");
        check(d.done() || r.consumed == n, "input left without a reason (in place)");
        o.payload.insert(o.payload.end(), buf.begin(),
                         buf.begin() + static_cast<std::ptrdiff_t>(r.payload));
        o.consumed += r.consumed;
        if (d.ping_pending() && (at / chunk) % 2 == 1) {
            // The connection answers pings as they come: taking one changes nothing else.
            d.take_ping();
        }
    }
    return finish(d, std::move(o));
}

// A masked client frame.
void frame(bytes& out, std::uint8_t b0, std::span<const std::uint8_t> payload,
           std::array<std::uint8_t, 4> key) {
    out.push_back(b0);
    const std::uint64_t n = payload.size();
    if (n < 126) {
        out.push_back(static_cast<std::uint8_t>(0x80 | n));
    } else if (n <= 0xFFFF) {
        out.insert(out.end(),
                   {0xFE, static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)});
    } else {
        out.push_back(0xFF);
        for (int k = 7; k >= 0; --k) out.push_back(static_cast<std::uint8_t>(n >> (8 * k)));
    }
    out.insert(out.end(), key.begin(), key.end());
    for (std::size_t i = 0; i < n; ++i) out.push_back(payload[i] ^ key[i & 3]);
}

// Valid frames from a list of items (kind and flags byte, length byte, 4 mask bytes): the
// stream, the payload it carries and the last ping's payload.
struct script {
    bytes stream;
    bytes payload;
    bool ping = false;
    bytes ping_payload;
    bool closed = false;
};

script valid_frames(std::span<const std::uint8_t> in) {
    script s;
    bool in_message = false;
    std::size_t at = 0;
    std::uint8_t fill = 0;
    while (at + 6 <= in.size() && !s.closed && s.stream.size() < (std::size_t{4} << 20)) {
        const std::uint8_t t = in[at];
        std::size_t len = in[at + 1];
        const std::array<std::uint8_t, 4> key{in[at + 2], in[at + 3], in[at + 4], in[at + 5]};
        at += 6;
        const int kind = t & 3;
        if (kind == 0) {  // a data frame: the 16- and 64-bit length forms too
            if ((t & 0x20) != 0) len = 126 + len * 251;
            if ((t & 0x40) != 0) len += 65536;
        } else {
            len = std::min<std::size_t>(len, 125);
        }
        bytes payload(len);
        for (auto& b : payload) b = at < in.size() ? in[at++] : fill++;
        switch (kind) {
            case 0: {
                const bool fin = (t & 0x10) != 0;
                const std::uint8_t op = in_message ? 0x0 : 0x2;
                frame(s.stream, static_cast<std::uint8_t>((fin ? 0x80 : 0) | op), payload, key);
                s.payload.insert(s.payload.end(), payload.begin(), payload.end());
                in_message = !fin;
                break;
            }
            case 1:
                frame(s.stream, 0x89, payload, key);
                s.ping = true;
                s.ping_payload = payload;
                break;
            case 2:
                frame(s.stream, 0x8A, payload, key);
                break;
            default: {  // a close with code 1000 and an ASCII reason
                bytes body{0x03, 0xE8};
                for (std::size_t i = 0; i < std::min<std::size_t>(len, 123); ++i) {
                    body.push_back(static_cast<std::uint8_t>('a' + payload[i] % 26));
                }
                frame(s.stream, 0x88, body, key);
                s.closed = true;
                break;
            }
        }
    }
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t knobs = data[0];
    const std::span<const std::uint8_t> rest(data + 1, size - 1);
    constexpr std::array<std::uint64_t, 4> limits{0, 300, 70'000, std::uint64_t{1} << 28};
    const std::uint64_t limit = limits[knobs & 3];
    const std::size_t chunk = 1 + ((knobs >> 2) & 31) * 3;

    if ((knobs & 0x80) == 0) {
        const auto whole = at_once(limit, rest);
        const auto chunked = in_chunks(limit, rest, chunk);
        // A ping taken along the way is the one difference allowed.
        auto same = chunked;
        if (!same.ping_pending && whole.ping_pending) {
            same.ping_pending = true;
            same.ping = whole.ping;
        }
        check(whole.payload == chunked.payload, "chunked payload differs");
        check(whole.consumed == chunked.consumed, "chunked consumption differs");
        check(whole.done == chunked.done && whole.error == chunked.error &&
                  whole.peer_closed == chunked.peer_closed && whole.peer_code == chunked.peer_code,
              "chunked end state differs");
        check(same.ping_pending == whole.ping_pending &&
                  (!whole.ping_pending || same.ping == whole.ping),
              "chunked ping differs");
        return 0;
    }

    const auto s = valid_frames(rest);
    const std::uint64_t room = std::uint64_t{1} << 40;  // no message is too big here
    const auto whole = at_once(room, s.stream);
    const auto chunked = in_chunks(room, s.stream, chunk);
    for (const auto* o : {&whole, &chunked}) {
        check(o->error == 0, "valid frames refused");
        check(o->payload == s.payload, "valid frames' payload altered");
        check(o->peer_closed == s.closed && (!s.closed || o->peer_code == 1000), "close lost");
        check(o->consumed == s.stream.size(), "valid frames not all consumed");
    }
    check(whole.ping_pending == s.ping && (!s.ping || whole.ping == s.ping_payload), "ping lost");
    return 0;
}
