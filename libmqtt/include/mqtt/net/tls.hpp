#pragma once

// TLS settings of a broker listener and of a client connection, free of Asio and OpenSSL so
// that configuration code and front ends can fill them in without those headers. The net
// layer turns them into OpenSSL contexts (net/transport/tls_context.cpp).

#include <optional>
#include <string>
#include <string_view>

namespace mqtt::net {

enum class tls_version { tls1_2, tls1_3 };

// "tlsv1.2" / "tlsv1.3" (Mosquitto's spelling); nullopt for anything else.
inline std::optional<tls_version> parse_tls_version(std::string_view name) {
    if (name == "tlsv1.2") return tls_version::tls1_2;
    if (name == "tlsv1.3") return tls_version::tls1_3;
    return std::nullopt;
}
inline const char* to_string(tls_version v) {
    return v == tls_version::tls1_3 ? "tlsv1.3" : "tlsv1.2";
}

// What a broker listener with certfile and keyfile uses (mosquitto.conf's listener options).
struct tls_server_settings {
    std::string certfile;  // PEM chain, server certificate first
    std::string keyfile;   // PEM private key (not encrypted)
    std::string cafile;    // CAs that client certificates must chain to
    std::string capath;    // a directory of hashed CA files (c_rehash), the same role
    std::string crlfile;   // PEM certificate revocation list checked on client certificates
    bool require_certificate = false;
    // Which part of the client certificate becomes the user name: none, the subject's
    // commonName (use_identity_as_username) or the whole subject (use_subject_as_username,
    // RFC 2253 form as Mosquitto prints it).
    enum class username_source { none, identity, subject } username_from = username_source::none;
    tls_version min_version = tls_version::tls1_2;
    std::string ciphers;         // OpenSSL cipher list for TLS 1.2; empty: OpenSSL's default
    std::string ciphers_tls1_3;  // TLS 1.3 cipher suites; empty: OpenSSL's default
    // For error messages: "FILE:LINE" of each file option, so a bad file is named where it
    // was written. Empty: "certfile", "keyfile", ... alone.
    std::string certfile_origin, keyfile_origin, cafile_origin, capath_origin, crlfile_origin;
};

// What a client uses towards a broker.
struct tls_client_settings {
    std::string cafile;  // empty, with capath empty too: the system trust store
    std::string capath;
    std::string certfile;  // client certificate (mutual TLS), with keyfile
    std::string keyfile;
    bool insecure = false;  // do not check that the certificate names the host
    tls_version min_version = tls_version::tls1_2;
    // The name sent as SNI and checked against the certificate; empty: the host connected to.
    std::string server_name;
    bool operator==(const tls_client_settings&) const = default;
};

}  // namespace mqtt::net
