// What a running bridge does with its sessions' events: subscribe when a side connects,
// forward messages by the topic rules, acknowledge a QoS 1/2 message to its source only when
// the destination acknowledged it, drop its own messages coming back, report.

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>

#include "mqtt/format/json_string.hpp"
#include "runtime.hpp"

namespace mqtt::bridge::detail {
namespace {

std::string utc_now() {
    const auto now = std::chrono::system_clock::now();
    const auto t = std::chrono::system_clock::to_time_t(now);
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
        1'000'000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64] = {};
    const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::string s(buf, n);
    char frac[32] = {};  // room for any long (GCC's -Wformat-truncation)
    std::snprintf(frac, sizeof frac, ".%06ldZ", static_cast<long>(us));
    return s + frac;
}

std::string describe(const client::closed_event& c) {
    std::string what = c.error ? c.error.message() : "closed";
    if (c.reason != protocol::reason_code::success)
        what += " (reason: " + std::string(protocol::to_string(c.reason)) + ")";
    if (!c.reason_string.empty()) what += ": " + c.reason_string;
    return what;
}

}  // namespace

void output::event(std::string_view name, const std::vector<field>& fields, int level) {
    if (json_) {
        std::string line = "{\"time\":";
        format::append_json_string(line, utc_now());
        line += ",\"event\":";
        format::append_json_string(line, name);
        for (const auto& f : fields) {
            line += ',';
            format::append_json_string(line, f.name);
            line += ':';
            if (f.is_number)
                line += std::to_string(f.number);
            else if (f.is_bool)
                line += f.number ? "true" : "false";
            else
                format::append_json_text(line, f.text);
        }
        line += "}\n";
        out_ << line << std::flush;
        return;
    }
    if (lines_) {
        std::string text(name);
        for (const auto& f : fields) {
            text += ' ';
            text += f.name;
            text += '=';
            text += f.is_number ? std::to_string(f.number)
                    : f.is_bool ? std::string(f.number ? "true" : "false")
                                : f.text;
        }
        lines_(name, level, text);
        return;
    }
    if (verbosity_ < level) return;
    std::string line = "tern-bridge: " + std::string(name);
    for (const auto& f : fields) {
        line += ' ';
        line += f.name;
        line += '=';
        if (f.is_number)
            line += std::to_string(f.number);
        else if (f.is_bool)
            line += f.number ? "true" : "false";
        else
            line += f.text;
    }
    log_ << line << '\n' << std::flush;
}

std::vector<output::field> bridge_runtime::base_fields(const endpoint& e) const {
    return {output::str("bridge", cfg.name), output::str("side", e.remote ? "remote" : "local"),
            output::str("address", e.peer)};
}

void bridge_runtime::on_connect_failed(endpoint& e, const std::string& why) {
    auto f = base_fields(e);
    f.push_back(output::str("reason", why));
    // In text, the first failure of a series; the retries with -v.
    out.event("connect_failed", f, ++e.failures_in_row == 1 ? 0 : 1);
}

void bridge_runtime::on_main_back(endpoint& e) {
    auto f = base_fields(e);
    const auto& a = e.side().addresses.front();
    f.push_back(output::str("main_address", a.host + ":" + std::to_string(a.port)));
    out.event("returning_to_main", f);
}

void bridge_runtime::on_event(endpoint& e, client::event& ev) {
    if (auto* m = std::get_if<client::message_event>(&ev))
        on_message(e, *m);
    else if (auto* d = std::get_if<client::publish_done_event>(&ev))
        on_done(e, *d);
    else if (auto* c = std::get_if<client::connected_event>(&ev))
        on_connected(e, *c);
    else if (auto* sa = std::get_if<client::suback_event>(&ev)) {
        for (auto code : sa->codes)
            if (protocol::is_error(code)) {
                auto f = base_fields(e);
                f.push_back(output::str("reason", std::string(protocol::to_string(code))));
                out.event("subscribe_refused", f, -1);
            }
    } else if (auto* cl = std::get_if<client::closed_event>(&ev))
        on_closed(e, *cl);
}

