// The TLS options of a listener block, as mosquitto.conf(5) has them: a listener with
// certfile and keyfile speaks TLS; the others refine it and make no sense without them.
// Files are only named here; the net layer reads them when the broker starts (or on SIGHUP)
// and reports an unreadable one with the FILE:LINE kept in tls_server_settings.

#include <string>

#include "config_parser.hpp"

namespace mqtt::broker::detail {
namespace {

using username_source = net::tls_server_settings::username_source;

void remember(parse_state& st, std::string_view option) {
    st.current_listener().tls_lines.emplace_back(std::string{option}, st.here());
}

// A path as written: the rest of the line, so names with spaces work as in Mosquitto.
bool set_path(parse_state& st, std::string_view option, const option_args& a, std::string& path,
              std::string& origin) {
    path = std::string{a.rest};
    origin = st.here().to_string();
    remember(st, option);
    return true;
}

std::optional<bool> boolean(parse_state& st, std::string_view option, std::string_view text) {
    if (text == "true") return true;
    if (text == "false") return false;
    st.fail(std::string{option} + ": expected true or false, not '" + std::string{text} + "'");
    return std::nullopt;
}

bool set_username_source(parse_state& st, std::string_view option, const option_args& a,
                         username_source source) {
    const auto v = boolean(st, option, a.words[0]);
    if (!v) return false;
    auto& from = st.current_listener().tls.username_from;
    if (*v && from != username_source::none && from != source) {
        return st.fail(std::string{option} +
                       " true: the other of use_identity_as_username and "
                       "use_subject_as_username is already true in this listener");
    }
    if (*v) from = source;
    if (!*v && from == source) from = username_source::none;
    remember(st, option);
    return true;
}

const config_origin* line_of(const listener_config& l, std::string_view option) {
    for (const auto& [name, origin] : l.tls_lines) {
        if (name == option) return &origin;
    }
    return nullptr;
}

bool fail_at(parse_state& st, const config_origin& at, std::string message) {
    st.file = at.file;
    st.line = at.line;
    return st.fail(std::move(message));
}

}  // namespace

bool on_certfile(parse_state& st, const option_args& a) {
    auto& t = st.current_listener().tls;
    return set_path(st, "certfile", a, t.certfile, t.certfile_origin);
}

bool on_keyfile(parse_state& st, const option_args& a) {
    auto& t = st.current_listener().tls;
    return set_path(st, "keyfile", a, t.keyfile, t.keyfile_origin);
}

bool on_cafile(parse_state& st, const option_args& a) {
    auto& t = st.current_listener().tls;
    return set_path(st, "cafile", a, t.cafile, t.cafile_origin);
}

bool on_capath(parse_state& st, const option_args& a) {
    auto& t = st.current_listener().tls;
    return set_path(st, "capath", a, t.capath, t.capath_origin);
}

bool on_crlfile(parse_state& st, const option_args& a) {
    auto& t = st.current_listener().tls;
    return set_path(st, "crlfile", a, t.crlfile, t.crlfile_origin);
}

bool on_require_certificate(parse_state& st, const option_args& a) {
    const auto v = boolean(st, "require_certificate", a.words[0]);
    if (!v) return false;
    st.current_listener().tls.require_certificate = *v;
    remember(st, "require_certificate");
    return true;
}

bool on_use_identity_as_username(parse_state& st, const option_args& a) {
    return set_username_source(st, "use_identity_as_username", a, username_source::identity);
}

bool on_use_subject_as_username(parse_state& st, const option_args& a) {
    return set_username_source(st, "use_subject_as_username", a, username_source::subject);
}

bool on_tls_version(parse_state& st, const option_args& a) {
    const auto v = net::parse_tls_version(a.words[0]);
    if (!v) {
        if (a.words[0] == "tlsv1.1" || a.words[0] == "tlsv1") {
            return st.fail("tls_version " + std::string{a.words[0]} +
                               " is not supported (Tern accepts TLS 1.2 and 1.3 only)",
                           true);
        }
        return st.fail("tls_version: expected tlsv1.2 or tlsv1.3, not '" + std::string{a.words[0]} +
                       "'");
    }
    st.current_listener().tls.min_version = *v;
    remember(st, "tls_version");
    return true;
}

bool on_ciphers(parse_state& st, const option_args& a) {
    st.current_listener().tls.ciphers = std::string{a.words[0]};
    remember(st, "ciphers");
    return true;
}

bool on_ciphers_tls1_3(parse_state& st, const option_args& a) {
    st.current_listener().tls.ciphers_tls1_3 = std::string{a.words[0]};
    remember(st, "ciphers_tls1.3");
    return true;
}

bool check_listener_tls(parse_state& st, const listener_config& l) {
    if (l.tls_lines.empty()) return true;
    const auto* cert = line_of(l, "certfile");
    const auto* key = line_of(l, "keyfile");
    if (cert && !key) return fail_at(st, *cert, "certfile needs keyfile in the same listener");
    if (key && !cert) return fail_at(st, *key, "keyfile needs certfile in the same listener");
    if (!cert) {
        const auto& [name, at] = l.tls_lines.front();
        return fail_at(st, at,
                       name +
                           " has no effect: this listener has no certfile and keyfile, so it "
                           "does not speak TLS");
    }
    const bool trust = !l.tls.cafile.empty() || !l.tls.capath.empty();
    if (l.tls.require_certificate && !trust) {
        return fail_at(st, *line_of(l, "require_certificate"),
                       "require_certificate true needs cafile or capath (the CAs client "
                       "certificates must chain to)");
    }
    if (l.tls.username_from != net::tls_server_settings::username_source::none &&
        !l.tls.require_certificate) {
        const auto* at = line_of(l, "use_identity_as_username");
        if (!at) at = line_of(l, "use_subject_as_username");
        return fail_at(st, *at,
                       "use_identity_as_username and use_subject_as_username need "
                       "require_certificate true (without a certificate there is no name)");
    }
    if (!l.tls.crlfile.empty() && !l.tls.require_certificate) {
        return fail_at(st, *line_of(l, "crlfile"),
                       "crlfile has no effect without require_certificate true");
    }
    return true;
}

}  // namespace mqtt::broker::detail
