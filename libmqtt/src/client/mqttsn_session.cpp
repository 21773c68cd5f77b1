// The MQTT-SN client session (see mqttsn_session.hpp).

#include "mqtt/client/mqttsn_session.hpp"

#include <algorithm>
#include <utility>

namespace mqtt::client::mqttsn {

namespace {

bool has_wildcard(const std::string& f) {
    return f.find_first_of("+#") != std::string::npos;
}

}  // namespace

session::session(session_config c) : cfg_(std::move(c)) {}

void session::start(clock::time_point now) {
    if (state_ != state::idle) return;
    state_ = state::connecting;
    expect(sn::connect{false, cfg_.clean_session, cfg_.keep_alive, cfg_.client_id}, answer::connack,
           0, now);
}

std::uint64_t session::publish(topic_ref topic, std::string payload, sn::qos q, bool retain) {
    queue_.push_back(
        {request::kind::publish, std::move(topic), std::move(payload), q, retain, ++tokens_});
    return tokens_;
}

void session::subscribe(topic_ref filter, sn::qos q) {
    queue_.push_back({request::kind::subscribe, std::move(filter), {}, q, false, 0});
}

void session::disconnect() {
    queue_.push_back({request::kind::disconnect, {}, {}, {}, false, 0});
}

// ---- input -------------------------------------------------------------------------------

void session::on_datagram(std::span<const std::uint8_t> d, clock::time_point now) {
    if (state_ == state::closed) return;
    auto m = sn::decode(d);
    if (!m) {
        ++dropped_;
        return;
    }
    handle(std::move(*m), now);
    next(now);
}

void session::on_timer(clock::time_point now) {
    if (state_ == state::closed) return;
    if (waiting_ && waiting_->due <= now) {
        if (waiting_->resent >= cfg_.retry_count) {
            return close("no answer from the gateway after " + std::to_string(cfg_.retry_count) +
                         " retransmissions");
        }
        if (auto* p = std::get_if<sn::publish>(&waiting_->m)) p->dup = true;
        if (auto* s = std::get_if<sn::subscribe>(&waiting_->m)) s->dup = true;
        send(waiting_->m, now);
        ++waiting_->resent;
        waiting_->due = now + cfg_.retry_interval;
    }
    if (state_ == state::connected && !waiting_ && cfg_.keep_alive != 0 &&
        now >= last_sent_ + std::chrono::seconds(cfg_.keep_alive)) {
        expect(sn::pingreq{}, answer::pingresp, 0, now);
    }
    next(now);
}

void session::handle(sn::message&& m, clock::time_point now) {
    std::visit(
        [&](auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, sn::connack>) {
                if (!answers(answer::connack, 0)) return void(++dropped_);
                waiting_.reset();
                if (v.code != sn::return_code::accepted) {
                    return close("CONNECT refused: " + std::string(sn::to_string(v.code)), true);
                }
                state_ = state::connected;
                events_.push_back(connected_event{});
            } else if constexpr (std::is_same_v<T, sn::regack>) {
                if (!answers(answer::regack, v.msg_id) || !running_) return void(++dropped_);
                waiting_.reset();
                if (v.code != sn::return_code::accepted || v.topic_id == 0) {
                    events_.push_back(publish_done_event{running_->token, 0, v.code});
                    running_.reset();
                    return;
                }
                ids_[running_->topic.name] = v.topic_id;
                names_[v.topic_id] = running_->topic.name;
                send_publish(v.topic_id, sn::topic_id_type::normal, now);
            } else if constexpr (std::is_same_v<T, sn::puback>) {
                if (!answers(answer::puback, v.msg_id) || !running_) return void(++dropped_);
                if (v.code == sn::return_code::invalid_topic_id) {
                    // The gateway forgot the id (a new session there): register again next time.
                    if (auto it = names_.find(v.topic_id); it != names_.end()) {
                        ids_.erase(it->second);
                        names_.erase(it);
                    }
                }
                events_.push_back(publish_done_event{running_->token, v.msg_id, v.code});
                finish(now);
            } else if constexpr (std::is_same_v<T, sn::pubrec>) {
                if (!answers(answer::pubrec, v.msg_id)) return void(++dropped_);
                expect(sn::pubrel{v.msg_id}, answer::pubcomp, v.msg_id, now);
            } else if constexpr (std::is_same_v<T, sn::pubcomp>) {
                if (!answers(answer::pubcomp, v.msg_id) || !running_) return void(++dropped_);
                events_.push_back(
                    publish_done_event{running_->token, v.msg_id, sn::return_code::accepted});
                finish(now);
            } else if constexpr (std::is_same_v<T, sn::suback>) {
                if (!answers(answer::suback, v.msg_id) || !running_) return void(++dropped_);
                const auto& name = running_->topic.name;
                if (v.code == sn::return_code::accepted && v.topic_id != 0 &&
                    !running_->topic.predefined_id && !has_wildcard(name)) {
                    ids_[name] = v.topic_id;
                    names_[v.topic_id] = name;
                }
                events_.push_back(suback_event{name, v.qos, v.code});
                finish(now);
            } else if constexpr (std::is_same_v<T, sn::pingresp>) {
                if (answers(answer::pingresp, 0)) waiting_.reset();
            } else if constexpr (std::is_same_v<T, sn::disconnect>) {
                if (state_ == state::disconnecting) return close("");
                close("the gateway sent DISCONNECT");
            } else if constexpr (std::is_same_v<T, sn::register_>) {
                if (v.topic_id == 0) return void(++dropped_);
                names_[v.topic_id] = v.topic_name;
                ids_[v.topic_name] = v.topic_id;
                send(sn::regack{v.topic_id, v.msg_id, sn::return_code::accepted}, now);
            } else if constexpr (std::is_same_v<T, sn::publish>) {
                on_gateway_publish(std::move(v), now);
            } else if constexpr (std::is_same_v<T, sn::pubrel>) {
                qos2_received_.erase(v.msg_id);
                send(sn::pubcomp{v.msg_id}, now);  // also for a repeated PUBREL
            } else {
                ++dropped_;
            }
        },
        m);
}

