#pragma once

// server::impl, private to mqtt_net: the listeners, shard 0 (the engine and the loop that
// ran everything before threads), and with threads > 1 the other shards (server_shards.cpp;
// connections handed to their shard: server_handoff.cpp).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "auth_worker.hpp"
#include "connection.hpp"
#include "deadlines.hpp"
#include "mqtt/bridge/runner.hpp"
#include "mqtt/broker/figures.hpp"
#include "mqtt/broker/sys_topics.hpp"
#include "mqtt/net/server.hpp"
#include "mqtt/net/shard_runtime.hpp"
#include "mqtt/version.hpp"
#include "mqttsn_udp.hpp"
#include "net/metrics/metrics_listener.hpp"
#include "net/transport/tls.hpp"
#include "store_driver.hpp"

namespace mqtt::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// With structured events, the engine's text lines are classified into events; otherwise
// they go to the text log function as they are.
inline broker::log_function engine_log(const server_options& o) {
    if (!o.events) return o.log;
    return [events = o.events](int verbosity, std::string_view line) {
        events(broker::classify_log_line(verbosity, line));
    };
}
// With threads > 1 every shard logs: one line at a time through the log function.
inline server_options serialize_logs(server_options o) {
    if (o.threads <= 1) return o;
    auto m = std::make_shared<std::mutex>();
    if (o.log) {
        o.log = [m, f = std::move(o.log)](int verbosity, std::string_view line) {
            const std::lock_guard lock{*m};
            f(verbosity, line);
        };
    }
    if (o.events) {
        o.events = [m, f = std::move(o.events)](const broker::log_event& e) {
            const std::lock_guard lock{*m};
            f(e);
        };
    }
    return o;
}

struct server::impl {
    explicit impl(server_options o)
        : opts(serialize_logs(std::move(o))),
          engine(opts.limits, engine_log(opts), opts.verbosity),
          io(1) {
        set_security(engine);
        deadlines.start(io.get_executor());
        set_batch_observer(io, &conns.writes);
        conns.ended = [this](std::uint32_t group, std::exception_ptr e) {
            connection_ended(group, e);
        };
    }
    // The security slots of an engine (shard 0's, and every other shard's the same).
    void set_security(broker::engine& e) {
        e.set_security(opts.security);
        for (const auto& [group, p] : opts.listener_security) e.set_security(p, group + 1);
        // The in-process bridges' own slot, past every listener's: a policy that lets them
        // in and checks nothing (they come from this broker's own configuration).
        for (const auto& l : opts.listeners) bridge_slot = std::max(bridge_slot, l.group + 2);
        for (const auto& l : opts.mqttsn_listeners)
            bridge_slot = std::max(bridge_slot, l.settings.security_slot + 1);
        bridge_slot = std::max(bridge_slot, opts.listener_security.size() + 1);
        for (const auto& [group, p] : opts.listener_security)
            bridge_slot = std::max(bridge_slot, group + 2);
        auto trusted = std::make_shared<broker::security_policy>();
        trusted->publish_sys = true;  // the bridges' state topic, $SYS/broker/connection/...
        e.set_security(std::move(trusted), bridge_slot);
    }
    // The engine's security slot of a listener group's clients.
    std::size_t security_slot(std::size_t group) const {
        return opts.listener_security.count(group) ? group + 1 : 0;
    }
    // What the store keeps of the listener of each security slot (server_store.cpp).
    store::listener_keys listener_keys() const;
    ~impl() {
        engine.set_expiry_hook({});  // connections destroyed with io must not call it
        deadlines.stop();            // its timer goes before io; the connections in io after
        stop_shards();               // the other shards' timers and workers, likewise
    }

