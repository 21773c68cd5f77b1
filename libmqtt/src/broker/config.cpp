// tern-broker's configuration file: lines, scopes, include_dir and the checks that need the
// whole file. The options themselves are in config_options.cpp.

#include "mqtt/broker/config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sched.h>
#include <unistd.h>

#include "config_parser.hpp"

namespace mqtt::broker {

std::size_t default_threads() noexcept {
    long cores = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
    if (cores <= 0) cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores <= 0) return 1;
    return std::min(static_cast<std::size_t>(cores), max_threads);
}

std::string config_origin::to_string() const {
    if (file.empty()) return "(default)";
    return file + ":" + std::to_string(line);
}

std::string config_error::to_string() const {
    return line > 0 ? file + ":" + std::to_string(line) + ": " + message : file + ": " + message;
}

namespace detail {

bool parse_state::fail(std::string message, bool unsupported) {
    if (!error) error = config_error{file, line, std::move(message), unsupported};
    return false;
}

}  // namespace detail

namespace {
bool parse_text(detail::parse_state& st, std::string_view text);
bool is_conf_file(std::string_view name);
}  // namespace

namespace detail {

bool include_directory(parse_state& st, const std::string& written) {
    // "conf.d/" and "conf.d" are one directory; its files are "conf.d/NAME".
    std::string dir = written;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const config_source* source = st.source;
    if (!source || !source->list_dir || !source->read_file) {
        return st.fail("include_dir " + dir + ": no files can be read here");
    }
    std::string why;
    auto names = source->list_dir(dir, why);
    if (!names) return st.fail("include_dir " + dir + ": " + why);
    std::erase_if(*names, [](const std::string& n) { return !is_conf_file(n); });
    std::sort(names->begin(), names->end(), include_order_less);
    const auto saved_file = st.file;
    const auto saved_line = st.line;
    for (const auto& name : *names) {
        const std::string path = dir == "/" ? dir + name : dir + "/" + name;
        auto text = source->read_file(path, why);
        if (!text) return st.fail("include_dir " + dir + ": cannot read " + path + ": " + why);
        st.cfg.files.push_back(path);
        st.file = path;
        st.in_main_file = false;
        if (!parse_text(st, *text)) return false;
    }
    st.file = saved_file;
    st.line = saved_line;
    st.in_main_file = true;
    return true;
}

}  // namespace detail

namespace {

using detail::option_args;
using detail::option_scope;
using detail::option_spec;
using detail::parse_state;

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

std::vector<std::string_view> split_words(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && is_space(s[i])) ++i;
        const auto start = i;
        while (i < s.size() && !is_space(s[i])) ++i;
        if (i > start) out.push_back(s.substr(start, i - start));
    }
    return out;
}

const option_spec* find_option(std::string_view name) {
    const auto& table = detail::option_table();
    const auto it =
        std::lower_bound(table.begin(), table.end(), name,
                         [](const option_spec& o, std::string_view n) { return o.name < n; });
    return it != table.end() && it->name == name ? &*it : nullptr;
}

bool is_unsupported(std::string_view name) {
    for (const auto n : detail::unsupported_option_names()) {
        if (n.back() == '*' ? name.substr(0, n.size() - 1) == n.substr(0, n.size() - 1)
                            : name == n) {
            return true;
        }
    }
    return false;
}

// The scope an option is set in, for "already set" checks.
std::string scope_key(const parse_state& st, const option_spec& o) {
    const bool per_listener = o.scope == option_scope::listener ||
                              (o.scope == option_scope::security && st.cfg.per_listener_settings);
    if (!per_listener) return std::string{o.name};
    const auto block =
        st.listeners.empty() ? std::string{"default"} : std::to_string(st.listeners.size());
    return block + "/" + std::string{o.name};
}

