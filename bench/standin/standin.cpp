#include "standin.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <variant>

#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::bench::standin {

namespace {

constexpr std::uint64_t listener_key = UINT64_MAX;
constexpr std::size_t read_chunk = 64 * 1024;
constexpr int reads_per_turn = 16;  // then the other connections get their turn
constexpr std::size_t route_cache_limit = 65536;

std::uint64_t key_of(std::uint32_t slot, std::uint32_t generation) {
    return (static_cast<std::uint64_t>(generation) << 32) | slot;
}

void append_variable_int(std::vector<std::uint8_t>& out, std::size_t v) {
    do {
        auto b = static_cast<std::uint8_t>(v & 0x7F);
        v >>= 7;
        if (v) b |= 0x80;
        out.push_back(b);
    } while (v);
}

std::uint16_t read_u16(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}

}  // namespace

server::server(settings s) : settings_(std::move(s)) {}

server::~server() {
    for (auto& c : connections_)
        if (c) ::close(c->fd);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

std::string server::open() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(settings_.port);
    if (::inet_pton(AF_INET, settings_.host.c_str(), &addr.sin_addr) != 1)
        return "not an IPv4 address: " + settings_.host;
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return std::string("socket: ") + std::strerror(errno);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return "bind " + settings_.host + ":" + std::to_string(settings_.port) + ": " +
               std::strerror(errno);
    if (::listen(listen_fd_, 4096) != 0) return std::string("listen: ") + std::strerror(errno);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return std::string("epoll_create1: ") + std::strerror(errno);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = listener_key;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    return {};
}

void server::run(const volatile std::sig_atomic_t* stop) {
    std::vector<epoll_event> events(256);
    while (!*stop) {
        const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 200);
        for (int i = 0; i < n; ++i) {
            const auto& ev = events[static_cast<std::size_t>(i)];
            if (ev.data.u64 == listener_key) {
                accept_all();
                continue;
            }
            auto* c = lookup(ev.data.u64);
            if (!c) continue;  // closed earlier in this batch
            if ((ev.events & EPOLLIN) && !c->paused) {
                on_readable(*c);
                c = lookup(ev.data.u64);
                if (!c) continue;
            }
            if (ev.events & EPOLLOUT) mark_dirty(*c);
            if ((ev.events & (EPOLLERR | EPOLLHUP)) && !(ev.events & EPOLLIN)) close(*c, false);
        }
        // Everything this turn produced, one write per connection.
        for (std::size_t i = 0; i < dirty_.size(); ++i) {
            const auto slot = dirty_[i];
            if (slot < connections_.size() && connections_[slot]) {
                connections_[slot]->dirty = false;
                flush(*connections_[slot]);
            }
        }
        dirty_.clear();
    }
}

server::connection* server::lookup(std::uint64_t key) {
    const auto slot = static_cast<std::uint32_t>(key & 0xFFFFFFFFu);
    if (slot >= connections_.size() || !connections_[slot]) return nullptr;
    auto* c = connections_[slot].get();
    return c->generation == static_cast<std::uint32_t>(key >> 32) ? c : nullptr;
}

void server::accept_all() {
    for (;;) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                // Out of descriptors: stop accepting until a connection goes.
                accepting_ = false;
                epoll_event ev{};
                ev.data.u64 = listener_key;
                ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
            }
            return;
        }
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::uint32_t slot = 0;
        std::uint32_t generation = 0;
        if (!free_slots_.empty()) {
            slot = free_slots_.back();
            free_slots_.pop_back();
        } else {
            slot = static_cast<std::uint32_t>(connections_.size());
            connections_.emplace_back();
        }
        generation = ++next_generation_;
        auto c = std::make_unique<connection>(settings_.max_packet_size);
        c->fd = fd;
        c->slot = slot;
        c->generation = generation;
        c->events = EPOLLIN;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = key_of(slot, generation);
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
            ::close(fd);
            free_slots_.push_back(slot);
            continue;
        }
        connections_[slot] = std::move(c);
        ++stats_.connections;
    }
}

