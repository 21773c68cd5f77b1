// tern-broker with threads > 1 (docs/broker.md, "Threading"): a connection accepted on
// shard 0 is handed to the shard of its client id once its first packet (a CONNECT) has
// been read, over plain TCP or after the TLS and WebSocket handshakes.

#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <variant>

#include "mqtt/protocol/codec.hpp"
#include "net/transport/epoll_tcp.hpp"
#include "net/transport/tls.hpp"
#include "net/transport/transport.hpp"
#include "net/transport/ws.hpp"
#include "server_impl.hpp"

namespace mqtt::net {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// How much of a first packet `b` holds: a whole CONNECT (its fixed header `header` bytes
// and `total` bytes in all), not enough yet, or something else (not a CONNECT, a malformed
// length, over max_packet_size), which the shard's connection then answers as always.
enum class first_packet { more, connect, other };

first_packet scan(std::span<const std::uint8_t> b, std::size_t max, std::size_t& header,
                  std::size_t& total) {
    if (b.empty()) return first_packet::more;
    if (b[0] != 0x10) return first_packet::other;
    std::size_t length = 0;
    for (std::size_t i = 1; i <= 4; ++i) {
        if (i >= b.size()) return first_packet::more;
        length |= static_cast<std::size_t>(b[i] & 0x7F) << (7 * (i - 1));
        if ((b[i] & 0x80) == 0) {
            header = i + 1;
            total = header + length;
            if (total > max) return first_packet::other;
            return b.size() >= total ? first_packet::connect : first_packet::more;
        }
    }
    return first_packet::other;  // a fifth Remaining Length byte
}

}  // namespace

// Runs on shard 0: the bytes of the first packet, then the connection goes to the shard of
// the CONNECT's client id (empty: the next shard in turn; with use_username_as_clientid the
// user name's, which becomes the id), or to shard 0 if a session with that id is there.
// Whatever else arrives (another packet, a malformed length, the end of the stream, the
// CONNECT deadline) goes to a shard too, whose connection answers it as a single-loop
// broker would. Completion handlers, not a coroutine: while the client is quiet only the
// read and the deadline are pending.
void server::impl::read_first_packet(std::shared_ptr<handoff> h) {
    h->timer.expires_at(h->accepted + engine.config().connect_timeout);
    h->timer.async_wait([h](const boost::system::error_code& ec) {
        boost::system::error_code ignored;
        if (!ec) h->socket.cancel(ignored);
    });
    read_first_more(std::move(h));
}

void server::impl::read_first_more(std::shared_ptr<handoff> h) {
    std::size_t header = 0;
    std::size_t total = 0;
    if (scan(h->bytes, engine.config().max_packet_size, header, total) != first_packet::more) {
        return route_first(std::move(h));
    }
    const std::size_t have = h->bytes.size();
    const std::size_t chunk =
        std::clamp<std::size_t>(total > have ? total - have : 0, 512, 64 * 1024);
    h->bytes.resize(have + chunk);
    auto& socket = h->socket;
    const auto room = asio::buffer(h->bytes.data() + have, chunk);
    socket.async_read_some(room, [this, h = std::move(h), have](const boost::system::error_code& ec,
                                                                std::size_t n) mutable {
        h->bytes.resize(have + n);
        if (ec || stopping) return route_first(std::move(h));
        read_first_more(std::move(h));
    });
}

void server::impl::route_first(std::shared_ptr<handoff> h) {
    const std::size_t k = shard_for(h->bytes, h->slot, nullptr);
    hand_off(std::move(h), k);
}

