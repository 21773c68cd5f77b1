#pragma once

// A directory of its own under the system's temporary directory for one test, removed with
// everything in it when the test ends.

#include <doctest/doctest.h>

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace tern_test {

struct temp_dir {
    std::string path;
    explicit temp_dir(const std::string& prefix = "tern-test") {
        std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return path + "/" + name; }
    bool has(const std::string& name) const { return std::filesystem::exists(file(name)); }
};

}  // namespace tern_test