void server::on_readable(connection& c) {
    for (int turn = 0; turn < reads_per_turn; ++turn) {
        auto buf = c.in.prepare(std::max(read_chunk, c.in.missing()));
        const auto n = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (n == 0) return close(c, false);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return close(c, false);
        }
        c.in.commit(static_cast<std::size_t>(n));
        for (;;) {
            auto f = c.in.next();
            if (!f) return close(c, true);
            if (!*f) break;
            const auto v = handle(c, **f);
            if (v != verdict::keep) return close(c, v == verdict::error);
        }
        // Its own acknowledgements count too: a client that does not read is not read.
        if (c.pending() > settings_.high_water) throttle(c, c);
        if (c.paused || static_cast<std::size_t>(n) < buf.size()) break;
    }
    if (c.paused) rearm(c);
}

server::verdict server::handle(connection& c, const protocol::frame& f) {
    using protocol::packet_type;
    if (!c.connected)
        return f.type() == packet_type::connect ? on_connect(c, f) : verdict::error;
    switch (f.type()) {
        case packet_type::publish:
            return on_publish(c, f);
        case packet_type::puback:
        case packet_type::pubcomp:
            return f.body.size() >= 2 ? verdict::keep : verdict::error;
        case packet_type::pubrec:  // from a receiver of a QoS 2 delivery
            if (f.body.size() < 2) return verdict::error;
            send_ack(c, 0x62, read_u16(f.body, 0));
            return verdict::keep;
        case packet_type::pubrel:  // from a QoS 2 publisher
            if (f.body.size() < 2 || f.flags() != 0x02) return verdict::error;
            send_ack(c, 0x70, read_u16(f.body, 0));
            return verdict::keep;
        case packet_type::subscribe:
            return on_subscribe(c, f);
        case packet_type::unsubscribe:
            return on_unsubscribe(c, f);
        case packet_type::pingreq:
            c.out.push_back(0xD0);
            c.out.push_back(0x00);
            mark_dirty(c);
            return verdict::keep;
        case packet_type::disconnect:
            return verdict::close;
        default:
            return verdict::error;
    }
}


server::verdict server::on_connect(connection& c, const protocol::frame& f) {
    // CONNECT carries its own version; the argument is ignored for it.
    auto p = protocol::decode(f.first_byte, f.body, protocol::protocol_version::v5);
    if (!p) return verdict::error;
    const auto& connect = std::get<protocol::connect_packet>(*p);
    c.version = connect.version;
    c.connected = true;
    if (protocol::encode_append(protocol::connack_packet{}, c.version, c.out)) return verdict::error;
    mark_dirty(c);
    return verdict::keep;
}

server::verdict server::on_publish(connection& c, const protocol::frame& f) {
    // Only what acknowledging and routing need: QoS, topic, packet id. The rest is the
    // receiver's to check.
    const auto q = static_cast<protocol::qos>((f.first_byte >> 1) & 0x03);
    if (static_cast<unsigned>(q) > 2 || f.body.size() < 2) return verdict::error;
    const std::size_t topic_len = read_u16(f.body, 0);
    const std::size_t id_offset = 2 + topic_len;
    const std::size_t need = id_offset + (q == protocol::qos::at_most_once ? 0 : 2);
    if (f.body.size() < need || topic_len == 0) return verdict::error;
    ++stats_.publishes_in;
    if (q != protocol::qos::at_most_once) {
        const auto id = read_u16(f.body, id_offset);
        if (id == 0) return verdict::error;
        send_ack(c, q == protocol::qos::at_least_once ? 0x40 : 0x50, id);
    }
    if (settings_.mode == mode::sink) return verdict::keep;
    const std::string_view topic(reinterpret_cast<const char*>(f.body.data()) + 2, topic_len);
    // routes_for() may rebuild the cache: copy nothing, but do not keep the reference past
    // the loop (deliver() never touches the cache).
    for (const auto& r : routes_for(topic)) {
        auto& to = *connections_[r.slot];
        if (r.no_local && &to == &c) continue;
        deliver(c, to, std::min(q, r.qos), f, id_offset);
    }
    return verdict::keep;
}