    server_options opts;
    // threads > 1, [shard]: what its filters may match (written by its engine, read by the
    // others'). Before every engine: sessions ending as they go still take their filters out.
    std::vector<std::unique_ptr<broker::shard_interest>> interests;
    broker::engine engine;        // before io: connections still in io refer to it when destroyed
    detail::deadlines deadlines;  // before io, like engine; its timer is stopped in ~impl
    // What this loop's connections share (before io, like engine; its store is set by
    // create() when output waits for the store's syncs).
    detail::connection_context conns{engine, auth, deadlines, nullptr, {}};
    asio::io_context io;
    // After io: destroyed (joined) first, so it never posts to a destroyed io_context.
    detail::auth_worker auth;
    std::vector<tcp::acceptor> acceptors;
    std::vector<std::size_t> acceptor_groups;  // listen_address::group of each acceptor
    struct group_state {
        std::optional<std::size_t> max_connections;
        std::size_t open = 0;
        tls_context_ptr tls;  // nullptr: plain TCP
        bool websockets = false;
        std::string websockets_path;
        // use_identity_as_username / use_subject_as_username of the TLS listener.
        tls_server_settings::username_source username_from =
            tls_server_settings::username_source::none;
    };
    std::map<std::size_t, group_state> groups;
    std::optional<asio::signal_set> signals;
    std::optional<asio::signal_set> reload_signal;
    asio::steady_timer expiry{io};  // the engine's next session expiry / delayed Will
    broker::sys_topics sys{engine, opts.sys_interval, broker::clock::now(),
                           std::string{"tern-broker "} + version_string};
    asio::steady_timer sys_timer{io};  // sys.next_due()
    std::vector<std::string> warnings;
    // After io and engine: destroyed before them (its clients hold engine sessions).
    std::vector<std::unique_ptr<detail::mqttsn_udp>> mqttsn;
    std::vector<std::size_t> mqttsn_groups;  // the listener group of each, in order
    bool stopping = false;
    // metrics_listener: /metrics and /healthz (after io: destroyed before it).
    std::optional<detail::metrics_listener> metrics;
    broker::clock::time_point started = broker::clock::now();
    std::string render_metrics() const;
    std::string render_metrics(const broker::figures& f) const;
    // `connection` blocks (after io and engine: destroyed before them).
    std::optional<bridge::host> bridges;
    std::size_t bridge_slot = 1;  // the engine's security slot of their local connections
    // The tag of the bridges' local connections (for connection_ended: no listener group).
    static constexpr std::uint32_t bridge_tag = UINT32_MAX;
    asio::steady_timer bridges_grace{io};
    broker::clock::time_point bridges_deadline{};
    std::string start_bridges(std::vector<bridge::bridge_config> b);
    std::unique_ptr<transport> connect_bridge(const bridge::bridge_config& b, std::string& why);
    void wait_bridges_closed();
    // Last: destroyed first, while the engine and io it refers to are still there.
    std::optional<detail::store_driver> store;

    // ---- threads > 1 (server_shards.cpp): shards 1..N-1, each an engine with its own
    // deadlines, password worker and expiry timer on its own loop; shard 0 is the members
    // above. Connections are handed to the shard of their CONNECT's client id
    // (server_handoff.cpp).
    struct shard_state;
    struct shard_link;  // a shard's broker::shard_router
    struct handoff;     // an accepted socket whose first packet shard 0 is reading
    std::vector<std::unique_ptr<shard_state>> shards;  // [0] is null (shard 0 is above)
    std::vector<std::unique_ptr<shard_link>> links;    // one per shard, 0 included
    // After the shards' engines (destroyed first: connections in its loops refer to them).
    std::optional<shard_runtime> runtime;
    std::set<std::shared_ptr<handoff>> handoffs;  // closed by stop_now()
    std::size_t next_shard = 0;                   // round robin for empty client ids
    std::size_t open_total = 0;                   // connections of every shard (shard 0's count)
    bool sharded() const noexcept { return runtime.has_value(); }
    broker::engine& engine_of(std::size_t k);
    void create_shards();    // in create(), threads > 1
    void start_shards();     // in run()
    void stop_shards();      // timers and workers, before the runtime's loops go
    void shutdown_shards();  // stop_now(): every other shard closes its sessions
    void end_shards();       // after shard 0's loop returned: the others finish, joined
    // f(engine) on every shard but 0, on its thread (SIGHUP's changes).
    void post_to_shards(std::function<void(broker::engine&)> f);
    // Sends the item now, or queues it behind what waits in `from`'s outbox queue (channel
    // order) or when the channel refuses it (max_items in flight); never dropped.
    void send_to(std::size_t from, std::size_t to, shard_item&& item);
    // memory_limit across shards: once the broker's memory without what is still in the
    // channels (held and output, every shard's) reached the limit, a shard takes no more
    // messages from the other shards' channels (stalled: their publishers are refused at
    // memory_full(), and the channels' bytes stay what was accepted before); it looks again
    // every memory_retry.
    struct memory_hold {
        explicit memory_hold(asio::io_context& io, std::size_t shards) : timer(io), from(shards) {}
        asio::steady_timer timer;
        std::vector<char> from;  // [shard]: its channel stalled here for memory
        bool armed = false;
    };
    static constexpr std::chrono::milliseconds memory_retry{10};
    std::vector<std::unique_ptr<memory_hold>> memory_holds;  // [shard]
    void hold_for_memory(std::size_t k, std::size_t from);

