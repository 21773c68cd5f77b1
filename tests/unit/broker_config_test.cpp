// tern-broker's configuration file (mosquitto.conf syntax): every option, bad values,
// ranges, duplicates, listener blocks, include_dir, durations, and the man page listing every
// option the parser accepts.

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <sched.h>
#include <sstream>
#include <string>

#include "mqtt/broker/config.hpp"
#include "mqtt/broker/log_event.hpp"
#include "mqtt/broker/security.hpp"

using namespace mqtt::broker;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

// Listens on port 1883 of every address and allows anonymous clients: the minimum for a
// configuration with a listener to be valid.
constexpr std::string_view open_listener = "listener 1883\nallow_anonymous true\n";

config parse_ok(std::string_view text) {
    auto r = parse_config(text, "t.conf");
    INFO(r.error.to_string());
    REQUIRE(r);
    return *r.value;
}

config_error parse_error(std::string_view text, const config_source& source = {}) {
    auto r = parse_config(text, "t.conf", source);
    REQUIRE_FALSE(r);
    return r.error;
}

// An in-memory file system for include_dir.
struct fake_files {
    std::map<std::string, std::vector<std::string>> dirs;
    std::map<std::string, std::string> files;

    config_source source() const {
        config_source s;
        s.list_dir = [this](const std::string& d,
                            std::string& why) -> std::optional<std::vector<std::string>> {
            const auto it = dirs.find(d);
            if (it == dirs.end()) {
                why = "No such file or directory";
                return std::nullopt;
            }
            return it->second;
        };
        s.read_file = [this](const std::string& p, std::string& why) -> std::optional<std::string> {
            const auto it = files.find(p);
            if (it == files.end()) {
                why = "Permission denied";
                return std::nullopt;
            }
            return it->second;
        };
        return s;
    }
};

}  // namespace

TEST_CASE("config: an empty file is the local-only default") {
    for (std::string_view text : {"", "\n\n", "# a comment\n   # indented comment\n\t\n"}) {
        const auto c = parse_ok(text);
        CHECK(c.local_only);
        REQUIRE(c.listeners.size() == 1);
        CHECK(c.listeners[0].port == 1883);
        CHECK(bind_addresses(c.listeners[0]) == std::vector<std::string>{"127.0.0.1", "::1"});
        CHECK(c.allow_anonymous);
        CHECK(c.files == std::vector<std::string>{"t.conf"});
        CHECK(c.warnings.empty());
        CHECK(c.sys_interval == 10s);
        CHECK_FALSE(c.log.verbosity.has_value());
        CHECK(c.log.dest == "stderr");
        CHECK(c.log.connection_messages);
    }
    // A default-constructed config says the same.
    const config d;
    CHECK(d.local_only);
    CHECK(bind_addresses(d.listeners.at(0)) == std::vector<std::string>{"127.0.0.1", "::1"});
}

TEST_CASE("config: errors name the file and the line") {
    const auto e = parse_error("# fine\n\nmax_keepalive 60\nno_such_option 1\n");
    CHECK(e.file == "t.conf");
    CHECK(e.line == 4);
    CHECK(e.to_string() == "t.conf:4: unknown option 'no_such_option'");
    CHECK_FALSE(e.unsupported);
    // CRLF line endings and trailing spaces are fine; the line count stays right.
    CHECK(parse_error("max_keepalive 60\r\n\r\nbogus\r\n").line == 3);
}

TEST_CASE("config: options Mosquitto has that Tern does not are 'not supported yet'") {
    for (std::string_view opt :
         {"psk_file /p", "dhparamfile /d.pem", "autosave_on_changes true", "auth_plugin /x.so",
          "auth_opt_db x", "plugin_opt_x y", "user mosquitto", "pid_file /run/m.pid",
          "mount_point a/", "log_timestamp_format %H", "tls_engine x", "start_type automatic"}) {
        CAPTURE(opt);
        const auto e = parse_error("max_keepalive 30\n" + std::string{opt} + "\n");
        CHECK(e.line == 2);
        CHECK(e.unsupported);
        const auto name = std::string{opt.substr(0, opt.find(' '))};
        CHECK(e.message == "option '" + name + "' is not supported yet");
    }
    // Values Tern does not implement of options it accepts.
    for (std::string_view opt : {"message_size_limit 1000", "log_dest file /var/log/m.log",
                                 "log_dest syslog", "set_tcp_nodelay false"}) {
        CAPTURE(opt);
        const auto e = parse_error(std::string{opt} + "\n");
        CHECK(e.line == 1);
        CHECK(e.unsupported);
        CHECK(e.message.find("not supported yet") != std::string::npos);
    }
}

TEST_CASE("config: the values Tern implements of partly supported options are accepted") {
    const auto c = parse_ok(
        "persistence false\nprotocol mqtt\nmax_qos 2\nmessage_size_limit 0\n"
        "allow_zero_length_clientid true\nset_tcp_nodelay true\nmax_inflight_bytes 0\n"
        "use_username_as_clientid false\n");
    CHECK(c.local_only);
}

TEST_CASE("config: max_inflight_bytes (0: no limit), in the dump, reloaded") {
    CHECK(parse_ok("").limits.max_inflight_bytes == 0);
    CHECK(parse_ok("max_inflight_bytes 0\n").limits.max_inflight_bytes == 0);
    const auto c = parse_ok("max_inflight_messages 20\nmax_inflight_bytes 3000\n");
    CHECK(c.limits.max_inflight_bytes == 3000);
    CHECK(c.limits.max_inflight == 20);  // each bound stays what it was set to
    CHECK(c.warnings.empty());
    const std::size_t tib = std::size_t{1} << 40;
    CHECK(parse_ok("max_inflight_bytes 1099511627776\n").limits.max_inflight_bytes == tib);
    const auto json = to_json(c);
    CHECK(json.find("\"max_inflight_bytes\":3000") != std::string::npos);
    CHECK(to_json(parse_ok("")).find("\"max_inflight_bytes\":0") != std::string::npos);
    for (std::string_view bad : {"-1", "10k", "1e6", "lots"}) {
        CAPTURE(bad);
        const auto e = parse_error("max_inflight_bytes " + std::string{bad} + "\n");
        CHECK_FALSE(e.unsupported);
        CHECK(e.message == "max_inflight_bytes: '" + std::string{bad} + "' is not a whole number");
    }
    CHECK(parse_error("max_inflight_bytes 1099511627777\n").message ==
          "max_inflight_bytes: 1099511627777 is out of range (0 to 1099511627776)");
    CHECK(parse_error("max_inflight_bytes\n").message == "'max_inflight_bytes' needs a value");
    // A SIGHUP applies it to running sessions, from their next delivery.
    limits running;
    mqtt::broker::copy_reloadable(c.limits, running);
    CHECK(running.max_inflight_bytes == 3000);
}