void session::on_gateway_publish(sn::publish&& p, clock::time_point now) {
    std::optional<std::string> topic;
    switch (p.topic_type) {
        case sn::topic_id_type::short_name:
            topic = sn::short_topic_name(p.topic_id);
            break;
        case sn::topic_id_type::predefined:
            if (auto it = cfg_.predefined.find(p.topic_id); it != cfg_.predefined.end())
                topic = it->second;
            break;
        case sn::topic_id_type::normal:
            if (auto it = names_.find(p.topic_id); it != names_.end()) topic = it->second;
            break;
    }
    if (!topic) {
        if (p.qos == sn::qos::at_least_once || p.qos == sn::qos::exactly_once)
            send(sn::puback{p.topic_id, p.msg_id, sn::return_code::invalid_topic_id}, now);
        ++dropped_;
        return;
    }
    if (p.qos == sn::qos::at_least_once) {
        send(sn::puback{p.topic_id, p.msg_id, sn::return_code::accepted}, now);
    } else if (p.qos == sn::qos::exactly_once) {
        send(sn::pubrec{p.msg_id}, now);
        if (!qos2_received_.insert(p.msg_id).second) return;  // a duplicate: delivered already
    }
    events_.push_back(
        message_event{std::move(*topic), std::move(p.data), p.qos, p.retain, p.dup, p.msg_id});
}

// ---- requests ----------------------------------------------------------------------------

