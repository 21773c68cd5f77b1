#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mqtt/broker/limits.hpp"
#include "mqtt/broker/message.hpp"
#include "mqtt/broker/retained_store.hpp"
#include "mqtt/protocol/packet.hpp"
#include "mqtt/protocol/subscription_trie.hpp"

namespace mqtt::broker {

class session;

// Log lines from the broker: verbosity 0 is always shown (errors, start, stop), 1 is
// connections, 2 is every packet decision worth a line.
using log_function = std::function<void(int verbosity, std::string_view line)>;

// The broker's shared state, passed explicitly to every session: the sessions, the client
// id registry, the subscription index, the retained messages, routing and the counters.
// No I/O and no clock of its own (times come in as arguments). Not thread-safe: with one
// event loop it lives on that loop; spreading connections over several loops later means
// handing deliveries to each session's loop through its session_observer.
class engine {
  public:
    explicit engine(limits l = {}, log_function log = {}, int verbosity = 0);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    const limits& config() const noexcept { return limits_; }
    broker::stats& stats() noexcept { return stats_; }
    const broker::stats& stats() const noexcept { return stats_; }

    // ---- sessions (called by session itself)
    void add(session& s);     // every session, from construction
    void remove(session& s);  // on destruction
    // Registers a connected session under its client id; an existing one with the same id
    // is closed first (takeover, 5.0 reason 0x8E).
    void attach(session& s);
    // Removes the session's subscriptions and its client id registration.
    void detach(session& s);
    // A client id for a client that sent none, unique among the connected ones.
    std::string assign_client_id();
    session* find(std::string_view client_id) const;
    std::size_t session_count() const noexcept { return sessions_.size(); }
    std::size_t connected_count() const noexcept { return by_id_.size(); }

    // ---- subscriptions
    // True when new, false when it replaced the session's subscription to that filter.
    bool subscribe(session& s, std::string_view filter, const protocol::subscription_options& o);
    bool unsubscribe(session& s, std::string_view filter);
    std::size_t subscription_count() const noexcept { return subscriptions_.size(); }

    // ---- messages
    // Stores or clears the retained message, then delivers to every matching subscription
    // (once per session, at the highest granted QoS). Returns the sessions reached.
    std::size_t publish(const session* from, const message_ptr& m);
    // Delivers the retained messages matching `filter` to one new subscription.
    void send_retained(session& s, std::string_view filter, protocol::qos granted,
                       clock::time_point now);
    const retained_store& retained() const noexcept { return retained_; }

    // Closes every session (5.0 clients get DISCONNECT 0x8B).
    void shutdown();

    bool logging(int verbosity) const noexcept { return log_ && verbosity <= verbosity_; }
    void log(int verbosity, std::string_view line) const {
        if (logging(verbosity)) log_(verbosity, line);
    }

  private:
    struct sub_entry {
        protocol::subscription_options options;
    };
    struct target {
        session* s;
        protocol::qos q;
        bool retain_as_published;
    };
    using trie = protocol::subscription_trie<session*, sub_entry>;

    limits limits_;
    broker::stats stats_;
    log_function log_;
    int verbosity_;
    std::unordered_set<session*> sessions_;
    std::unordered_map<std::string, session*> by_id_;
    trie subscriptions_;
    retained_store retained_;
    std::vector<target> targets_;  // scratch for publish(), reused to avoid allocating
    bool routing_ = false;
    std::mt19937_64 id_random_;
};

}  // namespace mqtt::broker