TEST_CASE("config: persistence options (Mosquitto's, and persistence_sync)") {
    const auto d = parse_ok("max_keepalive 30\n");
    CHECK_FALSE(d.persistence.enabled);
    CHECK(d.persistence.file == "tern.db");
    CHECK(d.persistence.sync == sync_policy::batch);
    CHECK(d.persistence.autosave_interval == std::chrono::seconds{1800});
    const auto c = parse_ok(
        "persistence true\npersistence_location /var/lib/tern/\npersistence_file b.db\n"
        "persistence_sync always\nautosave_interval 60\n");
    CHECK(c.persistence.enabled);
    CHECK(c.persistence.location == "/var/lib/tern/");
    CHECK(c.persistence.file == "b.db");
    CHECK(c.persistence.sync == sync_policy::always);
    CHECK(c.persistence.autosave_interval == std::chrono::seconds{60});
    CHECK(parse_ok("persistence_sync periodic\n").persistence.sync == sync_policy::periodic);
    const auto json = to_json(c);
    CHECK(json.find("\"persistence\":true") != std::string::npos);
    CHECK(json.find("\"persistence_sync\":\"always\"") != std::string::npos);
    CHECK(json.find("\"persistence_location\":\"/var/lib/tern/\"") != std::string::npos);
    CHECK(parse_error("persistence yes\n").to_string() ==
          "t.conf:1: persistence: expected true or false, not 'yes'");
    CHECK(parse_error("max_keepalive 3\npersistence_sync sometimes\n").to_string() ==
          "t.conf:2: persistence_sync: expected always, batch or periodic, not 'sometimes'");
    CHECK(parse_error("persistence_file a/b.db\n").message ==
          "persistence_file: 'a/b.db' is not a file name (the directory is "
          "persistence_location)");
    // Mosquitto's 0: no timed save, only at the stop (Tern: no timed sync with periodic).
    CHECK(parse_ok("autosave_interval 0\n").persistence.autosave_interval ==
          std::chrono::seconds{0});
    CHECK(parse_error("autosave_interval 31536001\n").message ==
          "autosave_interval: 31536001 is out of range (0 to 31536000)");
}

TEST_CASE("config: syntax errors") {
    CHECK(parse_error("max_keepalive\n").message == "'max_keepalive' needs a value");
    CHECK(parse_error("max_keepalive 60 # sixty\n").message ==
          "unexpected '#' after max_keepalive 60 (a comment must be on a line of its own)");
    CHECK(parse_error("listener 1883 ::1 extra\n").message.find("unexpected 'extra'") == 0);
    CHECK(parse_error("Max_keepalive 60\n").message == "unknown option 'Max_keepalive'");
    CHECK(parse_error(std::string{"max_keepalive 6\0 0\n", 18}).message == "NUL byte in the line");
}

TEST_CASE("config: numbers and their ranges") {
    CHECK(parse_ok("max_keepalive 0").limits.max_keepalive == 0);
    CHECK(parse_ok("max_keepalive 65535").limits.max_keepalive == 65535);
    CHECK(parse_error("max_keepalive 65536").message ==
          "max_keepalive: 65536 is out of range (0 to 65535)");
    for (std::string_view bad : {"-1", "+5", "1e3", "0x10", "10k", "ten", "5s"}) {
        CAPTURE(bad);
        CHECK(parse_error("max_keepalive " + std::string{bad}).message ==
              "max_keepalive: '" + std::string{bad} + "' is not a whole number");
    }
    CHECK(parse_error("max_queued_messages 99999999999999999999999").message.find("out of range") !=
          std::string::npos);
}

TEST_CASE("config: limits map onto broker::limits") {
    const auto c = parse_ok(
        "max_inflight_messages 5\nmax_queued_messages 7\nmax_queued_bytes 4096\n"
        "max_packet_size 2048\nmax_keepalive 120\nretain_available false\nmax_topic_alias 3\n"
        "queue_qos0_messages true\nupgrade_outgoing_qos true\npersistent_client_expiration 2d\n"
        "sys_interval 0\nmax_offline_sessions 5\n");
    const auto& l = c.limits;
    CHECK(l.max_offline_sessions == 5);
    CHECK(l.max_inflight == 5);
    CHECK(l.max_queued_messages == 7);
    CHECK(l.max_queued_bytes == 4096);
    CHECK(l.max_packet_size == 2048);
    CHECK(l.max_keepalive == 120);
    CHECK_FALSE(l.retain_available);
    CHECK(l.max_topic_alias == 3);
    CHECK(l.queue_qos0_messages);
    CHECK(l.upgrade_outgoing_qos);
    CHECK(l.persistent_client_expiration == std::chrono::seconds{2 * 86400});
    CHECK(c.sys_interval == 0s);
    CHECK(c.warnings.empty());

    // Defaults stay when the option is absent.
    const limits defaults;
    const auto d = parse_ok("");
    CHECK(d.limits.max_inflight == defaults.max_inflight);
    CHECK(d.limits.max_packet_size == defaults.max_packet_size);
    CHECK(d.limits.persistent_client_expiration == defaults.persistent_client_expiration);
}

TEST_CASE("config: 0 means no maximum where Mosquitto says so") {
    const auto c = parse_ok(
        "max_inflight_messages 0\nmax_queued_messages 0\nmax_queued_bytes 0\nmax_packet_size 0\n"
        "max_offline_sessions 0\n");
    CHECK(c.limits.max_inflight == 65535);
    CHECK(c.limits.max_offline_sessions == unlimited);
    CHECK(c.limits.max_queued_messages == unlimited);
    CHECK(c.limits.max_queued_bytes == unlimited);
    CHECK(c.limits.max_packet_size == 268'435'460u);
}

TEST_CASE("config: max_packet_size bounds") {
    CHECK(parse_ok("max_packet_size 20").limits.max_packet_size == 20);
    CHECK(parse_error("max_packet_size 19").message ==
          "max_packet_size: below 20 bytes is forbidden (0 means no limit)");
    CHECK(parse_ok("max_packet_size 268435460").limits.max_packet_size == 268'435'460u);
    CHECK(parse_error("max_packet_size 268435461").message.find("out of range") !=
          std::string::npos);
}

TEST_CASE("config: booleans are true or false") {
    for (std::string_view opt : {"retain_available", "queue_qos0_messages", "upgrade_outgoing_qos",
                                 "connection_messages", "log_timestamp", "per_listener_settings"}) {
        CAPTURE(opt);
        for (std::string_view bad : {"yes", "1", "TRUE", "on"}) {
            const auto e = parse_error(std::string{opt} + " " + std::string{bad});
            CHECK(e.message ==
                  std::string{opt} + ": expected true or false, not '" + std::string{bad} + "'");
        }
    }
}