void bridge_runtime::on_connected(endpoint& e, const client::connected_event& c) {
    e.connected = true;
    e.ever_connected = true;
    e.ever_connected_this_time = true;
    e.retry.reset();
    e.failures_in_row = 0;
    ++e.connects;
    auto f = base_fields(e);
    f.push_back(output::boolean("session_present", c.connack.session_present));
    out.event("connected", f);

    if (!c.connack.session_present) e.subscribed.clear();
    sync_subscriptions(e, true);
    // What waited for this side goes now, in order (the session holds back what exceeds
    // the broker's Receive Maximum).
    // (With the on-disk queue, `queue` holds only what waits for room on disk.)
    if (!e.dq_blocked) {
        std::deque<pending_message> waiting;
        waiting.swap(e.queue);
        for (auto& m : waiting) send(e, std::move(m));
    }
    pump(e);
    if (cfg.notifications) {
        if (e.remote)
            publish_state(true);
        else
            publish_state(remote.connected);
    }
    e.changed();
}

void bridge_runtime::sync_subscriptions(endpoint& e, bool all) {
    const auto subs = e.remote ? map_.remote_subscriptions() : map_.local_subscriptions();
    std::map<std::string, protocol::qos> wanted;
    for (const auto& s : subs) wanted[s.filter] = s.qos;
    std::vector<std::string> gone;
    for (const auto& [filter, q] : e.subscribed)
        if (!wanted.contains(filter)) gone.push_back(filter);
    const bool v5 = protocol::is_v5(cfg.version);
    std::vector<protocol::subscription> list;
    for (const auto& [filter, q] : wanted) {
        auto it = e.subscribed.find(filter);
        if (!all && it != e.subscribed.end() && it->second == q) continue;
        protocol::subscription x;
        x.filter = filter;
        x.options.max_qos = q;
        // No Local: what we publish on this connection does not come back on it.
        // Retain As Published: the retained flag of live messages crosses the bridge.
        x.options.no_local = v5;
        x.options.retain_as_published = v5;
        x.options.retain = protocol::retain_handling::send_if_new_subscription;
        list.push_back(std::move(x));
    }
    const auto now = clock::now();
    if (!gone.empty()) (void)e.s->unsubscribe(std::move(gone), now);
    if (!list.empty()) (void)e.s->subscribe(std::move(list), {}, now);
    e.subscribed = std::move(wanted);
    e.changed();
}

bool bridge_runtime::needs_restart(const bridge_config& n) const {
    return n.local.client_id != cfg.local.client_id || n.remote.client_id != cfg.remote.client_id ||
           n.version != cfg.version || n.keepalive != cfg.keepalive ||
           n.clean_session != cfg.clean_session ||
           n.local_clean_session != cfg.local_clean_session || n.try_private != cfg.try_private ||
           n.notifications != cfg.notifications || n.state_topic() != cfg.state_topic() ||
           n.notifications_local_only != cfg.notifications_local_only || n.queue != cfg.queue;
}

bridge_runtime::change bridge_runtime::reconfigure(bridge_config next) {
    change c;
    c.rules = next.topics != cfg.topics;
    c.local = next.local != cfg.local;
    c.remote = next.remote != cfg.remote;
    cfg.restart_base = next.restart_base;
    cfg.restart_max = next.restart_max;
    cfg.round_robin = next.round_robin;
    local.retry = client::backoff(cfg.restart_base, cfg.restart_max);
    remote.retry = client::backoff(cfg.restart_base, cfg.restart_max);
    if (c.rules) {
        cfg.topics = std::move(next.topics);
        map_ = topic_map(cfg.topics);
        // A side that is down subscribes to everything when it connects again.
        for (auto* e : {&local, &remote})
            if (e->connected) sync_subscriptions(*e, false);
    }
    if (c.local) {
        cfg.local = std::move(next.local);
        local.restart_connection();
    }
    if (c.remote) {
        cfg.remote = std::move(next.remote);
        remote.restart_connection();
    }
    return c;
}

