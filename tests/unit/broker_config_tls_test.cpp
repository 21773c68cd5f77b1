// tern-broker's configuration file: the TLS options of listener blocks (certfile, keyfile,
// cafile, capath, crlfile, require_certificate, use_identity_as_username,
// use_subject_as_username, tls_version, ciphers, ciphers_tls1.3) and where they may stand.

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "mqtt/broker/config.hpp"

using namespace mqtt::broker;
using username_source = mqtt::net::tls_server_settings::username_source;

namespace {

config parse_ok(std::string_view text) {
    auto r = parse_config(text, "t.conf");
    INFO(r.error.to_string());
    REQUIRE(r);
    return *r.value;
}

config_error parse_error(std::string_view text) {
    auto r = parse_config(text, "t.conf");
    REQUIRE_FALSE(r);
    return r.error;
}

}  // namespace

TEST_CASE("config tls: a listener with certfile and keyfile speaks TLS with its options") {
    const auto c = parse_ok(
        "allow_anonymous true\n"
        "listener 1883\n"
        "listener 8883\n"
        "certfile /etc/tern/server cert.pem\n"
        "keyfile /etc/tern/server.key\n"
        "cafile /etc/tern/ca.pem\n"
        "capath /etc/ssl/certs\n"
        "crlfile /etc/tern/crl.pem\n"
        "require_certificate true\n"
        "use_identity_as_username true\n"
        "tls_version tlsv1.3\n"
        "ciphers ECDHE-RSA-AES128-GCM-SHA256\n"
        "ciphers_tls1.3 TLS_AES_128_GCM_SHA256\n");
    REQUIRE(c.listeners.size() == 2);
    CHECK_FALSE(c.listeners[0].tls_enabled());
    const auto& l = c.listeners[1];
    CHECK(l.tls_enabled());
    CHECK(l.tls.certfile == "/etc/tern/server cert.pem");  // the rest of the line
    CHECK(l.tls.certfile_origin == "t.conf:4");
    CHECK(l.tls.keyfile == "/etc/tern/server.key");
    CHECK(l.tls.keyfile_origin == "t.conf:5");
    CHECK(l.tls.cafile == "/etc/tern/ca.pem");
    CHECK(l.tls.capath == "/etc/ssl/certs");
    CHECK(l.tls.crlfile == "/etc/tern/crl.pem");
    CHECK(l.tls.require_certificate);
    CHECK(l.tls.username_from == username_source::identity);
    CHECK(l.tls.min_version == mqtt::net::tls_version::tls1_3);
    CHECK(l.tls.ciphers == "ECDHE-RSA-AES128-GCM-SHA256");
    CHECK(l.tls.ciphers_tls1_3 == "TLS_AES_128_GCM_SHA256");
    const auto json = to_json(c);
    CHECK(json.find("\"tls\":null") != std::string::npos);
    CHECK(json.find("\"certfile\":\"/etc/tern/server cert.pem\"") != std::string::npos);
    CHECK(json.find("\"tls_version\":\"tlsv1.3\"") != std::string::npos);
    CHECK(json.find("\"use_identity_as_username\":true") != std::string::npos);
    CHECK(json.find("\"ciphers_tls1.3\":\"TLS_AES_128_GCM_SHA256\"") != std::string::npos);
}

TEST_CASE("config tls: defaults, the default listener and use_subject_as_username") {
    const auto c = parse_ok(
        "port 8883\n"
        "certfile /c.pem\n"
        "keyfile /k.pem\n"
        "cafile /ca.pem\n"
        "require_certificate true\n"
        "use_subject_as_username true\n"
        "allow_anonymous true\n");
    REQUIRE(c.listeners.size() == 1);
    const auto& t = c.listeners[0].tls;
    CHECK(c.listeners[0].tls_enabled());
    CHECK(t.min_version == mqtt::net::tls_version::tls1_2);
    CHECK(t.username_from == username_source::subject);
    CHECK(t.ciphers.empty());
    // The local-only listener takes TLS options given before any listener too.
    CHECK(parse_ok("certfile /c.pem\nkeyfile /k.pem\n").listeners[0].tls_enabled());
}

TEST_CASE("config tls: options that do not fit are errors at their line") {
    struct row {
        std::string_view text;
        int line;
        std::string_view message;
    };
    const row rows[] = {
        {"allow_anonymous true\nlistener 8883\ncertfile /c.pem\n", 3,
         "certfile needs keyfile in the same listener"},
        {"allow_anonymous true\nlistener 8883\nkeyfile /k.pem\n", 3,
         "keyfile needs certfile in the same listener"},
        {"allow_anonymous true\nlistener 1883\ncafile /ca.pem\n", 3,
         "cafile has no effect: this listener has no certfile and keyfile"},
        {"allow_anonymous true\nlistener 1883\nrequire_certificate true\nlistener 8883\n"
         "certfile /c\nkeyfile /k\n",
         3, "require_certificate has no effect"},
        {"allow_anonymous true\nlistener 8883\ncertfile /c\nkeyfile /k\nrequire_certificate "
         "true\n",
         5, "require_certificate true needs cafile or capath"},
        {"allow_anonymous true\nlistener 8883\ncertfile /c\nkeyfile /k\n"
         "use_identity_as_username true\n",
         5, "need require_certificate true"},
        {"allow_anonymous true\nlistener 8883\ncertfile /c\nkeyfile /k\ncrlfile /crl\n", 5,
         "crlfile has no effect without require_certificate true"},
        {"allow_anonymous true\nlistener 8883\nuse_identity_as_username true\n"
         "use_subject_as_username true\n",
         4, "use_subject_as_username true: the other of"},
        {"certfile /c.pem\nkeyfile /k.pem\nallow_anonymous true\nlistener 8883\n", 1,
         "certfile comes before the first listener line"},
        {"allow_anonymous true\nlistener 8883\ntls_version tlsv9\n", 3,
         "tls_version: expected tlsv1.2 or tlsv1.3, not 'tlsv9'"},
        {"allow_anonymous true\nlistener 8883\nrequire_certificate yes\n", 3,
         "require_certificate: expected true or false"},
        {"allow_anonymous true\nlistener 8883\ncertfile /a\ncertfile /b\n", 4,
         "'certfile' is already set at t.conf:3"},
        {"allow_anonymous true\nlistener 8883\nciphers A B\n", 3, "unexpected 'B'"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        const auto e = parse_error(r.text);
        CHECK(e.line == r.line);
        CHECK(e.message.find(r.message) != std::string::npos);
        CHECK_FALSE(e.unsupported);
    }
    // TLS 1.0 and 1.1 are valid Mosquitto values Tern refuses.
    const auto e = parse_error("allow_anonymous true\nlistener 8883\ntls_version tlsv1.1\n");
    CHECK(e.unsupported);
    CHECK(e.line == 3);
}

TEST_CASE("config tls: each listener block has its own TLS options") {
    const auto c = parse_ok(
        "allow_anonymous true\n"
        "listener 8883 127.0.0.1\ncertfile /a.pem\nkeyfile /a.key\n"
        "listener 8884 127.0.0.1\ncertfile /b.pem\nkeyfile /b.key\ncafile /ca\n"
        "require_certificate true\n");
    REQUIRE(c.listeners.size() == 2);
    CHECK(c.listeners[0].tls.certfile == "/a.pem");
    CHECK_FALSE(c.listeners[0].tls.require_certificate);
    CHECK(c.listeners[0].tls.cafile.empty());
    CHECK(c.listeners[1].tls.certfile == "/b.pem");
    CHECK(c.listeners[1].tls.require_certificate);
}
