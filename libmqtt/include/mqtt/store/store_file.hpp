#pragma once

// The store on disk: one file of framed records (record.hpp), a snapshot of the live state
// followed by the records appended since. Compaction writes a new snapshot to NAME.new,
// syncs it, renames it over NAME and syncs the directory, so a crash at any point leaves
// either the old file or the new one. A thin POSIX layer; the logic is in record/state.

#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "mqtt/result.hpp"
#include "mqtt/store/state.hpp"

namespace mqtt::store {

// What reading a store found.
struct load_report {
    bool existed = false;  // the file was there
    std::uint64_t file_bytes = 0;
    std::size_t records = 0;   // valid records that count (not those of a group cut short)
    std::size_t rejected = 0;  // valid records that did not fit the state (ignored)
    std::vector<damage> damaged;
    std::size_t read_peak = 0;  // load_file: the most file bytes held at once while reading
    bool clean() const noexcept { return damaged.empty() && rejected == 0; }
};

struct loaded {
    state st;
    load_report report;
};

// Replays the records of a file's bytes. Pure. With `times`, each message gets its receive
// time on that steady clock and its store id, ready to be shared with an engine (restore()
// then uses it as it is instead of copying it).
loaded load_bytes(std::span<const std::uint8_t> bytes, const clock_pair* times = nullptr);
// Reads and replays the file at `path`; a missing file is an empty store. The file is read
// `chunk` bytes at a time, never whole: a record larger than a chunk is the most held at once.
result<loaded> load_file(const std::string& path, const clock_pair* times = nullptr,
                         std::size_t chunk = std::size_t{1} << 20);

// The store report as JSON (tern-broker --check-store): one object, no newline.
std::string report_json(const std::string& path, const loaded& l);

class store_file {
  public:
    store_file() = default;
    store_file(store_file&& o) noexcept;
    store_file& operator=(store_file&& o) noexcept;
    ~store_file();

    // Writes `snapshot` as the new content of dir/name (atomically, synced) and opens it
    // for appending.
    static result<store_file> create(const std::string& dir, const std::string& name,
                                     std::span<const std::uint8_t> snapshot);
    // Opens the intact store dir/name for appending after its last record.
    static result<store_file> open_append(const std::string& dir, const std::string& name);
    // Replaces the content with `snapshot` the same way (compaction).
    std::error_code rewrite(std::span<const std::uint8_t> snapshot);
    std::error_code append(std::span<const std::uint8_t> bytes);
    std::error_code sync();  // fdatasync
    std::uint64_t size() const noexcept { return size_; }
    // The size right after the last rewrite.
    std::uint64_t snapshot_size() const noexcept { return snapshot_size_; }
    const std::string& path() const noexcept { return path_; }

  private:
    int fd_ = -1;
    std::string dir_;
    std::string path_;
    std::uint64_t size_ = 0;
    std::uint64_t snapshot_size_ = 0;
};

}  // namespace mqtt::store