TEST_CASE("config: durations") {
    CHECK(parse_duration("1h") == std::chrono::seconds{3600});
    CHECK(parse_duration("2d") == std::chrono::seconds{2 * 86400});
    CHECK(parse_duration("1w") == std::chrono::seconds{7 * 86400});
    CHECK(parse_duration("1m") == std::chrono::seconds{30 * 86400});
    CHECK(parse_duration("1y") == std::chrono::seconds{365 * 86400});
    CHECK(parse_duration("136y") == std::chrono::seconds{136ll * 365 * 86400});
    for (std::string_view bad :
         {"", "h", "10", "10s", "1.5d", "-1d", "d1", "1 d", "137y", "99999999999999999999h"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_duration(bad).has_value());
    }
    CHECK(parse_error("persistent_client_expiration 10").message.find("is not a duration") !=
          std::string::npos);
    CHECK(parse_error("persistent_client_expiration 0d").message.find("is not a duration") !=
          std::string::npos);
}

TEST_CASE("config: an option set twice is an error naming the first line") {
    const auto e = parse_error("max_keepalive 60\n\nmax_keepalive 30\n");
    CHECK(e.line == 3);
    CHECK(e.message == "'max_keepalive' is already set at t.conf:1");
    // ...but listener options are per listener block.
    const auto c = parse_ok(
        "allow_anonymous true\nlistener 1883\nmax_connections 5\nlistener 1884\n"
        "max_connections 6\n");
    CHECK(c.listeners.at(0).max_connections == 5u);
    CHECK(c.listeners.at(1).max_connections == 6u);
    CHECK(parse_error("allow_anonymous true\nlistener 1883\nmax_connections 5\nmax_connections 6\n")
              .message == "'max_connections' is already set at t.conf:3");
}

TEST_CASE("config: listener blocks") {
    const auto c = parse_ok(
        "allow_anonymous true\n"
        "listener 1883 127.0.0.1\n"
        "max_connections 10\n"
        "listener 8883 ::1\n"
        "max_connections -1\n"
        "listener 0\n"
        "socket_domain ipv4\n"
        "listener 1885\n"
        "socket_domain ipv6\n"
        "listener 1886 localhost\n");
    CHECK_FALSE(c.local_only);
    REQUIRE(c.listeners.size() == 5);
    CHECK(c.listeners[0].port == 1883);
    CHECK(c.listeners[0].max_connections == 10u);
    CHECK(bind_addresses(c.listeners[0]) == std::vector<std::string>{"127.0.0.1"});
    CHECK(c.listeners[0].origin.to_string() == "t.conf:2");
    CHECK(c.listeners[1].port == 8883);
    CHECK_FALSE(c.listeners[1].max_connections.has_value());
    CHECK(bind_addresses(c.listeners[1]) == std::vector<std::string>{"::1"});
    CHECK(c.listeners[2].port == 0);
    CHECK(bind_addresses(c.listeners[2]) == std::vector<std::string>{"0.0.0.0"});
    CHECK(bind_addresses(c.listeners[3]) == std::vector<std::string>{"::"});
    CHECK(bind_addresses(c.listeners[4]) == std::vector<std::string>{"127.0.0.1", "::1"});
    // A listener with no address listens on both families.
    const auto any = parse_ok("listener 1883\nallow_anonymous true\n");
    CHECK(bind_addresses(any.listeners.at(0)) == std::vector<std::string>{"0.0.0.0", "::"});
}

TEST_CASE("config: protocol websockets and websockets_path") {
    const auto c = parse_ok(
        "allow_anonymous true\n"
        "listener 1883 127.0.0.1\n"
        "protocol mqtt\n"
        "listener 8080 127.0.0.1\n"
        "protocol websockets\n"
        "listener 8081 127.0.0.1\n"
        "websockets_path /mqtt\n"
        "protocol websockets\n");
    REQUIRE(c.listeners.size() == 3);
    CHECK(c.listeners[0].protocol == listener_protocol::mqtt);
    CHECK(c.listeners[1].protocol == listener_protocol::websockets);
    CHECK(c.listeners[1].websockets_path.empty());
    CHECK(c.listeners[2].protocol == listener_protocol::websockets);
    CHECK(c.listeners[2].websockets_path == "/mqtt");
    const auto json = to_json(c);
    CHECK(json.find("\"protocol\":\"mqtt\"") != std::string::npos);
    CHECK(json.find("\"protocol\":\"websockets\",\"websockets_path\":\"\"") != std::string::npos);
    CHECK(json.find("\"websockets_path\":\"/mqtt\"") != std::string::npos);
    // Without a listener line: the local-only listener speaks WebSocket.
    CHECK(parse_ok("protocol websockets\n").listeners.at(0).protocol ==
          listener_protocol::websockets);

    CHECK(parse_error("listener 1883\nprotocol http").message ==
          "protocol: expected mqtt, websockets or mqttsn, not 'http'");
    for (std::string_view bad : {"mqtt", "/a?b=1", "/a#x"}) {
        CAPTURE(bad);
        CHECK(parse_error("listener 8080\nprotocol websockets\nwebsockets_path " + std::string{bad})
                  .message.starts_with("websockets_path: expected an absolute request path"));
    }
    auto e = parse_error(
        "allow_anonymous true\nlistener 8080\nwebsockets_path /mqtt\nlistener 8081\n"
        "protocol websockets\n");
    CHECK(e.line == 3);
    CHECK(e.message == "websockets_path needs protocol websockets in the same listener block");
}

TEST_CASE("config: listener errors") {
    CHECK(parse_error("listener 65536").message == "listener: 65536 is out of range (0 to 65535)");
    CHECK(parse_error("listener").message == "'listener' needs a value");
    auto e = parse_error("listener 1883 example.com\n");
    CHECK(e.unsupported);
    CHECK(e.message.find("host names are not supported yet") != std::string::npos);
    for (std::string_view bad : {"256.1.1.1", "1.2.3", "1.2.3.4.5", "::1::2", "1:2:3:4:5:6:7:8:9",
                                 "12345::1", "fe80::1%eth0"}) {
        CAPTURE(bad);
        CHECK(parse_error("listener 1883 " + std::string{bad}).message.find("is not a numeric") !=
              std::string::npos);
    }
    CHECK(parse_error("listener 0 /run/mqtt.sock").message ==
          "listener: unix sockets are not supported yet");
    e = parse_error("allow_anonymous true\nlistener 1883 ::1\nlistener 1883 ::1\n");
    CHECK(e.line == 3);
    CHECK(e.message == "listener 1883 ::1 is already defined at t.conf:2");
    CHECK(parse_error("listener 1883\nsocket_domain ipv5").message ==
          "socket_domain: expected ipv4 or ipv6, not 'ipv5'");
    e = parse_error("allow_anonymous true\nlistener 1883 ::1\nsocket_domain ipv4\n");
    CHECK(e.line == 2);
    CHECK(e.message == "this listener has no address left: its socket_domain excludes ::1");
    CHECK(parse_error("listener 1883\nmax_connections -2").message ==
          "max_connections: '-2' is not a whole number");
    // Numeric addresses of every form are fine.
    parse_ok(
        "allow_anonymous true\nlistener 1 0.0.0.0\nlistener 2 ::\nlistener 3 fe80::1\n"
        "listener 4 2001:db8:0:0:0:0:0:1\nlistener 5 ::ffff:192.0.2.1\n");
}