    // Retained changes in order with SUBSCRIBEs across shards: each shard counts the
    // changes it made (issued, written by its thread only, read by all); each shard's
    // replica counts those it applied, by the shard that made them (FIFO channels, and
    // shard 0 passing them on in the order it got them: so "applied[s] >= n" means it
    // has the first n of shard s). A SUBSCRIBE on shard k when some issued[s] is past
    // k's applied[s] waits for a ticket with that snapshot, reached once k applied them.
    // A shard that holds up a channel (memory_limit, a congested subscriber) may not apply
    // what waits in it for long: its SUBSCRIBEs do not wait then, and none waits longer
    // than retained_wait_max (the changes are then taken as they are, as before).
    struct alignas(64) retained_counter {
        std::atomic<std::uint64_t> issued{0};
    };
    struct retained_order {
        explicit retained_order(asio::io_context& io, std::size_t shards)
            : applied(shards, 0), timer(io) {}
        std::vector<std::uint64_t> applied;  // [origin shard]
        struct target {
            std::uint64_t ticket;
            std::vector<std::uint64_t> issued;  // the snapshot to reach
            std::chrono::steady_clock::time_point since;
        };
        std::deque<target> targets;  // increasing tickets and snapshots
        std::uint64_t last_ticket = 0;
        asio::steady_timer timer;  // the oldest target's retained_wait_max
        bool armed = false;
    };
    static constexpr std::chrono::milliseconds retained_wait_max{1000};
    std::unique_ptr<retained_counter[]> retained_issued;         // [shard]
    std::vector<std::unique_ptr<retained_order>> retained_orders;  // [shard], its thread only
    std::uint64_t retained_ticket(std::size_t k);
    void retained_applied(std::size_t k, std::size_t origin);
    void retained_wait_timer(std::size_t k);

