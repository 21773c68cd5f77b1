#include "mqtt/store/shards.hpp"

#include <dirent.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <type_traits>
#include <variant>

namespace mqtt::store {
namespace {

constexpr std::string_view shard_suffix = ".shard";
// threads is at most 256: a file with a larger K is not one of ours (and a huge K must not
// size the broker's tables).
constexpr std::size_t max_shard_file = 1024;

// The client id a record is about, or nullptr (header, commit, message, retained).
template <class R>
const std::string* client_of(const R& r) {
    if constexpr (requires { r.client_id; }) {
        return &r.client_id;
    } else {
        return nullptr;
    }
}

}  // namespace

std::string shard_file(const std::string& file, std::size_t k) {
    if (k == 0) return file;
    return file + std::string{shard_suffix} + std::to_string(k);
}

std::vector<std::size_t> shard_files(const std::string& dir, const std::string& file) {
    std::vector<std::size_t> out;
    DIR* d = ::opendir(dir.empty() ? "." : dir.c_str());
    if (d == nullptr) return out;
    const std::string prefix = file + std::string{shard_suffix};
    while (const dirent* e = ::readdir(d)) {
        const std::string_view name{e->d_name};
        if (!name.starts_with(prefix)) continue;
        const auto digits = name.substr(prefix.size());
        std::size_t k = 0;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), k);
        // tern.db.shard1 only: not tern.db.shard1.new / .damaged, not tern.db.shard01.
        if (ec != std::errc{} || end != digits.data() + digits.size() || k == 0 ||
            digits.front() == '0' || k > max_shard_file) {
            continue;
        }
        out.push_back(k);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

bool in_place(const std::vector<const state*>& stores, std::size_t n, const home_function& home) {
    if (stores.size() > n) {
        for (std::size_t k = n; k < stores.size(); ++k) {
            if (stores[k] != nullptr) return false;
        }
    }
    std::set<std::string_view> seen;
    for (std::size_t k = 0; k < stores.size(); ++k) {
        if (stores[k] == nullptr) continue;
        if (k != 0 && !stores[k]->retained().empty()) return false;
        for (const auto& [id, s] : stores[k]->sessions()) {
            if (k != 0 && home(id) != k) return false;
            if (!seen.insert(id).second) return false;
        }
    }
    return true;
}

std::vector<state> redistribute(const std::vector<const state*>& stores, std::size_t n,
                                const home_function& home, std::int64_t now_ms,
                                std::size_t& moved) {
    n = std::max<std::size_t>(n, 1);
    std::vector<state> out(n);
    moved = 0;
    for (auto& st : out) st.apply(header_record{format_version, now_ms});
    std::uint64_t base = 0;  // message ids of store k are moved past those of the ones before
    for (std::size_t k = 0; k < stores.size(); ++k) {
        const state* src = stores[k];
        if (src == nullptr) continue;
        // Where each session of this store goes (absent: a copy another store had first).
        std::map<std::string_view, std::size_t> to;
        for (const auto& [id, s] : src->sessions()) {
            const bool taken = std::any_of(
                out.begin(), out.end(), [&](const state& o) { return o.sessions().contains(id); });
            if (taken) continue;
            const std::size_t h = std::min(home(id), n - 1);
            const std::size_t dest = k == 0 ? 0 : (k < n && h == k ? k : h);
            if (dest != k) ++moved;
            to.emplace(id, dest);
        }
        const auto remap = [base](std::uint64_t id) { return id == 0 ? 0 : id + base; };
        src->snapshot(now_ms, [&](const record& r) {
            std::visit(
                [&](const auto& x) {
                    using R = std::decay_t<decltype(x)>;
                    if constexpr (std::is_same_v<R, header_record> ||
                                  std::is_same_v<R, commit_record>) {
                        return;
                    } else if constexpr (std::is_same_v<R, message_record>) {
                        auto m = x;
                        m.id = remap(x.id);
                        for (auto& st : out) st.apply(m);  // pruned below where unused
                    } else if constexpr (std::is_same_v<R, retained_set_record>) {
                        const auto& topic = src->messages().at(x.msg_id).msg->topic;
                        if (k != 0 && out[0].retained().contains(topic)) return;
                        out[0].apply(retained_set_record{remap(x.msg_id)});
                    } else if constexpr (std::is_same_v<R, retained_clear_record>) {
                        return;  // not in a snapshot
                    } else {
                        const std::string* c = client_of(x);
                        if (c == nullptr) return;
                        const auto it = to.find(*c);
                        if (it == to.end()) return;
                        auto y = x;
                        if constexpr (requires { y.msg_id; }) y.msg_id = remap(x.msg_id);
                        if constexpr (requires { y.will_msg_id; })
                            y.will_msg_id = remap(x.will_msg_id);
                        out[it->second].apply(y);
                    }
                },
                r);
            return true;
        });
        base += src->max_message_id();
    }
    for (auto& st : out) st.prune();
    return out;
}

}  // namespace mqtt::store
