#include "passwd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "mqtt/broker/password_file.hpp"
#include "mqtt/cli/options.hpp"

namespace tern_broker {
namespace {

constexpr const char* passwd_examples =
    "  tern-broker passwd -c /etc/tern/passwd alice        a new file with alice (asks twice)\n"
    "  tern-broker passwd /etc/tern/passwd bob             add bob, or change his password\n"
    "  printf 's3cret\\n' | tern-broker passwd --stdin pw carol   the password from a pipe\n"
    "  tern-broker passwd -D /etc/tern/passwd bob          remove bob\n";

constexpr std::size_t max_password = 65535;  // an MQTT password field holds no more

int fail(const std::string& why) {
    std::cerr << "tern-broker passwd: " << why << '\n';
    return static_cast<int>(mqtt::cli::exit_status::failure);
}

std::string chomp(std::string s) {
    if (!s.empty() && s.back() == '\n') s.pop_back();
    if (!s.empty() && s.back() == '\r') s.pop_back();
    return s;
}

// One line from the terminal on standard input, not echoed.
std::optional<std::string> read_hidden(const char* prompt) {
    termios old{};
    if (tcgetattr(STDIN_FILENO, &old) != 0) return std::nullopt;
    termios quiet = old;
    quiet.c_lflag &= static_cast<tcflag_t>(~ECHO);
    quiet.c_lflag |= ECHONL;
    // Echo off before the prompt shows, so that nothing typed after it is echoed or lost.
    if (tcsetattr(STDIN_FILENO, TCSANOW, &quiet) != 0) return std::nullopt;
    std::cerr << prompt << std::flush;
    std::string line;
    const bool ok = static_cast<bool>(std::getline(std::cin, line));
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    if (!ok) return std::nullopt;
    return chomp(line);
}

std::optional<std::string> read_password(const passwd_options& o, std::string& why) {
    if (o.from_stdin) {
        std::string line;
        if (!std::getline(std::cin, line) && line.empty()) {
            why = "no password on standard input";
            return std::nullopt;
        }
        return chomp(line);
    }
    if (isatty(STDIN_FILENO) == 0) {
        why = "standard input is not a terminal: give the password on it with --stdin";
        return std::nullopt;
    }
    auto first = read_hidden("Password: ");
    auto second = first ? read_hidden("Reenter password: ") : std::nullopt;
    if (!first || !second) {
        why = "cannot read the password from the terminal";
        return std::nullopt;
    }
    if (*first != *second) {
        why = "the passwords do not match";
        return std::nullopt;
    }
    return first;
}

std::optional<std::string> read_file(const std::string& path, std::string& why) {
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        why = "cannot read " + path + ": " + std::strerror(errno);
        return std::nullopt;
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// Writes next to the file and renames over it, so a reader sees the old or the new file,
// never half of one. A new file is readable by its owner only; an existing one keeps its mode.
bool replace_file(const std::string& path, const std::string& text, std::string& why) {
    mode_t mode = 0600;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) mode = st.st_mode & 07777;
    const std::string tmp = path + ".tmp" + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        why = "cannot write " + tmp + ": " + std::strerror(errno);
        return false;
    }
    std::size_t done = 0;
    while (done < text.size()) {
        const auto n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    const bool ok = done == text.size() && ::fchmod(fd, mode) == 0 && ::fsync(fd) == 0;
    const int saved = errno;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        why = "cannot write " + path + ": " + std::strerror(ok ? errno : saved);
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

}  // namespace

CLI::App* add_passwd_command(CLI::App& app, passwd_options& o) {
    auto* cmd = app.add_subcommand("passwd", "Set or delete a user's password in a password_file");
    cmd->set_help_flag("--help", "Print this help and exit");
    cmd->add_flag("-c,--create", o.create,
                  "Create FILE with USER as its only user (an existing FILE is replaced)");
    cmd->add_flag("-D,--delete", o.remove, "Delete USER's line instead of setting a password")
        ->excludes("--create");
    cmd->add_flag("--stdin", o.from_stdin,
                  "Read the password from one line of standard input instead of asking twice on "
                  "the terminal without echo")
        ->excludes("--delete");
    cmd->add_option("FILE", o.file, "The password file")->required()->type_name("FILE");
    cmd->add_option("USER", o.user, "The user name (no ':', not starting with '#')")
        ->required()
        ->type_name("USER");
    cmd->footer(
        "The line is written in the $7$ format (PBKDF2-HMAC-SHA512, 101 iterations, a random "
        "salt) that mosquitto_passwd writes, so Mosquitto reads the file too.\n\n"
        "Examples:\n" +
        std::string{passwd_examples} + "\n" + mqtt::cli::exit_status_help());
    return cmd;
}

int run_passwd(const passwd_options& o) {
    if (!mqtt::broker::valid_password_user(o.user)) {
        std::cerr << "tern-broker passwd: invalid user name '" << o.user
                  << "' (empty, blanks around it, a ':', or a '#' first)\n";
        return static_cast<int>(mqtt::cli::exit_status::usage);
    }
    std::string why;
    std::string text;
    if (!o.create) {
        auto current = read_file(o.file, why);
        if (!current) return fail(why + (o.remove ? "" : " (-c creates a new file)"));
        text = std::move(*current);
    }
    std::string hash;
    if (!o.remove) {
        const auto password = read_password(o, why);
        if (!password) return fail(why);
        if (password->size() > max_password) return fail("the password is over 65535 bytes");
        auto made = mqtt::broker::make_password_hash(*password);
        if (!made) return fail("cannot hash the password (OpenSSL failed)");
        hash = std::move(*made);
    }
    bool found = false;
    const auto next = mqtt::broker::set_password_line(text, o.user, hash, &found);
    if (o.remove && !found) return fail("user '" + o.user + "' is not in " + o.file);
    if (!replace_file(o.file, next, why)) return fail(why);
    return static_cast<int>(mqtt::cli::exit_status::ok);
}

}  // namespace tern_broker
