// tern-pub and tern-sub over MQTT-SN (mqttsn_tools.hpp): a connected UDP socket to the
// gateway, two coroutines (datagrams in, a 50 ms tick for the session's deadline and the
// program's pacing) and the signals; every protocol decision is client::mqttsn::session's,
// every output line the format module's.

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>

#include "mqtt/client/mqttsn_session.hpp"
#include "mqtt/client/mqttsn_tools.hpp"
#include "mqtt/format/format_string.hpp"
#include "mqtt/format/message_json.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::client {
namespace {

namespace asio = boost::asio;
namespace msn = mqttsn;
namespace sn = protocol::mqttsn;
using udp = asio::ip::udp;
using sclock = msn::clock;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto tick = std::chrono::milliseconds(50);

// The socket and the loop around one session. `step` runs after every input (a datagram, a
// tick, a signal) and decides what the program does next; stop() ends the loop.
class udp_link {
  public:
    explicit udp_link(msn::session_config cfg) : s(std::move(cfg)) {}

    msn::session s;
    std::function<void(sclock::time_point)> step;
    std::function<void()> on_signal;
    std::string error;  // the socket's, when it failed

    std::string open(const std::string& host, std::uint16_t port) {
        boost::system::error_code ec;
        udp::resolver resolver(io_);
        const auto found = resolver.resolve(host, std::to_string(port), ec);
        if (ec || found.empty()) return "cannot resolve " + host + ": " + ec.message();
        const auto ep = found.begin()->endpoint();
        socket_.open(ep.protocol(), ec);
        if (!ec) socket_.connect(ep, ec);  // datagrams from other addresses are not ours
        if (!ec) {
            boost::system::error_code ignored;  // a refusal is not fatal
            socket_.set_option(udp::socket::receive_buffer_size(msn::udp_receive_buffer), ignored);
        }
        if (ec)
            return "cannot open a UDP socket to " + host + ":" + std::to_string(port) + ": " +
                   ec.message();
        return {};
    }

    void run() {
        signals_.async_wait([this](boost::system::error_code ec, int) {
            if (!ec && !stopped_ && on_signal) {
                on_signal();
                pump(sclock::now());
            }
        });
        asio::co_spawn(io_, reader(), asio::detached);
        asio::co_spawn(io_, ticker(), asio::detached);
        pump(sclock::now());
        io_.run();
    }

    void stop() {
        if (stopped_) return;
        stopped_ = true;
        boost::system::error_code ec;
        socket_.close(ec);
        timer_.cancel();
        signals_.cancel();
    }

    void send_raw(const std::vector<std::uint8_t>& d) {
        boost::system::error_code ec;
        socket_.send(asio::buffer(d), 0, ec);  // UDP: a datagram not taken is lost
    }

  private:
    void pump(sclock::time_point now) {
        if (stopped_) return;
        if (step) step(now);
        if (stopped_) return;
        for (const auto& d : s.take_output(now)) send_raw(d);
    }

    asio::awaitable<void> reader() {
        std::vector<std::uint8_t> buf(65536);
        while (!stopped_) {
            auto [ec, n] = co_await socket_.async_receive(asio::buffer(buf), nothrow);
            if (stopped_) co_return;
            if (ec == asio::error::connection_refused) {
                // ICMP port unreachable for a datagram we sent: no gateway on that port.
                error = "no MQTT-SN gateway answers (port unreachable)";
                pump(sclock::now());
                co_return;
            }
            if (ec) continue;
            s.on_datagram({buf.data(), n}, sclock::now());
            pump(sclock::now());
        }
    }

    asio::awaitable<void> ticker() {
        while (!stopped_) {
            timer_.expires_after(tick);
            auto [ec] = co_await timer_.async_wait(nothrow);
            if (stopped_ || ec == asio::error::operation_aborted) co_return;
            const auto now = sclock::now();
            if (s.deadline() <= now) s.on_timer(now);
            pump(now);
        }
    }