    // ---- persistence (server_store.cpp): a store per shard.
    // Reads every shard's store (redistributing the sessions when they were written with
    // another number of threads) and opens one store_driver per shard.
    std::error_code open_stores(std::string* failed);
    // Logs a store file a start could not remove ("NAME (reason)", in `dir`).
    void report_not_removed(const std::string& dir, const std::string& what);
    detail::store_driver& make_store(std::size_t k);
    // A start with another number of threads whose new set of store files found no room:
    // the broker runs with every store failing (awaits_set) and the set, as the start made
    // it, is written every second until it fits; then each store writes its own state anew
    // (docs/persistence.md, "No room for a new set").
    struct pending_store_set {
        std::vector<std::vector<std::uint8_t>> files;  // [shard]: the content of its file
        std::vector<std::string> remove;  // the files of shards past the number of threads
        bool commit_left = false;  // the commit file is there (a later step failed): finish it
    };
    std::optional<pending_store_set> store_set;
    asio::steady_timer store_set_timer{io};
    // Tries to put the set in place (commit_store_set, else finish_store_set); true once
    // it is. `quiet`: no log line for a failure (the retries after the first).
    bool write_store_set(bool quiet);
    void retry_store_set();  // every second, on shard 0's loop, until write_store_set()
    // With always/batch, what shard `from` acknowledges waits until every shard it sent
    // items to has synced what it did with them (docs/persistence.md, "Threads"): items
    // are counted per ordered pair of shards, each count on its own shard's thread.
    // A share group's home that routes another shard's message to a member on a third
    // shard (or back) confirms the items it took only once the member's shard has
    // confirmed those deliveries (shard_item::share_seq). A member's shard that sends a
    // delivery back (share_op::again) confirms it only once the home has confirmed the
    // re-pick (shard_item::again_seq), which the home does after its own sync and the
    // re-pick's member shard's sync (`share_synced`, which waits for nothing else). So the
    // waits go down four layers (item counts, share deliveries, agains, syncs) and cannot
    // form a cycle (docs/persistence.md, "Acknowledged = durable across shards").
    struct confirmation {
        std::uint64_t seq = 0;            // items taken from `from` up to this count
        std::uint64_t applied = 0;        // and its outbox up to this sequence (0: none)
        bool synced = false;              // this shard's store has what taking them did
        std::vector<std::uint64_t> need;  // [to]: share deliveries to be confirmed first
        std::uint64_t again = 0;          // agains sent back to `from`, confirmed first
    };
    // Share deliveries (or agains) taken from `from` up to `max`, confirmed once `synced`
    // and what taking them sent is confirmed: agains up to `again` (share deliveries), or
    // the share deliveries `need` synced by their shards (agains).
    struct share_wait {
        std::uint64_t max = 0;
        std::uint64_t again = 0;
        std::vector<std::uint64_t> need;  // [to]
        bool synced = false;
    };
    struct item_counts {
        std::vector<std::uint64_t> sent;  // [to], on the sender's thread
        std::vector<std::uint64_t> got;   // [from], on the receiver's thread
        // The rest on this shard's thread (the shard of the index in `counts`).
        std::vector<std::uint64_t> share_sent;              // [to]: share deliveries numbered
        std::vector<std::uint64_t> share_synced;            // [to]: and synced by `to`
        std::vector<std::uint64_t> share_confirmed;         // [to]: and confirmed by `to`
        std::vector<std::uint64_t> again_sent;              // [to]: agains numbered
        std::vector<std::uint64_t> again_confirmed;         // [to]: and confirmed by `to`
        std::vector<std::uint64_t> batch_need;              // [to]: sent while taking a batch
        std::vector<std::uint64_t> batch_again;             // [to]: agains sent while taking it
        bool taking = false;                                // a batch is being taken
        std::vector<std::deque<confirmation>> pending;      // [from]: in order
        std::vector<std::deque<share_wait>> share_pending;  // [from]: in order
        std::vector<std::deque<share_wait>> again_pending;  // [from]: in order
    };
    std::vector<item_counts> counts;                  // [shard]
    detail::store_driver* held_store(std::size_t k);  // that shard's, if output waits for it
    // need: the current connection's output waits for `to` to confirm this item.
    void item_sent(std::size_t from, std::size_t to, bool need = true);
    // Shard k took n items of shard `from`, share deliveries among them up to share_max
    // and agains up to again_max.
    void items_taken(std::size_t k, std::size_t from, std::size_t n, std::uint64_t share_max,
                     std::uint64_t again_max);
    // On shard k: shard `to` has synced the share deliveries k sent it up to seq.
    void share_synced(std::size_t k, std::size_t to, std::uint64_t seq);
    // On shard k: and confirmed them (their agains' re-picks too).
    void share_confirmed(std::size_t k, std::size_t to, std::uint64_t seq);
    // On shard k: shard `to` has the re-picks of the agains k sent it up to seq.
    void again_confirmed(std::size_t k, std::size_t to, std::uint64_t seq);
    // On shard k: the confirmations to `from` whose turn has come go (one post each).
    void send_confirmations(std::size_t k, std::size_t from);
    void send_share_confirmations(std::size_t k, std::size_t from);
    void send_again_confirmations(std::size_t k, std::size_t from);
    // The outbox (docs/persistence.md, "Threads: the outbox"): a QoS 2 message a shard
    // sends to the others is recorded in its own store (the group of the PUBLISH's packet
    // id) and sent only once that group is synced; what it sends after it waits behind it,
    // so that each channel keeps its order. All on the sender's thread but `applied`.
    struct outbox_queue {
        struct waiting {
            std::uint64_t gate = 0;  // sent once `synced` reaches it
            std::size_t to = 0;
            shard_item item;
        };
        std::uint64_t seq = 0;     // the last outbox sequence used
        std::uint64_t gates = 0;   // outbox messages recorded (a gate each)
        std::uint64_t synced = 0;  // gates whose group is on disk
        std::deque<waiting> items;
        std::vector<std::uint64_t> applied;  // [from]: taken from `from`'s outbox (receiver)
    };
    std::vector<outbox_queue> outboxes;  // [shard]
    // The outbox sequence of m when it goes through shard k's outbox (QoS 2, output held),
    // else 0; the items sent for it carry it.
    std::uint64_t outbox_item(std::size_t k, const broker::message_ptr& m,
                              std::span<const std::size_t> to, std::string_view publisher);
    void outbox_recorded(std::size_t k);  // after the items of outbox_item() were sent
    // A share group's delivery of a QoS 2 message from home `from` to a member on `to`
    // goes through `from`'s outbox (recorded, item.outbox_seq set): true.
    bool share_through_outbox(std::size_t from, std::size_t to, shard_item& item);
    void send_outbox(std::size_t k);  // what may go now
    // Startup: every store's outbox items its destinations' stores have not taken are
    // queued there (store::replay); returns how many, per store.
    // `written_by`: the number of threads that wrote them (share groups' homes then);
    // `shares_sent` marks the stores that got share deliveries for others' sessions.
    std::vector<std::size_t> replay_outboxes(const std::vector<store::state*>& states,
                                             std::size_t written_by,
                                             std::vector<char>& shares_sent);
    void close_stores();  // graceful stop, after every loop has ended
    // Returns how many items shard k took: fewer when a congested subscriber holds up
    // what `from` sends (resumed by shard_link::resume_from).
    std::size_t on_shard_batch(std::size_t k, std::size_t from, std::span<shard_item> items);
    std::size_t take_items(std::size_t k, std::size_t from, std::span<shard_item> items);
    void read_first_packet(std::shared_ptr<handoff> h);
    void read_first_more(std::shared_ptr<handoff> h);
    void route_first(std::shared_ptr<handoff> h);
    // The shard of a connection whose first bytes are `first` (a whole CONNECT, or none:
    // the next in turn). `cert_name`: the user name a TLS listener takes from the client's
    // certificate (use_identity_as_username), nullptr when it takes none.
    std::size_t shard_for(std::span<const std::uint8_t> first, std::size_t slot,
                          const std::optional<std::string>* cert_name);
    void hand_off(std::shared_ptr<handoff> h, std::size_t k);
    // A TLS or WebSocket listener's connection: the handshake and the first packet on shard
    // 0, then the descriptor, the SSL object and the framing state go to the shard of the
    // client id.
    asio::awaitable<void> handshake_first_packet(std::unique_ptr<transport> t, std::string peer,
                                                 std::string local, std::size_t group);
    // What a connection started on shard k carries from shard 0.
    struct start_args {
        std::string peer;
        std::size_t group = 0;
        std::size_t slot = 0;
        std::vector<std::uint8_t> first;  // bytes read (decrypted) before the hand-off
        broker::clock::time_point accepted;
        bool cert_username = false;  // the user name comes from the certificate: cert_name
        std::optional<std::string> cert_name;
    };
    // Starts the connection of an accepted socket on shard k's loop (k's thread).
    void start_on_shard(std::size_t k, std::unique_ptr<transport> t, start_args a);
    // On shard 0, once per accepted connection: it ended, or its handshake failed (and once
    // per bridge connection, group bridge_tag).
    void connection_ended(std::size_t group, std::exception_ptr e);
    std::uint64_t refused0 = 0;    // send_to() refusals of shard 0
    broker::stats summed_stats();  // after the shards' loops have ended
    // $SYS and /metrics: every shard's figures read on its own loop (for_each_shard) and
    // summed on shard 0, where `done` runs.
    void collect_figures(std::function<void(broker::figures)> done);
    void sys_tick();  // the $SYS topics with threads > 1 (sys_loop's part otherwise)

