#pragma once

// The store on disk: one file of framed records (record.hpp), a snapshot of the live state
// followed by the records appended since. Compaction writes a new snapshot to NAME.new (a
// piece at a time: never the whole of it in memory), syncs it, renames it over NAME and
// syncs the directory, so a crash at any point leaves either the old file or the new one. A
// thin POSIX layer; the logic is in record/state.

#include <cstddef>
#include <cstdint>
#include <functional>
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
    std::uint64_t data_end = 0;  // where the records end (the rest is zeros: room made ahead)
    std::size_t records = 0;     // valid records that count (not those of a group cut short)
    std::size_t rejected = 0;    // valid records that did not fit the state (ignored)
    std::vector<damage> damaged;
    std::size_t read_peak = 0;  // load_file: the most bytes held (or room made) at once
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

// The new content of a store file on its way to NAME.new (compaction), written a piece at a
// time; store_file::replace() syncs it and renames it over NAME. Dropped before that, the
// temporary file is removed.
class replacement {
  public:
    replacement() = default;
    replacement(replacement&& o) noexcept;
    replacement& operator=(replacement&& o) noexcept;
    ~replacement();

    std::error_code write(std::span<const std::uint8_t> bytes);
    // Syncs and closes NAME.new and leaves it there, not renamed (commit_store_set renames
    // it once every file of its set is written).
    std::error_code keep();
    std::uint64_t size() const noexcept { return size_; }
    bool is_open() const noexcept { return fd_ >= 0; }

  private:
    friend class store_file;
    void discard() noexcept;
    int fd_ = -1;
    std::string tmp_;
    std::uint64_t size_ = 0;
};

// Produces a file's content a piece at a time into the sink it is given (for example
// recorder::write_snapshot); its error, or the sink's, stops the writing.
using content_writer = std::function<std::error_code(const byte_sink&)>;

class store_file {
  public:
    store_file() = default;
    store_file(store_file&& o) noexcept;
    store_file& operator=(store_file&& o) noexcept;
    ~store_file();

    // Writes what `content` produces as the new content of dir/name (atomically, synced)
    // and opens it for appending.
    static result<store_file> create(const std::string& dir, const std::string& name,
                                     const content_writer& content);
    // Opens the intact store dir/name for appending at `data_end`, the end of its last
    // record (load_report::data_end; zeros follow it up to the file's size).
    static result<store_file> open_append(const std::string& dir, const std::string& name,
                                          std::uint64_t data_end);
    // A store dir/name not written yet (its first write found no room): appends fail until
    // rewrite() has written it; whatever file is there stays as it was until then.
    static store_file unopened(const std::string& dir, const std::string& name);
    // Replaces the content with what `content` produces, the same way (compaction):
    // begin_rewrite, the writes, replace.
    std::error_code rewrite(const content_writer& content);
    // The same in steps, so that the slow part (fsync) can run on another thread than the
    // one producing the content: opens NAME.new, empty.
    result<replacement> begin_rewrite() const;
    // Syncs `r`, renames it over NAME, syncs the directory; appends then go after it. On
    // an error the file stays as it was and `r` is removed.
    std::error_code replace(replacement r);
    // Writes `bytes` after the last record. The file is made larger ahead of the records,
    // prealloc_step bytes of zeros at a time, so that the fdatasync of an append overwrites
    // blocks that exist and leaves the size alone: no metadata to journal, about half the
    // time of a sync that grows the file (docs/persistence.md).
    std::error_code append(std::span<const std::uint8_t> bytes);
    std::error_code sync();  // fdatasync
    // The end of the records (the file's size on disk is allocated(), zeros after size()).
    std::uint64_t size() const noexcept { return size_; }
    std::uint64_t allocated() const noexcept { return allocated_; }
    static constexpr std::uint64_t prealloc_step = std::uint64_t{1} << 20;
    // The size right after the last rewrite.
    std::uint64_t snapshot_size() const noexcept { return snapshot_size_; }
    const std::string& path() const noexcept { return path_; }

  private:
    void preallocate(std::uint64_t need);

    int fd_ = -1;
    std::string dir_;
    std::string path_;
    std::uint64_t size_ = 0;
    std::uint64_t allocated_ = 0;
    std::uint64_t no_room_below_ = 0;  // making room failed: not tried again below this size
    std::uint64_t snapshot_size_ = 0;
};

// ---- several store files replaced together (a start with another number of threads)
//
// Every new file is written to NAME.new and synced; then FILE.commit, naming the new files
// and the files to remove, is written (under a temporary name, synced and renamed: it is
// there whole or not at all); then the renames over the old files and the removals; then
// FILE.commit is removed. A start calls finish_store_set() before reading any store file:
// with FILE.commit there it does the renames and removals again (those done already are
// skipped) and removes it; without, every old file is as it was. So a crash at any point
// leaves either the whole old set or the whole new one, never some of each.

struct store_set_file {
    std::string name;  // in the directory; no '/' or newline
    content_writer content;
};

struct store_set {
    std::vector<store_set_file> files;
    std::vector<std::string> remove;  // names of files that are not part of the new set
};

// What committing or finishing a set did.
struct store_set_report {
    bool found = false;                    // finish_store_set: there was a FILE.commit
    bool damaged = false;                  // ... that could not be read (kept as .damaged)
    std::size_t renamed = 0;               // new files renamed into place
    std::size_t removed = 0;               // old files removed
    std::vector<std::string> not_removed;  // "NAME (reason)", left behind
};

// The name of the commit file of the store `file`.
std::string store_set_commit_name(const std::string& file);

// Replaces the files of `set` in `dir` as above. `stop_after` (tests: a crash there) stops
// after that many steps: each new file written, the commit file, each rename, each
// removal, the commit file removed. An error before the commit file is written leaves the
// old set (and removes what it wrote); one after it leaves the commit file for the next
// start to finish.
result<store_set_report> commit_store_set(const std::string& dir, const std::string& file,
                                          const store_set& set, std::size_t stop_after = SIZE_MAX);

// Finishes a commit a start stopped in (see above); nothing to do without a commit file.
// A commit file that cannot be read is renamed to FILE.commit.damaged and the files are
// left as they are (reported: damaged).
result<store_set_report> finish_store_set(const std::string& dir, const std::string& file,
                                          std::size_t stop_after = SIZE_MAX);

}  // namespace mqtt::store
