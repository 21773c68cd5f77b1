#pragma once

// MQTT 5.0 properties given by name, as text: `-D PACKET PROPERTY VALUE` on the command line
// (Mosquitto's hyphenated names, e.g. message-expiry-interval) and the "properties" object of
// tern-pub --json-in (tern-sub --json's snake case names, e.g. message_expiry_interval).
// Only what a client may send in each packet is accepted; every value is range-checked here,
// so the session never meets a property it would have to refuse.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/protocol/property.hpp"

namespace mqtt::format {

// The packet a property goes into; `will` is the Will Properties of CONNECT.
enum class property_target : std::uint8_t {
    connect,
    publish,
    subscribe,
    unsubscribe,
    disconnect,
    will
};

std::optional<property_target> parse_property_target(std::string_view word) noexcept;
std::string_view to_string(property_target t) noexcept;

struct property_error {
    std::string message;
    // The property is valid MQTT but this build cannot act on it (enhanced authentication).
    bool not_implemented = false;
};

// Sets property `name` (hyphens or underscores) of a `target` packet from text. `value2` is
// the value of a User Property (then `value` is its key) and must be absent otherwise.
// Integers are decimal; Correlation Data is taken as the bytes of `value`.
std::optional<property_error> set_property(protocol::properties& props, property_target target,
                                           std::string_view name, std::string_view value,
                                           std::optional<std::string_view> value2 = std::nullopt);

// The properties of every packet a tool sends, filled by -D.
struct property_set {
    protocol::properties connect;
    protocol::properties publish;
    protocol::properties subscribe;
    protocol::properties unsubscribe;
    protocol::properties disconnect;
    protocol::properties will;

    protocol::properties& of(property_target t) noexcept;
    bool empty() const noexcept;
};

// One `-D PACKET PROPERTY VALUE [VALUE]`: 3 words, or 4 for user-property.
std::optional<property_error> add_property_arg(property_set& set,
                                               const std::vector<std::string>& words);

}  // namespace mqtt::format