    boost::system::error_code bind(const tcp::endpoint& ep, tcp::acceptor& a);
    boost::system::error_code bind_all();
    asio::awaitable<void> accept_loop(tcp::acceptor& a, std::size_t group);
    asio::awaitable<void> expiry_loop();
    asio::awaitable<void> sys_loop();
    void start_connection(tcp::socket socket, std::size_t group);
    // The connection is started (true) or refused; `done` belongs to it once started.
    // A failed TLS or WebSocket handshake: counted, logged with its reason, closed.
    void refuse_handshake(transport& t, const std::string& peer, const std::string& local,
                          const std::string& why);
    asio::awaitable<bool> handshake_and_start(std::unique_ptr<transport> t, std::string peer,
                                              std::string local,
                                              tls_server_settings::username_source username_from,
                                              std::size_t slot, std::size_t group);
    std::string load_tls();            // a context per TLS group; the first error
    std::set<transport*> handshaking;  // closed by stop_now()
    void wait_reload();
    void stop_now();
    // A record of the server's own (not the engine's).
    void note(int verbosity, broker::log_level level, std::string_view kind, std::string_view msg);
    std::string failed_address;  // set when bind_all() fails
};

struct server::impl::shard_state {
    explicit shard_state(const server_options& o) : engine(o.limits, engine_log(o), o.verbosity) {}
    broker::engine engine;
    detail::deadlines deadlines;
    std::optional<detail::auth_worker> auth{std::in_place};
    std::optional<detail::connection_context> conns;  // set by create_shards()
    std::optional<asio::steady_timer> expiry;         // engine.next_expiry()
    bool stopping = false;                            // this shard's thread only
    std::uint64_t refused = 0;                        // items the channels refused (full)
    // persistence: this shard's store (last: destroyed first; reset by stop_shards(),
    // before the runtime's io_contexts go).
    std::optional<detail::store_driver> store;
};

