#pragma once

// The MQTT-SN gateway's UDP side: one socket per listener address, a broker::mqttsn_client
// per client address, datagrams in and out, and a tick that runs the clients' deadlines
// (keep-alive, CONNECT timeout). Private to mqtt_net; used by server.cpp.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>

#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/mqttsn_gateway.hpp"

namespace mqtt::net::detail {

class mqttsn_udp {
  public:
    mqttsn_udp(boost::asio::io_context& io, broker::engine& e, broker::mqttsn_settings s);
    ~mqttsn_udp();
    mqttsn_udp(const mqttsn_udp&) = delete;
    mqttsn_udp& operator=(const mqttsn_udp&) = delete;

    boost::system::error_code bind(const boost::asio::ip::udp::endpoint& ep);
    std::string local_address() const;  // "127.0.0.1:40123"
    void start();                        // spawns the receive loop and the tick
    void stop();                         // closes the socket; every client's session ends
    // New settings (SIGHUP). The clients hold settings_ by reference, so each value counts
    // from its next use: a retransmission already due keeps its time, a client's in-flight
    // window is set at its CONNECT. security_slot and ADVERTISE stay as they started.
    void reload(const broker::mqttsn_settings& s);
    // The listener's max_connections (SIGHUP); clients over a lowered bound stay.
    void set_max_clients(std::optional<std::size_t> max) { max_clients_ = max; }
    std::size_t client_count() const noexcept { return clients_.size(); }
    std::size_t dropped() const noexcept { return dropped_; }
    std::size_t advertised() const noexcept { return advertised_; }

  private:
    struct client;
    // Who a client is: the address datagrams come from and, behind a forwarder there, the
    // wireless node's id (MQTT-SN 1.2, 5.5).
    struct peer {
        boost::asio::ip::udp::endpoint ep;
        std::optional<std::string> node;
        bool operator<(const peer& o) const { return std::tie(ep, node) < std::tie(o.ep, o.node); }
    };
    boost::asio::awaitable<void> receive_loop();
    boost::asio::awaitable<void> tick_loop();
    boost::asio::awaitable<void> advertise_loop();
    void on_datagram(const boost::asio::ip::udp::endpoint& from, std::size_t n);
    // A sleeping client of this listener that a datagram from the new address `from` wakes
    // (PINGREQ with its client id, or CONNECT): moved there. nullptr: none.
    client* move_sleeper(const peer& from, std::span<const std::uint8_t> d);
    void apply_receive_buffer();  // SO_RCVBUF from settings_.receive_buffer
    // Adds the datagrams the kernel dropped for the socket since the last call to the
    // engine's stats (called every tick).
    void count_kernel_drops();
    // A new client would be over max_clients_ (or the broker's max_connections).
    bool full() const;
    // CONNACK rejected: congestion to a CONNECT over the bound; counted and logged.
    void refuse(const peer& who);
    void flush(client& c);
    void flush_later(const peer& who);
    // Wrapped in an encapsulation for a node behind a forwarder.
    void send_to(const peer& to, const std::vector<std::uint8_t>& d);
    void send_to(const boost::asio::ip::udp::endpoint& ep, const std::vector<std::uint8_t>& d);

    boost::asio::io_context& io_;
    broker::engine& engine_;
    broker::mqttsn_settings settings_;
    boost::asio::ip::udp::socket socket_;
    boost::asio::steady_timer tick_;
    boost::asio::steady_timer advertise_timer_;
    boost::asio::ip::udp::endpoint advertise_to_;
    std::vector<std::uint8_t> buf_;
    std::map<peer, std::unique_ptr<client>> clients_;
    // Each client's broker session, for the engine's lookup by client id.
    std::unordered_map<const broker::session*, client*> by_session_;
    std::size_t dropped_ = 0;  // malformed or unexpected datagrams, QoS 0 over the buffer
    std::size_t advertised_ = 0;
    std::uint32_t kernel_drops_ = 0;  // the socket's drop count when last read
    // The listener's max_connections; nullopt: the broker's bound.
    std::optional<std::size_t> max_clients_;
    bool stopped_ = false;
};

}  // namespace mqtt::net::detail