    asio::io_context io_{1};
    udp::socket socket_{io_};
    asio::steady_timer timer_{io_};
    asio::signal_set signals_{io_, SIGINT, SIGTERM};
    bool stopped_ = false;
};

msn::session_config session_config_for(const connection_config& c, const mqttsn_request& sn,
                                       const std::string& tool) {
    msn::session_config cfg;
    const auto& p = c.session.connect;
    // MQTT-SN has no server-assigned ids: a missing one is made from the tool and the pid.
    cfg.client_id = p.client_id.empty() ? tool + "-" + std::to_string(::getpid()) : p.client_id;
    cfg.keep_alive = p.keep_alive;
    cfg.clean_session = p.clean_start;
    cfg.retry_interval = std::chrono::seconds(sn.retry_seconds);
    cfg.retry_count = sn.retry_count;
    cfg.predefined = sn.predefined;
    return cfg;
}

msn::topic_ref topic_ref_for(const std::string& topic, const mqttsn_request& sn) {
    for (const auto& [id, name] : sn.predefined)
        if (name == topic) return {topic, id};
    return {topic, std::nullopt};
}

protocol::qos to_mqtt(sn::qos q) {
    switch (q) {
        case sn::qos::at_least_once:
            return protocol::qos::at_least_once;
        case sn::qos::exactly_once:
            return protocol::qos::exactly_once;
        default:
            return protocol::qos::at_most_once;
    }
}

int fail(std::ostream& err, const std::string& tool, bool json, const std::string& what,
         int status = 1) {
    err << tool << ": error: " << what << "\n";
    if (json) {
        std::string obj;
        format::append_error_json(obj, what, status);
        err << obj << "\n";
    }
    return status;
}

// The payloads tern-pub sends, read before the first datagram.
std::optional<std::vector<std::string>> payloads(const pub_request& req, std::string& why) {
    std::vector<std::string> out;
    std::string one;
    switch (req.source) {
        case payload_source::message:
            one = req.message;
            break;
        case payload_source::empty:
            break;
        case payload_source::file: {
            std::ifstream in(req.file, std::ios::binary);
            if (!in) {
                why = "cannot read " + req.file;
                return std::nullopt;
            }
            one.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            break;
        }
        case payload_source::stdin_all:
        case payload_source::stdin_lines: {
            std::string all;
            char buf[65536];
            for (;;) {
                const auto n = ::read(req.input_fd, buf, sizeof buf);
                if (n <= 0) break;
                all.append(buf, static_cast<std::size_t>(n));
            }
            if (req.source == payload_source::stdin_all) {
                one = std::move(all);
                break;
            }
            std::istringstream lines(all);
            for (std::string line; std::getline(lines, line);) out.push_back(line);
            return out;
        }
        case payload_source::json_lines:
            why = "--json-in is not supported over MQTT-SN";
            return std::nullopt;
    }
    out.assign(req.repeat, one);
    return out;
}

}  // namespace