void server::deliver(connection& from, connection& to, protocol::qos q, const protocol::frame& f,
                     std::size_t id_offset) {
    const auto sent_qos = static_cast<protocol::qos>((f.first_byte >> 1) & 0x03);
    std::uint16_t id = 0;
    if (q != protocol::qos::at_most_once) {
        if (++to.next_id == 0) to.next_id = 1;
        id = to.next_id;
    }
    if (to.version == from.version && q == sent_qos) {
        // The common case: the PUBLISH's own bytes, DUP and RETAIN cleared, the receiver's id.
        to.out.push_back(static_cast<std::uint8_t>(f.first_byte & ~0x09));
        append_variable_int(to.out, f.body.size());
        const auto body_at = to.out.size();
        to.out.insert(to.out.end(), f.body.begin(), f.body.end());
        if (id) {
            to.out[body_at + id_offset] = static_cast<std::uint8_t>(id >> 8);
            to.out[body_at + id_offset + 1] = static_cast<std::uint8_t>(id & 0xFF);
        }
    } else {
        // Another version or a lower QoS: decode and encode again.
        if (protocol::decode_into(f.first_byte, f.body, from.version, scratch_)) return;
        auto& p = std::get<protocol::publish_packet>(scratch_);
        p.qos_level = q;
        p.dup = false;
        p.retain = false;
        p.packet_id = id;
        if (!protocol::is_v5(to.version)) p.props = {};
        if (protocol::encode_append(scratch_, to.version, to.out)) return;
    }
    ++stats_.deliveries_out;
    mark_dirty(to);
    if (to.pending() > settings_.high_water) throttle(from, to);
}

void server::throttle(connection& feeder, connection& full) {
    const auto same = [&](const waiter& w) {
        return w.slot == feeder.slot && w.generation == feeder.generation;
    };
    if (std::none_of(full.waiters.begin(), full.waiters.end(), same))
        full.waiters.push_back({feeder.slot, feeder.generation});
    feeder.paused = true;
}

const std::vector<server::route>& server::routes_for(std::string_view topic) {
    if (auto it = routes_.find(topic); it != routes_.end()) return it->second;
    if (routes_.size() >= route_cache_limit) routes_.clear();
    std::vector<route> found;
    for (const auto& c : connections_) {
        if (!c || c->subscriptions.empty()) continue;
        bool matched = false;
        route r{c->slot, protocol::qos::at_most_once, true};
        for (const auto& s : c->subscriptions) {
            if (!protocol::topic_matches(s.filter, topic)) continue;
            matched = true;
            r.qos = std::max(r.qos, s.max_qos);
            r.no_local = r.no_local && s.no_local;
        }
        if (matched) found.push_back(r);
    }
    return routes_.emplace(std::string(topic), std::move(found)).first->second;
}

server::verdict server::on_subscribe(connection& c, const protocol::frame& f) {
    auto p = protocol::decode(f.first_byte, f.body, c.version);
    if (!p) return verdict::error;
    const auto& sub = std::get<protocol::subscribe_packet>(*p);
    protocol::suback_packet ack;
    ack.packet_id = sub.packet_id;
    const bool v5 = protocol::is_v5(c.version);
    for (const auto& s : sub.subscriptions) {
        if (protocol::parse_shared(s.filter).status != protocol::share_status::not_shared) {
            // One delivery per group would need a choice of member: not done here.
            ack.codes.push_back(v5 ? protocol::reason_code::shared_subscriptions_not_supported
                                   : protocol::reason_code::unspecified_error);
            continue;
        }
        if (!protocol::is_valid_topic_filter(s.filter)) {
            ack.codes.push_back(v5 ? protocol::reason_code::topic_filter_invalid
                                   : protocol::reason_code::unspecified_error);
            continue;
        }
        auto it = std::find_if(c.subscriptions.begin(), c.subscriptions.end(),
                               [&](const subscription& e) { return e.filter == s.filter; });
        if (it == c.subscriptions.end())
            c.subscriptions.push_back({s.filter, s.options.max_qos, s.options.no_local});
        else
            *it = {s.filter, s.options.max_qos, s.options.no_local};
        ack.codes.push_back(static_cast<protocol::reason_code>(s.options.max_qos));
    }
    routes_.clear();
    if (protocol::encode_append(ack, c.version, c.out)) return verdict::error;
    mark_dirty(c);
    return verdict::keep;
}

