// password_file: Mosquitto's hashes, verified against lines mosquitto_passwd wrote.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "mqtt/broker/password_file.hpp"

namespace {

using namespace mqtt::broker;

// Written by mosquitto_passwd 2.0.11:
//   mosquitto_passwd -c -b fx alice secret
//   mosquitto_passwd -b fx bob 'pä ss:wörd'
//   mosquitto_passwd -H sha512 -b fx carol s3cr3t      ($6$, the Mosquitto 1.x format)
//   mosquitto_passwd -b fx dave ''
constexpr std::string_view mosquitto_file =
    "alice:$7$101$JnSFotr6Ac0SFNFD$Ykix6gcqBF0qUuLFfR8Ka81etbk1PVDQ17JhXPaZDyAzSAbxVgz+"
    "zWeCwQpWMy1AjvQ56/wHvAXLuWQUmkfnvg==\n"
    "bob:$7$101$XahwBZQn6oNXSM8a$YOjDcJFk8OWVYBqVQfhqf5vvseQBOdewrsR4D7MOTj65tPchZQYivQcZ2RGlw1Tl4"
    "NjBM6XOFmReJ9a97AiLUA==\n"
    "carol:$6$XA+W9H4zQegiYar2$BblNfXnvEXkKaDlFSBKvyGXS8s9g3CQIno6jCRqWQgcgdYyjeBGPoo13hyky7PpMFP"
    "CaOFLd17tSboEn4jox4g==\n"
    "dave:$7$101$w5uR6MeMcDQyq8hI$FUIwDYUGAkoBkdF4jjPQljmrKDHi3s6K8o7QEjut7i+Kc3DDjTHyXt6u/"
    "iNZEZCwW+NP5yQ66y7Qb+pia8nwcQ==\n";

}  // namespace

TEST_CASE("password_file: hashes written by mosquitto_passwd verify") {
    std::vector<std::string> warnings;
    const auto f = password_file::parse(mosquitto_file, "pw", &warnings);
    CHECK(warnings.empty());
    CHECK(f.size() == 4);
    REQUIRE(f.find("alice") != nullptr);
    CHECK(f.find("alice")->kind == password_hash::pbkdf2_sha512);
    CHECK(f.find("alice")->iterations == 101);
    CHECK(f.find("carol")->kind == password_hash::sha512);
    CHECK(f.check("alice", "secret"));
    CHECK(f.check("bob", "pä ss:wörd"));
    CHECK(f.check("carol", "s3cr3t"));
    CHECK(f.check("dave", ""));
    CHECK_FALSE(f.check("alice", "Secret"));
    CHECK_FALSE(f.check("alice", "secret "));
    CHECK_FALSE(f.check("alice", ""));
    CHECK_FALSE(f.check("carol", "s3cr3"));
    CHECK_FALSE(f.check("dave", "x"));
    CHECK_FALSE(f.check("mallory", "secret"));  // unknown user
    CHECK_FALSE(f.check("Alice", "secret"));    // user names are case-sensitive
}

TEST_CASE("password_file: lines Mosquitto skips are skipped, with FILE:LINE warnings") {
    std::vector<std::string> warnings;
    const std::string text = std::string{"# comment\n\nno colon here\n"} +
                             "eve:$8$abc$def\n"
                             "frank:plaintext\n"
                             "gina:$7$0$JnSFotr6Ac0SFNFD$Ykix\n"
                             "  " +
                             std::string{mosquitto_file.substr(0, mosquitto_file.find('\n'))} +
                             "  \r\n";
    const auto f = password_file::parse(text, "pw", &warnings);
    CHECK(f.size() == 1);
    CHECK(f.check("alice", "secret"));  // blanks around the user name and hash are trimmed
    REQUIRE(warnings.size() == 3);
    CHECK(warnings[0] == "pw:4: not a $6$ or $7$ password hash for user 'eve', line skipped");
    CHECK(warnings[1].find("pw:5:") == 0);
    CHECK(warnings[2].find("pw:6:") == 0);
}

TEST_CASE("password_file: make_password_hash writes what mosquitto_passwd writes") {
    const auto h = make_password_hash("correct horse", 101);
    REQUIRE(h.has_value());
    CHECK(h->substr(0, 7) == "$7$101$");
    const auto e = parse_password_hash(*h);
    REQUIRE(e.has_value());
    CHECK(e->salt.size() == 12);
    CHECK(e->hash.size() == 64);
    CHECK(verify_password(*e, "correct horse"));
    CHECK_FALSE(verify_password(*e, "correct horse "));
    // Another salt each time.
    CHECK(make_password_hash("correct horse", 101) != h);
    // Other iteration counts are honoured.
    const auto slow = make_password_hash("x", 1000);
    REQUIRE(slow.has_value());
    const auto es = parse_password_hash(*slow);
    REQUIRE(es.has_value());
    CHECK(es->iterations == 1000);
    CHECK(verify_password(*es, "x"));
}

TEST_CASE("password_file: base64") {
    const std::vector<std::uint8_t> data{0x00, 0xff, 0x10, 0x20, 0x30};
    for (std::size_t n = 0; n <= data.size(); ++n) {
        const auto text = base64_encode(data.data(), n);
        CHECK(text.size() % 4 == 0);
        const auto back = base64_decode(text);
        REQUIRE(back.has_value());
        CHECK(*back == std::vector<std::uint8_t>(data.begin(), data.begin() + n));
    }
    CHECK(base64_encode(reinterpret_cast<const std::uint8_t*>("Man"), 3) == "TWFu");
    CHECK_FALSE(base64_decode("TWF").has_value());
    CHECK_FALSE(base64_decode("TW=u").has_value());
    CHECK_FALSE(base64_decode("T!Fu").has_value());
}

TEST_CASE("password_file: set_password_line replaces, appends and removes one user's line") {
    const std::string text = "# users\nalice:$7$old\nbob:$7$b\n";
    bool found = false;
    CHECK(set_password_line(text, "alice", "$7$new", &found) ==
          "# users\nalice:$7$new\nbob:$7$b\n");
    CHECK(found);
    CHECK(set_password_line(text, "carol", "$7$c", &found) == text + "carol:$7$c\n");
    CHECK_FALSE(found);
    CHECK(set_password_line(text, "alice", "", &found) == "# users\nbob:$7$b\n");
    CHECK(found);
    CHECK(set_password_line(text, "dave", "", &found) == text);
    CHECK_FALSE(found);
    CHECK(set_password_line("", "a", "$7$x") == "a:$7$x\n");
    CHECK(set_password_line("x:1", "a", "$7$x") == "x:1\na:$7$x\n");  // a last line without \n
    CHECK(valid_password_user("alice"));
    CHECK_FALSE(valid_password_user(""));
    CHECK_FALSE(valid_password_user("a:b"));
    CHECK_FALSE(valid_password_user(" a"));
    // Written as "#a:HASH" the line would be a comment: the user could never log in.
    CHECK_FALSE(valid_password_user("#a"));
    CHECK(valid_password_user("a#"));
}
