#include "mqtt/bridge/config.hpp"

#include <doctest/doctest.h>

#include <string>

#include "mqtt/bridge/echo_filter.hpp"
#include "mqtt/protocol/codec.hpp"

using namespace mqtt::bridge;
using mqtt::protocol::protocol_version;
using mqtt::protocol::qos;
using namespace std::chrono_literals;

namespace {

const address local_default{"127.0.0.1", 1883};

config_result parse(std::string_view text) {
    return parse_config(text, "b.conf", "host1", local_default);
}

std::string error_of(std::string_view text) {
    auto r = parse(text);
    REQUIRE(r.error);
    CHECK(r.bridges.empty());
    return r.error->to_string();
}

}  // namespace

TEST_CASE("bridge config: Mosquitto's bridge syntax, several bridges") {
    auto r = parse(
        "# site bridges\n"
        "connection central\n"
        "address central.example:1884 [::1]:1885\n"
        "addresses backup.example,10.0.0.2:1999\n"
        "topic sensors/# out 1 site1/ \"\"\n"
        "topic cmd/# in 2\n"
        "remote_clientid site1-bridge\n"
        "remote_username u\n"
        "remote_password p w\n"  // one value only: an error below, not here
        "\n");
    REQUIRE(r.error);
    CHECK(r.error->to_string() == "b.conf:9: 'remote_password' takes one value");

    r = parse(
        "connection central\r\n"
        "address central.example:1884 [::1]:1885\n"
        "addresses backup.example,10.0.0.2:1999\n"
        "topic sensors/# out 1 site1/ \"\"\n"
        "  topic   cmd/#   in 2\n"
        "remote_clientid site1-bridge\n"
        "remote_username u\n"
        "remote_password secret\n"
        "local_clientid site1-local\n"
        "keepalive_interval 30\n"
        "cleansession true\n"
        "restart_timeout 2 20\n"
        "round_robin true\n"
        "try_private false\n"
        "notifications false\n"
        "bridge_protocol_version mqttv50\n"
        "connection second\n"
        "address 127.0.0.1\n"
        "local_address 127.0.0.1:2883\n"
        "topic # both\n"
        "notification_topic bridges/second/state\n");
    REQUIRE_FALSE(r.error);
    REQUIRE(r.bridges.size() == 2);
    const auto& a = r.bridges[0];
    CHECK(a.name == "central");
    CHECK(a.remote.addresses == std::vector<address>{{"central.example", 1884},
                                                     {"::1", 1885},
                                                     {"backup.example", 1883},
                                                     {"10.0.0.2", 1999}});
    CHECK(a.local.addresses == std::vector<address>{local_default});
    REQUIRE(a.topics.size() == 2);
    CHECK(a.topics[0].local_prefix == "site1/");
    CHECK(a.topics[1].dir == direction::in);
    CHECK(a.topics[1].qos == qos::exactly_once);
    CHECK(a.remote.client_id == "site1-bridge");
    CHECK(a.remote.username == "u");
    CHECK(a.remote.password == "secret");
    CHECK(a.local.client_id == "site1-local");
    CHECK(a.keepalive == 30);
    CHECK(a.clean_session);
    CHECK(a.restart_base == 2s);
    CHECK(a.restart_max == 20s);
    CHECK(a.round_robin);
    CHECK_FALSE(a.try_private);
    CHECK_FALSE(a.notifications);
    CHECK(a.version == protocol_version::v5);

    const auto& b = r.bridges[1];
    CHECK(b.remote.client_id == "host1.second");  // Mosquitto's default
    CHECK(b.local.client_id == "local.host1.second");
    CHECK(b.local.addresses == std::vector<address>{{"127.0.0.1", 2883}});
    CHECK(b.version == protocol_version::v3_1_1);
    CHECK_FALSE(b.clean_session);
    CHECK(b.try_private);
    CHECK(b.notifications);
    CHECK(b.state_topic() == "bridges/second/state");
    CHECK(a.state_topic() == "$SYS/broker/connection/site1-bridge/state");
}

