#include "mqtt/client/sub.hpp"

#include <algorithm>
#include <random>

#include "mqtt/client/backoff.hpp"
#include "mqtt/format/format_string.hpp"
#include "mqtt/format/message_json.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::client {
namespace {

class subscriber {
  public:
    subscriber(connection& c, const sub_request& r, std::ostream& out, std::ostream& err,
               const std::string& tool)
        : conn_(c), req_(r), out_(out), err_(err), tool_(tool), random_(std::random_device{}()) {}

    // SUBSCRIBE (-t) and UNSUBSCRIBE (-U); false with error() set when they cannot be sent.
    bool request();
    // Handles what arrived; false when the program is over (done() or error() says why).
    bool handle_events();
    // --reconnect after a lost connection, until `deadline` (-W); false when it gave up
    // (error() says why), ran out of time (timed_out()) or a signal arrived.
    bool restore(clock::time_point deadline);
    bool timed_out() const { return timed_out_; }
    bool lost() const { return !lost_.empty(); }
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
    std::minstd_rand random_;
    std::string line_;
    std::string error_;
    std::string lost_;
    unsigned received_ = 0;
    bool unflushed_ = false;
    bool done_ = false;
    bool timed_out_ = false;
};

bool subscriber::request() {
    if (!req_.topics.empty()) {
        std::vector<protocol::subscription> subs;
        for (const auto& t : req_.topics) {
            protocol::subscription s;
            s.filter = t;
            s.options = req_.options;
            s.options.max_qos = req_.qos;
            subs.push_back(std::move(s));
        }
        if (auto id = conn_.subscribe(std::move(subs), req_.subscribe_props); !id) {
            error_ = "cannot subscribe: " + id.error().message();
            return false;
        }
    }
    if (!req_.unsubscribe.empty()) {
        if (auto id = conn_.unsubscribe(req_.unsubscribe, req_.unsubscribe_props); !id) {
            error_ = "cannot unsubscribe: " + id.error().message();
            return false;
        }
    }
    return true;
}

bool subscriber::handle_events() {
    for (auto& e : conn_.take_events()) {
        if (done_ || !error_.empty()) break;
        if (auto* ack = std::get_if<suback_event>(&e)) {
            on_suback(*ack);
        } else if (auto* unack = std::get_if<unsuback_event>(&e)) {
            for (std::size_t i = 0; i < unack->codes.size() && i < req_.unsubscribe.size(); ++i)
                if (protocol::is_error(unack->codes[i]))
                    err_ << tool_ << ": warning: unsubscribing from " << req_.unsubscribe[i] << ": "
                         << protocol::to_string(unack->codes[i]) << "\n";
            if (req_.verbosity > 0) err_ << tool_ << ": unsubscribed" << std::endl;
            if (req_.topics.empty()) done_ = true;
        } else if (auto* msg = std::get_if<message_event>(&e)) {
            on_message(msg->message);
        } else if (auto* closed = std::get_if<closed_event>(&e)) {
            auto why = describe_failure(conn_.state(), closed->error, closed->reason,
                                        closed->reason_string);
            if (req_.reconnect && closed->error && closed->error != errc::connection_refused)
                lost_ = std::move(why);
            else
                error_ = std::move(why);
        }
    }
    // Once per batch of what arrived together rather than per message: a pipe still sees
    // every message before the program waits on the network again, with far fewer writes.
    if (unflushed_) {
        out_.flush();
        unflushed_ = false;
    }
    return !done_ && error_.empty() && lost_.empty();
}

bool subscriber::restore(clock::time_point deadline) {
    backoff delays;
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    if (req_.verbosity >= 0) err_ << tool_ << ": " << lost_ << "; reconnecting" << std::endl;
    for (;;) {
        conn_.sleep_until(std::min(clock::now() + delays.next(uniform(random_)), deadline));
        if (conn_.interrupted()) return false;
        if (clock::now() >= deadline) {
            timed_out_ = true;
            return false;
        }
        const auto ec = conn_.reconnect();
        if (!ec) break;
        const auto why = describe_failure(conn_, ec);
        if (conn_.interrupted()) return false;
        if (ec == errc::connection_refused) {
            error_ = "reconnecting: " + why;
            return false;
        }
        if (req_.verbosity > 0)
            err_ << tool_ << ": reconnect attempt " << delays.attempts() << ": " << why << "\n";
    }
    lost_.clear();
    const bool resumed = conn_.state().connack().session_present;
    if (req_.verbosity >= 0)
        err_ << tool_ << ": reconnected" << (resumed ? " (session resumed)" : "") << std::endl;
    // A broker that lost the session lost the subscriptions with it.
    return resumed || request();
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
    if (req_.retained_only && !m.retain) {
        done_ = true;  // the retained messages come first: the rest is live traffic
        return;
    }
    if (req_.remove_retained && m.retain && !m.payload.empty()) {
        protocol::publish_packet clear;
        clear.topic = m.topic;
        clear.retain = true;
        if (auto id = conn_.publish(std::move(clear)); !id)
            err_ << tool_ << ": warning: cannot clear the retained message of " << m.topic << ": "
                 << id.error().message() << "\n";
    }
    if (req_.skip_retained && m.retain) return;
    for (const auto& f : req_.filter_out)
        if (protocol::topic_matches(f, m.topic)) return;
    line_.clear();
    if (!req_.format.empty()) {
        if (!format::append_formatted(line_, req_.format, m, std::chrono::system_clock::now())) {
            err_ << tool_ << ": error: message payload is not valid JSON on topic " << m.topic
                 << "\n";
            return;
        }
        if (!req_.no_eol) line_ += '\n';
    } else if (req_.json) {
        format::append_message_json(line_, m, conn_.state().version(),
                                    std::chrono::system_clock::now(), req_.json_options);
        line_ += '\n';
    } else {
        format::append_message_text(line_, m, req_.print_topic);
        if (!req_.no_eol) line_ += '\n';
    }
    out_.write(line_.data(), static_cast<std::streamsize>(line_.size()));
    unflushed_ = true;
    if (req_.count > 0 && ++received_ >= req_.count) done_ = true;
}

}  // namespace

