// Reading password_file and acl_file into a security_policy (at start and on SIGHUP).

#include "mqtt/broker/security.hpp"

#include "mqtt/broker/config.hpp"

namespace mqtt::broker {

security_result load_security(const config& c) {
    security_result r;
    auto p = std::make_shared<security_policy>();
    p->allow_anonymous = c.allow_anonymous;
    const auto source = filesystem_source();
    std::string why;
    if (!c.password_file.empty()) {
        const auto text = source.read_file(c.password_file, why);
        if (!text) {
            r.error = c.password_file_origin.to_string() + ": password_file " + c.password_file +
                      ": " + why;
            return r;
        }
        p->passwords = std::make_shared<const password_file>(
            password_file::parse(*text, c.password_file, &r.warnings));
    }
    if (!c.acl_file.empty()) {
        const auto text = source.read_file(c.acl_file, why);
        if (!text) {
            r.error = c.acl_file_origin.to_string() + ": acl_file " + c.acl_file + ": " + why;
            return r;
        }
        auto parsed = acl_file::parse(*text, c.acl_file);
        if (!parsed.value) {
            r.error = parsed.error;
            return r;
        }
        p->acl = std::make_shared<const acl_file>(std::move(*parsed.value));
    }
    r.value = std::move(p);
    return r;
}

}  // namespace mqtt::broker
