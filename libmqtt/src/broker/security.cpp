// Reading password_file and acl_file into a security_policy, with allow_anonymous and the
// client id rules (at start and on SIGHUP).

#include "mqtt/broker/security.hpp"

#include <algorithm>

#include "mqtt/broker/config.hpp"

namespace mqtt::broker {

namespace {

security_result load_policy(security_policy base, const std::string& password_path,
                            const config_origin& password_origin, const std::string& acl_path,
                            const config_origin& acl_origin) {
    security_result r;
    auto p = std::make_shared<security_policy>(std::move(base));
    const auto source = filesystem_source();
    std::string why;
    if (!password_path.empty()) {
        const auto text = source.read_file(password_path, why);
        if (!text) {
            r.error = password_origin.to_string() + ": password_file " + password_path + ": " + why;
            return r;
        }
        p->passwords = std::make_shared<const password_file>(
            password_file::parse(*text, password_path, &r.warnings));
    }
    if (!acl_path.empty()) {
        const auto text = source.read_file(acl_path, why);
        if (!text) {
            r.error = acl_origin.to_string() + ": acl_file " + acl_path + ": " + why;
            return r;
        }
        auto parsed = acl_file::parse(*text, acl_path);
        if (!parsed.value) {
            r.error = parsed.error;
            return r;
        }
        p->acl = std::make_shared<const acl_file>(std::move(*parsed.value));
    }
    r.value = std::move(p);
    return r;
}

void apply_listener_options(security_policy& p, const listener_config& l) {
    p.use_username_as_clientid = l.use_username_as_clientid;
    if (l.max_qos) p.max_qos = *l.max_qos;
    if (l.max_topic_alias) p.max_topic_alias = l.max_topic_alias;
}

}  // namespace

security_result load_security(const config& c) {
    security_policy base;
    base.allow_anonymous = c.allow_anonymous;
    base.allow_zero_length_clientid = c.allow_zero_length_clientid;
    base.auto_id_prefix = c.auto_id_prefix;
    base.max_qos = c.max_qos;
    return load_policy(std::move(base), c.password_file, c.password_file_origin, c.acl_file,
                       c.acl_file_origin);
}

bool has_listener_options(const listener_config& l) noexcept {
    return l.use_username_as_clientid || l.max_qos || l.max_topic_alias;
}

bool needs_listener_slots(const config& c) noexcept {
    return c.per_listener_settings ||
           std::any_of(c.listeners.begin(), c.listeners.end(),
                       [](const listener_config& l) { return has_listener_options(l); });
}

std::shared_ptr<const security_policy> with_listener_options(const security_policy& base,
                                                             const listener_config& l) {
    auto p = std::make_shared<security_policy>(base);
    apply_listener_options(*p, l);
    return p;
}

security_result load_security(const config& c, const listener_config& l) {
    if (!c.per_listener_settings) {
        auto r = load_security(c);
        if (r.value) r.value = with_listener_options(*r.value, l);
        return r;
    }
    security_policy base;
    base.max_qos = c.max_qos;
    apply_listener_options(base, l);
    base.allow_anonymous = l.allow_anonymous.value_or(false);
    base.allow_zero_length_clientid = l.allow_zero_length_clientid.value_or(true);
    base.auto_id_prefix = l.auto_id_prefix.value_or(std::string{default_auto_id_prefix});
    return load_policy(std::move(base), l.password_file, l.password_file_origin, l.acl_file,
                       l.acl_file_origin);
}

}  // namespace mqtt::broker
