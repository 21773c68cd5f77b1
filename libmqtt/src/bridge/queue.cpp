// The bridge's side of the on-disk queue (queue_dir): QoS 1/2 messages for a destination are
// appended, committed with one fdatasync per turn of the event loop and only then
// acknowledged to their source; the destination drains the queue in order within its
// in-flight window; a PUBREC is written to the state before its PUBREL goes out. The file
// format and recovery are in disk_queue.cpp.

#include <boost/asio/post.hpp>

#include "mqtt/protocol/codec.hpp"
#include "runtime.hpp"

namespace mqtt::bridge::detail {
namespace {

constexpr auto queue_tick_interval = std::chrono::milliseconds{50};

std::vector<output::field> side_fields(const bridge_config& cfg, bool remote) {
    return {output::str("bridge", cfg.name), output::str("side", remote ? "remote" : "local")};
}

}  // namespace

queue_pair open_queue_pair(const bridge_config& cfg, output& out) {
    queue_pair q;
    if (cfg.queue.dir.empty()) return q;
    queue_options o;
    o.max_bytes = cfg.queue.max_bytes;
    o.policy = cfg.queue.policy;
    // Segments small enough that the bound is not overshot by much before one is deleted.
    o.segment_bytes =
        std::clamp<std::uint64_t>(o.max_bytes / 8, std::uint64_t{1} << 16, std::uint64_t{64} << 20);
    for (const bool remote : {false, true}) {
        const auto dir = cfg.queue.dir + "/" + cfg.name + (remote ? ".remote" : ".local");
        queue_recovery rep;
        std::string error;
        auto dq = disk_queue::open(dir, o, rep, error);
        if (!dq) {
            auto f = side_fields(cfg, remote);
            f.push_back(output::str("reason", error));
            out.event("queue_error", f, -1);
            q = {};
            q.error = error;
            return q;
        }
        for (auto& p : rep.problems) {
            auto f = side_fields(cfg, remote);
            f.push_back(output::str("reason", dir + ": " + p));
            out.event("queue_problem", f, -1);
        }
        auto f = side_fields(cfg, remote);
        f.push_back(output::str("dir", dir));
        f.push_back(output::num("records", rep.records));
        f.push_back(output::num("bytes", rep.bytes));
        f.push_back(output::num("resend", rep.resend));
        f.push_back(output::num("cut_bytes", rep.cut_bytes));
        out.event("queue_opened", f, rep.records > 0 || rep.cut_bytes > 0 ? 0 : 1);
        (remote ? q.to_remote : q.to_local) = std::move(dq);
    }
    return q;
}

// The protocol version, then the PUBLISH as encoded in it (packet id 1, no DUP).
std::vector<std::uint8_t> bridge_runtime::queue_body(const protocol::publish_packet& p) const {
    protocol::publish_packet c = p;
    c.packet_id = 1;
    c.dup = false;
    std::vector<std::uint8_t> b{static_cast<std::uint8_t>(cfg.version)};
    if (protocol::encode_append(c, cfg.version, b)) b.clear();
    return b;
}

bool bridge_runtime::enqueue(endpoint& to, pending_message& m, std::uint16_t source_id, bool dup) {
    if (!to.dq || m.message.qos_level == protocol::qos::at_most_once) return false;
    auto& from = other(to);
    const auto body = queue_body(m.message);
    if (body.empty()) return false;  // cannot be encoded: the session will say why
    // After a restart the source sends again (DUP) a QoS 2 message whose PUBREC it never
    // saw: if the queue has it already, only the acknowledgement is missing.
    if (dup && source_id != 0 && to.dq->recovered_duplicate(source_id, body)) {
        acknowledge(from, m.token);
        return true;
    }
    if (to.dq_blocked) {  // older messages wait for room: keep the order
        to.queue.push_back(std::move(m));
        update_pause(to);
        return true;
    }
    switch (to.dq->append(body, source_id)) {
        case disk_queue::append_status::appended:
            if (m.token != 0) to.commit_tokens.push_back(m.token);
            schedule_commit();
            return true;
        case disk_queue::append_status::full:
            if (cfg.queue.policy == full_policy::block) {
                to.dq_blocked = true;
                to.queue.push_back(std::move(m));
                update_pause(to);
            } else {
                ++n_.dropped_queue_full;
                acknowledge(from, m.token);
            }
            return true;
        case disk_queue::append_status::failed:
            break;
    }
    if (!to.dq_failing) {
        auto f = base_fields(to);
        f.push_back(output::str("reason", to.dq->last_error() + " (held in memory meanwhile)"));
        out.event("queue_error", f, -1);
    }
    to.dq_failing = true;
    return false;  // in memory, as without the queue
}

void bridge_runtime::schedule_commit() {
    if (commit_posted_) return;
    commit_posted_ = true;
    // Everything appended in this turn of the event loop shares one fdatasync.
    asio::post(io, [this] {
        commit_posted_ = false;
        commit_queues();
    });
}

void bridge_runtime::commit_queues() {
    for (auto* e : {&local, &remote}) {
        if (!e->dq || !e->dq->uncommitted()) continue;
        if (!e->dq->commit()) {
            if (!e->dq_failing) {
                auto f = base_fields(*e);
                f.push_back(output::str("reason", e->dq->last_error()));
                out.event("queue_error", f, -1);
            }
            e->dq_failing = true;
            continue;
        }
        e->dq_failing = false;
        // Safe on disk: now the source may forget them.
        auto& from = other(*e);
        for (auto t : e->commit_tokens) acknowledge(from, t);
        e->commit_tokens.clear();
        pump(*e);
    }
}

// Hands the destination the next records, within its Receive Maximum (20 before 5.0).
void bridge_runtime::pump(endpoint& to) {
    if (!to.dq || !to.connected) return;
    const bool v5 = protocol::is_v5(cfg.version);
    const std::uint64_t window =
        v5 ? to.s->connack().props.receive_maximum.value_or(std::uint16_t{65535}) : 20;
    const auto now = clock::now();
    bool sent = false;
    while (to.dq->in_flight() < window) {
        auto r = to.dq->next();
        if (!r) break;
        protocol::publish_packet p;
        bool ok = !r->body.empty() && r->body[0] >= 3 && r->body[0] <= 5;
        if (ok) {
            const auto version = static_cast<protocol::protocol_version>(r->body[0]);
            auto decoded =
                protocol::decode_packet(std::span<const std::uint8_t>(r->body).subspan(1), version);
            ok = decoded && std::holds_alternative<protocol::publish_packet>(*decoded) &&
                 std::get<protocol::publish_packet>(*decoded).qos_level !=
                     protocol::qos::at_most_once;
            if (ok) p = std::move(std::get<protocol::publish_packet>(*decoded));
        }
        if (!ok) {
            auto f = base_fields(to);
            f.push_back(output::str(
                "reason", "record " + std::to_string(r->seq) + ": not a QoS 1/2 PUBLISH: skipped"));
            out.event("queue_problem", f, -1);
            to.dq->done(r->seq);
            ++n_.dropped_refused;
            continue;
        }
        p.dup = r->resend;
        if (!v5) to.echoes.sent(p.topic, p.payload, now);
        auto id = to.s->publish_with_id(std::move(p), packet_id_for(r->seq), now);
        if (!id) {
            ++n_.dropped_refused;
            auto f = base_fields(to);
            f.push_back(output::str("reason", id.error().message()));
            out.event("dropped", f, 1);
            to.dq->done(r->seq);
            continue;
        }
        sent = true;
    }
    if (sent) to.changed();
    report_queue_problems(to);
}

bool bridge_runtime::on_queue_done(endpoint& to, const client::publish_done_event& d) {
    if (!to.dq || d.packet_id == 0 || d.packet_id > queue_id_space) return false;
    const auto seq = to.dq->seq_for_id(d.packet_id);
    if (!seq) return true;
    if (d.received) {
        to.dq->received(*seq);
        to.save_before_send = true;  // after_input() writes the state before PUBREL goes
        return true;
    }
    to.dq->done(*seq);
    if (protocol::is_error(d.code))
        ++n_.dropped_refused;
    else
        ++(to.remote ? n_.forwarded_out : n_.forwarded_in);
    // Room again: what waited in memory under `block` goes to disk, in order.
    while (to.dq_blocked && !to.queue.empty()) {
        auto& m = to.queue.front();
        const auto body = queue_body(m.message);
        const auto st = to.dq->append(body, 0);
        if (st == disk_queue::append_status::full) break;
        if (st == disk_queue::append_status::appended && m.token != 0)
            to.commit_tokens.push_back(m.token);
        to.queue.pop_front();  // `failed`: the source sends it again after a reconnect
        schedule_commit();
    }
    if (to.queue.empty()) to.dq_blocked = false;
    update_pause(to);
    pump(to);
    return true;
}

void bridge_runtime::after_input(endpoint& e) {
    if (!e.save_before_send || !e.dq) return;
    e.save_before_send = false;
    if (!e.dq->save_state()) {
        auto f = base_fields(e);
        f.push_back(output::str("reason", e.dq->last_error()));
        out.event("queue_error", f, -1);
    }
}

void bridge_runtime::report_queue_problems(endpoint& to) {
    if (!to.dq) return;
    for (auto& p : to.dq->take_problems()) {
        auto f = base_fields(to);
        f.push_back(output::str("reason", p));
        out.event("queue_problem", f, -1);
    }
}

// Every 50 ms: commit what a failed commit left, save the state when it changed.
void bridge_runtime::queue_tick() {
    commit_queues();
    for (auto* e : {&local, &remote}) {
        if (!e->dq) continue;
        report_queue_problems(*e);
        if (e->dq->state_dirty() && !e->dq->save_state()) {
            auto f = base_fields(*e);
            f.push_back(output::str("reason", e->dq->last_error()));
            out.event("queue_error", f, -1);
        }
    }
    queue_timer_.expires_after(queue_tick_interval);
    queue_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec && !stopping && (local.dq || remote.dq)) queue_tick();
    });
}

void bridge_runtime::close_queues() {
    if (!local.dq && !remote.dq) return;
    commit_queues();
    for (auto* e : {&local, &remote})
        if (e->dq) {
            (void)e->dq->save_state();
            e->dq = nullptr;
        }
    queues_.to_local.reset();
    queues_.to_remote.reset();
    queue_timer_.cancel();
}

}  // namespace mqtt::bridge::detail
