// The end of a run: every loop's tally and every connection's counters added up into
// run_results, once, after the loops' threads are joined; the live progress line; and run().

#include <sys/resource.h>

#include <cstdio>
#include <thread>

#include "driver.hpp"
#include "mqtt/bench/runner.hpp"

namespace mqtt::bench::detail {
namespace {

double since(clock::time_point from, clock::time_point to) {
    if (from == clock::time_point{} || to <= from) return 0;
    return std::chrono::duration<double>(to - from).count();
}

double cpu_seconds(const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

}  // namespace

void run_state::log(const std::string& line) {
    if (!log_) return;
    // Start on a fresh line when the progress line is showing.
    if (progress_ && last_progress_ != clock::time_point{}) *log_ << "\n";
    *log_ << "tern-bench: " << line << std::endl;
}

bool run_state::progress_due(clock::time_point now) const {
    return progress_ && now - last_progress_ >= std::chrono::seconds(1);
}

// From the views of the last refresh().
void run_state::print_progress(clock::time_point now) {
    if (!progress_due(now)) return;
    last_progress_ = now;
    std::uint64_t connected = 0, published = 0, acked = 0, received = 0;
    for (const auto& v : views_) {
        connected += v.connected;
        published += v.published;
        acked += v.acked;
        received += v.unique;
    }
    char line[200];
    std::snprintf(line, sizeof line,
                  "\r%7.1fs  connected %llu/%zu  published %llu  acked %llu  received %llu   ",
                  since(t0_, now), static_cast<unsigned long long>(connected), clients_.size(),
                  static_cast<unsigned long long>(published),
                  static_cast<unsigned long long>(acked),
                  static_cast<unsigned long long>(received));
    *progress_ << line << std::flush;
}

// One subscriber's view of one of this run's publishers, added to that publisher's line.
static void add_view(publisher_result& p, const sequence_tracker* t) {
    p.expected += p.published;
    if (!t) {
        p.lost += p.published;
        return;
    }
    p.received += std::min(t->unique(), p.published);
    p.lost += t->lost(p.published);
    p.duplicates += t->duplicates();
    p.out_of_order += t->out_of_order();
}

void run_state::collect(run_results& r) {
    // The threads are joined: every loop's tally is added into the first one's.
    auto& all = loops_.front()->tally;
    for (std::size_t k = 1; k < loops_.size(); ++k) all.merge(loops_[k]->tally);
    r.latency = std::move(all.latency);
    r.ack_latency = std::move(all.ack_latency);
    r.connect_latency = std::move(all.connect_latency);
    r.measured_published = all.measured_published;
    r.measured_acked = all.measured_acked;
    r.measured_received = all.measured_received;
    const auto& group_seen = all.group_seen;
    for (const auto& [text, times] : all.errors)
        r.errors.push_back(times > 1 ? text + " (" + std::to_string(times) + " times)" : text);
    for (const auto& c : clients_) {
        r.connect_attempted += c->attempted;
        r.connect_succeeded += c->connected;
        r.received += c->received;
        r.foreign += c->foreign;
    }
    r.connect_failed = r.connect_attempted - r.connect_succeeded;
    for (auto* p : publishers_) {
        publisher_result pr;
        pr.index = p->index;
        pr.published = p->next_seq;
        pr.acked = p->acked;
        r.refused += p->refused;
        r.per_publisher.push_back(pr);
    }
    if (cfg_.scenario == scenario::shared) {
        for (auto i : group_sources_) {
            const auto it = group_seen.find(i);
            add_view(r.per_publisher[i], it == group_seen.end() ? nullptr : &it->second);
            // The order across members is not defined; within each member it is.
            r.per_publisher[i].out_of_order = 0;
            for (auto* s : subscribers_)
                if (const auto mine = s->seen.find((std::uint64_t{run_id_} << 32) | i);
                    mine != s->seen.end())
                    r.per_publisher[i].out_of_order += mine->second.out_of_order();
        }
        for (auto* s : subscribers_) r.per_subscriber_unique.push_back(s->unique);
    }
    if (cfg_.scenario == scenario::reqresp)
        for (auto* s : subscribers_) r.per_subscriber_unique.push_back(s->answered);
    if (cfg_.scenario == scenario::reqresp)
        for (auto* p : publishers_) {
            const auto it = p->seen.find((std::uint64_t{run_id_} << 32) | p->index);
            add_view(r.per_publisher[p->index], it == p->seen.end() ? nullptr : &it->second);
        }
    for (auto* s : subscribers_) {
        if (cfg_.scenario == scenario::shared || cfg_.scenario == scenario::reqresp) break;
        if (cfg_.scenario == scenario::sub) {
            // Publishers elsewhere: what was sent is unknown, the gaps are the loss.
            for (const auto& [key, t] : s->seen) {
                r.unique += t.unique();
                r.expected += t.end();
                r.lost += t.lost(t.end());
                r.duplicates += t.duplicates();
                r.out_of_order += t.out_of_order();
            }
            continue;
        }
        for (auto i : s->sources) {
            const auto it = s->seen.find((std::uint64_t{run_id_} << 32) | i);
            add_view(r.per_publisher[i], it == s->seen.end() ? nullptr : &it->second);
        }
    }
    for (const auto& p : r.per_publisher) {
        r.published += p.published;
        r.acked += p.acked;
        if (cfg_.scenario == scenario::sub) continue;
        r.expected += p.expected;
        r.unique += p.received;
        r.lost += p.lost;
        r.duplicates += p.duplicates;
        r.out_of_order += p.out_of_order;
    }
    const auto window = std::max(t_warm_, t_start_);
    r.publish_seconds = since(window, all.last_publish);
    r.ack_seconds = since(window, all.last_ack);
    r.receive_seconds =
        cfg_.scenario == scenario::sub
            ? since(all.first_receive + std::chrono::nanoseconds(loops_.front()->warm_ns),
                    all.last_receive)
            : since(window, all.last_receive);
    r.wall_seconds = since(t0_, clock::now());
    rusage ru{};
    if (::getrusage(RUSAGE_SELF, &ru) == 0) {
        r.cpu_user_seconds = cpu_seconds(ru.ru_utime);
        r.cpu_system_seconds = cpu_seconds(ru.ru_stime);
    }
}

run_results run_state::finish() {
    if (progress_ && last_progress_ != clock::time_point{}) *progress_ << "\n" << std::flush;
    // The threads are joined: every client can be read from here. How many writes the
    // publishers' packets took shows whether the bench batches them (docs/bench.md).
    std::uint64_t published = 0, writes = 0;
    for (const auto& c : clients_)
        if (c->kind == role::publisher) {
            published += c->next_seq;
            writes += c->writes;
        }
    if (published && writes)  // (MQTT-SN's datagrams are not counted)
        log("publishers sent " + std::to_string(published) + " PUBLISH packets in " +
            std::to_string(writes) + " writes (CONNECT and DISCONNECT included)");
    collect(r_);
    return std::move(r_);
}

}  // namespace mqtt::bench::detail

namespace mqtt::bench {

run_results run(const bench_config& config, std::ostream* progress, std::ostream* log) {
    const auto clients = std::size_t{config.publishers} + config.subscribers + config.clients;
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < clients + 64) {
        // Many connections need many descriptors; the hard limit needs no privilege.
        lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, clients + 64);
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    detail::run_state state(config, progress, log);
    state.run();
    return state.finish();
}

}  // namespace mqtt::bench
