#include "mqtt/client/pub.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mqtt/client/backoff.hpp"
#include "mqtt/format/message_json.hpp"
#include "mqtt/format/message_json_in.hpp"

namespace mqtt::client {
namespace {

// Unacknowledged messages allowed before reading more input, which bounds memory with -l:
// 4,096 small messages (at 1,024 the publisher waited on acknowledgements often enough to
// cost about a quarter of its QoS 1 rate), fewer as they grow, so that about 16 MiB at most
// wait for their acknowledgement.
std::size_t window_for(std::size_t payload_bytes) {
    constexpr std::size_t most = 4096, least = 16, bytes = 16u << 20;
    return std::clamp(bytes / std::max<std::size_t>(payload_bytes, 1), least, most);
}
// How long -l waits on the network between looks at an idle standard input.
constexpr auto idle_step = std::chrono::milliseconds{20};
// Encoded messages queued before they are handed to the socket in one write (-l: about 900
// PUBLISHes of 64 bytes); a line longer than this goes out on its own.
constexpr std::size_t write_batch = 64 * 1024;
// Standard input is read in pieces of this size.
constexpr std::size_t read_chunk = 256 * 1024;

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::string data{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) return std::nullopt;
    return data;
}

std::optional<std::string> read_all(int fd) {
    std::string data;
    char chunk[64 * 1024];
    for (;;) {
        const auto n = ::read(fd, chunk, sizeof chunk);
        if (n == 0) return data;
        if (n < 0) {
            if (errno == EINTR) continue;
            return std::nullopt;
        }
        data.append(chunk, static_cast<std::size_t>(n));
    }
}

class publisher {
  public:
    publisher(connection& c, const pub_request& r, std::ostream& out, std::ostream& err,
              const std::string& tool)
        : conn_(c), req_(r), out_(out), err_(err), tool_(tool), random_(std::random_device{}()) {
        message_.topic = r.topic;
        message_.qos_level = r.qos;
        message_.retain = r.retain;
        message_.props = r.props;
    }

    // False once something failed; error() says what. `reused`: `p` is refilled for the next
    // message, so it is copied; otherwise it may be moved from.
    bool publish(protocol::publish_packet& p, bool reused);
    // The request's topic, QoS, retain flag and properties with this payload.
    bool publish_payload(std::string_view payload);
    // Calls `line` for each line of `fd` (without its '\n'; a last line without '\n' too).
    // The view is valid during the call only.
    bool read_lines(int fd, const std::function<bool(std::string_view)>& line);
    bool publish_json_line(std::string_view line);
    bool pause(double seconds);
    // Waits for every acknowledgement and the last write, then disconnects.
    bool finish();
    // The connection's failure, else the input's (--json-in: a bad line).
    const std::string& error() const { return error_.empty() ? input_error_ : error_; }

  private:
    // --json: what is reported of a message once it is handed over.
    struct sent {
        std::uint64_t seq;
        std::string topic;
        protocol::qos qos;
        bool retain;
        std::size_t bytes;
    };
    void report(const sent& m, std::uint16_t mid, protocol::reason_code code);
    void handle_events();
    bool healthy();
    bool restore();
    void pace();

