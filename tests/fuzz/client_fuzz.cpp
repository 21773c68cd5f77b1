// libFuzzer target: the client session (mqtt/client/session.hpp), which tern-pub, tern-sub,
// tern-bench and both sides of tern-bridge run against brokers they do not control. A
// broker's bytes are hostile input here: the session must close with an error, never crash,
// and never send a packet that is not valid MQTT.
//
// The first input byte chooses the protocol version and the session's options
// (keep_unacknowledged, manual_ack, report_pubrec). The rest is operations, one byte each
// with its arguments: raw bytes from the broker (in chunks, through a framer, as the driver
// does), well-formed broker packets the target encodes (CONNACK with a code, session present
// and properties such as Receive Maximum, Topic Alias Maximum, Maximum Packet Size; PUBLISH
// of any QoS, with topic aliases; PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK with a
// recent packet id or any; PINGRESP; DISCONNECT), the application's publish, subscribe,
// unsubscribe, acknowledge and disconnect, time passing, the transport closing, reconnect.
//
// Checked, besides what ASan and UBSan catch: every byte the session writes frames and
// decodes as packets of its version (a packet it could not encode is a bug, not an output);
// QoS 1/2 publishes, subscribes and unsubscribes carry a non-zero packet id, and no two
// unacknowledged outbound messages share one; a message event carries a valid topic name; no
// event but the close follows a closed_event until reconnect().

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "mqtt/client/session.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/topic.hpp"

namespace client = mqtt::client;
namespace protocol = mqtt::protocol;
using namespace std::chrono_literals;

namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "client_fuzz: %s\n", what);
        std::abort();
    }
}

// A reader of the input that yields zeros once it is used up.
struct input {
    std::span<const std::uint8_t> bytes;
    std::size_t at = 0;
    bool done() const { return at >= bytes.size(); }
    std::uint8_t byte() { return at < bytes.size() ? bytes[at++] : 0; }
    std::uint16_t u16() { return static_cast<std::uint16_t>(byte() << 8 | byte()); }
    std::string text(std::size_t most) {
        const std::size_t n =
            std::min<std::size_t>(byte() % (most + 1), bytes.size() - std::min(at, bytes.size()));
        std::string s(reinterpret_cast<const char*>(bytes.data()) + at, n);
        at += n;
        return s;
    }
};

const char* const topics[] = {"a", "a/b", "sensors/t1", "$SYS/x", "c/d/e"};

struct harness {
    protocol::protocol_version version;
    client::session s;
    protocol::framer from_broker;  // the broker's bytes, as the driver frames them
    client::clock::time_point now{std::chrono::seconds{1'000'000}};
    std::vector<std::uint16_t> recent_ids;  // ids the session sent (for the broker's acks)
    std::vector<std::uint64_t> tokens;      // ack tokens of held messages
    bool closed_seen = false;
    bool framing_failed = false;
    std::vector<std::uint8_t> out;

    harness(protocol::protocol_version v, client::session_config cfg)
        : version(v), s(std::move(cfg)) {}

    void drain() {
        s.take_output(out);
        protocol::framer f;
        f.feed(out);
        std::set<std::uint16_t> publish_ids;
        for (;;) {
            auto fr = f.next();
            check(fr.has_value(), "the session wrote bytes that do not frame");
            if (!*fr) break;
            auto p = protocol::decode((*fr)->first_byte, (*fr)->body, version);
            check(p.has_value(), "the session wrote a packet that does not decode");
            if (const auto* pub = std::get_if<protocol::publish_packet>(&*p)) {
                if (pub->qos_level != protocol::qos::at_most_once) {
                    check(pub->packet_id != 0, "a QoS 1/2 PUBLISH without a packet id");
                    check(publish_ids.insert(pub->packet_id).second || pub->dup,
                          "two new QoS 1/2 PUBLISH with one packet id in one write");
                    recent_ids.push_back(pub->packet_id);
                }
            } else if (const auto* sub = std::get_if<protocol::subscribe_packet>(&*p)) {
                check(sub->packet_id != 0, "a SUBSCRIBE without a packet id");
                recent_ids.push_back(sub->packet_id);
            } else if (const auto* unsub = std::get_if<protocol::unsubscribe_packet>(&*p)) {
                check(unsub->packet_id != 0, "an UNSUBSCRIBE without a packet id");
                recent_ids.push_back(unsub->packet_id);
            } else if (const auto* rel = std::get_if<protocol::pubrel_packet>(&*p)) {
                recent_ids.push_back(rel->packet_id);
            }
        }
        if (recent_ids.size() > 64) recent_ids.erase(recent_ids.begin(), recent_ids.end() - 32);
        for (auto& e : s.take_events()) {
            check(!closed_seen, "an event after the close");
            if (auto* m = std::get_if<client::message_event>(&e)) {
                check(protocol::is_valid_topic_name(m->message.topic),
                      "a message event without a valid topic name");
                if (m->ack_token != 0 && tokens.size() < 256) tokens.push_back(m->ack_token);
            } else if (std::holds_alternative<client::closed_event>(e)) {
                closed_seen = true;
            }
        }
        if (s.closed()) closed_seen = true;
    }