std::size_t server::impl::shard_for(std::span<const std::uint8_t> first, std::size_t slot,
                                    const std::optional<std::string>* cert_name) {
    std::size_t header = 0;
    std::size_t total = 0;
    std::size_t k = shards.size();
    const auto state = scan(first, engine.config().max_packet_size, header, total);
    if (state == first_packet::connect) {
        const auto body = first.subspan(header, total - header);
        auto p = protocol::decode(first[0], body, protocol::protocol_version::v5);
        const auto* c = p ? std::get_if<protocol::connect_packet>(&*p) : nullptr;
        std::string_view id;
        if (c != nullptr && engine.security(slot).use_username_as_clientid) {
            // The session's id will be the user name: its shard (none: refused anywhere).
            // A certificate's name replaces the CONNECT's.
            const std::optional<std::string>& name = cert_name ? *cert_name : c->username;
            if (name && !name->empty()) id = *name;
        } else if (c != nullptr) {
            id = c->client_id;
        }
        // Bridges and MQTT-SN clients have their sessions on shard 0 whatever their id: a
        // client id with a session there goes there, to take it over or resume it.
        if (!id.empty()) {
            k = engine.find_session(id) != nullptr ? 0 : broker::shard_of(id, shards.size());
        }
    }
    if (k == shards.size()) k = next_shard++ % shards.size();
    return k;
}

void server::impl::hand_off(std::shared_ptr<handoff> h, std::size_t k) {
    h->timer.cancel();
    handoffs.erase(h);
    if (stopping) return connection_ended(h->group, nullptr);  // the socket closes with h
    start_args a{std::move(h->peer), h->group, h->slot,     std::move(h->bytes),
                 h->accepted,        false,    std::nullopt};
    if (k == 0) {
        return start_on_shard(0, make_epoll_tcp_transport(std::move(h->socket)), std::move(a));
    }
    // The descriptor moves to shard k's loop (out of Asio's reactor here, into shard k's
    // epoll set there); the objects made on this loop stay here.
    boost::system::error_code ec;
    const auto protocol = h->socket.local_endpoint(ec).protocol();
    const int fd = ec ? -1 : h->socket.release(ec);
    if (ec || fd < 0) return connection_ended(h->group, nullptr);
    runtime->post(k, [this, k, fd, protocol, a = std::move(a)]() mutable {
        // A shard that is shutting down takes no new connection (its loop must end).
        auto t =
            shards[k]->stopping ? nullptr : make_epoll_tcp_transport(runtime->io(k), fd, protocol);
        if (!t) {
            if (shards[k]->stopping) ::close(fd);
            asio::post(io, [this, group = a.group] { connection_ended(group, nullptr); });
            return;
        }
        start_on_shard(k, std::move(t), std::move(a));
    });
}

namespace {

// A TLS or WebSocket connection on its way to another shard: the descriptor closes if it
// never gets there (the runtime stopped first); the SSL object and the framing state go
// with this.
struct moving_conn {
    bool ws = false;
    ws_parts parts;  // parts.stream alone for TLS
    moving_conn() = default;
    moving_conn(const moving_conn&) = delete;
    moving_conn& operator=(const moving_conn&) = delete;
    ~moving_conn() {
        if (parts.stream.fd >= 0) ::close(parts.stream.fd);
    }
};

}  // namespace

