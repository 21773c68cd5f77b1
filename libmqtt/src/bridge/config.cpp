#include "mqtt/bridge/config.hpp"

#include <charconv>
#include <functional>
#include <map>

#include "mqtt/protocol/topic.hpp"
#include "mqtt/protocol/utf8.hpp"

namespace mqtt::bridge {
namespace {

std::vector<std::string> split_words(std::string_view line) {
    std::vector<std::string> words;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        const auto start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
        if (i > start) words.emplace_back(line.substr(start, i - start));
    }
    return words;
}

template <class T>
std::optional<T> parse_number(std::string_view s, T low, T high) {
    T v{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v < low || v > high)
        return std::nullopt;
    return v;
}

std::optional<bool> parse_bool(std::string_view s) {
    if (s == "true") return true;
    if (s == "false") return false;
    return std::nullopt;
}

struct parser {
    std::string_view file;
    std::string_view hostname;
    address local_default;
    config_result out;
    std::size_t line_no = 0;
    std::size_t block_line = 0;
    bool local_address_set = false;
    // The first TLS option of the block other than bridge_cafile/bridge_capath, for the
    // error when neither of those is given.
    std::string tls_option;
    std::size_t tls_option_line = 0;
    queue_settings queue_default;  // from --queue-dir and the lines before any `connection`

    bool fail(std::string message, std::size_t line = std::size_t(-1)) {
        if (!out.error)
            out.error = config_error{std::string(file), line == std::size_t(-1) ? line_no : line,
                                     std::move(message)};
        return false;
    }

    bool finish_block() {
        if (out.bridges.empty()) return true;
        auto& b = out.bridges.back();
        if (b.remote.addresses.empty())
            return fail("bridge '" + b.name + "' has no address", block_line);
        if (b.topics.empty()) return fail("bridge '" + b.name + "' has no topic", block_line);
        if (b.remote.client_id.empty()) b.remote.client_id = std::string(hostname) + "." + b.name;
        if (b.local.client_id.empty()) b.local.client_id = "local." + b.remote.client_id;
        if (b.local.addresses.empty()) b.local.addresses.push_back(local_default);
        if (b.remote.password && !b.remote.username)
            return fail("bridge '" + b.name + "': remote_password needs remote_username",
                        block_line);
        return finish_tls(b);
    }

    // As in Mosquitto, bridge_cafile or bridge_capath turns TLS on for every address.
    bool finish_tls(bridge_config& b) {
        const auto& t = b.remote.tls;
        const bool on = !t.cafile.empty() || !t.capath.empty();
        if (!on && tls_option_line != 0)
            return fail("bridge '" + b.name + "': " + tls_option +
                            " needs bridge_cafile or bridge_capath (which turn TLS on)",
                        tls_option_line);
        if (t.certfile.empty() != t.keyfile.empty())
            return fail("bridge '" + b.name + "': bridge_certfile and bridge_keyfile go together",
                        block_line);
        for (auto& a : b.remote.addresses) a.tls = on;
        return true;
    }

    bool one_value(const std::vector<std::string>& w) {
        if (w.size() == 2) return true;
        return fail("'" + w[0] + "' takes one value");
    }

    // bridge_cafile, bridge_capath, bridge_certfile, bridge_keyfile, bridge_insecure,
    // bridge_tls_version; the PSK and other bridge_* options are refused by name.
    bool tls(const std::vector<std::string>& w, bridge_config& b) {
        const auto& key = w[0];
        auto& t = b.remote.tls;
        if (key == "bridge_identity" || key == "bridge_psk")
            return fail("'" + key +
                        "': TLS-PSK is not supported by the bridge; use certificates "
                        "(bridge_cafile, bridge_certfile, bridge_keyfile)");
        using field = std::string net::tls_client_settings::*;
        static const std::map<std::string, field, std::less<>> files{
            {"bridge_cafile", &net::tls_client_settings::cafile},
            {"bridge_capath", &net::tls_client_settings::capath},
            {"bridge_certfile", &net::tls_client_settings::certfile},
            {"bridge_keyfile", &net::tls_client_settings::keyfile}};
        const auto note = [&] {
            if (tls_option_line == 0 && key != "bridge_cafile" && key != "bridge_capath") {
                tls_option = key;
                tls_option_line = line_no;
            }
        };
        if (auto it = files.find(key); it != files.end()) {
            if (!one_value(w)) return false;
            t.*(it->second) = w[1];
            note();
            return true;
        }
        if (key == "bridge_insecure") {
            if (!one_value(w)) return false;
            auto x = parse_bool(w[1]);
            if (!x) return fail("expected true or false, not '" + w[1] + "'");
            t.insecure = *x;
            note();
            return true;
        }
        if (key == "bridge_tls_version") {
            if (!one_value(w)) return false;
            auto v = net::parse_tls_version(w[1]);
            if (!v)
                return fail(
                    "bridge_tls_version: tlsv1.2 or tlsv1.3 (the lowest version "
                    "accepted; older ones are not supported), not '" +
                    w[1] + "'");
            t.min_version = *v;
            note();
            return true;
        }
        return fail("'" + key + "' is not supported by the bridge");
    }

