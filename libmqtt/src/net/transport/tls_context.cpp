// OpenSSL contexts from Tern's TLS settings, with errors that name the option and the file.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509err.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "net/transport/tls.hpp"

namespace mqtt::net {

namespace {

namespace ssl = asio::ssl;

// OpenSSL's queued errors as one line, emptying the queue.
std::string openssl_errors() {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        const char* r = ERR_reason_error_string(e);
        if (!out.empty()) out += "; ";
        out += r ? r : "error " + std::to_string(e);
    }
    return out.empty() ? "rejected by OpenSSL" : out;
}

std::string label(std::string_view option, const std::string& origin) {
    return origin.empty() ? std::string{option} : origin + ": " + std::string{option};
}

// A file (or directory) OpenSSL is about to read: a missing or unreadable one is named
// with the system's reason rather than OpenSSL's "system lib".
bool readable(const std::string& path, bool directory, std::string& why) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        why = std::strerror(errno);
        return false;
    }
    if (directory != S_ISDIR(st.st_mode)) {
        why = directory ? "not a directory" : "is a directory";
        return false;
    }
    if (!directory) {
        std::ifstream in{path, std::ios::binary};
        if (!in) {
            why = std::strerror(errno);
            return false;
        }
    }
    return true;
}

struct loader {
    ssl::context& ctx;
    std::string& error;

    bool fail(std::string_view option, const std::string& origin, const std::string& path,
              const std::string& why) {
        error = label(option, origin) + " " + path + ": " + why;
        return false;
    }
    bool check(std::string_view option, const std::string& origin, const std::string& path,
               bool directory = false) {
        std::string why;
        if (!readable(path, directory, why))
            return fail(option, origin, path, "cannot read: " + why);
        return true;
    }
    bool ok(int r, std::string_view option, const std::string& origin, const std::string& path) {
        if (r == 1) return true;
        return fail(option, origin, path, openssl_errors());
    }
};

bool set_min_version(ssl::context& ctx, tls_version v) {
    return SSL_CTX_set_min_proto_version(
               ctx.native_handle(), v == tls_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION) ==
           1;
}

bool load_trust(loader& l, const std::string& cafile, const std::string& cafile_origin,
                const std::string& capath, const std::string& capath_origin) {
    SSL_CTX* c = l.ctx.native_handle();
    if (!cafile.empty()) {
        if (!l.check("cafile", cafile_origin, cafile)) return false;
        if (!l.ok(SSL_CTX_load_verify_file(c, cafile.c_str()), "cafile", cafile_origin, cafile))
            return false;
    }
    if (!capath.empty()) {
        if (!l.check("capath", capath_origin, capath, true)) return false;
        if (!l.ok(SSL_CTX_load_verify_dir(c, capath.c_str()), "capath", capath_origin, capath))
            return false;
    }
    return true;
}

bool load_key_pair(loader& l, const std::string& cert, const std::string& cert_origin,
                   const std::string& key, const std::string& key_origin) {
    SSL_CTX* c = l.ctx.native_handle();
    if (!l.check("certfile", cert_origin, cert) || !l.check("keyfile", key_origin, key))
        return false;
    if (!l.ok(SSL_CTX_use_certificate_chain_file(c, cert.c_str()), "certfile", cert_origin, cert))
        return false;
    const bool key_loaded = SSL_CTX_use_PrivateKey_file(c, key.c_str(), SSL_FILETYPE_PEM) == 1;
    if (!key_loaded && ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
        return l.fail("keyfile", key_origin, key, openssl_errors());
    if (!key_loaded || SSL_CTX_check_private_key(c) != 1) {
        ERR_clear_error();
        return l.fail("keyfile", key_origin, key, "does not match the certificate of " + cert);
    }
    return true;
}

bool load_crl(loader& l, const std::string& path, const std::string& origin) {
    if (!l.check("crlfile", origin, path)) return false;
    X509_STORE* store = SSL_CTX_get_cert_store(l.ctx.native_handle());
    X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lookup || X509_load_crl_file(lookup, path.c_str(), X509_FILETYPE_PEM) <= 0) {
        return l.fail("crlfile", origin, path, openssl_errors());
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return true;
}

}  // namespace

tls_context_ptr make_server_context(const tls_server_settings& s, std::string& error) {
    ERR_clear_error();
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::single_dh_use |
                     ssl::context::no_compression);
    loader l{*ctx, error};
    if (!set_min_version(*ctx, s.min_version)) {
        error = "tls_version: " + openssl_errors();
        return nullptr;
    }
    if (!load_key_pair(l, s.certfile, s.certfile_origin, s.keyfile, s.keyfile_origin))
        return nullptr;
    if (!load_trust(l, s.cafile, s.cafile_origin, s.capath, s.capath_origin)) return nullptr;
    if (!s.crlfile.empty() && !load_crl(l, s.crlfile, s.crlfile_origin)) return nullptr;
    if (!s.ciphers.empty() &&
        SSL_CTX_set_cipher_list(ctx->native_handle(), s.ciphers.c_str()) != 1) {
        error = "ciphers " + s.ciphers + ": " + openssl_errors();
        return nullptr;
    }
    if (!s.ciphers_tls1_3.empty() &&
        SSL_CTX_set_ciphersuites(ctx->native_handle(), s.ciphers_tls1_3.c_str()) != 1) {
        error = "ciphers_tls1.3 " + s.ciphers_tls1_3 + ": " + openssl_errors();
        return nullptr;
    }
    // As Mosquitto: client certificates are asked for only with require_certificate.
    if (s.require_certificate) {
        SSL_CTX_set_verify(ctx->native_handle(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           nullptr);
    } else {
        SSL_CTX_set_verify(ctx->native_handle(), SSL_VERIFY_NONE, nullptr);
    }
    static const unsigned char session_context[] = "tern";
    SSL_CTX_set_session_id_context(ctx->native_handle(), session_context,
                                   sizeof session_context - 1);
    return ctx;
}

tls_context_ptr make_client_context(const tls_client_settings& s, std::string& error) {
    ERR_clear_error();
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    loader l{*ctx, error};
    if (!set_min_version(*ctx, s.min_version)) {
        error = "--tls-version: " + openssl_errors();
        return nullptr;
    }
    if (s.cafile.empty() && s.capath.empty()) {
        if (SSL_CTX_set_default_verify_paths(ctx->native_handle()) != 1) {
            error = "the system trust store: " + openssl_errors();
            return nullptr;
        }
    } else if (!load_trust(l, s.cafile, "", s.capath, "")) {
        return nullptr;
    }
    if (!s.certfile.empty() && !load_key_pair(l, s.certfile, "", s.keyfile, "")) return nullptr;
    SSL_CTX_set_verify(ctx->native_handle(), SSL_VERIFY_PEER, nullptr);
    return ctx;
}

}  // namespace mqtt::net