    connection& conn_;
    const pub_request& req_;
    std::ostream& out_;
    std::ostream& err_;
    const std::string& tool_;
    std::minstd_rand random_;
    std::string error_;
    std::string input_error_;  // the input stopped here; what was read before still goes out
    std::string lost_;         // why the connection ended, while --reconnect brings it back
    std::size_t published_ = 0;
    std::size_t line_number_ = 0;
    clock::time_point first_{};
    std::unordered_map<std::uint16_t, sent> unacknowledged_;  // --json, by packet id
    std::string line_;
    // Refilled for every message of -m, -f, -s, -l: no allocation per line once the payload
    // buffer has grown to the longest line.
    protocol::publish_packet message_;
    std::size_t unwritten_ = 0;  // topic and payload bytes queued since the last write
};

void publisher::report(const sent& m, std::uint16_t mid, protocol::reason_code code) {
    line_.clear();
    format::append_publish_result_json(line_,
                                       {m.seq, m.topic, m.qos, m.retain, mid, m.bytes, code});
    line_ += '\n';
    out_.write(line_.data(), static_cast<std::streamsize>(line_.size()));
    out_.flush();  // one line per message through a pipe
}

void publisher::handle_events() {
    if (!conn_.state().has_events()) return;
    for (auto& e : conn_.take_events()) {
        if (auto* done = std::get_if<publish_done_event>(&e)) {
            if (req_.json)
                if (const auto it = unacknowledged_.find(done->packet_id);
                    it != unacknowledged_.end()) {
                    report(it->second, done->packet_id, done->code);
                    unacknowledged_.erase(it);
                }
            if (protocol::is_error(done->code)) {
                if (error_.empty())
                    error_ = "the broker refused message " + std::to_string(done->packet_id) +
                             ": " + std::string(protocol::to_string(done->code));
            } else if (req_.verbosity > 0) {
                err_ << "acknowledged message " << done->packet_id << "\n";
            }
        } else if (auto* closed = std::get_if<closed_event>(&e)) {
            if (!closed->error) continue;
            auto why = describe_failure(conn_.state(), closed->error, closed->reason,
                                        closed->reason_string);
            // A refusal is the broker's answer, not an accident: reconnecting would repeat it.
            if (req_.reconnect && closed->error != errc::connection_refused)
                lost_ = std::move(why);
            else if (error_.empty())
                error_ = std::move(why);
        }
    }
}

bool publisher::healthy() {
    handle_events();
    if (error_.empty() && conn_.interrupted()) error_ = "interrupted by a signal";
    if (error_.empty() && conn_.state().closed()) {
        if (req_.reconnect && !lost_.empty()) return restore();
        error_ = "the connection closed";
    }
    return error_.empty();
}

// --reconnect: back off, connect again, until it works, the broker refuses or a signal.
bool publisher::restore() {
    backoff delays;
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    if (req_.verbosity >= 0) err_ << tool_ << ": " << lost_ << "; reconnecting" << std::endl;
    for (;;) {
        conn_.sleep_until(clock::now() + delays.next(uniform(random_)));
        if (conn_.interrupted()) {
            error_ = "interrupted by a signal while reconnecting (" + lost_ + ")";
            return false;
        }
        const auto ec = conn_.reconnect();
        if (!ec) break;
        const auto why = describe_failure(conn_, ec);
        if (ec == errc::connection_refused || conn_.interrupted()) {
            error_ = "reconnecting: " + why;
            return false;
        }
        if (req_.verbosity > 0)
            err_ << tool_ << ": reconnect attempt " << delays.attempts() << ": " << why << "\n";
    }
    lost_.clear();
    if (req_.verbosity >= 0)
        err_ << tool_ << ": reconnected"
             << (conn_.state().connack().session_present ? " (session resumed)" : "") << ", "
             << conn_.state().unacknowledged() << " message(s) unacknowledged" << std::endl;
    handle_events();
    return error_.empty();
}

// --rate: message n goes out no earlier than n / rate seconds after the first.
void publisher::pace() {
    if (req_.rate <= 0) return;
    const auto now = clock::now();
    if (published_ == 0) first_ = now;
    const auto due = first_ + std::chrono::duration_cast<clock::duration>(
                                  std::chrono::duration<double>(published_ / req_.rate));
    if (due > now) conn_.run_until([] { return false; }, due);
}

bool publisher::publish_payload(std::string_view payload) {
    message_.payload.assign(payload);
    return publish(message_, true);
}

bool publisher::publish(protocol::publish_packet& p, bool reused) {
    pace();
    if (!healthy()) return false;
    const auto window = window_for(p.payload.size());
    std::optional<sent> record;
    if (req_.json) record = sent{published_ + 1, p.topic, p.qos_level, p.retain, p.payload.size()};
    // A copy when `p` is reused, or when a lost connection may make us try again.
    const auto size = p.topic.size() + p.payload.size();
    auto id = reused || req_.reconnect ? conn_.publish(p) : conn_.publish(std::move(p));
    if (!id && id.error() == errc::not_connected && req_.reconnect) {
        if (!healthy()) return false;  // reconnects
        id = reused ? conn_.publish(p) : conn_.publish(std::move(p));
    }
    if (!id) {
        if (error_.empty()) error_ = "cannot publish: " + id.error().message();
        return false;
    }
    ++published_;
    if (record) {
        if (record->qos == protocol::qos::at_most_once)
            report(*record, 0, protocol::reason_code::success);
        else
            unacknowledged_.insert_or_assign(*id, std::move(*record));
    }
    // Keep the unacknowledged messages and the unwritten bytes bounded; in between, messages
    // accumulate and go out in one write.
    if (conn_.state().unacknowledged() >= window || req_.rate > 0) {
        // Until the first acknowledgement, not many: sending again at once carries the TCP
        // ACK that a broker without TCP_NODELAY (Mosquitto) waits for before it sends more
        // PUBACKs; waiting for half the window stalled on the 40 ms delayed ACK each time.
        conn_.run_until(
            [&] { return conn_.state().unacknowledged() < window && !conn_.output_pending(); });
        unwritten_ = 0;
    } else if ((unwritten_ += size) >= write_batch) {
        // Until the writer has taken the batch (its write may still be under way, so the next
        // batch fills meanwhile): at most two batches of output, and acknowledgements read.
        conn_.run_until([&] { return !conn_.state().has_output(); });
        unwritten_ = 0;
    }
    return healthy();
}

bool publisher::publish_json_line(std::string_view line) {
    ++line_number_;
    if (line.find_first_not_of(" \t\r") == std::string::npos) return true;  // blank: skipped
    auto r = format::parse_message_json(line, {req_.topic, req_.qos, req_.retain});
    if (!r.error.empty()) {
        input_error_ = "standard input line " + std::to_string(line_number_) + ": " + r.error;
        return false;
    }
    // -D publish properties apply where the line does not set its own.
    if (r.message.props.empty()) r.message.props = req_.props;
    return publish(r.message, false);
}

// The network is served while the input is idle, so keep-alive and acknowledgements go on.
bool publisher::read_lines(int fd, const std::function<bool(std::string_view)>& line) {
    std::string pending;  // the start of a line that continues in the next read
    std::vector<char> buffer(read_chunk);
    char* const chunk = buffer.data();
    for (;;) {
        pollfd pfd{fd, POLLIN, 0};
        const int ready = ::poll(&pfd, 1, 0);
        if (ready == 0) {
            conn_.run_until([] { return false; }, clock::now() + idle_step);
            if (!healthy()) return false;
            continue;
        }
        const auto n = ::read(fd, chunk, buffer.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            input_error_ = std::string("cannot read standard input: ") + std::strerror(errno);
            return false;
        }
        if (n == 0) return pending.empty() || line(pending);
        std::string_view data(chunk, static_cast<std::size_t>(n));
        for (auto nl = data.find('\n'); nl != std::string_view::npos; nl = data.find('\n')) {
            bool ok;
            if (pending.empty()) {  // the whole line is in this read: no copy
                ok = line(data.substr(0, nl));
            } else {
                pending.append(data.substr(0, nl));
                ok = line(pending);
                pending.clear();
            }
            if (!ok) return false;
            data.remove_prefix(nl + 1);
        }
        pending.append(data);
    }
}

bool publisher::pause(double seconds) {
    const auto until = clock::now() + std::chrono::duration_cast<clock::duration>(
                                          std::chrono::duration<double>(seconds));
    conn_.run_until([] { return false; }, until);
    return healthy();
}

bool publisher::finish() {
    const auto all_done = [&] {
        handle_events();
        return !error_.empty() || !lost_.empty() ||
               (conn_.state().unacknowledged() == 0 && !conn_.output_pending());
    };
    // Each round either ends with everything acknowledged, or with a lost connection that
    // healthy() restores (or turns into the error).
    for (int round = 0; round < 1'000'000 && error_.empty(); ++round) {
        conn_.run_until(all_done);
        if (!healthy()) break;
        if (conn_.state().unacknowledged() == 0 && !conn_.output_pending()) break;
    }
    const bool ok = healthy();
    const bool flushed = conn_.disconnect(protocol::reason_code::success, req_.disconnect_props);
    if (ok && !flushed) error_ = "could not finish writing to the broker";
    return error_.empty();
}

// --reconnect: the first connection too is tried again while the broker is unreachable
// (starting up, restarting: the TCP connection fails), with the same back-off. A failure
// after TCP connected (a refusal, TLS, no CONNACK) or a signal ends it.
std::error_code connect_first(connection& conn, const pub_request& req, std::ostream& err,
                              const std::string& tool) {
    auto ec = conn.connect();
    if (!ec || !req.reconnect) return ec;
    backoff delays;
    std::minstd_rand random(std::random_device{}());
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    if (req.verbosity >= 0)
        err << tool << ": cannot connect to " << req.connection.host << ":"
            << req.connection.port << ": " << describe_failure(conn, ec) << "; retrying"
            << std::endl;
    while (ec && conn.state().state() == session_state::idle && !conn.interrupted()) {
        conn.sleep_until(clock::now() + delays.next(uniform(random)));
        if (conn.interrupted()) break;
        ec = conn.connect();
        if (ec && req.verbosity > 0)
            err << tool << ": connect attempt " << delays.attempts() + 1 << ": "
                << describe_failure(conn, ec) << "\n";
    }
    return ec;
}

}  // namespace

