// libFuzzer target: what tern-sub prints for a message (JSON lines for jq, -F format
// strings) and what tern-pub --json-in reads back. A message is whatever a broker sends, so
// its topic, payload and properties are hostile input here.
//
// The first input byte chooses the mode, the protocol version and the JSON options:
// - a PUBLISH (the rest after the fixed header's flags byte, decoded by the codec): its JSON
//   line must parse as JSON (so it is valid UTF-8 whatever the payload), be one line unless
//   pretty, carry the topic and the payload exactly ("payload", "payload_base64" or
//   "payload_json"), and `tern-sub --json | tern-pub --json-in` must give back the message:
//   topic, payload, QoS, retain and every property a client may send;
// - a line for tern-pub --json-in: parsed or refused with a reason, never a crash; a message
//   it accepts has a valid topic;
// - a -F format string, then a PUBLISH: a string check_format_string() accepts formats any
//   message without a crash.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mqtt/format/format_string.hpp"
#include "mqtt/format/message_json.hpp"
#include "mqtt/format/message_json_in.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace format = mqtt::format;
namespace protocol = mqtt::protocol;

namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "format_fuzz: %s\n", what);
        std::abort();
    }
}

// A PUBLISH from `bytes`: the first is the fixed header's low nibble, the rest the body.
std::optional<protocol::publish_packet> publish_of(std::span<const std::uint8_t> bytes,
                                                   protocol::protocol_version version) {
    if (bytes.empty()) return std::nullopt;
    const auto first = static_cast<std::uint8_t>(0x30 | (bytes[0] & 0x0F));
    auto p = protocol::decode(first, bytes.subspan(1), version);
    if (!p) return std::nullopt;
    auto* pub = std::get_if<protocol::publish_packet>(&*p);
    if (pub == nullptr) return std::nullopt;
    return std::move(*pub);
}

const auto received_at = std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'000}};

void json_out(std::span<const std::uint8_t> bytes, protocol::protocol_version version, bool as_json,
              bool pretty) {
    const auto msg = publish_of(bytes, version);
    if (!msg) return;
    format::json_options options;
    options.payload_as_json = as_json;
    options.pretty = pretty;
    std::string line;
    format::append_message_json(line, *msg, version, received_at, options);
    if (!pretty) check(line.find('\n') == std::string::npos, "a JSON line with a line break");
    const auto j = nlohmann::json::parse(line, nullptr, false);
    check(!j.is_discarded() && j.is_object(), "the JSON line does not parse");
    check(j.value("topic", std::string{"\x01"}) == msg->topic, "the topic differs");
    const bool text = format::is_utf8_text(msg->payload);
    if (j.contains("payload_json")) {
        check(as_json, "payload_json without the option");
        check(j["payload_json"] == nlohmann::json::parse(msg->payload, nullptr, false),
              "payload_json is not the payload's JSON value");
    } else if (j.contains("payload")) {
        check(text && j["payload"] == msg->payload, "the payload differs");
    } else {
        check(!text, "a UTF-8 payload written as base64");
        const auto raw = format::base64_decode(j.value("payload_base64", std::string{"!"}));
        check(raw && *raw == msg->payload, "payload_base64 does not decode to the payload");
    }
    if (as_json || msg->topic.empty()) return;
    // tern-sub --json | tern-pub --json-in: the message a client would publish again.
    const auto back = format::parse_message_json(line, {});
    check(back.error.empty(), "tern-pub --json-in refuses tern-sub --json's line");
    auto want = *msg;
    want.props.subscription_identifiers.clear();  // output only: a client cannot send them
    want.props.topic_alias.reset();
    check(back.message.topic == want.topic && back.message.payload == want.payload,
          "the topic or payload changed on the way back");
    check(back.message.qos_level == want.qos_level && back.message.retain == want.retain,
          "the QoS or retain flag changed on the way back");
    if (version == protocol::protocol_version::v5) {
        check(back.message.props == want.props, "a property changed on the way back");
    }
}

void json_in(std::string_view line) {
    format::json_in_defaults d;
    const auto r = format::parse_message_json(line, d);
    if (r.error.empty()) {
        check(protocol::is_valid_topic_name(r.message.topic),
              "an accepted line's topic is invalid");
    }
}

void format_string(std::span<const std::uint8_t> in, protocol::protocol_version version) {
    std::size_t nul = 0;
    while (nul < in.size() && in[nul] != 0) ++nul;
    const std::string_view fmt{reinterpret_cast<const char*>(in.data()), nul};
    if (!format::check_format_string(fmt).empty()) return;
    const auto msg = publish_of(in.subspan(std::min(nul + 1, in.size())), version);
    if (!msg) return;
    std::string out;
    (void)format::append_formatted(out, fmt, *msg, received_at);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t knob = data[0];
    const std::span<const std::uint8_t> rest{data + 1, size - 1};
    const auto version =
        (knob & 4) != 0 ? protocol::protocol_version::v5 : protocol::protocol_version::v3_1_1;
    switch (knob % 4) {
        case 0:
        case 1:
            json_out(rest, version, (knob & 8) != 0, (knob & 16) != 0);
            break;
        case 2:
            json_in({reinterpret_cast<const char*>(rest.data()), rest.size()});
            break;
        default:
            format_string(rest, version);
            break;
    }
    return 0;
}
