#include "mqtt/client/sub.hpp"

#include "mqtt/format/message_json.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::client {
namespace {

class subscriber {
  public:
    subscriber(connection& c, const sub_request& r, std::ostream& out, std::ostream& err,
               const std::string& tool)
        : conn_(c), req_(r), out_(out), err_(err), tool_(tool) {}

    // Handles what arrived; false when the program is over (done() or error() says why).
    bool handle_events();
    bool done() const { return done_; }
    const std::string& error() const { return error_; }

  private:
    void on_suback(const suback_event& ack);
    void on_message(const protocol::publish_packet& m);

    connection& conn_;
    const sub_request& req_;
    std::ostream& out_;
    std::ostream& err_;
    const std::string& tool_;
    std::string line_;
    std::string error_;
    unsigned received_ = 0;
    bool done_ = false;
};

bool subscriber::handle_events() {
    for (auto& e : conn_.take_events()) {
        if (done_ || !error_.empty()) break;
        if (auto* ack = std::get_if<suback_event>(&e)) {
            on_suback(*ack);
        } else if (auto* msg = std::get_if<message_event>(&e)) {
            on_message(msg->message);
        } else if (auto* closed = std::get_if<closed_event>(&e)) {
            error_ = describe_failure(conn_.state(), closed->error, closed->reason,
                                      closed->reason_string);
        }
    }
    return !done_ && error_.empty();
}

void subscriber::on_suback(const suback_event& ack) {
    for (std::size_t i = 0; i < ack.codes.size() && i < req_.topics.size(); ++i) {
        if (protocol::is_error(ack.codes[i])) {
            error_ = "the broker refused the subscription to " + req_.topics[i] + ": " +
                     std::string(protocol::to_string(ack.codes[i]));
            return;
        }
    }
    if (req_.verbosity > 0) {
        err_ << tool_ << ": subscribed to";
        for (std::size_t i = 0; i < req_.topics.size(); ++i)
            err_ << ' ' << req_.topics[i] << " (granted QoS "
                 << (i < ack.codes.size() ? static_cast<int>(ack.codes[i]) : 0) << ")";
        err_ << std::endl;
    }
    if (req_.exit_after_subscribe) done_ = true;
}

void subscriber::on_message(const protocol::publish_packet& m) {
    if (req_.skip_retained && m.retain) return;
    for (const auto& f : req_.filter_out)
        if (protocol::topic_matches(f, m.topic)) return;
    line_.clear();
    if (req_.json) {
        format::append_message_json(line_, m, conn_.state().version(),
                                    std::chrono::system_clock::now());
        line_ += '\n';
    } else {
        format::append_message_text(line_, m, req_.print_topic);
        if (!req_.no_eol) line_ += '\n';
    }
    out_.write(line_.data(), static_cast<std::streamsize>(line_.size()));
    out_.flush();  // one message at a time through a pipe
    if (req_.count > 0 && ++received_ >= req_.count) done_ = true;
}

}  // namespace

int run_sub(const sub_request& req, std::ostream& out, std::ostream& err, const std::string& tool) {
    const auto fail = [&](const std::string& what) {
        err << tool << ": error: " << what << "\n";
        return 1;
    };
    const auto deadline = req.timeout > 0 ? clock::now() + std::chrono::seconds{req.timeout}
                                          : clock::time_point::max();
    connection conn(req.connection);
    if (auto ec = conn.connect()) {
        if (conn.interrupted()) return 0;
        const auto& info = conn.state().close_info();
        return fail("cannot connect to " + req.connection.host + ":" +
                    std::to_string(req.connection.port) + ": " +
                    describe_failure(conn.state(), ec, info.reason, info.reason_string));
    }
    std::vector<protocol::subscription> subs;
    for (const auto& t : req.topics) {
        protocol::subscription s;
        s.filter = t;
        s.options.max_qos = req.qos;
        subs.push_back(std::move(s));
    }
    if (auto id = conn.subscribe(std::move(subs)); !id) {
        conn.disconnect();
        return fail("cannot subscribe: " + id.error().message());
    }
    subscriber sub(conn, req, out, err, tool);
    while (sub.handle_events()) {
        conn.run_until([&] { return conn.state().has_events(); }, deadline);
        if (conn.state().has_events()) continue;
        if (conn.interrupted()) break;
        if (clock::now() >= deadline) {
            conn.disconnect();
            return sub_timeout_status;
        }
    }
    if (!sub.error().empty()) {
        conn.disconnect();
        return fail(sub.error());
    }
    conn.disconnect();
    return 0;
}

}  // namespace mqtt::client
