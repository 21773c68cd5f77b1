// Mosquitto-compatible password hashes, through OpenSSL's libcrypto.

#include "mqtt/broker/password_file.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <limits>

namespace mqtt::broker {
namespace {

constexpr std::size_t salt_size = 12;
constexpr std::size_t hash_size = 64;  // SHA-512
constexpr std::string_view alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
    return s;
}

// Fields between '$' separators, empty ones skipped (as strtok does in Mosquitto).
std::vector<std::string_view> dollar_fields(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        const auto end = std::min(s.find('$', i), s.size());
        if (end > i) out.push_back(s.substr(i, end - i));
        i = end + 1;
    }
    return out;
}

using digest = std::array<std::uint8_t, hash_size>;

bool compute(const password_entry& e, std::string_view password, digest& out) {
    if (e.kind == password_hash::pbkdf2_sha512) {
        if (e.iterations == 0 ||
            e.iterations > static_cast<std::uint32_t>(std::numeric_limits<int>::max())) {
            return false;
        }
        return PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), e.salt.data(),
                                 static_cast<int>(e.salt.size()), static_cast<int>(e.iterations),
                                 EVP_sha512(), static_cast<int>(out.size()), out.data()) == 1;
    }
    // $6$: SHA-512(password || salt).
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (ctx == nullptr) return false;
    unsigned int len = 0;
    const bool ok = EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) == 1 &&
                    EVP_DigestUpdate(ctx, password.data(), password.size()) == 1 &&
                    EVP_DigestUpdate(ctx, e.salt.data(), e.salt.size()) == 1 &&
                    EVP_DigestFinal_ex(ctx, out.data(), &len) == 1 && len == out.size();
    EVP_MD_CTX_free(ctx);
    return ok;
}

// Hashed instead of an unknown user, so that a miss costs what a hit costs.
const password_entry& decoy() {
    static const password_entry e = [] {
        password_entry d;
        d.kind = password_hash::pbkdf2_sha512;
        d.iterations = default_password_iterations;
        d.salt.assign(salt_size, 0x5a);
        d.hash.assign(hash_size, 0);
        return d;
    }();
    return e;
}

}  // namespace

std::string base64_encode(const std::uint8_t* data, std::size_t size) {
    std::string out;
    out.reserve((size + 2) / 3 * 4);
    for (std::size_t i = 0; i < size; i += 3) {
        const std::uint32_t b0 = data[i];
        const std::uint32_t b1 = i + 1 < size ? data[i + 1] : 0;
        const std::uint32_t b2 = i + 2 < size ? data[i + 2] : 0;
        const std::uint32_t v = (b0 << 16) | (b1 << 8) | b2;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += i + 1 < size ? alphabet[(v >> 6) & 63] : '=';
        out += i + 2 < size ? alphabet[v & 63] : '=';
    }
    return out;
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    std::vector<std::uint8_t> out;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        std::uint32_t v = 0;
        int pad = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const char c = text[i + k];
            std::uint32_t d = 0;
            if (c == '=') {
                // Padding only at the very end, at most two.
                if (i + 4 != text.size() || k < 2) return std::nullopt;
                ++pad;
            } else {
                if (pad != 0) return std::nullopt;
                const auto pos = alphabet.find(c);
                if (pos == std::string_view::npos) return std::nullopt;
                d = static_cast<std::uint32_t>(pos);
            }
            v = (v << 6) | d;
        }
        out.push_back(static_cast<std::uint8_t>(v >> 16));
        if (pad < 2) out.push_back(static_cast<std::uint8_t>(v >> 8));
        if (pad < 1) out.push_back(static_cast<std::uint8_t>(v));
    }
    return out;
}

