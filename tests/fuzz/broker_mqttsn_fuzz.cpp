// libFuzzer target: arbitrary datagrams into the MQTT-SN gateway's per-client state machine
// (broker::mqttsn_client), two clients on one engine, without sockets. The input is a
// script of steps, each one octet of opcode then its arguments:
//   op % 4 == 0: a datagram to client op/4 % 2: one octet of length n, then n octets
//   op % 4 == 1: a datagram from an address without a client (mqttsn_handle_unattached)
//   op % 4 == 2: time passes (one octet: seconds), every client's timer runs
//   op % 4 == 3: client op/4 % 2 is lost (a new one takes its place)
// With op & 8 set, a datagram (op % 4 == 0 or 1) first goes through the forwarder
// encapsulation as the UDP driver does (broker::mqttsn_open): what does not open is dropped,
// the wrapped message is what the client or the gateway sees.
// Each client starts connected and subscribed to "#", so that what one publishes reaches
// the other. Checked, besides what ASan and UBSan catch: every datagram the gateway sends
// decodes as an MQTT-SN message, and wrapped for a node (broker::mqttsn_wrap) opens again
// to that node and the same bytes.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/mqttsn_gateway.hpp"
#include "mqtt/protocol/mqttsn.hpp"

using namespace mqtt;
namespace sn = protocol::mqttsn;

namespace {

void check_sent(const std::vector<std::uint8_t>& d) {
    if (!sn::decode(d)) std::abort();  // the gateway sent something malformed
    static const std::string node("\x00\xa1", 2);
    const auto wrapped = broker::mqttsn_wrap(node, d);
    const auto opened = broker::mqttsn_open(wrapped);
    if (!opened || opened->node != node ||
        !std::equal(opened->message.begin(), opened->message.end(), d.begin(), d.end()))
        std::abort();
}

void check_output(broker::mqttsn_client& c, broker::clock::time_point now) {
    for (const auto& d : c.take_output(now)) check_sent(d);
}

std::unique_ptr<broker::mqttsn_client> start(broker::engine& e, const broker::mqttsn_settings& s,
                                             broker::clock::time_point now, int n) {
    auto c = std::make_unique<broker::mqttsn_client>(e, s, now, "fuzz");
    const std::uint8_t id = static_cast<std::uint8_t>('a' + n);
    const std::uint8_t connect[] = {0x07, 0x04, 0x04, 0x01, 0x00, 0x3C, id};
    c->on_datagram(connect, now);
    const std::uint8_t subscribe[] = {0x06, 0x12, 0x20, 0x00, 0x01, '#'};
    c->on_datagram(subscribe, now);
    check_output(*c, now);
    return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto now = broker::clock::time_point{} + std::chrono::hours(1);
    broker::engine e;
    broker::mqttsn_settings s;
    s.predefined = {{1, "p/1"}, {2, "p/+"}};
    // Small enough for the time steps to reach retransmissions and the buffer bound.
    s.retry_interval = std::chrono::seconds(2);
    s.max_buffered = 4;
    std::unique_ptr<broker::mqttsn_client> clients[2] = {start(e, s, now, 0), start(e, s, now, 1)};
    std::size_t at = 0;
    while (at < size) {
        const std::uint8_t op = data[at++];
        const int who = (op >> 2) & 1;
        switch (op & 3) {
            case 0:
            case 1: {
                if (at >= size) break;
                const std::size_t want = data[at++];
                const std::size_t n = std::min(want, size - at);
                std::span<const std::uint8_t> d(data + at, n);
                at += n;
                if ((op & 8) != 0) {
                    const auto envelope = broker::mqttsn_open(d);
                    if (!envelope) break;  // the driver counts it as malformed
                    d = envelope->message;
                }
                if ((op & 3) == 0) {
                    if (!clients[who]->closed()) clients[who]->on_datagram(d, now);
                } else {
                    std::vector<std::uint8_t> reply;
                    broker::mqttsn_handle_unattached(e, s, d, now, reply);
                    if (!reply.empty()) check_sent(reply);
                }
                break;
            }
            case 2:
                if (at >= size) break;
                now += std::chrono::seconds(data[at++]);
                e.on_timer(now);
                for (auto& c : clients) c->on_timer(now);
                break;
            case 3:
                clients[who]->on_transport_closed(now);
                check_output(*clients[who], now);
                clients[who] = start(e, s, now, who);
                break;
        }
        for (auto& c : clients) check_output(*c, now);
    }
    return 0;
}