TEST_CASE("config: allow_anonymous is false once listeners are configured, as in Mosquitto 2") {
    auto c = parse_ok("# listeners\nlistener 1883\n");
    CHECK_FALSE(c.allow_anonymous);
    // Without a password_file every client would be refused: a warning names the listener.
    REQUIRE(c.warnings.size() == 1);
    CHECK(c.warnings[0].find("t.conf:2: allow_anonymous is false and there is no password_file") ==
          0);
    c = parse_ok("listener 1883\npassword_file /etc/tern/passwd\n");
    CHECK_FALSE(c.allow_anonymous);
    CHECK(c.warnings.empty());
    CHECK(c.password_file == "/etc/tern/passwd");
    CHECK(c.password_file_origin.to_string() == "t.conf:2");
    // allow_anonymous may come after the listener.
    CHECK(parse_ok("listener 1883\nallow_anonymous true\n").allow_anonymous);
    // port alone is a listener too.
    CHECK_FALSE(parse_ok("port 1884\n").allow_anonymous);
    // The local-only mode lets anonymous clients in unless told otherwise.
    CHECK(parse_ok("").allow_anonymous);
    CHECK(parse_ok("password_file p\n").allow_anonymous);
    CHECK_FALSE(parse_ok("allow_anonymous false\npassword_file p\n").allow_anonymous);
}

TEST_CASE("config: password_file and acl_file") {
    const auto c = parse_ok("acl_file /etc/tern/my acl\npassword_file pw\n");
    CHECK(c.acl_file == "/etc/tern/my acl");  // the rest of the line, spaces included
    CHECK(c.acl_file_origin.line == 1);
    CHECK(c.password_file == "pw");
    CHECK(parse_error("password_file a\npassword_file b\n").message ==
          "'password_file' is already set at t.conf:1");
    CHECK(parse_error("acl_file\n").message == "'acl_file' needs a value");
    CHECK(parse_error("acl_file a\nper_listener_settings true\n").line == 2);
    const auto json = to_json(c);
    CHECK(json.find("\"acl_file\":\"/etc/tern/my acl\"") != std::string::npos);
    CHECK(json.find("\"password_file\":\"pw\"") != std::string::npos);
    CHECK(to_json(parse_ok("")).find("\"acl_file\":null") != std::string::npos);
}

TEST_CASE("config: port and bind_address make the default listener") {
    auto c = parse_ok("allow_anonymous true\nport 1884\nbind_address 127.0.0.1\n");
    REQUIRE(c.listeners.size() == 1);
    CHECK(c.listeners[0].port == 1884);
    CHECK(bind_addresses(c.listeners[0]) == std::vector<std::string>{"127.0.0.1"});
    c = parse_ok(
        "allow_anonymous true\nbind_address localhost\nmax_connections 3\nlistener 1885\n");
    REQUIRE(c.listeners.size() == 2);
    CHECK(c.listeners[0].port == 1883);
    CHECK(c.listeners[0].max_connections == 3u);
    CHECK(bind_addresses(c.listeners[0]) == std::vector<std::string>{"127.0.0.1", "::1"});
    CHECK(c.listeners[1].port == 1885);
    CHECK_FALSE(c.listeners[1].max_connections.has_value());
    CHECK(parse_error("allow_anonymous true\nport 1883\nlistener 1883\n").message ==
          "listener 1883  is already defined by port/bind_address at t.conf:2");
}

TEST_CASE("config: listener options before any listener apply to the local-only listener") {
    const auto c = parse_ok("max_connections 2\nsocket_domain ipv4\n");
    CHECK(c.local_only);
    REQUIRE(c.listeners.size() == 1);
    CHECK(c.listeners[0].max_connections == 2u);
    CHECK(bind_addresses(c.listeners[0]) == std::vector<std::string>{"127.0.0.1"});
}

TEST_CASE("config: -p replaces the local-only port and is ignored with listeners") {
    auto c = parse_ok("");
    CHECK(apply_command_line_port(c, 0).empty());
    CHECK(c.listeners.at(0).port == 0);
    auto d = parse_ok(open_listener);
    CHECK(apply_command_line_port(d, 1999).find("is ignored") != std::string::npos);
    CHECK(d.listeners.at(0).port == 1883);
    CHECK(apply_command_line_port(d, std::nullopt).empty());
}