bool parse_line(parse_state& st, std::string_view raw) {
    const auto text = trim(raw);
    if (text.empty() || text.front() == '#') return true;
    auto words = split_words(text);
    const auto name = words.front();
    if (detail::is_bridge_option(name)) return detail::on_bridge_line(st, name, text);
    const auto* spec = find_option(name);
    if (!spec) {
        if (is_unsupported(name)) {
            return st.fail("option '" + std::string{name} + "' is not supported yet", true);
        }
        return st.fail("unknown option '" + std::string{name} + "'");
    }
    option_args args;
    args.rest = trim(text.substr(name.size()));
    args.words.assign(words.begin() + 1, words.end());
    const auto n = static_cast<int>(args.words.size());
    if (n < spec->min_words) return st.fail("'" + std::string{name} + "' needs a value");
    if (n > spec->max_words) {
        return st.fail("unexpected '" + std::string{args.words[spec->max_words]} + "' after " +
                       std::string{name} + " " + std::string{args.words[spec->max_words - 1]} +
                       " (a comment must be on a line of its own)");
    }
    if (!spec->repeatable) {
        const auto [it, fresh] = st.seen.emplace(scope_key(st, *spec), st.here());
        if (!fresh) {
            return st.fail("'" + std::string{name} + "' is already set at " +
                           it->second.to_string());
        }
    }
    return spec->handle(st, args);
}

bool parse_text(parse_state& st, std::string_view text) {
    st.line = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const auto nl = std::min(text.find('\n', pos), text.size());
        ++st.line;
        if (text.substr(pos, nl - pos).find('\0') != std::string_view::npos) {
            return st.fail("NUL byte in the line");
        }
        if (!parse_line(st, text.substr(pos, nl - pos))) return false;
        pos = nl + 1;
    }
    return true;
}

bool is_conf_file(std::string_view name) {
    constexpr std::string_view suffix = ".conf";
    return name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
}

bool same_listener_address(const listener_config& a, const listener_config& b) {
    return a.port == b.port && a.bind == b.bind;
}

bool finish_security(parse_state& st) {
    auto& cfg = st.cfg;
    // A listener that takes user names from client certificates lets its clients in.
    const bool names_from_certificates =
        std::any_of(cfg.listeners.begin(), cfg.listeners.end(), [](const listener_config& l) {
            return l.tls_enabled() &&
                   l.tls.username_from != net::tls_server_settings::username_source::none;
        });
    if (cfg.per_listener_settings) {
        for (const auto& l : cfg.listeners) {
            const bool names = l.tls_enabled() &&
                               l.tls.username_from != net::tls_server_settings::username_source::none;
            if (!l.allow_anonymous.value_or(false) && l.password_file.empty() && !names) {
                cfg.warnings.push_back(
                    (l.origin.file.empty() ? std::string{"the local-only listener"}
                                           : l.origin.to_string()) +
                    ": allow_anonymous is false and there is no password_file for this "
                    "listener: every client of it will be refused (as in Mosquitto 2)");
            }
        }
    } else if (!cfg.allow_anonymous && cfg.password_file.empty() && !names_from_certificates) {
        const auto where = st.allow_anonymous_origin ? st.allow_anonymous_origin->to_string()
                                                     : cfg.listeners.front().origin.to_string();
        cfg.warnings.push_back(where +
                               ": allow_anonymous is false and there is no password_file: "
                               "every client will be refused (as in Mosquitto 2)");
    }
    return true;
}

// max_qos and max_topic_alias before the first listener line, where no port/bind_address
// listener takes them: the broker's values (every listener without its own; as before,
// when max_topic_alias had one value for the broker).
void hoist_listener_defaults(parse_state& st) {
    if (st.default_explicit) return;
    auto& d = st.default_listener;
    if (d.max_qos) st.cfg.max_qos = *d.max_qos;
    if (d.max_topic_alias) st.cfg.limits.max_topic_alias = *d.max_topic_alias;
    d.max_qos.reset();
    d.max_topic_alias.reset();
}

