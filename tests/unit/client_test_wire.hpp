#pragma once

// The broker's side of the wire for client::session tests: packets in, packets out, no
// sockets. Shared by the client_*_test.cpp files.

#include <doctest/doctest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "mqtt/client/session.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"

namespace tern_test {

// Encodes `p` in version `v` and hands it to the session as one whole frame.
inline void feed_packet(mqtt::client::session& s, const mqtt::protocol::packet& p,
                        mqtt::protocol::protocol_version v,
                        mqtt::client::clock::time_point now) {
    auto b = mqtt::protocol::encode(p, v);
    REQUIRE(b.has_value());
    mqtt::protocol::framer f;
    f.feed(*b);
    auto fr = f.next();
    REQUIRE(fr.has_value());
    REQUIRE(fr->has_value());
    s.on_frame(**fr, now);
}

// Everything the session wrote since the last call, decoded in version `v`.
inline std::vector<mqtt::protocol::packet> take_sent(mqtt::client::session& s,
                                                    mqtt::protocol::protocol_version v) {
    std::vector<std::uint8_t> bytes;
    s.take_output(bytes);
    mqtt::protocol::framer f;
    f.feed(bytes);
    std::vector<mqtt::protocol::packet> out;
    for (;;) {
        auto fr = f.next();
        REQUIRE(fr.has_value());
        if (!*fr) break;
        auto p = mqtt::protocol::decode((*fr)->first_byte, (*fr)->body, v);
        REQUIRE(p.has_value());
        out.push_back(std::move(*p));
    }
    return out;
}

}  // namespace tern_test
