#pragma once

// Mosquitto's password_file: one "USER:HASH" line per user, where HASH is
//   $7$ITERATIONS$SALT$HASH  PBKDF2-HMAC-SHA512 (what mosquitto_passwd 2.x writes), or
//   $6$SALT$HASH             SHA-512 of the password followed by the salt (older files),
// SALT being 12 bytes and HASH 64 bytes, both in base64. Lines starting with '#' and lines
// without ':' are skipped; a line whose hash cannot be read is skipped with a warning, as
// Mosquitto does, so files that work there work here unchanged.
//
// Verification is deliberately slow ($7$) and must not run on an event loop: the broker
// engine only asks for it (session::take_auth_request) and a worker thread answers.
// password_file objects are immutable once parsed, so one can be shared with that thread.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mqtt::broker {

enum class password_hash : std::uint8_t { sha512 /* $6$ */, pbkdf2_sha512 /* $7$ */ };

struct password_entry {
    password_hash kind = password_hash::pbkdf2_sha512;
    std::uint32_t iterations = 0;  // $7$ only
    std::vector<std::uint8_t> salt;
    std::vector<std::uint8_t> hash;
};

// The iterations mosquitto_passwd 2.0 uses, and what `tern-broker passwd` writes.
inline constexpr std::uint32_t default_password_iterations = 101;

class password_file {
  public:
    // Parses the text of a password file; `file` names it in the warnings
    // ("FILE:LINE: ..."), one per skipped line.
    static password_file parse(std::string_view text, std::string_view file,
                               std::vector<std::string>* warnings = nullptr);

    const password_entry* find(std::string_view user) const;
    std::size_t size() const noexcept { return users_.size(); }

    // True when `user` is in the file and `password` is its password. The comparison is
    // constant-time; an unknown user costs as much as a known one (a hash is computed
    // anyway), so timing does not tell which users exist.
    bool check(std::string_view user, std::string_view password) const;

  private:
    std::unordered_map<std::string, password_entry> users_;
};

// Parses the part after "USER:"; nullopt when it is not a $6$ or $7$ hash Mosquitto reads.
std::optional<password_entry> parse_password_hash(std::string_view text);
// Whether `password` hashes to `e` (constant-time comparison of the digests).
bool verify_password(const password_entry& e, std::string_view password);
// A new "$7$ITERATIONS$SALT$HASH" with a random 12-byte salt, as mosquitto_passwd writes;
// nullopt when the random generator or the hash failed.
std::optional<std::string> make_password_hash(
    std::string_view password, std::uint32_t iterations = default_password_iterations);

// The text of a password file with `user`'s line set to "USER:HASH" (replaced in place, or
// appended) or, when `hash` is empty, removed. Every other line (comments, other users) is
// kept as it is. `found` (when given) tells whether the user had a line.
std::string set_password_line(std::string_view text, std::string_view user, std::string_view hash,
                              bool* found = nullptr);
// Whether `user` can be written to a password file and read back: not empty, no ':', no line
// break, no blanks around it, not starting with '#' (a comment line).
bool valid_password_user(std::string_view user);

// Base64 (RFC 4648, with padding), as in the hash fields.
std::string base64_encode(const std::uint8_t* data, std::size_t size);
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);

}  // namespace mqtt::broker