int run_mqttsn_pub(const pub_request& req, const mqttsn_request& sn, std::ostream& out,
                   std::ostream& err, const std::string& tool) {
    std::string why;
    auto messages = payloads(req, why);
    if (!messages) return fail(err, tool, req.json, why);
    const auto topic = topic_ref_for(req.topic, sn);
    const auto gap = std::chrono::duration_cast<sclock::duration>(std::chrono::duration<double>(
        std::max(req.repeat_delay, req.rate > 0 ? 1.0 / req.rate : 0.0)));
    udp_link link(session_config_for(req.connection, sn, tool));
    const auto target = req.connection.host + ":" + std::to_string(req.connection.port);
    if (auto e = link.open(req.connection.host, req.connection.port); !e.empty())
        return fail(err, tool, req.json, e);

    std::size_t queued = 0;
    std::size_t done = 0;
    std::string error;
    sclock::time_point next_at{};
    const auto qos = req.qos == protocol::qos::at_least_once  ? sn::qos::at_least_once
                     : req.qos == protocol::qos::exactly_once ? sn::qos::exactly_once
                                                              : sn::qos::at_most_once;
    const auto report = [&](std::uint64_t seq, std::uint16_t mid, std::size_t bytes) {
        if (req.verbosity > 0) err << tool << ": message " << seq << " handed over\n";
        if (!req.json) return;
        std::string line;
        format::publish_result r{seq, req.topic, req.qos, req.retain, mid, bytes};
        r.qos_minus_one = sn.qos_minus_one;
        format::append_publish_result_json(line, r);
        line += '\n';
        out << line << std::flush;
    };

    if (sn.qos_minus_one) {
        // No CONNECT: each message is one PUBLISH QoS -1 datagram, paced like the others.
        link.step = [&](sclock::time_point now) {
            while (queued < messages->size() && now >= next_at) {
                sn::publish p;
                p.qos = sn::qos::minus_one;
                p.retain = req.retain;
                if (topic.predefined_id) {
                    p.topic_type = sn::topic_id_type::predefined;
                    p.topic_id = *topic.predefined_id;
                } else {
                    p.topic_type = sn::topic_id_type::short_name;
                    p.topic_id = sn::short_topic_id(req.topic[0], req.topic[1]);
                }
                p.data = (*messages)[queued];
                auto bytes = sn::encode(p);
                if (!bytes) {
                    error = "message " + std::to_string(queued + 1) + " is too long for a datagram";
                    return link.stop();
                }
                link.send_raw(*bytes);
                ++queued;
                report(queued, 0, p.data.size());
                next_at = now + gap;
                if (gap.count() > 0) break;
            }
            if (queued == messages->size()) link.stop();
        };
        link.on_signal = [&] {
            error = "interrupted by a signal";
            link.stop();
        };
        link.run();
        if (!error.empty()) return fail(err, tool, req.json, error);
        return 0;
    }

    std::map<std::uint64_t, std::size_t> sizes;  // token -> payload bytes
    bool disconnecting = false;
    link.s.start(sclock::now());
    link.on_signal = [&] {
        if (error.empty()) error = "interrupted by a signal";
        if (!disconnecting && !link.s.connected()) return link.stop();  // no CONNACK yet
        if (!disconnecting) link.s.disconnect();
        disconnecting = true;
    };
    link.step = [&](sclock::time_point now) {
        if (!link.error.empty() && error.empty()) {
            error = link.error + " at " + target;
            return link.stop();
        }
        for (auto& e : link.s.take_events()) {
            if (auto* d = std::get_if<msn::publish_done_event>(&e)) {
                if (d->code != sn::return_code::accepted) {
                    if (error.empty())
                        error = "message " + std::to_string(d->token) + " to " + req.topic +
                                " refused: " + std::string(sn::to_string(d->code));
                    continue;
                }
                ++done;
                report(d->token, d->msg_id, sizes[d->token]);
                sizes.erase(d->token);
            } else if (auto* c = std::get_if<msn::closed_event>(&e)) {
                if (!c->why.empty() && error.empty())
                    error = c->refused ? c->why : c->why + " (" + target + ")";
                return link.stop();
            }
        }
        if (!link.s.connected()) return;
        while (error.empty() && !disconnecting && queued < messages->size() && now >= next_at &&
               (gap.count() == 0 || link.s.pending() == 0)) {
            const auto token = link.s.publish(topic, (*messages)[queued], qos, req.retain);
            sizes[token] = (*messages)[queued].size();
            ++queued;
            next_at = now + gap;
        }
        if (!disconnecting && (!error.empty() || (done == messages->size()))) {
            link.s.disconnect();
            disconnecting = true;
        }
    };
    link.run();
    if (!error.empty()) return fail(err, tool, req.json, error);
    return 0;
}

