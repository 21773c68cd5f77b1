#pragma once

// A scripted client for the broker's session state machine: packets in, packets out, a
// hand-driven clock, no sockets. Shared by the broker_*_test.cpp files.

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"

namespace tern_test {

using namespace mqtt::protocol;
using mqtt::broker::clock;
using bytes = std::vector<std::uint8_t>;

struct counting_observer final : mqtt::broker::session_observer {
    int wakes = 0;
    int deadline_moves = 0;
    const mqtt::broker::session* watched = nullptr;
    clock::time_point deadline_told{};  // the session's deadline() when it was moved
    void wake() override { ++wakes; }
    void deadline_moved() override {
        ++deadline_moves;
        if (watched != nullptr) deadline_told = watched->deadline();
    }
};

// One connection to `engine`, speaking `version`. The clock is shared and set by the test.
class test_client {
  public:
    test_client(mqtt::broker::engine& e, protocol_version v, clock::time_point& now)
        : engine_(e),
          version_(v),
          now_(now),
          session_(std::make_unique<mqtt::broker::session>(e, now)) {
        session_->set_observer(&observer_);
        observer_.watched = session_.get();
    }

    mqtt::broker::session& session() { return *session_; }
    int wakes() const { return observer_.wakes; }
    int deadline_moves() const { return observer_.deadline_moves; }
    clock::time_point deadline_told() const { return observer_.deadline_told; }
    void drop() { session_.reset(); }  // the connection object goes away
    // The network connection is lost (no DISCONNECT), then a new one starts, not connected.
    void lose_connection() { session_->on_transport_closed(now_); }
    void new_connection() {
        session_ = std::make_unique<mqtt::broker::session>(engine_, now_);
        session_->set_observer(&observer_);
        observer_.watched = session_.get();
    }

    // Encodes with the client's version and hands the frame to the session.
    void send(const packet& p) {
        auto b = encode(p, version_);
        REQUIRE(b.has_value());
        send_raw(*b);
    }
    void send_raw(const bytes& b) {
        framer f;
        f.feed(b);
        for (;;) {
            auto fr = f.next();
            if (!fr) {
                session_->on_framing_error(fr.error());
                return;
            }
            if (!*fr) return;
            session_->on_frame(**fr, now_);
        }
    }

    // Everything the session wants written, decoded as the client would.
    std::vector<packet> received() {
        bytes out;
        session_->take_output(out);
        std::vector<packet> packets;
        framer f;
        f.feed(out);
        for (;;) {
            auto fr = f.next();
            REQUIRE(fr.has_value());
            if (!*fr) break;
            auto p = decode((*fr)->first_byte, (*fr)->body, version_);
            REQUIRE(p.has_value());
            packets.push_back(std::move(*p));
        }
        return packets;
    }
    bytes received_bytes() {
        bytes out;
        session_->take_output(out);
        return out;
    }

    // CONNECT and expect CONNACK 0x00 with Session Present 0.
    connack_packet connect(std::string id, std::uint16_t keep_alive = 60,
                           std::optional<will_message> will = std::nullopt) {
        connect_packet c;
        c.version = version_;
        c.client_id = std::move(id);
        c.keep_alive = keep_alive;
        c.will = std::move(will);
        const auto ack = connect_with(std::move(c));
        CHECK(ack.code == reason_code::success);
        CHECK_FALSE(ack.session_present);
        return ack;
    }
    // CONNECT as given; the CONNACK, first of what came back (the rest: rest_after_connack()).
    connack_packet connect_with(connect_packet c) {
        c.version = version_;
        send(c);
        auto in = received();
        REQUIRE(!in.empty());
        const auto* ack = std::get_if<connack_packet>(&in[0]);
        REQUIRE(ack != nullptr);
        pending_.assign(in.begin() + 1, in.end());
        return *ack;
    }
    // A persistent session: 3.1.1 Clean Session 0, or 5.0 Clean Start 0 with the expiry.
    connack_packet connect_persistent(std::string id, bool clean = false,
                                      std::uint32_t expiry = 0xFFFFFFFF) {
        connect_packet c;
        c.client_id = std::move(id);
        c.clean_start = clean;
        if (is_v5(version_)) c.props.session_expiry_interval = expiry;
        auto ack = connect_with(std::move(c));
        REQUIRE(ack.code == reason_code::success);
        return ack;
    }
    std::vector<packet> rest_after_connack() { return std::move(pending_); }

    std::vector<reason_code> subscribe(std::string filter, qos q, std::uint16_t id = 1) {
        subscribe_packet s;
        s.packet_id = id;
        s.subscriptions.push_back({std::move(filter), {q}});
        send(s);
        auto in = received();
        REQUIRE(!in.empty());
        const auto* ack = std::get_if<suback_packet>(&in[0]);
        REQUIRE(ack != nullptr);
        CHECK(ack->packet_id == id);
        pending_.assign(in.begin() + 1, in.end());  // retained messages after SUBACK
        return ack->codes;
    }
    // Packets that arrived after the SUBACK of the last subscribe().
    std::vector<packet> after_suback() { return std::move(pending_); }

    void publish(std::string topic, std::string payload, qos q = qos::at_most_once,
                 bool retain = false, std::uint16_t id = 0) {
        publish_packet p;
        p.topic = std::move(topic);
        p.payload = std::move(payload);
        p.qos_level = q;
        p.retain = retain;
        p.packet_id = q == qos::at_most_once ? 0 : (id ? id : next_id_++);
        send(p);
    }

    protocol_version version() const { return version_; }

  private:
    mqtt::broker::engine& engine_;
    protocol_version version_;
    clock::time_point& now_;
    counting_observer observer_;
    std::unique_ptr<mqtt::broker::session> session_;
    std::vector<packet> pending_;
    std::uint16_t next_id_ = 100;
};

template <class T>
const T& as(const packet& p) {
    const T* t = std::get_if<T>(&p);
    REQUIRE_MESSAGE(t != nullptr, "unexpected packet type ", static_cast<int>(type_of(p)));
    return *t;
}

// A start time far from the clock's epoch so deadlines in the past are representable.
inline clock::time_point test_epoch() {
    return clock::time_point{} + std::chrono::hours{1};
}

// The value of the Prometheus sample line `name` ("tern_x" or "tern_x{qos=\"1\"}") in a
// /metrics text, or -1.
inline long long sample(const std::string& text, const std::string& name) {
    std::istringstream in{text};
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(name + " ", 0) == 0) return std::stoll(line.substr(name.size() + 1));
    }
    return -1;
}

}  // namespace tern_test
