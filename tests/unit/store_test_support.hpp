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
    auto m = std::make_shared<mqtt::broker::message>();
    m->topic = std::move(topic);
    m->payload = std::move(payload);
    m->qos_level = q;
    m->retain = retain;
    m->props_v5 = {0x00};  // a property length of 0
    return m;
}

}  // namespace store_test
