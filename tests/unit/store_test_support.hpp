#pragma once

// For the store tests: a message as the broker would keep it (its 5.0 properties encoded,
// here none), to record, snapshot and read back.

#include <memory>
#include <string>
#include <utility>

#include "mqtt/broker/message.hpp"
#include "mqtt/protocol/types.hpp"

namespace store_test {

inline std::shared_ptr<mqtt::broker::message> make_msg(
    std::string topic, std::string payload,
    mqtt::protocol::qos q = mqtt::protocol::qos::at_least_once, bool retain = false) {
    return mqtt::broker::make_message(
        {.topic = topic, .payload = payload, .qos_level = q, .retain = retain, .props_v5 = {0x00}});
}

}  // namespace store_test