TEST_CASE("config: per_listener_settings") {
    auto c = parse_ok(
        "per_listener_settings true\nlistener 1883\nallow_anonymous true\n"
        "listener 1884\nallow_anonymous true\n");
    CHECK(c.per_listener_settings);
    CHECK(c.listeners.at(1).allow_anonymous == true);
    // Each listener has its own allow_anonymous (false when not set, with a warning naming
    // the listener), password_file and acl_file.
    c = parse_ok(
        "per_listener_settings true\nlistener 1883\nallow_anonymous true\nacl_file open acl\n"
        "listener 1884\npassword_file pw\nacl_file closed\nlistener 1885\n");
    REQUIRE(c.listeners.size() == 3);
    CHECK(c.listeners[0].allow_anonymous == true);
    CHECK(c.listeners[0].acl_file == "open acl");
    CHECK(c.listeners[0].password_file.empty());
    CHECK(c.listeners[1].allow_anonymous == false);
    CHECK(c.listeners[1].password_file == "pw");
    CHECK(c.listeners[1].password_file_origin.line == 6);
    CHECK(c.listeners[1].acl_file == "closed");
    CHECK(c.listeners[2].allow_anonymous == false);
    CHECK(c.password_file.empty());
    CHECK(c.acl_file.empty());
    REQUIRE(c.warnings.size() == 1);
    CHECK(c.warnings[0] == "t.conf:8: allow_anonymous is false and there is no password_file for "
                           "this listener: every client of it will be refused (as in Mosquitto 2)");
    const auto json = to_json(c);
    CHECK(json.find("\"acl_file\":\"open acl\"") != std::string::npos);
    CHECK(json.find("\"password_file\":\"pw\"") != std::string::npos);
    // Twice in one listener is a duplicate; once per listener is not.
    CHECK(parse_error("per_listener_settings true\nlistener 1\nacl_file a\nacl_file b\n").line == 4);
    // Before the first listener, without port/bind_address: it would apply to nothing.
    auto e = parse_error("per_listener_settings true\npassword_file pw\nlistener 1883\n");
    CHECK(e.line == 2);
    CHECK(e.message.find("move it into a listener block") != std::string::npos);
    // With no listener at all it is the local-only listener's, anonymous allowed by default.
    c = parse_ok("per_listener_settings true\nacl_file a\n");
    REQUIRE(c.listeners.size() == 1);
    CHECK(c.listeners[0].acl_file == "a");
    CHECK(c.listeners[0].allow_anonymous == true);
    // Without it, allow_anonymous is global, so once is enough (and twice is a duplicate).
    parse_ok("listener 1883\nallow_anonymous true\nlistener 1884\n");
    CHECK(parse_error("listener 1883\nallow_anonymous true\nlistener 1884\nallow_anonymous true\n")
              .line == 4);
    CHECK(parse_error("listener 1883\nper_listener_settings true\n").message ==
          "per_listener_settings must come before every listener, allow_anonymous, "
          "password_file, acl_file, allow_zero_length_clientid and auto_id_prefix line");
    CHECK(parse_error("auto_id_prefix x-\nper_listener_settings true\n").line == 2);
}

TEST_CASE("config: allow_zero_length_clientid and auto_id_prefix, global or per listener") {
    auto c = parse_ok("");
    CHECK(c.allow_zero_length_clientid);
    CHECK(c.auto_id_prefix == mqtt::broker::default_auto_id_prefix);
    auto json = to_json(c);
    CHECK(json.find("\"allow_zero_length_clientid\":true,\"auto_id_prefix\":\"tern-\"") !=
          std::string::npos);
    // Without per_listener_settings: one value for the broker, wherever it is written.
    c = parse_ok(
        "listener 1883\nallow_anonymous true\nallow_zero_length_clientid false\n"
        "listener 1884\nauto_id_prefix dev-\n");
    CHECK_FALSE(c.allow_zero_length_clientid);
    CHECK(c.auto_id_prefix == "dev-");
    CHECK_FALSE(c.listeners[0].allow_zero_length_clientid.has_value());
    auto sec = mqtt::broker::load_security(c, c.listeners[1]);
    REQUIRE(sec.value);
    CHECK_FALSE(sec.value->allow_zero_length_clientid);
    CHECK(sec.value->auto_id_prefix == "dev-");
    json = to_json(c);
    // Both listeners print the broker's values.
    const std::string both = "\"allow_zero_length_clientid\":false,\"auto_id_prefix\":\"dev-\"";
    const auto first = json.find(both);
    REQUIRE(first != std::string::npos);
    CHECK(json.find(both, first + 1) != std::string::npos);
    CHECK(parse_error("listener 1883\nallow_zero_length_clientid false\nlistener 1884\n"
                      "allow_zero_length_clientid true\n")
              .line == 4);  // twice: a duplicate
    // With per_listener_settings: each listener's own (unset: true and "tern-").
    c = parse_ok(
        "per_listener_settings true\nlistener 1883\nallow_anonymous true\n"
        "allow_zero_length_clientid false\nlistener 1884\nallow_anonymous true\n"
        "auto_id_prefix east-\nlistener 1885\nallow_anonymous true\n");
    REQUIRE(c.listeners.size() == 3);
    CHECK(c.listeners[0].allow_zero_length_clientid == false);
    CHECK_FALSE(c.listeners[0].auto_id_prefix.has_value());
    CHECK_FALSE(c.listeners[1].allow_zero_length_clientid.has_value());
    CHECK(c.listeners[1].auto_id_prefix == "east-");
    const bool allow[] = {false, true, true};
    const char* prefix[] = {"tern-", "east-", "tern-"};
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        sec = mqtt::broker::load_security(c, c.listeners[i]);
        REQUIRE(sec.value);
        CHECK(sec.value->allow_zero_length_clientid == allow[i]);
        CHECK(sec.value->auto_id_prefix == prefix[i]);
    }
    json = to_json(c);
    CHECK(json.find("\"allow_zero_length_clientid\":false,\"auto_id_prefix\":\"tern-\"") !=
          std::string::npos);
    CHECK(json.find("\"allow_zero_length_clientid\":true,\"auto_id_prefix\":\"east-\"") !=
          std::string::npos);
    // Before the first listener without port/bind_address: it would apply to nothing.
    const auto e = parse_error("per_listener_settings true\nauto_id_prefix x-\nlistener 1883\n");
    CHECK(e.line == 2);
    CHECK(e.message.find("move it into a listener block") != std::string::npos);
    // Bad values.
    CHECK(parse_error("allow_zero_length_clientid no\n").message ==
          "allow_zero_length_clientid: expected true or false, not 'no'");
    const std::string_view bad_prefixes[] = {
        "a/b", "a+", "#", "\x01x", "01234567890123456789012345678901234567890123456789012345678901234"};
    for (const auto bad : bad_prefixes) {
        CAPTURE(bad);
        const auto err = parse_error("auto_id_prefix " + std::string{bad} + "\n");
        CHECK(err.message.find("auto_id_prefix: ") == 0);
        CHECK_FALSE(err.unsupported);
    }
    CHECK(parse_ok("auto_id_prefix 0123456789012345678901234567890123456789012345678901234567890123\n")
              .auto_id_prefix.size() == 64);
}