std::optional<password_entry> parse_password_hash(std::string_view text) {
    const auto f = dollar_fields(trim(text));
    password_entry e;
    std::size_t next = 1;
    if (f.size() == 3 && f[0] == "6") {
        e.kind = password_hash::sha512;
    } else if (f.size() == 4 && f[0] == "7") {
        e.kind = password_hash::pbkdf2_sha512;
        std::uint32_t n = 0;
        const auto [p, ec] = std::from_chars(f[1].data(), f[1].data() + f[1].size(), n);
        if (ec != std::errc{} || p != f[1].data() + f[1].size() || n < 1) return std::nullopt;
        e.iterations = n;
        next = 2;
    } else {
        return std::nullopt;
    }
    auto salt = base64_decode(f[next]);
    auto hash = base64_decode(f[next + 1]);
    if (!salt || salt->size() != salt_size || !hash || hash->size() != hash_size) {
        return std::nullopt;
    }
    e.salt = std::move(*salt);
    e.hash = std::move(*hash);
    return e;
}

bool verify_password(const password_entry& e, std::string_view password) {
    digest d{};
    if (!compute(e, password, d) || e.hash.size() != d.size()) return false;
    return CRYPTO_memcmp(d.data(), e.hash.data(), d.size()) == 0;
}

std::optional<std::string> make_password_hash(std::string_view password, std::uint32_t iterations) {
    password_entry e;
    e.kind = password_hash::pbkdf2_sha512;
    e.iterations = iterations;
    e.salt.resize(salt_size);
    if (RAND_bytes(e.salt.data(), static_cast<int>(e.salt.size())) != 1) return std::nullopt;
    digest d{};
    if (!compute(e, password, d)) return std::nullopt;
    return "$7$" + std::to_string(iterations) + "$" + base64_encode(e.salt.data(), e.salt.size()) +
           "$" + base64_encode(d.data(), d.size());
}

bool valid_password_user(std::string_view user) {
    // A line starting with '#' is a comment: such a user could never be read back.
    return !user.empty() && user.front() != '#' &&
           user.find_first_of(":\r\n") == std::string_view::npos && trim(user) == user;
}

std::string set_password_line(std::string_view text, std::string_view user, std::string_view hash,
                              bool* found) {
    std::string out;
    out.reserve(text.size() + user.size() + hash.size() + 2);
    bool seen = false;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto nl = std::min(text.find('\n', pos), text.size());
        const auto line = text.substr(pos, nl - pos);
        pos = nl + 1;
        const auto colon = line.find(':');
        const bool mine = !line.empty() && line.front() != '#' && colon != std::string_view::npos &&
                          trim(line.substr(0, colon)) == user;
        if (!mine) {
            out.append(line);
            out += '\n';
            continue;
        }
        if (!seen && !hash.empty()) {  // replaced where it was; a duplicate line goes
            out.append(user);
            out += ':';
            out.append(hash);
            out += '\n';
        }
        seen = true;
    }
    if (!seen && !hash.empty()) {
        out.append(user);
        out += ':';
        out.append(hash);
        out += '\n';
    }
    if (found) *found = seen;
    return out;
}

password_file password_file::parse(std::string_view text, std::string_view file,
                                   std::vector<std::string>* warnings) {
    password_file out;
    int line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto nl = std::min(text.find('\n', pos), text.size());
        const auto line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        if (line.empty() || line.front() == '#') continue;
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        const auto user = trim(line.substr(0, colon));
        auto rest = line.substr(colon + 1);
        rest = rest.substr(0, std::min(rest.find(':'), rest.size()));
        const auto warn = [&](std::string_view what) {
            if (warnings) {
                warnings->push_back(std::string{file} + ":" + std::to_string(line_no) + ": " +
                                    std::string{what} + ", line skipped");
            }
        };
        if (user.empty()) {
            warn("no user name");
            continue;
        }
        auto entry = parse_password_hash(rest);
        if (!entry) {
            warn("not a $6$ or $7$ password hash for user '" + std::string{user} + "'");
            continue;
        }
        out.users_.insert_or_assign(std::string{user}, std::move(*entry));
    }
    return out;
}

const password_entry* password_file::find(std::string_view user) const {
    const auto it = users_.find(std::string{user});
    return it == users_.end() ? nullptr : &it->second;
}

bool password_file::check(std::string_view user, std::string_view password) const {
    const password_entry* e = find(user);
    if (e == nullptr) {
        (void)verify_password(decoy(), password);
        return false;
    }
    return verify_password(*e, password);
}

}  // namespace mqtt::broker