struct server::impl::shard_link final : broker::shard_router {
    shard_link(impl& s, std::size_t k) : s(s), k(k) {}
    bool publish(const broker::message_ptr& m, std::span<const std::size_t> to,
                 const broker::client_id_ptr& publisher) override {
        const std::string_view id = publisher ? std::string_view{*publisher} : std::string_view{};
        const std::uint64_t seq = to.empty() ? 0 : s.outbox_item(k, m, to, id);
        for (const std::size_t j : to) {
            shard_item item{shard_item::kind::publish, m};
            item.publisher = publisher;
            item.outbox_seq = seq;
            s.send_to(k, j, std::move(item));
        }
        if (seq != 0) s.outbox_recorded(k);
        // high_water items in flight towards j (m, or a share group's deliveries from
        // here), or j congested forwarding what it got: the publisher pauses, on_resume
        // wakes it. Every j, as when every message went to every shard.
        bool congested = false;
        for (std::size_t j = 0; j < s.shards.size(); ++j) {
            if (j != k && (s.runtime->check_congested(k, j) || s.runtime->peer_congested(k, j)))
                congested = true;
        }
        return congested;
    }
    // Shard 0 orders the retained changes: the others send theirs to it, and it sends each
    // change it applies to every other shard (the sender included, which applied its own
    // at once). Each replica thus ends with the last change in shard 0's order, even when
    // two shards set one topic at the same moment.
    void retained(const broker::message_ptr& m) override {
        const auto kind =
            m->payload.empty() ? shard_item::kind::retain_clear : shard_item::kind::retain_set;
        // Counted before any shard can see it: a SUBSCRIBE on another shard from now on
        // waits for it (retained_ticket).
        s.retained_issued[k].issued.fetch_add(1, std::memory_order_seq_cst);
        shard_item item{kind, m};
        item.origin = static_cast<std::uint32_t>(k);
        if (k != 0) {
            s.send_to(k, 0, std::move(item));
            return;
        }
        for (std::size_t j = 1; j < s.shards.size(); ++j) {
            shard_item copy{kind, m};
            copy.origin = 0;
            s.send_to(0, j, std::move(copy));
        }
    }
    std::uint64_t retained_ticket() override { return s.retained_ticket(k); }
    void resume_from(std::size_t from) override { s.runtime->resume_drain(from, k); }
    void share(std::size_t to, broker::share_op op, const broker::share_ref_ptr& r,
               const broker::message_ptr& m) override {
        s.send_to(k, to, shard_item{shard_item::kind::share, m, op, r});
        // A delivery: what publishers on other shards sent here, forwarded. Congested, this
        // shard says so to them at once (peer_congested) and they pause. Also while items
        // a channel refused wait here (the delivery waits behind them, whatever shard it is
        // for): the head's channel is past its max_items until it takes them.
        if (m == nullptr || s.runtime->check_forwarding(k, to)) return;
        const auto& waiting = s.outboxes[k].items;
        if (!waiting.empty()) s.runtime->check_forwarding(k, waiting.front().to);
    }
    impl& s;
    std::size_t k;
};

// An accepted socket on shard 0 while its first packet is read (at most until the CONNECT
// deadline), to learn the client id and so the shard.
struct server::impl::handoff {
    handoff(tcp::socket s, std::string p, std::size_t g, std::size_t sl)
        : socket(std::move(s)),
          timer(socket.get_executor()),
          peer(std::move(p)),
          group(g),
          slot(sl) {}
    tcp::socket socket;
    asio::steady_timer timer;
    std::string peer;
    std::size_t group;
    std::size_t slot;  // the engine's security slot of the group's clients
    broker::clock::time_point accepted = broker::clock::now();
    std::vector<std::uint8_t> bytes;  // everything read so far
};

}  // namespace mqtt::net