void session::next(clock::time_point now) {
    while (state_ == state::connected && !waiting_ && !running_ && !queue_.empty()) {
        running_ = std::move(queue_.front());
        queue_.pop_front();
        switch (running_->what) {
            case request::kind::publish:
                start_publish(now);
                break;
            case request::kind::subscribe: {
                sn::subscribe s;
                s.qos = running_->qos;
                s.msg_id = next_msg_id();
                if (running_->topic.predefined_id) {
                    s.topic_type = sn::topic_id_type::predefined;
                    s.topic_id = *running_->topic.predefined_id;
                } else {
                    s.topic_name = running_->topic.name;
                }
                const auto id = s.msg_id;
                expect(std::move(s), answer::suback, id, now);
                break;
            }
            case request::kind::disconnect:
                running_.reset();
                state_ = state::disconnecting;
                expect(sn::disconnect{}, answer::disconnect, 0, now);
                break;
        }
    }
}

void session::start_publish(clock::time_point now) {
    const auto& t = running_->topic;
    if (t.predefined_id) return send_publish(*t.predefined_id, sn::topic_id_type::predefined, now);
    if (t.name.size() == 2) {
        return send_publish(sn::short_topic_id(t.name[0], t.name[1]), sn::topic_id_type::short_name,
                            now);
    }
    if (auto it = ids_.find(t.name); it != ids_.end())
        return send_publish(it->second, sn::topic_id_type::normal, now);
    const auto id = next_msg_id();
    expect(sn::register_{0, id, t.name}, answer::regack, id, now);
}

void session::send_publish(std::uint16_t topic_id, sn::topic_id_type type, clock::time_point now) {
    auto& r = *running_;
    sn::publish p;
    p.qos = r.qos;
    p.retain = r.retain;
    p.topic_type = type;
    p.topic_id = topic_id;
    p.data = r.payload;
    if (!sn::encoded_size(p)) {
        // Too long for one datagram: refused here, never sent.
        events_.push_back(publish_done_event{r.token, 0, sn::return_code::not_supported});
        running_.reset();
        return;
    }
    if (r.qos != sn::qos::at_least_once && r.qos != sn::qos::exactly_once) {
        send(p, now);  // QoS 0: handed over once sent
        events_.push_back(publish_done_event{r.token, 0, sn::return_code::accepted});
        running_.reset();
        return;
    }
    p.msg_id = next_msg_id();
    const auto id = p.msg_id;
    expect(std::move(p), r.qos == sn::qos::at_least_once ? answer::puback : answer::pubrec, id,
           now);
}

void session::finish(clock::time_point now) {
    waiting_.reset();
    running_.reset();
    next(now);
}

// ---- output ------------------------------------------------------------------------------

std::vector<std::vector<std::uint8_t>> session::take_output(clock::time_point now) {
    next(now);
    return std::exchange(out_, {});
}

clock::time_point session::deadline() const noexcept {
    if (state_ == state::closed) return clock::time_point::max();
    if (waiting_) return waiting_->due;
    if (state_ == state::connected && cfg_.keep_alive != 0)
        return last_sent_ + std::chrono::seconds(cfg_.keep_alive);
    return clock::time_point::max();
}

void session::expect(sn::message m, answer a, std::uint16_t msg_id, clock::time_point now) {
    send(m, now);
    waiting_ = outstanding{a, msg_id, std::move(m), 0, now + cfg_.retry_interval};
}

bool session::answers(answer a, std::uint16_t msg_id) const noexcept {
    return waiting_ && waiting_->expects == a && waiting_->msg_id == msg_id;
}

void session::send(const sn::message& m, clock::time_point now) {
    auto bytes = sn::encode(m);
    if (!bytes) return;  // e.g. a payload too long for one datagram: never sent
    out_.push_back(std::move(*bytes));
    last_sent_ = now;
}

void session::close(std::string why, bool refused) {
    if (state_ == state::closed) return;
    state_ = state::closed;
    waiting_.reset();
    events_.push_back(closed_event{std::move(why), refused});
}

std::uint16_t session::next_msg_id() noexcept {
    if (++msg_id_ == 0) msg_id_ = 1;
    return msg_id_;
}

}  // namespace mqtt::client::mqttsn
