// libFuzzer target: arbitrary bytes into the broker's per-connection state machine, without
// sockets. Up to three connections share one engine; the input is a script of steps (feed
// bytes to a connection's framer, let time pass, drain or withhold a connection's output,
// lose or drop a connection) played as the network driver plays them: frames are taken
// from the framer only while the session does not pause its input.
//
// Checked after every step, besides what ASan and UBSan catch: every byte the broker writes
// frames and decodes as a packet of the connection's protocol version; the bounds hold
// (subscriptions, queues, messages held under memory_limit, output under the outbound
// bound); and when everything has closed, no message bytes are left counted.
//
// With the knob 64 the engine has a store recorder, as with `persistence true`: its records
// go to a log after every step, and time steps compact the log a slice at a time while the
// engine goes on changing it (the new file replaces the log when complete, as the store
// driver does). At the end the log must read back clean (no damage, no rejected record) to
// the recorder's mirror, and restore into a new engine.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "mqtt/broker/acl_file.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/broker/session.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/store_file.hpp"

using namespace mqtt;
using time_point = broker::clock::time_point;

namespace {

constexpr std::size_t connections = 3;

broker::limits fuzz_limits(std::uint8_t knobs) {
    broker::limits l;
    l.max_packet_size = 16 * 1024;
    l.receive_maximum = 4;
    l.max_inflight = 4;
    l.max_outbound_bytes = 32 * 1024;
    l.max_queued_messages = 16;
    l.max_queued_bytes = 64 * 1024;
    l.max_retained_messages = 64;
    l.max_retained_bytes = 64 * 1024;
    l.max_subscriptions = 32;
    l.max_topic_levels = 16;
    l.max_client_id_length = 64;
    l.max_offline_sessions = 8;
    l.memory_limit = 48 * 1024;
    l.connect_timeout = std::chrono::milliseconds{2000};
    l.max_topic_alias = 4;
    if (knobs & 1) l.max_publish_rate = 3;
    if (knobs & 2) l.queue_qos0_messages = true;
    if (knobs & 4) l.upgrade_outgoing_qos = true;
    if (knobs & 8) l.retain_available = false;
    if (knobs & 16) l.max_keepalive = 10;
    return l;
}

std::shared_ptr<const broker::security_policy> fuzz_security(bool with_acl) {
    auto p = std::make_shared<broker::security_policy>();
    if (with_acl) {
        auto r = broker::acl_file::parse(
            "topic readwrite public/#\ntopic deny public/secret\n"
            "pattern readwrite c/%c/#\npattern read u/%u/#\n",
            "fuzz.acl");
        if (!r.value) std::abort();
        p->acl = std::make_shared<const broker::acl_file>(std::move(*r.value));
    }
    return p;
}

struct fake_connection final : broker::session_observer {
    fake_connection(broker::engine& e, time_point now, std::uint32_t max_packet)
        : framer(max_packet), session(std::make_unique<broker::session>(e, now, "fuzz")) {
        session->set_observer(this);
    }
    void wake() override {}

    protocol::framer framer;
    std::unique_ptr<broker::session> session;
};

// The broker's output must be whole, valid packets of the connection's version.
void check_output(const std::vector<std::uint8_t>& out, protocol::protocol_version v) {
    protocol::framer f(protocol::max_packet_size);
    f.feed(out);
    for (;;) {
        auto fr = f.next();
        if (!fr) std::abort();
        if (!*fr) break;
        if (!protocol::decode((*fr)->first_byte, (*fr)->body, v)) std::abort();
    }
    if (f.buffered() != 0) std::abort();  // a partial packet
}

class run {
  public:
    explicit run(std::uint8_t knobs)
        : limits_(fuzz_limits(knobs)),
          engine_(limits_),
          now_(time_point{} + std::chrono::hours{1}) {
        engine_.set_security(fuzz_security(knobs & 32));
        if ((knobs & 64) != 0) {
            rec_ = std::make_unique<store::recorder>(store::state{});
            rec_->set_clock([this] { return clock_now(); });
            engine_.set_store(rec_.get());
        }
        for (auto& c : conns_) c = make();
    }

    void step(std::uint8_t op, std::span<const std::uint8_t>& in) {
        auto& c = conns_[op % connections];
        switch ((op / connections) % 6) {
            case 0:
            case 1: {  // bytes from the peer, up to 64 at a time
                if (in.empty()) return;
                const std::size_t n = std::min<std::size_t>(in.size(), 1 + in[0] % 64);
                c->framer.feed(in.subspan(1, n - 1));
                in = in.subspan(n);
                pump(*c);
                break;
            }
            case 2: {  // time passes
                const std::uint8_t t = in.empty() ? 1 : in[0];
                if (!in.empty()) in = in.subspan(1);
                now_ += std::chrono::milliseconds{std::uint32_t{t} * 37};
                timers();
                compact(t);
                break;
            }
            case 3:  // the connection's output is written
                drain(*c);
                break;
            case 4:  // the connection is lost; a new one takes its place
                c->session->on_transport_closed(now_);
                drain(*c);
                c = make();
                break;
            case 5:  // the connection object goes away without a close
                c = make();
                break;
        }
        for (auto& k : conns_) {
            if (k->session->closing() && !k->session->has_output()) k = make();
        }
        check();
        flush();
    }