TEST_CASE("config: use_username_as_clientid is a listener option") {
    auto c = parse_ok(
        "listener 1883\nallow_anonymous true\nuse_username_as_clientid true\nlistener 1884\n");
    CHECK(c.listeners[0].use_username_as_clientid);
    CHECK_FALSE(c.listeners[1].use_username_as_clientid);
    CHECK(mqtt::broker::has_listener_options(c.listeners[0]));
    CHECK_FALSE(mqtt::broker::has_listener_options(c.listeners[1]));
    CHECK(mqtt::broker::needs_listener_slots(c));
    auto sec = mqtt::broker::load_security(c, c.listeners[0]);
    REQUIRE(sec.value);
    CHECK(sec.value->use_username_as_clientid);
    CHECK(sec.value->allow_anonymous);  // the broker's, without per_listener_settings
    sec = mqtt::broker::load_security(c, c.listeners[1]);
    REQUIRE(sec.value);
    CHECK_FALSE(sec.value->use_username_as_clientid);
    const auto json = to_json(c);
    const auto first = json.find("\"use_username_as_clientid\":true");
    REQUIRE(first != std::string::npos);
    CHECK(json.find("\"use_username_as_clientid\":false", first) != std::string::npos);
    // With per_listener_settings too (it is not one of its options: any order).
    c = parse_ok(
        "per_listener_settings true\nlistener 1883\nuse_username_as_clientid true\n"
        "allow_anonymous true\n");
    sec = mqtt::broker::load_security(c, c.listeners[0]);
    REQUIRE(sec.value);
    CHECK(sec.value->use_username_as_clientid);
    CHECK_FALSE(mqtt::broker::needs_listener_slots(parse_ok("listener 1883\n")));
    CHECK(parse_error("listener 1883\nuse_username_as_clientid yes\n").message ==
          "use_username_as_clientid: expected true or false, not 'yes'");
    // MQTT-SN clients have no user name.
    const auto e = parse_error(
        "allow_anonymous true\nlistener 1883\nprotocol mqttsn\nuse_username_as_clientid true\n");
    CHECK(e.line == 4);
    CHECK(e.message.find("protocol mqttsn") != std::string::npos);
}

TEST_CASE("config: max_qos and max_topic_alias per listener") {
    // Without listeners (or before the first one, without port/bind_address): the broker's.
    auto c = parse_ok("max_topic_alias 0\nmax_qos 1\n");
    CHECK(c.limits.max_topic_alias == 0);
    CHECK(c.max_qos == 1);
    CHECK_FALSE(c.listeners[0].max_qos.has_value());
    CHECK_FALSE(mqtt::broker::needs_listener_slots(c));
    auto sec = mqtt::broker::load_security(c);
    REQUIRE(sec.value);
    CHECK(sec.value->max_qos == 1);
    c = parse_ok("max_qos 0\nallow_anonymous true\nlistener 1\nlistener 2\nmax_qos 2\n");
    CHECK(c.max_qos == 0);
    CHECK_FALSE(c.listeners[0].max_qos.has_value());
    CHECK(c.listeners[1].max_qos == 2);
    // In a listener block: that listener's, which then has a policy slot of its own.
    c = parse_ok(
        "allow_anonymous true\nlistener 1\nmax_topic_alias 5\nmax_qos 1\nlistener 2\n"
        "max_topic_alias 6\nlistener 3\n");
    CHECK(c.limits.max_topic_alias == 10);
    CHECK(c.listeners[0].max_topic_alias == 5);
    CHECK(c.listeners[0].max_qos == 1);
    CHECK(c.listeners[1].max_topic_alias == 6);
    CHECK_FALSE(c.listeners[2].max_topic_alias.has_value());
    CHECK(mqtt::broker::needs_listener_slots(c));
    const std::uint8_t qos[] = {1, 2, 2};
    const std::optional<std::uint16_t> alias[] = {5, 6, std::nullopt};
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        sec = mqtt::broker::load_security(c, c.listeners[i]);
        REQUIRE(sec.value);
        CHECK(sec.value->max_qos == qos[i]);
        CHECK(sec.value->max_topic_alias == alias[i]);
    }
    const auto json = to_json(c);
    CHECK(json.find("\"max_qos\":1,\"max_topic_alias\":5") != std::string::npos);
    CHECK(json.find("\"max_qos\":2,\"max_topic_alias\":6") != std::string::npos);
    CHECK(json.find("\"max_qos\":2,\"max_topic_alias\":10") != std::string::npos);
    // port/bind_address: lines before the first listener are the default listener's.
    c = parse_ok("allow_anonymous true\nport 1883\nmax_qos 0\nlistener 1884\n");
    CHECK(c.max_qos == 2);
    CHECK(c.listeners[0].max_qos == 0);
    CHECK_FALSE(c.listeners[1].max_qos.has_value());
    // Bad values, and MQTT-SN listeners.
    CHECK(parse_error("max_qos 3\n").message == "max_qos: 3 is out of range (0 to 2)");
    CHECK(parse_error("max_topic_alias 65536\n").message.find("out of range") != std::string::npos);
    CHECK(parse_error("allow_anonymous true\nlistener 1\nmax_qos 1\nmax_qos 0\n").line == 4);
    CHECK(parse_error("allow_anonymous true\nlistener 1\nprotocol mqttsn\nmax_qos 1\n")
              .message.find("protocol mqttsn") != std::string::npos);
}

TEST_CASE("config: logging options") {
    auto c = parse_ok("log_type error\nlog_type warning\n");
    CHECK(c.log.verbosity == 0);
    CHECK(c.log.types == std::vector<std::string>{"error", "warning"});
    CHECK(parse_ok("log_type information").log.verbosity == 1);
    CHECK(parse_ok("log_type subscribe").log.verbosity == 1);
    CHECK(parse_ok("log_type all").log.verbosity == 2);
    CHECK(parse_ok("log_type debug\nlog_type error").log.verbosity == 2);
    CHECK(parse_ok("log_type none").log.verbosity == -1);
    CHECK(parse_error("log_type verbose").message.find("log_type: unknown type 'verbose'") == 0);
    CHECK(parse_ok("log_dest stdout").log.dest == "stdout");
    CHECK(parse_ok("log_dest none\nlog_dest none").log.dest == "none");
    auto e = parse_error("log_dest stderr\nlog_dest stdout\n");
    CHECK(e.line == 2);
    CHECK(e.unsupported);
    CHECK(parse_error("log_dest screen").message == "log_dest: unknown destination 'screen'");
    c = parse_ok("connection_messages false\nlog_timestamp true\n");
    CHECK_FALSE(c.log.connection_messages);
    CHECK(c.log.timestamp);
}

TEST_CASE("config: sys_interval sets the $SYS period without a warning, 0 disables") {
    const auto c = parse_ok("\nsys_interval 30\n");
    CHECK(c.sys_interval == 30s);
    CHECK(c.warnings.empty());
    CHECK(parse_ok("sys_interval 0").sys_interval == 0s);
    CHECK(parse_ok("").sys_interval == 10s);
}

