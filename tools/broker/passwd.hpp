#pragma once

// `tern-broker passwd [-c|-D] [--stdin] FILE USER`: writes USER's line of a password_file in
// the $7$ format mosquitto_passwd writes.

#include <string>

namespace CLI {
class App;
}

namespace tern_broker {

struct passwd_options {
    std::string file;
    std::string user;
    bool create = false;      // -c: a new file (an existing one is replaced)
    bool remove = false;      // -D: delete the user's line
    bool from_stdin = false;  // --stdin: one line of standard input is the password
};

// Adds the subcommand to `app`; returns it so main() can tell whether it was given.
CLI::App* add_passwd_command(CLI::App& app, passwd_options& o);
// Runs it; the exit status (0, 1 failure, 2 usage).
int run_passwd(const passwd_options& o);

}  // namespace tern_broker