int run_mqttsn_sub(const sub_request& req, const mqttsn_request& sn, std::ostream& out,
                   std::ostream& err, const std::string& tool) {
    udp_link link(session_config_for(req.connection, sn, tool));
    const auto target = req.connection.host + ":" + std::to_string(req.connection.port);
    if (auto e = link.open(req.connection.host, req.connection.port); !e.empty())
        return fail(err, tool, req.json, e);
    const auto qos = req.qos == protocol::qos::at_least_once  ? sn::qos::at_least_once
                     : req.qos == protocol::qos::exactly_once ? sn::qos::exactly_once
                                                              : sn::qos::at_most_once;
    const auto timeout_at = req.timeout > 0 ? sclock::now() + std::chrono::seconds(req.timeout)
                                            : sclock::time_point::max();
    std::string error;
    int status = 0;
    unsigned received = 0;
    std::size_t acked = 0;
    bool disconnecting = false;
    const auto leave = [&] {
        if (!disconnecting && !link.s.connected()) return link.stop();  // no CONNACK yet
        if (!disconnecting) link.s.disconnect();
        disconnecting = true;
    };
    link.s.start(sclock::now());
    for (const auto& t : req.topics) link.s.subscribe(topic_ref_for(t, sn), qos);
    link.on_signal = leave;
    std::string line;
    link.step = [&](sclock::time_point now) {
        if (!link.error.empty() && error.empty()) {
            error = link.error + " at " + target;
            return link.stop();
        }
        if (now >= timeout_at && status == 0 && error.empty()) {
            status = sub_timeout_status;
            leave();
        }
        for (auto& e : link.s.take_events()) {
            if (auto* a = std::get_if<msn::suback_event>(&e)) {
                if (a->code != sn::return_code::accepted) {
                    if (error.empty())
                        error = "subscription to " + a->filter +
                                " refused: " + std::string(sn::to_string(a->code));
                    leave();
                    continue;
                }
                if (req.verbosity > 0)
                    err << tool << ": subscribed to " << a->filter << " (QoS "
                        << static_cast<int>(a->granted) << ")\n";
                if (++acked == req.topics.size() && req.exit_after_subscribe) leave();
            } else if (auto* m = std::get_if<msn::message_event>(&e)) {
                if (disconnecting) continue;
                protocol::publish_packet p;
                p.topic = std::move(m->topic);
                p.payload = std::move(m->payload);
                p.qos_level = to_mqtt(m->qos);
                p.retain = m->retain;
                p.dup = m->dup;
                p.packet_id = m->msg_id;
                bool skip = req.skip_retained && p.retain;
                for (const auto& f : req.filter_out)
                    skip = skip || protocol::topic_matches(f, p.topic);
                if (skip) continue;
                line.clear();
                const auto wall = std::chrono::system_clock::now();
                if (!req.format.empty()) {
                    if (!format::append_formatted(line, req.format, p, wall)) {
                        err << tool << ": error: message payload is not valid JSON on topic "
                            << p.topic << "\n";
                        continue;
                    }
                    if (!req.no_eol) line += '\n';
                } else if (req.json) {
                    format::append_message_json(line, p, protocol::protocol_version::v3_1_1, wall,
                                                req.json_options);
                    line += '\n';
                } else {
                    format::append_message_text(line, p, req.print_topic);
                    if (!req.no_eol) line += '\n';
                }
                out << line << std::flush;
                if (req.count > 0 && ++received >= req.count) leave();
            } else if (auto* c = std::get_if<msn::closed_event>(&e)) {
                if (!c->why.empty() && error.empty())
                    error = c->refused ? c->why : c->why + " (" + target + ")";
                return link.stop();
            }
        }
    };
    link.run();
    if (!error.empty()) return fail(err, tool, req.json, error);
    return status;
}

}  // namespace mqtt::client