// Checks that need the whole configuration, then moves the listeners into the config.
bool finish(parse_state& st) {
    auto& cfg = st.cfg;
    hoist_listener_defaults(st);
    std::vector<listener_config> all;
    if (st.default_explicit) all.push_back(st.default_listener);
    all.insert(all.end(), st.listeners.begin(), st.listeners.end());
    cfg.local_only = all.empty();
    if (cfg.local_only) {
        // Listener options before any listener apply to the local-only one.
        auto l = st.default_listener;
        l.bind = "localhost";
        l.origin = {};
        if (!detail::check_listener_tls(st, l)) return false;
        if (!detail::check_listener_protocol(st, l)) return false;
        // Anonymous clients are welcome in the local-only mode unless the file says not.
        if (!st.allow_anonymous_origin) cfg.allow_anonymous = true;
        if (cfg.per_listener_settings) {
            l.allow_anonymous = l.allow_anonymous.value_or(true);
            cfg.allow_anonymous = *l.allow_anonymous;
        }
        cfg.listeners = {l};
        return finish_security(st);
    }
    // TLS options before the first listener belong to the default listener (port and
    // bind_address); without one they would silently apply to nothing.
    if (!st.default_explicit && !st.default_listener.tls_lines.empty()) {
        const auto& [name, at] = st.default_listener.tls_lines.front();
        st.file = at.file;
        st.line = at.line;
        return st.fail(name +
                       " comes before the first listener line, where it would set the "
                       "default listener (port/bind_address), which this file does not "
                       "define; move it into a listener block");
    }
    for (const auto& l : all) {
        if (!detail::check_listener_tls(st, l)) return false;
        if (!detail::check_listener_protocol(st, l)) return false;
    }
    if (st.default_explicit && !st.listeners.empty()) {
        for (const auto& l : st.listeners) {
            if (same_listener_address(l, st.default_listener)) {
                st.file = l.origin.file;
                st.line = l.origin.line;
                return st.fail("listener " + std::to_string(l.port) + " " + l.bind +
                               " is already defined by port/bind_address at " +
                               st.default_listener.origin.to_string());
            }
        }
    }
    for (const auto& l : all) {
        if (bind_addresses(l).empty()) {
            st.file = l.origin.file;
            st.line = l.origin.line;
            return st.fail("this listener has no address left: its socket_domain excludes " +
                           l.bind);
        }
    }
    // Mosquitto 2 refuses anonymous clients once listeners are configured, unless told
    // otherwise.
    if (!cfg.per_listener_settings && !st.allow_anonymous_origin) cfg.allow_anonymous = false;
    if (cfg.per_listener_settings) {
        // Security options before the first listener belong to the default listener
        // (port/bind_address); without one they would silently apply to nothing.
        const auto& d = st.default_listener;
        const bool client_id_options = d.allow_zero_length_clientid || d.auto_id_prefix;
        if (!st.default_explicit && (d.allow_anonymous || !d.password_file.empty() ||
                                     !d.acl_file.empty() || client_id_options)) {
            const auto at = !d.password_file.empty() ? d.password_file_origin
                            : !d.acl_file.empty()    ? d.acl_file_origin
                            : client_id_options      ? d.client_id_origin
                                                     : *st.allow_anonymous_origin;
            st.file = at.file;
            st.line = at.line;
            return st.fail(
                "with per_listener_settings true this belongs to a listener, and it comes "
                "before the first listener line (where it would set the default listener, "
                "port/bind_address, which this file does not define); move it into a "
                "listener block");
        }
        // Each listener has its own allow_anonymous (false unless set, as in Mosquitto 2);
        // the broker-wide value covers nothing then.
        for (auto& l : all) l.allow_anonymous = l.allow_anonymous.value_or(false);
        cfg.allow_anonymous = false;
    }
    cfg.listeners = std::move(all);
    return finish_security(st);
}

}  // namespace

std::vector<std::string> bind_addresses(const listener_config& l) {
    const bool v4 = l.domain != socket_domain::ipv6;
    const bool v6 = l.domain != socket_domain::ipv4;
    std::vector<std::string> out;
    if (l.bind.empty() || l.bind == "localhost") {
        const bool any = l.bind.empty();
        if (v4) out.emplace_back(any ? "0.0.0.0" : "127.0.0.1");
        if (v6) out.emplace_back(any ? "::" : "::1");
        return out;
    }
    const bool is_v6 = l.bind.find(':') != std::string::npos;
    if (is_v6 ? v6 : v4) out.push_back(l.bind);
    return out;
}

bool include_order_less(std::string_view a, std::string_view b) {
    // Compare letters case-insensitively first, then upper before lower.
    const auto key = [](unsigned char c) {
        const int lower = std::tolower(c);
        return std::pair{lower, std::islower(c) ? 1 : 0};
    };
    const auto n = std::min(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        const auto ka = key(static_cast<unsigned char>(a[i]));
        const auto kb = key(static_cast<unsigned char>(b[i]));
        if (ka != kb) return ka < kb;
    }
    return a.size() < b.size();
}