// As read_first_packet() for plain TCP, after the TLS and/or WebSocket handshake (on shard
// 0: the handshake costs CPU there, but only once per connection, and the listener's
// handshake deadline and refusals stay in one place). The first packet (decrypted,
// unframed) is read within the CONNECT deadline and bounds of the plain path; a whole
// CONNECT moves the connection to its shard: the descriptor, the SSL object (all the TLS
// state, bytes already read included), the WebSocket framing state and undecoded bytes,
// and the MQTT bytes read so far, which the connection there takes before reading more.
// Anything else (another packet, an error, a hostile frame, the deadline) stays on shard
// 0, whose connection answers it as a single-loop broker would.
asio::awaitable<void> server::impl::handshake_first_packet(std::unique_ptr<transport> t,
                                                           std::string peer, std::string local,
                                                           std::size_t group) {
    using namespace asio::experimental::awaitable_operators;
    const auto accepted = broker::clock::now();
    const auto limit = std::min(
        opts.tls_handshake_timeout,
        std::chrono::duration_cast<std::chrono::milliseconds>(engine.config().connect_timeout));
    std::string why;
    handshaking.insert(t.get());
    auto ec = co_await t->handshake(limit, why);
    if (stopping) {
        handshaking.erase(t.get());
        co_return connection_ended(group, nullptr);
    }
    if (ec) {
        handshaking.erase(t.get());
        refuse_handshake(*t, peer, local, why);
        co_return connection_ended(group, nullptr);
    }
    start_args a{std::move(peer), group, security_slot(group), {}, accepted, false, std::nullopt};
    asio::steady_timer timer{io, accepted + engine.config().connect_timeout};
    std::size_t header = 0;
    std::size_t total = 0;
    first_packet state = first_packet::more;
    while ((state = scan(a.first, engine.config().max_packet_size, header, total)) ==
           first_packet::more) {
        const std::size_t have = a.first.size();
        const std::size_t chunk =
            std::clamp<std::size_t>(total > have ? total - have : 0, 512, 64 * 1024);
        a.first.resize(have + chunk);
        auto r = co_await (t->read_some(asio::buffer(a.first.data() + have, chunk)) ||
                           timer.async_wait(nothrow));
        const auto* read = std::get_if<0>(&r);
        const std::size_t n = read != nullptr ? std::get<1>(*read) : 0;
        a.first.resize(have + n);
        if (read == nullptr || std::get<0>(*read) || stopping) break;
    }
    handshaking.erase(t.get());
    if (stopping) co_return connection_ended(group, nullptr);
    const auto source = groups[group].username_from;
    if (source != tls_server_settings::username_source::none) {
        a.cert_username = true;
        a.cert_name = source == tls_server_settings::username_source::identity
                          ? t->peer_common_name()
                          : t->peer_subject();
    }
    const std::size_t k = state == first_packet::connect
                              ? shard_for(a.first, a.slot, a.cert_username ? &a.cert_name : nullptr)
                              : 0;
    if (k == 0) co_return start_on_shard(0, std::move(t), std::move(a));
    auto moving = std::make_shared<moving_conn>();
    const std::string_view kind = t->name();
    moving->ws = kind == "ws" || kind == "wss";
    bool released = false;
    if (moving->ws) {
        released = co_await release_ws_server_transport(*t, moving->parts);
    } else {
        released = co_await release_tls_server_transport(*t, moving->parts.stream);
    }
    if (stopping) co_return connection_ended(group, nullptr);
    // Not moved (the input ended with the CONNECT: the peer's EOF or close frame, a hostile
    // frame): closed unanswered. Shard 0 must not serve it: a client id's sessions live on
    // its own shard only (a session made here would not take over the one on shard k, and a
    // persistent one would be written to shard 0's store beside it).
    if (!released) {
        t->close();
        co_return connection_ended(group, nullptr);
    }
    t.reset();
    runtime->post(k, [this, k, moving, a = std::move(a)]() mutable {
        tcp::socket s{runtime->io(k)};
        boost::system::error_code ec;
        // A shard that is shutting down takes no new connection (its loop must end).
        auto& stream = moving->parts.stream;
        if (!shards[k]->stopping) s.assign(stream.protocol, stream.fd, ec);
        if (shards[k]->stopping || ec) {
            asio::post(io, [this, group = a.group] { connection_ended(group, nullptr); });
            return;  // moving closes the descriptor
        }
        stream.fd = -1;  // the socket's now
        auto t = moving->ws ? resume_ws_server_transport(std::move(s), std::move(moving->parts))
                            : resume_tls_server_transport(std::move(s), std::move(stream.ssl));
        start_on_shard(k, std::move(t), std::move(a));
    });
}

void server::impl::start_on_shard(std::size_t k, std::unique_ptr<transport> t, start_args a) {
    auto& ctx = k == 0 ? conns : *shards[k]->conns;
    auto c = std::make_shared<detail::connection>(std::move(t), ctx, std::move(a.peer),
                                                  static_cast<std::uint32_t>(a.group), a.accepted);
    if (a.cert_username) c->use_certificate_username(std::move(a.cert_name));
    c->prefill(a.first);
    c->set_security_slot(a.slot);
    c->set_listener(a.group + 1);
    detail::connection::start(c);
}

}  // namespace mqtt::net