TEST_CASE("config: metrics_listener PORT [ADDRESS]") {
    CHECK_FALSE(parse_ok("").metrics.has_value());
    auto c = parse_ok("listener 1883\nmetrics_listener 9100\n");
    REQUIRE(c.metrics.has_value());
    CHECK(c.metrics->port == 9100);
    CHECK(c.metrics->bind == "127.0.0.1");
    CHECK(c.metrics->origin.line == 2);
    CHECK(c.listeners.size() == 1);  // not an MQTT listener
    CHECK(parse_ok("metrics_listener 0 ::1").metrics->bind == "::1");
    CHECK(parse_ok("metrics_listener 0 localhost").metrics->bind == "127.0.0.1");
    CHECK(parse_ok("metrics_listener 0").metrics->port == 0);
    CHECK(parse_error("metrics_listener 70000").message.find("out of range") != std::string::npos);
    CHECK(parse_error("metrics_listener 9100 example.org").unsupported);
    CHECK(parse_error("metrics_listener 1\nmetrics_listener 2\n").line == 2);
    const auto json = to_json(parse_ok("metrics_listener 9100 ::1"));
    CHECK(json.find("\"metrics_listener\":{\"port\":9100,\"bind\":\"::1\"") != std::string::npos);
    CHECK(to_json(parse_ok("")).find("\"metrics_listener\":null") != std::string::npos);
}

TEST_CASE("config: include_dir reads the .conf files in Mosquitto's order") {
    fake_files fs;
    fs.dirs["conf.d"] = {"b.conf", "A.conf",  "01.conf",   "a.conf",
                         "B.conf", "00.conf", "notes.txt", ".conf"};
    for (const auto* name : {"b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf"}) {
        fs.files[std::string{"conf.d/"} + name] = "log_type error\n";
    }
    auto r = parse_config("include_dir conf.d\n", "main.conf", fs.source());
    REQUIRE(r);
    CHECK(r.value->files ==
          std::vector<std::string>{"main.conf", "conf.d/00.conf", "conf.d/01.conf", "conf.d/A.conf",
                                   "conf.d/a.conf", "conf.d/B.conf", "conf.d/b.conf"});
    CHECK(r.value->log.types.size() == 6);

    CHECK(include_order_less("A.conf", "a.conf"));
    CHECK(include_order_less("a.conf", "B.conf"));
    CHECK(include_order_less("00.conf", "A.conf"));
    CHECK_FALSE(include_order_less("b.conf", "B.conf"));
}

TEST_CASE("config: include_dir settings and errors carry the included file's name") {
    fake_files fs;
    fs.dirs["d"] = {"10-listeners.conf", "20-limits.conf"};
    fs.files["d/10-listeners.conf"] = "listener 1884 ::1\nmax_connections 4\n";
    fs.files["d/20-limits.conf"] = "# limits\nmax_keepalive 90\nbogus\n";
    auto r = parse_config("allow_anonymous true\ninclude_dir d\n", "main.conf", fs.source());
    REQUIRE_FALSE(r);
    CHECK(r.error.to_string() == "d/20-limits.conf:3: unknown option 'bogus'");

    fs.files["d/20-limits.conf"] = "max_keepalive 90\n";
    r = parse_config("allow_anonymous true\ninclude_dir d/\nmax_queued_messages 9\n", "main.conf",
                     fs.source());
    REQUIRE(r);
    CHECK(r.value->listeners.at(0).max_connections == 4u);
    CHECK(r.value->limits.max_keepalive == 90);
    CHECK(r.value->limits.max_queued_messages == 9);
    CHECK(r.value->files.at(1) == "d/10-listeners.conf");

    // A duplicate across files names both places.
    fs.files["d/20-limits.conf"] = "max_keepalive 90\n";
    r = parse_config("max_keepalive 10\nallow_anonymous true\ninclude_dir d\n", "main.conf",
                     fs.source());
    REQUIRE_FALSE(r);
    CHECK(r.error.to_string() ==
          "d/20-limits.conf:1: 'max_keepalive' is already set at main.conf:1");

    // Only the main file may include; a missing directory is an error at the include line.
    fs.files["d/20-limits.conf"] = "include_dir d\n";
    r = parse_config("allow_anonymous true\ninclude_dir d\n", "main.conf", fs.source());
    CHECK(r.error.to_string() ==
          "d/20-limits.conf:1: include_dir is only allowed in the main file");
    r = parse_config("\ninclude_dir nowhere\n", "main.conf", fs.source());
    CHECK(r.error.to_string() == "main.conf:2: include_dir nowhere: No such file or directory");
    fs.dirs["e"] = {"x.conf"};
    r = parse_config("include_dir e\n", "main.conf", fs.source());
    CHECK(r.error.to_string() ==
          "main.conf:1: include_dir e: cannot read e/x.conf: Permission denied");
    // Without a source (a pure parse), include_dir cannot read anything.
    CHECK(parse_error("include_dir d\n").message == "include_dir d: no files can be read here");
}

TEST_CASE("config: load_config_file reports a missing file") {
    const auto r = load_config_file("/nonexistent/tern.conf");
    REQUIRE_FALSE(r);
    CHECK(r.error.to_string().find("/nonexistent/tern.conf: cannot read the configuration file") ==
          0);
}

TEST_CASE("config: --print-config JSON names every option with its effective value") {
    auto c = parse_ok(
        "allow_anonymous true\nlistener 0 127.0.0.1\nmax_connections 3\n"
        "max_queued_messages 0\npersistent_client_expiration 1h\nlog_type all\n");
    const auto json = to_json(c);
    for (std::string_view part :
         {"\"files\":[\"t.conf\"]", "\"port\":0", "\"addresses\":[\"127.0.0.1\"]",
          "\"max_connections\":3", "\"max_queued_messages\":0",
          "\"persistent_client_expiration\":3600", "\"log_type\":[\"all\"]", "\"log_verbosity\":2",
          "\"local_only\":false", "\"origin\":\"t.conf:2\""}) {
        CAPTURE(part);
        CHECK(json.find(part) != std::string::npos);
    }
    CHECK(json.back() == '\n');
}

TEST_CASE("config: the option lists are sorted and disjoint") {
    const auto ok = supported_options();
    const auto no = unsupported_options();
    CHECK(std::is_sorted(ok.begin(), ok.end()));
    CHECK(std::is_sorted(no.begin(), no.end()));
    for (const auto o : ok) CHECK(std::find(no.begin(), no.end(), o) == no.end());
    // Every supported option parses (with some value) rather than being unknown.
    for (const auto o : ok) {
        const auto r = parse_config(std::string{o} + " x\n", "t.conf");
        CAPTURE(o);
        if (!r) CHECK(r.error.message.find("unknown option") == std::string::npos);
    }
}

