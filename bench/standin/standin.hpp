#pragma once

// tern-standin: a broker stand-in for measuring tern-bench itself. It speaks just enough MQTT
// (3.1, 3.1.1, 5.0) for a bench client: CONNACK, SUBACK, UNSUBACK, PINGRESP, the QoS 1/2
// acknowledgements, and in echo mode each PUBLISH copied to the connections whose
// subscriptions match its topic. No sessions, queues, retained messages, wills, shared
// subscriptions or authentication: per message it does a fraction of a broker's work, so a
// bench that is slower against it than against a real broker would be the bottleneck.
//
// One thread, one epoll set, level-triggered, non-blocking sockets. Packets are cut with the
// protocol core's framer; CONNECT, SUBSCRIBE and UNSUBSCRIBE are decoded and their answers
// encoded with its codec. A PUBLISH is forwarded as its own bytes (packet id rewritten for the
// receiver, DUP and RETAIN cleared) when the receiver speaks the same version at the same QoS,
// else decoded and encoded again. Output is gathered per connection and written once per
// turn of the loop. A connection whose output passes a high-water mark stops the reading of
// the connections that feed it until it drains, so memory stays bounded.

#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/packet.hpp"

namespace mqtt::bench::standin {

enum class mode : std::uint8_t {
    sink,  // acknowledge and drop every PUBLISH
    echo,  // and deliver it to the matching subscriptions
};

struct settings {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;  // 0: a free port
    standin::mode mode = mode::echo;
    std::uint32_t max_packet_size = 1024 * 1024;
    std::size_t high_water = 1024 * 1024;  // output bytes at which feeders pause
};

struct counters {
    std::uint64_t connections = 0;
    std::uint64_t publishes_in = 0;
    std::uint64_t deliveries_out = 0;
    std::uint64_t closed_for_errors = 0;
};

class server {
  public:
    explicit server(settings s);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Binds and listens; returns an error message, empty on success.
    std::string open();
    std::uint16_t port() const noexcept { return port_; }
    // Serves until *stop becomes non-zero (checked at least every 200 ms).
    void run(const volatile std::sig_atomic_t* stop);
    const counters& stats() const noexcept { return stats_; }

  private:
    struct subscription {
        std::string filter;
        protocol::qos max_qos;
        bool no_local;
    };
    struct route {
        std::uint32_t slot;
        protocol::qos qos;
        bool no_local;  // every matching subscription of that connection has No Local
    };
    struct waiter {
        std::uint32_t slot;
        std::uint32_t generation;
    };
    struct connection {
        int fd = -1;
        std::uint32_t slot = 0;
        std::uint32_t generation = 0;
        protocol::framer in;
        protocol::protocol_version version = protocol::protocol_version::v3_1_1;
        bool connected = false;
        bool paused = false;  // not read: an output it feeds is over the high-water mark
        bool dirty = false;   // has output to write this turn
        std::uint32_t events = 0;  // what epoll watches now
        std::vector<std::uint8_t> out;
        std::size_t out_sent = 0;
        std::vector<subscription> subscriptions;
        std::vector<waiter> waiters;  // paused until this one's output drains
        std::uint16_t next_id = 0;
        explicit connection(std::uint32_t max_packet) : in(max_packet) {}
        std::size_t pending() const noexcept { return out.size() - out_sent; }
    };
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    using route_cache =
        std::unordered_map<std::string, std::vector<route>, string_hash, std::equal_to<>>;

    void accept_all();
    void on_readable(connection& c);
    enum class verdict : std::uint8_t { keep, close, error };
    // What to do with the connection after one packet.
    verdict handle(connection& c, const protocol::frame& f);
    verdict on_connect(connection& c, const protocol::frame& f);
    verdict on_publish(connection& c, const protocol::frame& f);
    verdict on_subscribe(connection& c, const protocol::frame& f);
    verdict on_unsubscribe(connection& c, const protocol::frame& f);
    void deliver(connection& from, connection& to, protocol::qos q, const protocol::frame& f,
                 std::size_t id_offset);
    void throttle(connection& feeder, connection& full);
    const std::vector<route>& routes_for(std::string_view topic);
    void send_ack(connection& c, std::uint8_t first_byte, std::uint16_t id);
    void mark_dirty(connection& c);
    void flush(connection& c);
    void rearm(connection& c);
    void close(connection& c, bool error);
    void resume_waiters(connection& c);
    connection* lookup(std::uint64_t key);

    settings settings_;
    int listen_fd_ = -1;
    int epoll_fd_ = -1;
    bool accepting_ = true;
    std::uint16_t port_ = 0;
    std::uint32_t next_generation_ = 0;  // tells a reused slot's events from its old ones
    std::vector<std::unique_ptr<connection>> connections_;  // by slot; null: free
    std::vector<std::uint32_t> free_slots_;
    std::vector<std::uint32_t> dirty_;
    route_cache routes_;
    protocol::packet scratch_;  // the re-encoding path's decoded PUBLISH
    counters stats_;
};

}  // namespace mqtt::bench::standin