    void feed_frame_bytes(std::span<const std::uint8_t> bytes) {
        if (framing_failed || s.closed()) return;
        from_broker.feed(bytes);
        for (;;) {
            auto fr = from_broker.next();
            if (!fr) {
                framing_failed = true;
                s.on_framing_error(fr.error());
                return;
            }
            if (!*fr) return;
            s.on_frame(**fr, now);
            drain();
            if (s.closed()) return;
        }
    }

    void send(const protocol::packet& p) {
        auto b = protocol::encode(p, version);
        if (!b) return;  // not a packet of this version (e.g. a 5.0 reason code in 3.1.1)
        feed_frame_bytes(*b);
    }

    std::uint16_t some_id(input& in) {
        const auto pick = in.byte();
        if (!recent_ids.empty() && pick < 224) return recent_ids[pick % recent_ids.size()];
        return static_cast<std::uint16_t>(pick | 1);
    }

    protocol::reason_code ack_code(input& in) {
        const auto b = in.byte();
        if (b < 160) return protocol::reason_code::success;
        return static_cast<protocol::reason_code>(b);
    }
};

void connack(harness& h, input& in) {
    protocol::connack_packet c;
    const auto b = in.byte();
    c.session_present = (b & 1) != 0;
    c.code = (b & 2) != 0 ? static_cast<protocol::reason_code>(in.byte())
                          : protocol::reason_code::success;
    if (h.version == protocol::protocol_version::v5) {
        if ((b & 4) != 0) c.props.receive_maximum = static_cast<std::uint16_t>(in.byte() % 8);
        if ((b & 8) != 0) c.props.topic_alias_maximum = static_cast<std::uint16_t>(in.byte() % 4);
        if ((b & 16) != 0) c.props.maximum_packet_size = 2 + in.u16();
        if ((b & 32) != 0) c.props.maximum_qos = static_cast<std::uint8_t>(in.byte() % 3);
        if ((b & 64) != 0) c.props.assigned_client_identifier = in.text(8);
        if ((b & 128) != 0) c.props.server_keep_alive = static_cast<std::uint16_t>(in.byte());
    }
    h.send(c);
}

void broker_publish(harness& h, input& in) {
    protocol::publish_packet p;
    const auto b = in.byte();
    p.qos_level = static_cast<protocol::qos>(b % 3);
    p.retain = (b & 4) != 0;
    p.dup = (b & 8) != 0;
    p.topic = topics[(b >> 4) % std::size(topics)];
    if (p.qos_level != protocol::qos::at_most_once) p.packet_id = h.some_id(in);
    if (h.version == protocol::protocol_version::v5 && (b & 128) != 0) {
        p.props.topic_alias = static_cast<std::uint16_t>(in.byte() % 4);
        if ((in.byte() & 1) != 0) p.topic.clear();  // the alias alone
    }
    p.payload = in.text(32);
    h.send(p);
}