    bool queue(const std::vector<std::string>& w, queue_settings& q) {
        const auto& key = w[0];
        if (key != "queue_dir" && key != "queue_max_bytes" && key != "queue_full_policy")
            return fail("unknown bridge option '" + key + "'");
        if (!one_value(w)) return false;
        if (key == "queue_dir") {
            q.dir = w[1];
        } else if (key == "queue_max_bytes") {
            auto n = parse_byte_size(w[1]);
            if (!n)
                return fail("queue_max_bytes: bytes, with K, M or G, at least 64K, not '" + w[1] +
                            "'");
            q.max_bytes = *n;
        } else {
            auto p = parse_full_policy(w[1]);
            if (!p)
                return fail("queue_full_policy: block, drop-new or drop-oldest, not '" + w[1] +
                            "'");
            q.policy = *p;
        }
        return true;
    }

    bool option(const std::vector<std::string>& w) {
        const auto& key = w[0];
        if (key == "connection") {
            if (!one_value(w) || !finish_block()) return false;
            for (const auto& b : out.bridges)
                if (b.name == w[1]) return fail("duplicate connection name '" + w[1] + "'");
            bridge_config b;
            b.name = w[1];
            b.queue = queue_default;
            tls_option.clear();
            tls_option_line = 0;
            out.bridges.push_back(std::move(b));
            block_line = line_no;
            return true;
        }
        if (key.starts_with("queue_"))
            return queue(w, out.bridges.empty() ? queue_default : out.bridges.back().queue);
        if (out.bridges.empty()) return fail("'" + key + "' before any 'connection' line");
        auto& b = out.bridges.back();
        if (key == "address" || key == "addresses") {
            if (w.size() < 2) return fail("'" + key + "' needs at least one HOST[:PORT]");
            // Mosquitto takes them separated by blanks or commas.
            for (std::size_t i = 1; i < w.size(); ++i) {
                std::string_view rest = w[i];
                while (!rest.empty()) {
                    const auto comma = rest.find(',');
                    const auto part = rest.substr(0, comma);
                    rest = comma == std::string_view::npos ? std::string_view{}
                                                           : rest.substr(comma + 1);
                    if (part.empty()) continue;
                    auto a = parse_address(part);
                    if (!a) return fail("invalid address '" + std::string(part) + "'");
                    b.remote.addresses.push_back(*a);
                }
            }
            return true;
        }
        if (key == "topic") {
            auto r = parse_rule(std::span<const std::string>(w).subspan(1));
            if (!r.rule) return fail("topic: " + r.error);
            b.topics.push_back(std::move(*r.rule));
            return true;
        }
        if (key == "local_address") {
            if (!one_value(w)) return false;
            auto a = parse_address(w[1]);
            if (!a) return fail("invalid address '" + w[1] + "'");
            b.local.addresses = {*a};
            return true;
        }
        using setter = std::function<bool(const std::string&)>;
        const auto text = [&](std::string& target) {
            return setter([&target, this](const std::string& v) {
                if (protocol::validate_utf8(v)) return fail("not valid UTF-8");
                target = v;
                return true;
            });
        };
        const auto opt_text = [&](std::optional<std::string>& target) {
            return setter([&target](const std::string& v) {
                target = v;
                return true;
            });
        };
        const auto flag = [&](bool& target) {
            return setter([&target, this](const std::string& v) {
                auto x = parse_bool(v);
                if (!x) return fail("expected true or false, not '" + v + "'");
                target = *x;
                return true;
            });
        };
        const std::map<std::string, setter, std::less<>> simple{
            {"remote_clientid", text(b.remote.client_id)},
            {"clientid", text(b.remote.client_id)},
            {"local_clientid", text(b.local.client_id)},
            {"remote_username", opt_text(b.remote.username)},
            {"username", opt_text(b.remote.username)},
            {"remote_password", opt_text(b.remote.password)},
            {"password", opt_text(b.remote.password)},
            {"local_username", opt_text(b.local.username)},
            {"local_password", opt_text(b.local.password)},
            {"cleansession", flag(b.clean_session)},
            {"local_cleansession", setter([&b, this](const std::string& v) {
                 auto x = parse_bool(v);
                 if (!x) return fail("expected true or false, not '" + v + "'");
                 b.local_clean_session = *x;
                 return true;
             })},
            {"round_robin", flag(b.round_robin)},
            {"try_private", flag(b.try_private)},
            {"notifications", flag(b.notifications)},
            {"notifications_local_only", flag(b.notifications_local_only)},
            {"notification_topic", setter([&b, this](const std::string& v) {
                 if (!protocol::is_valid_topic_name(v))
                     return fail("invalid notification_topic '" + v + "'");
                 b.notification_topic = v;
                 return true;
             })},
            {"keepalive_interval", setter([&b, this](const std::string& v) {
                 auto k = parse_number<unsigned>(v, 5, 65535);
                 if (!k) return fail("keepalive_interval: 5 to 65535 seconds, not '" + v + "'");
                 b.keepalive = static_cast<std::uint16_t>(*k);
                 return true;
             })},
            {"bridge_protocol_version", setter([&b, this](const std::string& v) {
                 if (v == "mqttv31")
                     b.version = protocol::protocol_version::v3_1;
                 else if (v == "mqttv311")
                     b.version = protocol::protocol_version::v3_1_1;
                 else if (v == "mqttv50" || v == "mqttv5")
                     b.version = protocol::protocol_version::v5;
                 else
                     return fail("bridge_protocol_version: mqttv31, mqttv311 or mqttv50, not '" +
                                 v + "'");
                 return true;
             })},
        };
        if (key.starts_with("bridge_") && key != "bridge_protocol_version") return tls(w, b);
        if (key == "restart_timeout") {
            // One value: a fixed wait; two: base and cap of the jittered back-off.
            if (w.size() != 2 && w.size() != 3) return fail("'restart_timeout' takes BASE [CAP]");
            auto base = parse_number<unsigned>(w[1], 1, 86400);
            auto cap = w.size() == 3 ? parse_number<unsigned>(w[2], 1, 86400) : base;
            if (!base || !cap || *cap < *base)
                return fail("restart_timeout: seconds, BASE [CAP] with CAP >= BASE");
            b.restart_base = std::chrono::seconds{*base};
            b.restart_max = std::chrono::seconds{*cap};
            return true;
        }
        auto it = simple.find(key);
        if (it == simple.end()) {
            return fail("unknown bridge option '" + key + "'");
        }
        if (!one_value(w)) return false;
        return it->second(w[1]);
    }
};

}  // namespace