int run_sub(const sub_request& req, std::ostream& out, std::ostream& err, const std::string& tool) {
    const auto fail = [&](const std::string& what, int status = 1) {
        err << tool << ": error: " << what << "\n";
        if (req.json) {  // for programs that read stderr as JSON lines too
            std::string obj;
            format::append_error_json(obj, what, status);
            err << obj << "\n";
        }
        return status;
    };
    const auto deadline = req.timeout > 0 ? clock::now() + std::chrono::seconds{req.timeout}
                                          : clock::time_point::max();
    connection conn(req.connection);
    if (auto ec = conn.connect()) {
        if (conn.interrupted()) return 0;
        const auto& info = conn.state().close_info();
        return fail("cannot connect to " + req.connection.host + ":" +
                        std::to_string(req.connection.port) + ": " +
                        describe_failure(conn, ec),
                    connect_failure_status(conn.state(), ec, info.reason));
    }
    subscriber sub(conn, req, out, err, tool);
    if (!sub.request()) {
        conn.disconnect();
        return fail(sub.error());
    }
    for (;;) {
        if (!sub.handle_events()) {
            if (!sub.lost()) break;
            if (!sub.restore(deadline)) {
                if (sub.timed_out()) return sub_timeout_status;
                break;
            }
            continue;
        }
        conn.run_until([&] { return conn.state().has_events(); }, deadline);
        if (conn.state().has_events()) continue;
        if (conn.interrupted()) break;
        if (clock::now() >= deadline) {
            conn.disconnect(protocol::reason_code::success, req.disconnect_props);
            return sub_timeout_status;
        }
    }
    if (!sub.error().empty()) {
        conn.disconnect();
        return fail(sub.error());
    }
    // --remove-retained: the empty retained messages must reach the broker before we leave.
    conn.run_until([&] { return !conn.output_pending(); }, clock::now() + std::chrono::seconds{5});
    conn.disconnect(protocol::reason_code::success, req.disconnect_props);
    return 0;
}

}  // namespace mqtt::client