void bridge_runtime::on_closed(endpoint& e, const client::closed_event& c) {
    const bool was_connected = e.connected;
    e.connected = false;
    // A broker that does not know the bridge flag refuses the protocol level (or just
    // closes): the next attempt goes without it. Only before the first CONNACK, so that
    // nothing queued in the session is lost by starting a new one.
    if (!was_connected && e.use_private && !e.ever_connected && !stopping &&
        e.refused_tls.empty()) {
        e.use_private = false;
        e.renew_session = true;  // the connect loop makes it once this connection is over
        auto f = base_fields(e);
        f.push_back(
            output::str("reason", "protocol level with the bridge bit refused: " + describe(c)));
        out.event("bridge_flag_refused", f, 1);
        return;
    }
    auto f = base_fields(e);
    f.push_back(output::str("reason", was_connected            ? describe(c)
                                      : !e.refused_tls.empty() ? e.refused_tls
                                                               : "refused: " + describe(c)));
    if (was_connected)
        out.event("disconnected", f, stopping ? 1 : 0);
    else
        out.event("connect_failed", f, ++e.failures_in_row == 1 ? 0 : 1);
    if (e.remote && was_connected && cfg.notifications && local.connected) publish_state(false);
}

void bridge_runtime::publish_state(bool up) {
    const auto topic = cfg.state_topic();
    const auto publish = [&](endpoint& e) {
        if (!e.connected) return;
        protocol::publish_packet p;
        p.topic = topic;
        p.payload = up ? "1" : "0";
        p.retain = true;
        p.qos_level = protocol::qos::at_least_once;
        (void)e.s->publish(std::move(p), clock::now());
        e.changed();
    };
    publish(local);
    if (!cfg.notifications_local_only && up) publish(remote);
    if (!cfg.notifications_local_only && !up && stopping) publish(remote);
}

void bridge_runtime::acknowledge(endpoint& from, std::uint64_t token) {
    if (token == 0) return;
    from.s->acknowledge(token);
    from.changed();
}

void bridge_runtime::on_message(endpoint& from, client::message_event& m) {
    auto& msg = m.message;
    const auto now = clock::now();
    auto route = from.remote ? map_.incoming(msg.topic) : map_.outgoing(msg.topic);
    if (!route) {
        ++n_.dropped_no_route;
        acknowledge(from, m.ack_token);
        return;
    }
    // Without No Local the broker sends our own publications back: drop each once.
    if (!protocol::is_v5(cfg.version) && from.echoes.is_echo(msg.topic, msg.payload, now)) {
        ++n_.dropped_loop;
        acknowledge(from, m.ack_token);
        return;
    }
    const auto source_id = msg.qos_level == protocol::qos::exactly_once ? msg.packet_id : 0;
    const bool dup = msg.dup;
    pending_message p{std::move(msg), m.ack_token};
    p.message.topic = std::move(route->topic);
    p.message.qos_level = std::min(p.message.qos_level, route->qos);
    p.message.dup = false;
    p.message.packet_id = 0;
    // Properties for this hop only; the rest (user properties, content type, expiry,
    // correlation data, response topic, payload format) pass through.
    p.message.props.topic_alias.reset();
    p.message.props.subscription_identifiers.clear();
    auto& to = other(from);
    if (enqueue(to, p, source_id, dup)) return;
    if (!to.connected) {
        if (p.message.qos_level == protocol::qos::at_most_once && p.token == 0) {
            ++n_.dropped_offline;
            return;
        }
        to.queue.push_back(std::move(p));
        update_pause(to);
        return;
    }
    send(to, std::move(p));
}

void bridge_runtime::send(endpoint& to, pending_message m) {
    auto& from = other(to);
    const auto q = m.message.qos_level;
    if (!protocol::is_v5(cfg.version))
        to.echoes.sent(m.message.topic, m.message.payload, clock::now());
    auto id = to.s->publish(std::move(m.message), clock::now());
    if (!id) {
        ++n_.dropped_refused;
        auto f = base_fields(to);
        f.push_back(output::str("reason", id.error().message()));
        out.event("dropped", f, 1);
        acknowledge(from, m.token);
        return;
    }
    if (q == protocol::qos::at_most_once) {
        ++(to.remote ? n_.forwarded_out : n_.forwarded_in);
        acknowledge(from, m.token);
    } else {
        to.awaiting[*id] = m.token;
    }
    update_pause(to);
    to.changed();
}