TEST_CASE("bridge config: errors name the file and line") {
    CHECK(error_of("address a\n") == "b.conf:1: 'address' before any 'connection' line");
    CHECK(error_of("connection x\naddress a\ntopic # sideways\n") ==
          "b.conf:3: topic: invalid direction 'sideways' (in, out or both)");
    CHECK(error_of("connection x\naddress a:0\n") == "b.conf:2: invalid address 'a:0'");
    CHECK(error_of("connection x\naddress a\n") == "b.conf:1: bridge 'x' has no topic");
    CHECK(error_of("connection x\ntopic #\n") == "b.conf:1: bridge 'x' has no address");
    CHECK(error_of("connection x\naddress a\ntopic #\nconnection x\n") ==
          "b.conf:4: duplicate connection name 'x'");
    CHECK(error_of("connection x\naddress a\ntopic #\nlistener 1883\n") ==
          "b.conf:4: unknown bridge option 'listener'");
    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_alpn mqtt\n") ==
          "b.conf:4: 'bridge_alpn' is not supported by the bridge");
    CHECK(error_of("connection x\naddress a\ntopic #\ncleansession yes\n") ==
          "b.conf:4: expected true or false, not 'yes'");
    CHECK(error_of("connection x\naddress a\ntopic #\nkeepalive_interval 4\n")
              .starts_with("b.conf:4: keepalive_interval"));
    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_protocol_version mqttv6\n")
              .starts_with("b.conf:4: bridge_protocol_version"));
    CHECK(error_of("connection x\naddress a\ntopic #\nrestart_timeout 10 5\n")
              .starts_with("b.conf:4: restart_timeout"));
    CHECK(error_of("connection x\naddress a\ntopic #\nremote_password p\n") ==
          "b.conf:1: bridge 'x': remote_password needs remote_username");
    CHECK(error_of("# nothing\n") == "b.conf: no bridge defined (a 'connection' line starts one)");
}

TEST_CASE("bridge config: the bridge_* TLS options") {
    auto r = parse(
        "connection t\naddress a:8883 b\ntopic #\nbridge_cafile /c/ca.crt\n"
        "bridge_certfile /c/client.crt\nbridge_keyfile /c/client.key\nbridge_insecure true\n"
        "bridge_tls_version tlsv1.3\n"
        "connection plain\naddress c\ntopic #\n"
        "connection dir\naddress d\ntopic #\nbridge_capath /c/dir\n");
    REQUIRE_FALSE(r.error);
    REQUIRE(r.bridges.size() == 3);
    const auto& t = r.bridges[0];
    // bridge_cafile turns TLS on for every address of the bridge, written before or after.
    CHECK(t.remote.addresses == std::vector<address>{{"a", 8883, true}, {"b", 1883, true}});
    CHECK(t.remote.tls.cafile == "/c/ca.crt");
    CHECK(t.remote.tls.certfile == "/c/client.crt");
    CHECK(t.remote.tls.keyfile == "/c/client.key");
    CHECK(t.remote.tls.insecure);
    CHECK(t.remote.tls.min_version == mqtt::net::tls_version::tls1_3);
    CHECK(t.local.addresses == std::vector<address>{local_default});  // the local side: as given
    CHECK(r.bridges[1].remote.addresses == std::vector<address>{{"c", 1883, false}});
    CHECK(r.bridges[1].remote.tls == mqtt::net::tls_client_settings{});
    CHECK(r.bridges[2].remote.addresses == std::vector<address>{{"d", 1883, true}});
    CHECK(r.bridges[2].remote.tls.capath == "/c/dir");

    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_psk 00ff\n") ==
          "b.conf:4: 'bridge_psk': TLS-PSK is not supported by the bridge; use certificates "
          "(bridge_cafile, bridge_certfile, bridge_keyfile)");
    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_identity me\n")
              .starts_with("b.conf:4: 'bridge_identity': TLS-PSK is not supported"));
    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_insecure true\n") ==
          "b.conf:4: bridge 'x': bridge_insecure needs bridge_cafile or bridge_capath (which "
          "turn TLS on)");
    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_cafile ca\nbridge_certfile c\n") ==
          "b.conf:1: bridge 'x': bridge_certfile and bridge_keyfile go together");
    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_cafile ca\nbridge_insecure 1\n") ==
          "b.conf:5: expected true or false, not '1'");
    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_cafile ca\nbridge_tls_version "
                   "tlsv1.1\n")
              .starts_with("b.conf:5: bridge_tls_version: tlsv1.2 or tlsv1.3"));
    CHECK(error_of("connection x\naddress a\ntopic #\nbridge_cafile\n") ==
          "b.conf:4: 'bridge_cafile' takes one value");
}

TEST_CASE("bridge config: addresses") {
    CHECK(parse_address("h") == address{"h", 1883});
    CHECK(parse_address("h:1") == address{"h", 1});
    CHECK(parse_address("[::1]:8") == address{"::1", 8});
    CHECK(parse_address("[::1]") == address{"::1", 1883});
    CHECK_FALSE(parse_address(""));
    CHECK_FALSE(parse_address(":1"));
    CHECK_FALSE(parse_address("h:"));
    CHECK_FALSE(parse_address("h:65536"));
    CHECK_FALSE(parse_address("[::1"));
}

