#pragma once

// Who may connect and what they may do: allow_anonymous, the password file, the ACL file
// and the client id rules, as one immutable snapshot that the engine holds and a SIGHUP
// replaces whole.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/broker/acl_file.hpp"
#include "mqtt/broker/password_file.hpp"

namespace mqtt::broker {

struct config;
struct listener_config;

// The prefix of the client ids the broker assigns unless auto_id_prefix says otherwise.
inline constexpr std::string_view default_auto_id_prefix = "tern-";

struct security_policy {
    bool allow_anonymous = true;
    std::shared_ptr<const password_file> passwords;  // nullptr: no password_file
    std::shared_ptr<const acl_file> acl;             // nullptr: no acl_file (all allowed)
    // allow_zero_length_clientid false: an empty client id is refused (3.1.1 CONNACK 2, 5.0
    // 0x85) instead of being given one made of auto_id_prefix and 16 random hex digits.
    bool allow_zero_length_clientid = true;
    std::string auto_id_prefix{default_auto_id_prefix};
    // The options Mosquitto always sets per listener (whatever per_listener_settings says),
    // kept here so that a listener with any of them has a policy slot of its own:
    // use_username_as_clientid replaces the client id with the user name (a client without
    // one is refused: 3.1.1 CONNACK 5, 5.0 0x87).
    bool use_username_as_clientid = false;
    // max_qos: the highest QoS clients may publish (and Will) at, and that SUBSCRIBE grants;
    // told to 5.0 clients in CONNACK (Maximum QoS). A PUBLISH above it: 5.0 DISCONNECT 0x9B,
    // 3.1.1 closed.
    std::uint8_t max_qos = 2;
    // max_topic_alias of the listener (nullopt: limits::max_topic_alias).
    std::optional<std::uint16_t> max_topic_alias;
    // May publish under $SYS: only tern-broker's own bridges (their state topic), which come
    // from the broker's configuration; clients never.
    bool publish_sys = false;
};

// A CONNECT with a user name and a password_file: the password is checked off the event
// loop (session::take_auth_request), and the answer comes back by session::on_auth_result.
struct auth_request {
    std::shared_ptr<const password_file> passwords;
    std::string username;
    std::string password;
};

struct security_result {
    std::shared_ptr<const security_policy> value;  // nullptr on error
    std::string error;                             // "FILE:LINE: ..." or "FILE: ..."
    std::vector<std::string> warnings;             // password file lines skipped
};

// Reads the config's password_file and acl_file from the file system.
security_result load_security(const config& c);
// With per_listener_settings true: the policy of listener `l` (its allow_anonymous,
// password_file, acl_file, allow_zero_length_clientid and auto_id_prefix); otherwise the
// same as load_security(c).
security_result load_security(const config& c, const listener_config& l);

// Whether listener `l` sets an option that is always per listener (use_username_as_clientid,
// max_qos, max_topic_alias):
// its clients then need a policy slot of their own even without per_listener_settings.
bool has_listener_options(const listener_config& l) noexcept;
// Whether the listeners of `c` have policy slots of their own: per_listener_settings, or a
// listener with has_listener_options().
bool needs_listener_slots(const config& c) noexcept;
// The broker's policy `base` with listener `l`'s own options (sharing its files).
std::shared_ptr<const security_policy> with_listener_options(const security_policy& base,
                                                             const listener_config& l);

}  // namespace mqtt::broker