void bridge_runtime::on_done(endpoint& to, const client::publish_done_event& d) {
    if (on_queue_done(to, d) || d.received) return;
    auto it = to.awaiting.find(d.packet_id);
    if (it == to.awaiting.end()) return;  // a notification, or nothing to acknowledge
    const auto token = it->second;
    to.awaiting.erase(it);
    if (protocol::is_error(d.code))
        ++n_.dropped_refused;
    else
        ++(to.remote ? n_.forwarded_out : n_.forwarded_in);
    acknowledge(other(to), token);
    update_pause(to);
}

// Too much waiting for `to`: stop reading from the other side, whose broker keeps the
// messages meanwhile; read again once half of it has gone.
void bridge_runtime::update_pause(endpoint& to) {
    auto& from = other(to);
    const auto load = to.queue.size() + to.awaiting.size();
    if (!from.paused && (load >= opts.max_pending || to.dq_blocked)) {
        from.paused = true;
    } else if (from.paused && load <= opts.max_pending / 2 && !to.dq_blocked) {
        from.paused = false;
        from.wake_reader.cancel();
    }
}

void bridge_runtime::report_stats() {
    if (!opts.json && opts.verbosity < 1) return;
    std::vector<output::field> f{
        output::str("bridge", cfg.name),
        output::num("forwarded_out", n_.forwarded_out),
        output::num("forwarded_in", n_.forwarded_in),
        output::num("dropped_loop", n_.dropped_loop),
        output::num("dropped_no_route", n_.dropped_no_route),
        output::num("dropped_refused", n_.dropped_refused),
        output::num("dropped_offline", n_.dropped_offline),
        output::num("queued_out", remote.queue.size() + remote.awaiting.size() +
                                      (remote.dq ? remote.dq->records() : 0)),
        output::num("queued_in", local.queue.size() + local.awaiting.size() +
                                     (local.dq ? local.dq->records() : 0)),
        output::num("queued_bytes_out", remote.dq ? remote.dq->bytes() : 0),
        output::num("queued_bytes_in", local.dq ? local.dq->bytes() : 0),
        output::num("dropped_queue_full", n_.dropped_queue_full +
                                              (remote.dq ? remote.dq->dropped() : 0) +
                                              (local.dq ? local.dq->dropped() : 0)),
        output::num("queue_fsyncs",
                    (remote.dq ? remote.dq->fsyncs() : 0) + (local.dq ? local.dq->fsyncs() : 0)),
        output::boolean("local_connected", local.connected),
        output::boolean("remote_connected", remote.connected),
    };
    out.event("stats", f, 1);
}

bridge_state bridge_runtime::state() const {
    bridge_state s;
    s.name = cfg.name;
    s.local_connected = local.connected;
    s.remote_connected = remote.connected;
    s.forwarded_out = n_.forwarded_out;
    s.forwarded_in = n_.forwarded_in;
    s.dropped_loop = n_.dropped_loop;
    s.dropped_no_route = n_.dropped_no_route;
    s.dropped_refused = n_.dropped_refused;
    s.dropped_offline = n_.dropped_offline;
    s.dropped_queue_full = n_.dropped_queue_full + (remote.dq ? remote.dq->dropped() : 0) +
                           (local.dq ? local.dq->dropped() : 0);
    s.queued_out =
        remote.queue.size() + remote.awaiting.size() + (remote.dq ? remote.dq->records() : 0);
    s.queued_in = local.queue.size() + local.awaiting.size() + (local.dq ? local.dq->records() : 0);
    s.queued_bytes_out = remote.dq ? remote.dq->bytes() : 0;
    s.queued_bytes_in = local.dq ? local.dq->bytes() : 0;
    s.remote_connects = remote.connects;
    s.local_connects = local.connects;
    return s;
}

}  // namespace mqtt::bridge::detail