std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
    if (text.size() < 2) return std::nullopt;
    std::uint64_t unit = 0;
    switch (text.back()) {
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86'400;
            break;
        case 'w':
            unit = 7 * 86'400;
            break;
        case 'm':
            unit = 30 * 86'400;
            break;
        case 'y':
            unit = 365 * 86'400;
            break;
        default:
            return std::nullopt;
    }
    const auto digits = text.substr(0, text.size() - 1);
    std::uint64_t n = 0;
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc{} || p != digits.data() + digits.size()) return std::nullopt;
    // At most what a 32-bit interval holds, as MQTT 5.0's Session Expiry Interval.
    constexpr std::uint64_t max_seconds = std::numeric_limits<std::uint32_t>::max();
    if (n > max_seconds / unit) return std::nullopt;
    return std::chrono::seconds{static_cast<std::int64_t>(n * unit)};
}

config_result parse_config(std::string_view text, std::string_view file_name,
                           const config_source& source) {
    parse_state st;
    st.file = std::string{file_name};
    st.source = &source;
    st.cfg.files.push_back(st.file);
    const bool ok = parse_text(st, text) && finish(st) && detail::finish_bridges(st);
    config_result r;
    if (ok) {
        r.value = std::move(st.cfg);
    } else {
        r.error = *st.error;
    }
    return r;
}

config_source filesystem_source() {
    namespace fs = std::filesystem;
    config_source s;
    s.list_dir = [](const std::string& dir,
                    std::string& why) -> std::optional<std::vector<std::string>> {
        std::error_code ec;
        std::vector<std::string> names;
        for (fs::directory_iterator it{dir, ec}, end; !ec && it != end; it.increment(ec)) {
            if (it->is_regular_file(ec)) names.push_back(it->path().filename().string());
        }
        if (ec) {
            why = ec.message();
            return std::nullopt;
        }
        return names;
    };
    s.read_file = [](const std::string& path, std::string& why) -> std::optional<std::string> {
        std::ifstream in{path, std::ios::binary};
        if (!in) {
            why = std::error_code{errno, std::generic_category()}.message();
            return std::nullopt;
        }
        // A configuration file is small; refuse something that is clearly not one.
        constexpr std::streamsize max_size = 16 << 20;
        std::string text;
        text.resize(static_cast<std::size_t>(max_size) + 1);
        in.read(text.data(), max_size + 1);
        if (in.bad()) {
            why = "read error";
            return std::nullopt;
        }
        if (in.gcount() > max_size) {
            why = "larger than 16 MiB";
            return std::nullopt;
        }
        text.resize(static_cast<std::size_t>(in.gcount()));
        return text;
    };
    s.hostname = [] {
        char buf[256] = {};
        if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return std::string{"localhost"};
        return std::string{buf};
    };
    return s;
}

config_result load_config_file(const std::string& path) {
    const auto source = filesystem_source();
    std::string why;
    auto text = source.read_file(path, why);
    if (!text) {
        config_result r;
        r.error = config_error{path, 0, "cannot read the configuration file: " + why, false};
        return r;
    }
    return parse_config(*text, path, source);
}

std::vector<std::string_view> supported_options() {
    std::vector<std::string_view> out;
    for (const auto& o : detail::option_table()) out.push_back(o.name);
    const auto& bridge = detail::bridge_option_names();
    out.insert(out.end(), bridge.begin(), bridge.end());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string_view> unsupported_options() {
    return detail::unsupported_option_names();
}

std::string apply_command_line_port(config& c, std::optional<std::uint16_t> cli_port) {
    if (!cli_port) return {};
    if (!c.local_only) {
        return "-p " + std::to_string(*cli_port) +
               " is ignored: the configuration file defines listeners (as in Mosquitto 2)";
    }
    for (auto& l : c.listeners) l.port = *cli_port;
    return {};
}

}  // namespace mqtt::broker

namespace mqtt::broker {

std::string_view to_string(sync_policy p) noexcept {
    switch (p) {
        case sync_policy::always:
            return "always";
        case sync_policy::batch:
            return "batch";
        case sync_policy::periodic:
            break;
    }
    return "periodic";
}

}  // namespace mqtt::broker