TEST_CASE("bridge echo filter: each message sent is recognised once, for a while, bounded") {
    using clock = echo_filter::clock;
    const auto t0 = clock::time_point{} + 100s;
    echo_filter f(3, 10s);
    f.sent("a", "1", t0);
    f.sent("a", "1", t0);
    CHECK(f.is_echo("a", "1", t0));
    CHECK(f.is_echo("a", "1", t0 + 1s));
    CHECK_FALSE(f.is_echo("a", "1", t0 + 1s));  // two sent, two echoes, no more
    // Topic and payload both count, and the boundary between them too.
    f.sent("ab", "c", t0);
    CHECK_FALSE(f.is_echo("a", "bc", t0));
    CHECK_FALSE(f.is_echo("ab", "C", t0));
    CHECK(f.is_echo("ab", "c", t0));
    // Expiry.
    f.sent("x", "", t0);
    CHECK_FALSE(f.is_echo("x", "", t0 + 11s));
    // Capacity: the oldest goes first.
    echo_filter small(2, 10s);
    small.sent("1", "", t0);
    small.sent("2", "", t0);
    small.sent("3", "", t0);
    CHECK(small.size() == 2);
    CHECK_FALSE(small.is_echo("1", "", t0));
    CHECK(small.is_echo("3", "", t0));
}

TEST_CASE("CONNECT with the bridge flag: protocol level 0x84 / 0x83, not in 5.0") {
    mqtt::protocol::connect_packet c;
    c.client_id = "b";
    c.bridge = true;
    for (auto [v, level] :
         {std::pair{protocol_version::v3_1_1, 0x84}, std::pair{protocol_version::v3_1, 0x83},
          std::pair{protocol_version::v5, 0x05}}) {
        c.version = v;
        auto bytes = mqtt::protocol::encode(c, v);
        REQUIRE(bytes);
        // fixed header (2), name length (2), name (4 or 6), level
        const std::size_t at = 2 + 2 + (v == protocol_version::v3_1 ? 6 : 4);
        CHECK(int((*bytes)[at]) == level);
    }
}

TEST_CASE("bridge config: the on-disk queue options, global and per bridge, local_cleansession") {
    auto r = parse(
        "queue_dir /var/lib/tern-bridge\n"
        "queue_max_bytes 512M\n"
        "connection a\naddress h\ntopic x\n"
        "local_cleansession true\n"
        "connection b\naddress h\ntopic x\n"
        "queue_dir /srv/q\nqueue_full_policy drop-oldest\nqueue_max_bytes 65536\n");
    REQUIRE(!r.error);
    REQUIRE(r.bridges.size() == 2);
    CHECK(r.bridges[0].queue.dir == "/var/lib/tern-bridge");
    CHECK(r.bridges[0].queue.max_bytes == (512ull << 20));
    CHECK(r.bridges[0].queue.policy == full_policy::block);
    CHECK(r.bridges[0].local_clean_session == true);
    CHECK(r.bridges[0].clean_session == false);
    CHECK(r.bridges[1].queue.dir == "/srv/q");
    CHECK(r.bridges[1].queue.max_bytes == 65536);
    CHECK(r.bridges[1].queue.policy == full_policy::drop_oldest);
    CHECK(!r.bridges[1].local_clean_session);

    // --queue-dir and friends are the defaults a file can override.
    queue_settings flags;
    flags.dir = "/flags";
    flags.policy = full_policy::drop_new;
    r = parse_config("connection a\naddress h\ntopic x\n", "b.conf", "host1", local_default, flags);
    REQUIRE(!r.error);
    CHECK(r.bridges[0].queue == flags);

    CHECK(error_of("queue_max_bytes 1000\nconnection a\naddress h\ntopic x\n") ==
          "b.conf:1: queue_max_bytes: bytes, with K, M or G, at least 64K, not '1000'");
    CHECK(error_of("connection a\naddress h\ntopic x\nqueue_full_policy drop\n") ==
          "b.conf:4: queue_full_policy: block, drop-new or drop-oldest, not 'drop'");
    CHECK(error_of("queue_size 5\n") == "b.conf:1: unknown bridge option 'queue_size'");
    CHECK(error_of("connection a\naddress h\ntopic x\nqueue_dir\n") ==
          "b.conf:4: 'queue_dir' takes one value");
    CHECK(error_of("connection a\naddress h\ntopic x\nlocal_cleansession yes\n") ==
          "b.conf:4: expected true or false, not 'yes'");
    CHECK(parse_byte_size("1G") == (1ull << 30));
    CHECK(parse_byte_size("64k") == 65536);
    CHECK(!parse_byte_size("G"));
    CHECK(!parse_byte_size("-5M"));
    CHECK(!parse_byte_size("99999999999999999999"));
}
