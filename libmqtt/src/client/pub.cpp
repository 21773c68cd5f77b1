#include "mqtt/client/pub.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>

namespace mqtt::client {
namespace {

// Unacknowledged messages allowed before reading more input: bounds memory with -l.
constexpr std::size_t window = 1024;
// How long -l waits on the network between looks at an idle standard input.
constexpr auto idle_step = std::chrono::milliseconds{20};

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
    publisher(connection& c, const pub_request& r, std::ostream& err)
        : conn_(c), req_(r), err_(err) {}

    // False once something failed; error() says what.
    bool publish(std::string payload);
    bool publish_lines(int fd);
    bool pause(double seconds);
    // Waits for every acknowledgement and the last write, then disconnects.
    bool finish();
    const std::string& error() const { return error_; }

  private:
    void handle_events();
    bool healthy();

    connection& conn_;
    const pub_request& req_;
    std::ostream& err_;
    std::string error_;
    std::size_t published_ = 0;
};

void publisher::handle_events() {
    for (auto& e : conn_.take_events()) {
        if (auto* done = std::get_if<publish_done_event>(&e)) {
            if (protocol::is_error(done->code)) {
                if (error_.empty())
                    error_ = "the broker refused message " + std::to_string(done->packet_id) +
                             ": " + std::string(protocol::to_string(done->code));
            } else if (req_.verbosity > 0) {
                err_ << "acknowledged message " << done->packet_id << "\n";
            }
        } else if (auto* closed = std::get_if<closed_event>(&e)) {
            if (error_.empty() && closed->error)
                error_ = describe_failure(conn_.state(), closed->error, closed->reason,
                                          closed->reason_string);
        }
    }
}

bool publisher::healthy() {
    handle_events();
    if (error_.empty() && conn_.interrupted()) error_ = "interrupted by a signal";
    if (error_.empty() && conn_.state().closed()) error_ = "the connection closed";
    return error_.empty();
}

bool publisher::publish(std::string payload) {
    protocol::publish_packet p;
    p.topic = req_.topic;
    p.payload = std::move(payload);
    p.qos_level = req_.qos;
    p.retain = req_.retain;
    auto id = conn_.publish(std::move(p));
    if (!id) {
        if (error_.empty()) error_ = "cannot publish: " + id.error().message();
        return false;
    }
    ++published_;
    // Keep the unacknowledged messages and the unwritten bytes bounded; in between, messages
    // accumulate and go out in one write.
    if (conn_.state().unacknowledged() >= window || published_ % 256 == 0)
        // Until the first acknowledgement, not many: sending again at once carries the TCP
        // ACK that a broker without TCP_NODELAY (Mosquitto) waits for before it sends more
        // PUBACKs; waiting for half the window stalled on the 40 ms delayed ACK each time.
        conn_.run_until(
            [&] { return conn_.state().unacknowledged() < window && !conn_.output_pending(); });
    return healthy();
}

// One message per line of `fd` (without its '\n'); a last line without '\n' counts too. The
// network is served while the input is idle, so keep-alive and acknowledgements go on.
bool publisher::publish_lines(int fd) {
    std::string pending;
    char chunk[64 * 1024];
    for (;;) {
        pollfd pfd{fd, POLLIN, 0};
        const int ready = ::poll(&pfd, 1, 0);
        if (ready == 0) {
            conn_.run_until([] { return false; }, clock::now() + idle_step);
            if (!healthy()) return false;
            continue;
        }
        const auto n = ::read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            error_ = std::string("cannot read standard input: ") + std::strerror(errno);
            return false;
        }
        if (n == 0) return pending.empty() || publish(std::move(pending));
        std::string_view data(chunk, static_cast<std::size_t>(n));
        for (auto nl = data.find('\n'); nl != std::string_view::npos; nl = data.find('\n')) {
            pending.append(data.substr(0, nl));
            if (!publish(std::move(pending))) return false;
            pending.clear();
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
    if (error_.empty())
        conn_.run_until([&] {
            handle_events();
            return !error_.empty() ||
                   (conn_.state().unacknowledged() == 0 && !conn_.output_pending());
        });
    const bool ok = healthy();
    const bool flushed = conn_.disconnect();
    if (ok && !flushed) error_ = "could not finish writing to the broker";
    return error_.empty();
}

}  // namespace

int run_pub(const pub_request& req, std::ostream& err, const std::string& tool) {
    const auto fail = [&](const std::string& what) {
        err << tool << ": error: " << what << "\n";
        return 1;
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

    connection conn(req.connection);
    if (auto ec = conn.connect()) {
        const auto& info = conn.state().close_info();
        return fail("cannot connect to " + req.connection.host + ":" +
                    std::to_string(req.connection.port) + ": " +
                    describe_failure(conn.state(), ec, info.reason, info.reason_string));
    }
    publisher pub(conn, req, err);
    bool ok = true;
    if (req.source == payload_source::stdin_lines) {
        ok = pub.publish_lines(req.input_fd);
    } else {
        for (unsigned i = 0; ok && i < req.repeat; ++i) {
            if (i > 0 && req.repeat_delay > 0) ok = pub.pause(req.repeat_delay);
            if (ok) ok = pub.publish(payload);
        }
    }
    ok = pub.finish() && ok;
    return ok ? 0 : fail(pub.error());
}

}  // namespace mqtt::client