void app_publish(harness& h, input& in) {
    protocol::publish_packet p;
    const auto b = in.byte();
    p.qos_level = static_cast<protocol::qos>(b % 3);
    p.retain = (b & 4) != 0;
    p.topic = topics[(b >> 3) % std::size(topics)];
    p.payload = in.text(16);
    if ((b & 64) != 0 && h.version == protocol::protocol_version::v5) {
        p.props.user_properties.emplace_back("k", in.text(4));
    }
    if ((b & 128) != 0) {
        (void)h.s.publish_with_id(std::move(p), static_cast<std::uint16_t>(in.byte() % 8), h.now);
    } else {
        (void)h.s.publish(std::move(p), h.now);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t knob = data[0];
    const protocol::protocol_version versions[] = {
        protocol::protocol_version::v3_1_1, protocol::protocol_version::v5,
        protocol::protocol_version::v3_1, protocol::protocol_version::v5};
    client::session_config cfg;
    cfg.connect.version = versions[knob % 4];
    cfg.connect.client_id = "fuzz";
    cfg.connect.clean_start = (knob & 4) == 0;
    cfg.connect.keep_alive = 30;
    cfg.keep_unacknowledged = (knob & 8) != 0;
    cfg.manual_ack = (knob & 16) != 0;
    cfg.report_pubrec = (knob & 32) != 0;
    cfg.first_auto_id = (knob & 64) != 0 ? 8 : 1;
    harness h(cfg.connect.version, std::move(cfg));
    h.s.start(h.now);
    h.drain();

    input in{{data + 1, size - 1}};
    for (int ops = 0; ops < 2000 && !in.done(); ++ops) {
        const auto op = in.byte();
        switch (op % 20) {
            case 0: {  // raw bytes from the broker
                const auto n = std::min<std::size_t>(in.byte(), in.bytes.size() - in.at);
                h.feed_frame_bytes(in.bytes.subspan(in.at, n));
                in.at += n;
                break;
            }
            case 1:
                connack(h, in);
                break;
            case 2:
            case 3:
                broker_publish(h, in);
                break;
            case 4:
                h.send(protocol::puback_packet{h.some_id(in), h.ack_code(in), {}});
                break;
            case 5:
                h.send(protocol::pubrec_packet{h.some_id(in), h.ack_code(in), {}});
                break;
            case 6:
                h.send(protocol::pubrel_packet{h.some_id(in), protocol::reason_code::success, {}});
                break;
            case 7:
                h.send(protocol::pubcomp_packet{h.some_id(in), protocol::reason_code::success, {}});
                break;
            case 8: {
                protocol::suback_packet a;
                a.packet_id = h.some_id(in);
                const auto n = in.byte() % 3;
                for (int i = 0; i < n; ++i)
                    a.codes.push_back(static_cast<protocol::reason_code>(in.byte() % 3));
                h.send(a);
                break;
            }
            case 9: {
                protocol::unsuback_packet a;
                a.packet_id = h.some_id(in);
                if (h.version == protocol::protocol_version::v5)
                    a.codes.push_back(protocol::reason_code::success);
                h.send(a);
                break;
            }
            case 10:
                h.send(protocol::pingresp_packet{});
                break;
            case 11:
                h.send(
                    protocol::disconnect_packet{static_cast<protocol::reason_code>(in.byte()), {}});
                break;
            case 12:
            case 13:
                app_publish(h, in);
                break;
            case 14: {
                std::vector<protocol::subscription> subs(1 + in.byte() % 2);
                for (auto& sub : subs) {
                    sub.filter = (in.byte() & 1) != 0 ? "#" : "a/+";
                    sub.options.max_qos = static_cast<protocol::qos>(in.byte() % 3);
                }
                (void)h.s.subscribe(std::move(subs), {}, h.now);
                break;
            }
            case 15:
                (void)h.s.unsubscribe({"a/+"}, h.now);
                break;
            case 16:
                if (!h.tokens.empty()) {
                    const auto i = in.byte() % h.tokens.size();
                    (void)h.s.acknowledge(h.tokens[i], h.ack_code(in));
                    h.tokens.erase(h.tokens.begin() + static_cast<std::ptrdiff_t>(i));
                }
                break;
            case 17:
                h.now += std::chrono::milliseconds{in.u16()} * 16;
                h.s.on_timer(h.now);
                break;
            case 18:
                if (!h.s.closed())
                    h.s.on_transport_closed(std::make_error_code(std::errc::connection_reset));
                h.drain();
                h.s.reconnect(h.now);  // a new transport
                h.from_broker = protocol::framer{};
                h.framing_failed = false;
                h.closed_seen = false;
                break;
            default:
                if ((in.byte() & 7) == 0) h.s.disconnect();
                break;
        }
        h.drain();
    }
    return 0;
}
