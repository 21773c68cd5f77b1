#include "mqttsn_udp.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <chrono>
#include <climits>

#include "mqtt/broker/figures.hpp"

#if defined(__linux__)
#include <linux/sock_diag.h>
#include <sys/socket.h>
#endif

namespace mqtt::net::detail {

namespace asio = boost::asio;
using udp = asio::ip::udp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// How often client deadlines are looked at: keep-alive is in seconds, so a quarter second
// is precise enough and costs nothing with no clients.
constexpr auto tick_period = std::chrono::milliseconds(250);
namespace {
// The kernel's count of datagrams it dropped for this socket, mostly because its receive
// buffer was full (the value SO_RXQ_OVFL reports, read without a control message);
// nullopt where the system does not say.
std::optional<std::uint32_t> kernel_drops([[maybe_unused]] int fd) {
#if defined(__linux__) && defined(SO_MEMINFO)
    std::uint32_t mem[SK_MEMINFO_VARS] = {};
    socklen_t len = sizeof mem;
    if (::getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 ||
        len < (SK_MEMINFO_DROPS + 1) * sizeof(std::uint32_t))
        return std::nullopt;
    return mem[SK_MEMINFO_DROPS];
#else
    return std::nullopt;
#endif
}

std::string to_string(const udp::endpoint& ep) {
    const auto addr = ep.address().to_string();
    const auto port = std::to_string(ep.port());
    return ep.address().is_v6() ? "[" + addr + "]:" + port : addr + ":" + port;
}

// "127.0.0.1:40123", or "127.0.0.1:40123/node/00a1" for a node behind a forwarder.
std::string to_string(const udp::endpoint& ep, const std::optional<std::string>& node) {
    auto s = to_string(ep);
    if (!node) return s;
    static constexpr char digits[] = "0123456789abcdef";
    s += "/node/";
    for (const char ch : *node) {
        const auto b = static_cast<unsigned char>(ch);
        s += digits[b >> 4];
        s += digits[b & 15];
    }
    return s;
}
}  // namespace

// One client address: its gateway state machine, and the observer the broker session
// wakes when a delivery from elsewhere is waiting (flushed later, never re-entrantly).
struct mqttsn_udp::client final : broker::session_observer {
    client(mqttsn_udp& o, peer p, broker::clock::time_point now)
        : owner(o), who(p), sm(o.engine_, o.settings_, now, to_string(p.ep, p.node)) {
        sm.set_observer(this);
        owner.by_session_.emplace(&sm.session(), this);
    }
    ~client() {
        sm.set_observer(nullptr);
        owner.by_session_.erase(&sm.session());
    }
    void wake() override {
        if (flush_posted) return;
        flush_posted = true;
        owner.flush_later(who);
    }
    mqttsn_udp& owner;
    peer who;
    broker::mqttsn_client sm;
    bool flush_posted = false;
};

mqttsn_udp::mqttsn_udp(asio::io_context& io, broker::engine& e, broker::mqttsn_settings s)
    : io_(io), engine_(e), settings_(std::move(s)), socket_(io), tick_(io), advertise_timer_(io), buf_(65536) {}

mqttsn_udp::~mqttsn_udp() { clients_.clear(); }

boost::system::error_code mqttsn_udp::bind(const udp::endpoint& ep) {
    boost::system::error_code ec;
    socket_.open(ep.protocol(), ec);
    if (ec) return ec;
    socket_.bind(ep, ec);
    if (ec) return ec;
    socket_.non_blocking(true, ec);
    if (ec) return ec;
    apply_receive_buffer();
    if (settings_.advertise_interval.count() == 0) return ec;
    // ADVERTISE goes to a configured address, usually a broadcast one.
    const auto to = asio::ip::make_address(settings_.advertise_host, ec);
    if (ec) return ec;
    advertise_to_ = udp::endpoint(to, settings_.advertise_port);
    socket_.set_option(asio::socket_base::broadcast(true), ec);
    return ec;
}

void mqttsn_udp::apply_receive_buffer() {
    // A burst of datagrams (many clients at once) waits in the socket while the loop works
    // through it; what does not fit is lost (and counted: count_kernel_drops). The kernel
    // caps the size at net.core.rmem_max; a refusal is not fatal. 0: the system's default.
    if (settings_.receive_buffer == 0) return;
    const auto bytes = static_cast<int>(std::min<std::size_t>(settings_.receive_buffer, INT_MAX));
    boost::system::error_code ignored;
    socket_.set_option(asio::socket_base::receive_buffer_size(bytes), ignored);
}

void mqttsn_udp::count_kernel_drops() {
    const auto now = kernel_drops(socket_.native_handle());
    if (!now) return;
    // The kernel's counter is 32 bits and may wrap; the difference is right modulo 2^32.
    engine_.stats().mqttsn_datagrams_receive_buffer += static_cast<std::uint32_t>(*now - kernel_drops_);
    kernel_drops_ = *now;
}

void mqttsn_udp::reload(const broker::mqttsn_settings& s) {
    settings_.gateway_id = s.gateway_id;
    settings_.predefined = s.predefined;
    settings_.max_topic_ids = s.max_topic_ids;
    settings_.retry_interval = s.retry_interval;
    settings_.retry_count = s.retry_count;
    settings_.max_buffered = s.max_buffered;
    settings_.max_inflight = s.max_inflight;
    if (s.receive_buffer != settings_.receive_buffer) {
        settings_.receive_buffer = s.receive_buffer;
        apply_receive_buffer();
    }
}

std::string mqttsn_udp::local_address() const {
    boost::system::error_code ec;
    const auto ep = socket_.local_endpoint(ec);
    return ec ? std::string{} : to_string(ep);
}

void mqttsn_udp::start() {
    asio::co_spawn(io_, receive_loop(), asio::detached);
    asio::co_spawn(io_, tick_loop(), asio::detached);
    if (settings_.advertise_interval.count() > 0)
        asio::co_spawn(io_, advertise_loop(), asio::detached);
}

void mqttsn_udp::stop() {
    if (stopped_) return;
    stopped_ = true;
    boost::system::error_code ec;
    socket_.close(ec);
    tick_.cancel();
    advertise_timer_.cancel();
    const auto now = broker::clock::now();
    for (auto& [who, c] : clients_) c->sm.on_transport_closed(now);
    clients_.clear();
}

asio::awaitable<void> mqttsn_udp::receive_loop() {
    while (!stopped_) {
        udp::endpoint from;
        auto [ec, n] = co_await socket_.async_receive_from(asio::buffer(buf_), from, nothrow);
        if (stopped_) co_return;
        if (ec) {
            if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
            continue;  // e.g. ICMP port unreachable reported for an earlier send
        }
        on_datagram(from, n);
    }
}

asio::awaitable<void> mqttsn_udp::tick_loop() {
    while (!stopped_) {
        tick_.expires_after(tick_period);
        auto [ec] = co_await tick_.async_wait(nothrow);
        if (stopped_ || ec == asio::error::operation_aborted) co_return;
        count_kernel_drops();
        const auto now = broker::clock::now();
        for (auto it = clients_.begin(); it != clients_.end();) {
            auto& c = *it->second;
            if (c.sm.deadline() <= now) c.sm.on_timer(now);
            flush(c);
            it = c.sm.closed() ? clients_.erase(it) : std::next(it);
        }
    }
}

asio::awaitable<void> mqttsn_udp::advertise_loop() {
    namespace sn = protocol::mqttsn;
    const auto every = settings_.advertise_interval;
    const auto duration = static_cast<std::uint16_t>(std::min<std::int64_t>(every.count(), 65535));
    while (!stopped_) {
        // Encoded each time: a reload may change the gateway id.
        const auto bytes = sn::encode(sn::advertise{settings_.gateway_id, duration});
        if (!bytes) co_return;
        send_to(advertise_to_, *bytes);
        ++advertised_;
        advertise_timer_.expires_after(every);
        auto [ec] = co_await advertise_timer_.async_wait(nothrow);
        if (stopped_ || ec == asio::error::operation_aborted) co_return;
    }
}

void mqttsn_udp::on_datagram(const udp::endpoint& from, std::size_t n) {
    const auto now = broker::clock::now();
    // A forwarder's encapsulation: the message is the wireless node's (5.5).
    auto envelope = broker::mqttsn_open(std::span<const std::uint8_t>(buf_.data(), n));
    if (!envelope) {
        ++engine_.stats().mqttsn_datagrams_malformed;
        ++dropped_;
        return;
    }
    const peer who{from, std::move(envelope->node)};
    const auto d = envelope->message;
    auto it = clients_.find(who);
    if (it == clients_.end() && move_sleeper(who, d) != nullptr) it = clients_.find(who);
    if (it == clients_.end()) {
        std::vector<std::uint8_t> reply;
        switch (broker::mqttsn_handle_unattached(engine_, settings_, d, now, reply)) {
            case broker::mqttsn_unattached::dropped: ++dropped_; return;
            case broker::mqttsn_unattached::answered:
                if (!reply.empty()) send_to(who, reply);
                return;
            case broker::mqttsn_unattached::new_client: break;
        }
        if (full()) return refuse(who);
        it = clients_.emplace(who, std::make_unique<client>(*this, who, now)).first;
    }
    auto& c = *it->second;
    const auto before = c.sm.dropped();
    c.sm.on_datagram(d, now);
    dropped_ += c.sm.dropped() - before;
    flush(c);
    if (c.sm.closed()) clients_.erase(it);
}

bool mqttsn_udp::full() const {
    // As for TCP listeners: a listener's own max_connections bounds it alone, otherwise the
    // broker's bound counts every connected session.
    if (max_clients_) return clients_.size() >= *max_clients_;
    // With threads > 1, every shard's connected clients (the gateway is on shard 0).
    const auto* all = engine_.connected_clients();
    const std::size_t n = all != nullptr ? all->now() : engine_.session_count();
    return n >= engine_.config().max_connections;
}

void mqttsn_udp::refuse(const peer& who) {
    namespace sn = protocol::mqttsn;
    ++engine_.stats().connections_refused;
    // MQTT-SN 1.2, 5.4.5: "rejected: congestion"; the client may try again later.
    if (const auto bytes = sn::encode(sn::connack{sn::return_code::congestion})) send_to(who, *bytes);
    const auto max = max_clients_.value_or(engine_.config().max_connections);
    engine_.log(1, "MQTT-SN CONNECT from " + to_string(who.ep, who.node) +
                       " refused: max_connections (" + std::to_string(max) + ") reached");
}

mqttsn_udp::client* mqttsn_udp::move_sleeper(const peer& from, std::span<const std::uint8_t> d) {
    const auto id = broker::mqttsn_claimed_client_id(d);
    if (id.empty()) return nullptr;
    auto* s = engine_.find(id);
    auto known = s != nullptr ? by_session_.find(s) : by_session_.end();
    if (known == by_session_.end()) return nullptr;
    client& c = *known->second;
    // Only a sleeping client changes address; a CONNECT for an active one is a new
    // connection (it takes the client id over, as before).
    if (!c.sm.asleep() && !c.sm.awake()) return nullptr;
    auto node = clients_.extract(c.who);
    if (node.empty()) return nullptr;
    node.key() = from;
    c.who = from;
    clients_.insert(std::move(node));
    return &c;
}

void mqttsn_udp::flush(client& c) {
    c.flush_posted = false;
    for (const auto& d : c.sm.take_output(broker::clock::now())) send_to(c.who, d);
}

void mqttsn_udp::flush_later(const peer& who) {
    asio::post(io_, [this, who] {
        if (stopped_) return;
        auto it = clients_.find(who);
        if (it == clients_.end()) return;
        flush(*it->second);
        if (it->second->sm.closed()) clients_.erase(it);
    });
}

void mqttsn_udp::send_to(const peer& to, const std::vector<std::uint8_t>& d) {
    if (!to.node) return send_to(to.ep, d);
    send_to(to.ep, broker::mqttsn_wrap(*to.node, d));
}

void mqttsn_udp::send_to(const udp::endpoint& ep, const std::vector<std::uint8_t>& d) {
    if (d.empty()) return;
    // UDP: a datagram the socket cannot take now is lost, as on the network.
    boost::system::error_code ec;
    socket_.send_to(asio::buffer(d), ep, 0, ec);
}

}  // namespace mqtt::net::detail