int run_pub(const pub_request& req, std::ostream& out, std::ostream& err,
            const std::string& tool) {
    const auto fail = [&](const std::string& what, int status = 1) {
        err << tool << ": error: " << what << "\n";
        if (req.json) {  // for programs that read stderr as JSON lines too
            std::string obj;
            format::append_error_json(obj, what, status);
            err << obj << "\n";
        }
        return status;
    };
    std::string payload;
    if (req.source == payload_source::message) payload = req.message;
    if (req.source == payload_source::file) {
        auto data = read_file(req.file);
        if (!data) return fail("cannot read " + req.file + ": " + std::strerror(errno));
        payload = std::move(*data);
    }
    if (req.source == payload_source::stdin_all) {
        auto data = read_all(req.input_fd);
        if (!data) return fail(std::string("cannot read standard input: ") + std::strerror(errno));
        payload = std::move(*data);
    }

    auto cfg = req.connection;
    if (req.reconnect) cfg.session.keep_unacknowledged = true;
    connection conn(cfg);
    if (auto ec = connect_first(conn, req, err, tool)) {
        const auto& info = conn.state().close_info();
        return fail("cannot connect to " + req.connection.host + ":" +
                        std::to_string(req.connection.port) + ": " + describe_failure(conn, ec),
                    connect_failure_status(conn.state(), ec, info.reason));
    }
    publisher pub(conn, req, out, err, tool);
    bool ok = true;
    if (req.source == payload_source::stdin_lines) {
        ok = pub.read_lines(req.input_fd,
                            [&](std::string_view line) { return pub.publish_payload(line); });
    } else if (req.source == payload_source::json_lines) {
        ok = pub.read_lines(req.input_fd,
                            [&](std::string_view line) { return pub.publish_json_line(line); });
    } else {
        for (unsigned i = 0; ok && i < req.repeat; ++i) {
            if (i > 0 && req.repeat_delay > 0) ok = pub.pause(req.repeat_delay);
            if (ok) ok = pub.publish_payload(payload);
        }
    }
    ok = pub.finish() && ok;
    return ok ? 0 : fail(pub.error());
}

}  // namespace mqtt::client