std::string bridge_config::state_topic() const {
    if (!notification_topic.empty()) return notification_topic;
    return "$SYS/broker/connection/" + remote.client_id + "/state";
}

std::string config_error::to_string() const {
    std::string s = file;
    if (line > 0) s += ":" + std::to_string(line);
    return s + ": " + message;
}

std::optional<address> parse_address(std::string_view hp, std::uint16_t default_port) {
    address a;
    a.port = default_port;
    std::string_view port;
    if (!hp.empty() && hp.front() == '[') {
        const auto close = hp.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        a.host = std::string(hp.substr(1, close - 1));
        auto rest = hp.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':' || rest.size() == 1) return std::nullopt;
            port = rest.substr(1);
        }
    } else {
        const auto colon = hp.rfind(':');
        a.host = std::string(hp.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = hp.substr(colon + 1);
            if (port.empty()) return std::nullopt;
        }
    }
    if (a.host.empty()) return std::nullopt;
    if (!port.empty()) {
        auto p = parse_number<unsigned>(port, 1, 65535);
        if (!p) return std::nullopt;
        a.port = static_cast<std::uint16_t>(*p);
    }
    return a;
}

std::optional<full_policy> parse_full_policy(std::string_view t) {
    if (t == "block") return full_policy::block;
    if (t == "drop-new") return full_policy::drop_new;
    if (t == "drop-oldest") return full_policy::drop_oldest;
    return std::nullopt;
}

std::string_view to_string(full_policy p) {
    switch (p) {
        case full_policy::block:
            return "block";
        case full_policy::drop_new:
            return "drop-new";
        case full_policy::drop_oldest:
            return "drop-oldest";
    }
    return "block";
}

std::optional<std::uint64_t> parse_byte_size(std::string_view t) {
    std::uint64_t unit = 1;
    if (!t.empty()) {
        switch (t.back()) {
            case 'k':
            case 'K':
                unit = std::uint64_t{1} << 10;
                break;
            case 'm':
            case 'M':
                unit = std::uint64_t{1} << 20;
                break;
            case 'g':
            case 'G':
                unit = std::uint64_t{1} << 30;
                break;
            default:
                break;
        }
        if (unit != 1) t.remove_suffix(1);
    }
    auto n = parse_number<std::uint64_t>(t, 1, (std::uint64_t{1} << 50));
    if (!n || *n * unit < (std::uint64_t{64} << 10)) return std::nullopt;
    return *n * unit;
}

config_result parse_config(std::string_view text, std::string_view file, std::string_view hostname,
                           const address& local, const queue_settings& queue) {
    parser p{file, hostname, local, {}, 0, 0, false, {}, 0, queue};
    while (!text.empty() && !p.out.error) {
        const auto nl = text.find('\n');
        auto line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        ++p.line_no;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        auto words = split_words(line);
        if (words.empty() || words[0].front() == '#') continue;
        p.option(words);
    }
    if (!p.out.error) {
        if (p.out.bridges.empty())
            p.fail("no bridge defined (a 'connection' line starts one)", 0);
        else
            p.finish_block();
    }
    if (p.out.error) p.out.bridges.clear();
    return std::move(p.out);
}

}  // namespace mqtt::bridge