server::verdict server::on_unsubscribe(connection& c, const protocol::frame& f) {
    auto p = protocol::decode(f.first_byte, f.body, c.version);
    if (!p) return verdict::error;
    const auto& unsub = std::get<protocol::unsubscribe_packet>(*p);
    protocol::unsuback_packet ack;
    ack.packet_id = unsub.packet_id;
    for (const auto& filter : unsub.filters) {
        std::erase_if(c.subscriptions, [&](const subscription& e) { return e.filter == filter; });
        if (protocol::is_v5(c.version)) ack.codes.push_back(protocol::reason_code::success);
    }
    routes_.clear();
    if (protocol::encode_append(ack, c.version, c.out)) return verdict::error;
    mark_dirty(c);
    return verdict::keep;
}

void server::send_ack(connection& c, std::uint8_t first_byte, std::uint16_t id) {
    // Remaining Length 2: in 5.0 the Reason Code may be left out when it is Success
    // (§3.4.2.1, §3.5.2.1, §3.6.2.1, §3.7.2.1).
    const std::uint8_t bytes[] = {first_byte, 0x02, static_cast<std::uint8_t>(id >> 8),
                                  static_cast<std::uint8_t>(id & 0xFF)};
    c.out.insert(c.out.end(), std::begin(bytes), std::end(bytes));
    mark_dirty(c);
}

void server::mark_dirty(connection& c) {
    if (c.dirty) return;
    c.dirty = true;
    dirty_.push_back(c.slot);
}

void server::flush(connection& c) {
    while (c.pending() > 0) {
        const auto n = ::send(c.fd, c.out.data() + c.out_sent, c.pending(),
                              MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return close(c, false);
        }
        c.out_sent += static_cast<std::size_t>(n);
    }
    if (c.pending() == 0) {
        c.out.clear();
        c.out_sent = 0;
    } else if (c.out_sent > c.out.size() / 2) {
        c.out.erase(c.out.begin(), c.out.begin() + static_cast<std::ptrdiff_t>(c.out_sent));
        c.out_sent = 0;
    }
    if (c.pending() <= settings_.high_water / 2) resume_waiters(c);
    rearm(c);
}

void server::resume_waiters(connection& c) {
    auto waiters = std::move(c.waiters);
    c.waiters.clear();
    for (const auto& w : waiters) {
        auto* feeder = lookup(key_of(w.slot, w.generation));
        if (!feeder || !feeder->paused) continue;
        feeder->paused = false;
        rearm(*feeder);
    }
}

void server::rearm(connection& c) {
    const std::uint32_t want =
        (c.paused ? 0u : static_cast<std::uint32_t>(EPOLLIN)) |
        (c.pending() > 0 ? static_cast<std::uint32_t>(EPOLLOUT) : 0u);
    if (want == c.events) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = key_of(c.slot, c.generation);
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
    c.events = want;
}

void server::close(connection& c, bool error) {
    if (error) ++stats_.closed_for_errors;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    if (!c.subscriptions.empty()) routes_.clear();
    resume_waiters(c);
    const auto slot = c.slot;
    connections_[slot].reset();  // c is gone from here on
    free_slots_.push_back(slot);
    if (!accepting_) {
        accepting_ = true;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = listener_key;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
    }
}

}  // namespace mqtt::bench::standin