    void finish() {
        if (std::getenv("BROKER_FUZZ_STATS") != nullptr) {  // to see what a seed reaches
            const auto& st = engine_.stats();
            std::fprintf(stderr,
                         "connects %llu/%llu rejected, received %llu, sent %llu, protocol "
                         "errors %llu, wills %llu, retained %zu\n",
                         static_cast<unsigned long long>(st.connects_accepted),
                         static_cast<unsigned long long>(st.connects_rejected),
                         static_cast<unsigned long long>(st.messages_received),
                         static_cast<unsigned long long>(st.messages_sent),
                         static_cast<unsigned long long>(st.protocol_errors),
                         static_cast<unsigned long long>(st.wills_published),
                         engine_.retained().size());
        }
        for (auto& c : conns_) {
            c->session->on_transport_closed(now_);
            drain(*c);
        }
        conns_ = {};
        // Offline sessions may still hold queued messages and retained ones are held; with
        // neither, nothing may be left counted against memory_limit.
        if (engine_.stored_session_count() == 0 && engine_.retained().size() == 0 &&
            engine_.held_bytes() != 0) {
            std::abort();
        }
        if (rec_) check_store();
    }

  private:
    store::clock_pair clock_now() const {
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(now_.time_since_epoch()).count();
        return store::clock_pair{now_, 1'700'000'000'000 + ms};
    }

    // As the store driver's group commit: what was recorded goes to the log, unless a
    // compaction is complete, whose new file then replaces the log (it covers those records).
    void flush() {
        if (!rec_ || !rec_->has_pending()) return;
        rec_->take_pending(pending_);
        if (compacting_ && rec_->compaction_done()) return replace_log();
        log_.insert(log_.end(), pending_.begin(), pending_.end());
    }

    void replace_log() {
        rec_->compaction_step(piece_);  // only the records kept since the last slice
        new_file_.insert(new_file_.end(), piece_.begin(), piece_.end());
        log_ = std::move(new_file_);
        new_file_.clear();
        rec_->end_compaction();
        compacting_ = false;
    }

    // A time step: the next slice of a compaction (of `t` * 8 bytes or so), or a new one.
    void compact(std::uint8_t t) {
        if (!rec_) return;
        if (!compacting_) {
            if (t % 4 != 0) return;
            rec_->begin_compaction();
            compacting_ = true;
            new_file_.clear();
        }
        if (rec_->compaction_done()) return;  // replaces the log at the next flush
        rec_->compaction_step(piece_, 1 + std::size_t{t} * 8);
        new_file_.insert(new_file_.end(), piece_.begin(), piece_.end());
    }

    // What the log says is what the recorder's mirror holds, and it restores.
    void check_store() {
        flush();
        if (compacting_) {  // finish it
            while (!rec_->compaction_done()) compact(255);
            replace_log();
        }
        const auto l = store::load_bytes(log_);
        if (!l.report.clean()) std::abort();
        if (l.st.snapshot(0) != rec_->mirror().snapshot(0)) std::abort();
        auto st = l.st;
        broker::engine again(limits_);
        store::restore(again, st, clock_now());
    }

    std::unique_ptr<fake_connection> make() {
        return std::make_unique<fake_connection>(engine_, now_, limits_.max_packet_size);
    }

    // As connection::process_input: whole frames while not paused or closing.
    void pump(fake_connection& c) {
        auto& s = *c.session;
        for (int guard = 0; guard < 1024 && !s.closing() && !s.input_paused(); ++guard) {
            auto fr = c.framer.next();
            if (!fr) {
                s.on_framing_error(fr.error());
                break;
            }
            if (!*fr) break;
            s.on_frame(**fr, now_);
            if (auto req = s.take_auth_request()) s.on_auth_result(false, now_);
        }
    }

    void drain(fake_connection& c) {
        if (!c.session->has_output()) return;
        c.session->take_output(out_);
        check_output(out_, c.session->version());
        c.session->on_written();
        pump(c);
    }

    void timers() {
        for (auto& c : conns_) {
            if (c->session->deadline() <= now_) c->session->on_timer(now_);
            pump(*c);
        }
        if (engine_.next_expiry() <= now_) engine_.on_timer(now_);
    }

    void check() const {
        for (const auto& c : conns_) {
            const auto& s = *c->session;
            if (s.subscription_count() > limits_.max_subscriptions) std::abort();
            if (s.queued() > limits_.max_queued_messages) std::abort();
            if (s.inflight() > limits_.max_inflight) std::abort();
        }
        // A PUBLISH is refused at the limit, so it is passed by one message at most, plus
        // the Wills (not refused: already held by their sessions) of every session.
        const std::size_t wills = connections + limits_.max_offline_sessions;
        if (engine_.held_bytes() >
            limits_.memory_limit + (1 + wills) * (limits_.max_packet_size + 1024)) {
            std::abort();
        }
        if (engine_.retained().bytes() > limits_.max_retained_bytes) std::abort();
        if (engine_.stored_session_count() > limits_.max_offline_sessions + connections * 4) {
            std::abort();
        }
    }

    broker::limits limits_;
    // Before the engine, which points to it: it outlives the engine and its sessions.
    std::unique_ptr<store::recorder> rec_;  // knob 64
    broker::engine engine_;
    time_point now_;
    std::array<std::unique_ptr<fake_connection>, connections> conns_;
    std::vector<std::uint8_t> out_;
    std::vector<std::uint8_t> log_;  // the store file
    std::vector<std::uint8_t> pending_;
    bool compacting_ = false;
    std::vector<std::uint8_t> new_file_;  // the compaction's file so far
    std::vector<std::uint8_t> piece_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    std::span<const std::uint8_t> in(data + 1, size - 1);
    {
        run r(data[0]);
        for (int steps = 0; !in.empty() && steps < 4096; ++steps) {
            const std::uint8_t op = in[0];
            in = in.subspan(1);
            r.step(op, in);
        }
        r.finish();
    }
    return 0;
}