TEST_CASE("config: man/tern.conf.5 documents every option the parser accepts") {
    const std::string man_path = std::string{TERN_VECTORS_DIR} + "/../../man/tern.conf.5";
    std::ifstream in{man_path};
    REQUIRE_MESSAGE(in, "cannot open " << man_path);
    std::stringstream text;
    text << in.rdbuf();
    const auto man = text.str();
    for (const auto o : supported_options()) {
        CAPTURE(o);
        // Each option has its own entry: ".TP" then "\fBname\fR ...".
        const std::string escaped = [&] {
            std::string s;
            for (char ch : o) s += ch == '-' ? std::string{"\\-"} : std::string(1, ch);
            return s;
        }();
        CHECK(man.find(".TP\n\\fB" + escaped + "\\fR") != std::string::npos);
    }
    for (const auto o : unsupported_options()) {
        CAPTURE(o);
        CHECK(man.find(std::string{o.substr(0, o.size() - (o.back() == '*' ? 1 : 0))}) !=
              std::string::npos);
    }
}

TEST_CASE("log: engine lines become structured events") {
    auto e = classify_log_line(1, "client c1 connected from 127.0.0.1:5000 (5.0, keep alive 60s)");
    CHECK(e.event == log_kind::connect);
    CHECK(e.client_id == "c1");
    CHECK(e.peer == "127.0.0.1:5000");
    CHECK(e.level == log_level::info);
    e = classify_log_line(
        1, "client a connected from b connected from [::1]:7 (3.1.1, keep alive 0s)");
    CHECK(e.client_id == "a connected from b");
    CHECK(e.peer == "[::1]:7");
    e = classify_log_line(1, "client c1 closed: keep_alive_timeout");
    CHECK(e.event == log_kind::disconnect);
    CHECK(e.client_id == "c1");
    CHECK(e.reason == "keep_alive_timeout");
    e = classify_log_line(1, "client c1 subscribed to a/# (QoS 1)");
    CHECK(e.event == log_kind::subscribe);
    e = classify_log_line(0, "something else");
    CHECK(e.event == log_kind::log);
    CHECK(e.msg == "something else");
}

TEST_CASE("log: text and JSON lines") {
    log_event e;
    e.event = log_kind::disconnect;
    e.level = log_level::info;
    e.client_id = "c\"1\n";
    e.reason = "gone";
    e.msg = "client c closed: gone";
    const auto t =
        std::chrono::system_clock::time_point{std::chrono::microseconds{1'700'000'000'123'456}};
    CHECK(format_log_line(e, {}, t) == "tern-broker: client c closed: gone\n");
    CHECK(format_log_line(e, {false, true}, t) ==
          "2023-11-14T22:13:20.123456Z tern-broker: client c closed: gone\n");
    CHECK(format_log_line(e, {true, false}, t) ==
          "{\"time\":\"2023-11-14T22:13:20.123456Z\",\"level\":\"info\",\"event\":\"disconnect\","
          "\"client_id\":\"c\\\"1\\n\",\"reason\":\"gone\",\"msg\":\"client c closed: gone\"}\n");
    // Bytes that are not UTF-8 still make valid JSON.
    e.client_id = "\xff\x01";
    CHECK(format_log_line(e, {true, false}, t).find("\"client_id\":\"\xEF\xBF\xBD\\u0001\"") !=
          std::string::npos);
    log_event err;
    err.level = log_level::error;
    err.msg = "boom";
    CHECK(format_log_line(err, {}, t) == "tern-broker: error: boom\n");
}

TEST_CASE("config: threads defaults to the cores the broker may run on, and 0 says the same") {
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    const auto cores = static_cast<std::size_t>(CPU_COUNT(&set));
    CHECK(mqtt::broker::default_threads() == std::min<std::size_t>(cores, 256));
    CHECK(parse_ok("").threads == mqtt::broker::default_threads());
    CHECK(parse_ok("threads 0\n").threads == mqtt::broker::default_threads());
    CHECK(parse_ok("threads 1\n").threads == 1);
    CHECK(parse_ok("threads 256\n").threads == 256);
    CHECK(parse_error("threads 257\n").line == 1);
    CHECK(parse_error("threads -1\n").line == 1);
}

TEST_CASE(
    "config: threads above 1 with $SYS, bridges, MQTT-SN, TLS and WebSocket listeners") {
    // $SYS (sys_interval, 10 by default) and /metrics report every shard summed.
    const auto c = parse_ok("threads 2\nsys_interval 1\nmetrics_listener 0\n");
    CHECK(c.threads == 2);
    CHECK(c.sys_interval == 1s);
    CHECK(c.metrics.has_value());
    CHECK(parse_ok("threads 4\n").sys_interval == 10s);
    // Persistence: a store per shard (docs/persistence.md, "Threads").
    const auto stored = parse_ok("metrics_listener 0\nthreads 2\npersistence true\n"
                                 "persistence_location /var/lib/tern/\n");
    CHECK(stored.persistence.enabled);
    // ... without a warning: QoS 2 across shards is exactly once through a crash too (the
    // outbox, docs/persistence.md).
    CHECK(stored.warnings.empty());
    CHECK(parse_ok("threads 2\n").warnings.empty());
    CHECK(parse_ok("threads 1\npersistence true\n").warnings.empty());
    // TLS and WebSocket listeners, ws and wss, are served (the connection moves to its shard
    // after the handshake and the CONNECT), without a warning.
    const auto ws = parse_ok(
        "listener 1883\nthreads 2\nlistener 8080\nprotocol websockets\nallow_anonymous true\n");
    CHECK(ws.threads == 2);
    REQUIRE(ws.listeners.size() == 2);
    CHECK(ws.listeners[1].protocol == listener_protocol::websockets);
    CHECK(ws.warnings.empty());
    const auto tls =
        parse_ok("threads 3\nallow_anonymous true\nlistener 0\ncertfile /c.pem\nkeyfile /k.pem\n");
    CHECK(tls.threads == 3);
    REQUIRE(tls.listeners.size() == 1);
    CHECK(tls.listeners[0].tls_enabled());
    const auto wss = parse_ok(
        "threads 3\nallow_anonymous true\nlistener 0\nprotocol websockets\ncertfile /c.pem\n"
        "keyfile /k.pem\n");
    CHECK(wss.threads == 3);
    REQUIRE(wss.listeners.size() == 1);
    CHECK(wss.listeners[0].tls_enabled());
    CHECK(wss.listeners[0].protocol == listener_protocol::websockets);
    CHECK(wss.warnings.empty());
    // Bridges and MQTT-SN listeners run on shard 0 (docs/broker.md, "Threading").
    const auto b = parse_ok(
        "threads 2\nallow_anonymous true\n"
        "listener 0 127.0.0.1\nprotocol mqttsn\nlistener 0 127.0.0.1\n"
        "connection up\naddress 127.0.0.1:1883\ntopic # out 1\n");
    CHECK(b.threads == 2);
    CHECK(b.bridges.size() == 1);
    CHECK(std::count_if(b.listeners.begin(), b.listeners.end(),
                        [](const auto& l) { return l.mqttsn; }) == 1);
}
