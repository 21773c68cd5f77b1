#include "mqtt/store/store_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "mqtt/format/json_string.hpp"

namespace mqtt::store {
namespace {

std::error_code last_error() {
    return {errno, std::generic_category()};
}

std::error_code write_all(int fd, std::span<const std::uint8_t> bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return last_error();
        }
        bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    return {};
}

// pwrite() of all of `bytes` at `at`.
std::error_code write_all_at(int fd, std::span<const std::uint8_t> bytes, std::uint64_t at) {
    while (!bytes.empty()) {
        const ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(at));
        if (n < 0) {
            if (errno == EINTR) continue;
            return last_error();
        }
        bytes = bytes.subspan(static_cast<std::size_t>(n));
        at += static_cast<std::uint64_t>(n);
    }
    return {};
}

std::error_code sync_dir(const std::string& dir) {
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return last_error();
    const int rc = ::fsync(fd);
    const auto ec = rc == 0 ? std::error_code{} : last_error();
    ::close(fd);
    return ec;
}

std::string join(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace

namespace {

// Replays records into a state by groups (see commit_record): shared by load_bytes and
// load_file.
struct replayer {
    const clock_pair* times = nullptr;
    loaded l;
    std::vector<record> group;  // records waiting for the commit record of their group
    std::uint64_t group_at = 0;
    bool commits = false;

    void apply_group() {
        for (const auto& r : group) l.st.apply(r);
        l.report.records += group.size();
        group.clear();
    }
    void on_record(std::uint64_t at, record r) {
        if (std::holds_alternative<commit_record>(r)) {
            commits = true;
            ++l.report.records;
            apply_group();
            return;
        }
        if (auto* m = std::get_if<message_record>(&r); m != nullptr && times != nullptr) {
            // Decoded just now and owned by this record alone: set the fields that belong
            // to this run before anything shares it.
            auto msg = std::const_pointer_cast<broker::message>(m->msg);
            msg->received = times->to_steady(m->received_ms);
            msg->store_id = m->id;
        }
        if (!commits) {
            // No commit record yet: a file written before they existed (a file written since
            // starts with its header and one), read record by record, holding nothing back.
            l.st.apply(r);
            ++l.report.records;
            return;
        }
        if (group.empty()) group_at = at;
        group.push_back(std::move(r));
    }
    loaded finish(std::uint64_t size, std::uint64_t data_end, std::vector<damage> damaged) {
        l.report.existed = true;
        l.report.file_bytes = size;
        l.report.data_end = data_end;
        if (!group.empty() && commits) {
            // A group without its commit record at the end: cut off with whatever damage
            // follows it, as one torn tail.
            std::erase_if(damaged, [&](const damage& x) { return x.offset >= group_at; });
            damaged.push_back({group_at, data_end - group_at, damage_kind::torn_tail});
            group.clear();
        }
        l.report.damaged = std::move(damaged);
        l.st.prune();
        l.report.rejected = l.st.rejected();
        return std::move(l);
    }
};

// A forward-only window on a file: the bytes from base_ on, read a chunk at a time as they
// are asked for; what lies before the offset last asked for is dropped. It holds about a
// chunk, or one record when a record is larger, never the whole file.
class file_window {
  public:
    file_window(int fd, std::size_t chunk) : fd_(fd), chunk_(std::max<std::size_t>(chunk, 1)) {
        struct stat st {};
        if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            size_ = static_cast<std::uint64_t>(st.st_size);
    }

    // Whether [off, off + n) can be had (false: the file ends first, or reading failed).
    bool have(std::uint64_t off, std::size_t n) {
        const std::uint64_t drop = std::min<std::uint64_t>(off - base_, buf_.size());
        if (drop != 0 && (drop >= chunk_ || drop == buf_.size())) {  // amortised
            buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(drop));
            base_ += drop;
        }
        while (end() < off + n && !eof_) {
            const std::size_t old = buf_.size();
            std::size_t want =
                std::max<std::size_t>(chunk_, static_cast<std::size_t>(off + n - end()));
            // No more room than the file has left: a damaged record header may announce up
            // to max_payload_size (256 MiB), which would otherwise be allocated and zeroed
            // for each such header found while resynchronising. Past the size the file had
            // when opened, a chunk at a time (it may have grown).
            if (size_ > end()) {
                want = static_cast<std::size_t>(std::min<std::uint64_t>(want, size_ - end()));
            } else {
                want = std::min(want, chunk_);
            }
            buf_.resize(old + want);
            peak_ = std::max(peak_, buf_.size());
            const ssize_t got = ::read(fd_, buf_.data() + old, want);
            buf_.resize(old + static_cast<std::size_t>(std::max<ssize_t>(got, 0)));
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) ec_ = last_error();
            if (got <= 0) eof_ = true;
        }
        return end() >= off + n;
    }
    // Only for a range have() returned true for, until the next have().
    std::span<const std::uint8_t> bytes(std::uint64_t off, std::size_t n) const {
        return std::span<const std::uint8_t>{buf_}.subspan(static_cast<std::size_t>(off - base_),
                                                           n);
    }
    std::uint64_t end() const noexcept { return base_ + buf_.size(); }
    std::size_t peak() const noexcept { return peak_; }
    std::error_code error() const noexcept { return ec_; }

  private:
    int fd_;
    std::size_t chunk_;
    std::vector<std::uint8_t> buf_;
    std::uint64_t base_ = 0;
    bool eof_ = false;
    std::uint64_t size_ = 0;  // the file's size when opened (0: not known)
    std::size_t peak_ = 0;    // the most bytes the window held or made room for at once
    std::error_code ec_;
};

// The record at `at`, if a whole valid one starts there (detail::record_at on the window).
std::optional<record> record_in(file_window& w, std::uint64_t at, std::size_t& size) {
    if (!w.have(at, frame_header_size)) return std::nullopt;
    const auto head = w.bytes(at, frame_header_size);
    if (detail::find_magic(head.first(2), 0) != 0) return std::nullopt;
    const std::uint32_t len = (std::uint32_t{head[4]} << 24) | (std::uint32_t{head[5]} << 16) |
                              (std::uint32_t{head[6]} << 8) | std::uint32_t{head[7]};
    if (len > max_payload_size || !w.have(at, frame_header_size + len)) return std::nullopt;
    return detail::record_at(w.bytes(at, frame_header_size + len), 0, size);
}

// The offset of the first byte from `at` on that is not zero, or the end of the file.
std::uint64_t skip_zeros(file_window& w, std::uint64_t at) {
    while (w.have(at, 1) && w.bytes(at, 1)[0] == 0) ++at;
    return at;
}

// scan() over a file read through a window: the same records and damage, in file order.
template <class F>
std::vector<damage> scan_window(file_window& w, F&& on_record, std::uint64_t& data_end) {
    std::vector<damage> found;
    std::uint64_t at = 0;
    data_end = std::numeric_limits<std::uint64_t>::max();
    while (w.have(at, 1)) {
        std::size_t size = 0;
        if (auto r = record_in(w, at, size)) {
            on_record(at, std::move(*r));
            at += size;
            continue;
        }
        // Resynchronise: the next offset where a whole valid record starts (none in zeros;
        // the window only moves forward).
        std::uint64_t next = at + 1;
        if (w.bytes(at, 1)[0] == 0) {
            next = skip_zeros(w, at);
            if (!w.have(next, 1)) {  // zeros to the end: room made ahead, not damage
                data_end = at;
                break;
            }
        }
        bool tail = false;
        for (;; ++next) {
            if (!w.have(next, 2)) {
                tail = true;
                next = w.end();
                break;
            }
            if (detail::find_magic(w.bytes(next, 2), 0) == 0 && record_in(w, next, size)) break;
        }
        found.push_back({at, next - at, tail ? damage_kind::torn_tail : damage_kind::corrupt});
        at = next;
    }
    return found;
}

}  // namespace

loaded load_bytes(std::span<const std::uint8_t> bytes, const clock_pair* times) {
    replayer rp;
    rp.times = times;
    std::uint64_t data_end = 0;
    auto damaged = scan(
        bytes, [&](std::uint64_t at, record r) { rp.on_record(at, std::move(r)); }, &data_end);
    return rp.finish(bytes.size(), data_end, std::move(damaged));
}

result<loaded> load_file(const std::string& path, const clock_pair* times, std::size_t chunk) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return loaded{};
        return last_error();
    }
    file_window w{fd, chunk};
    replayer rp;
    rp.times = times;
    std::uint64_t data_end = 0;
    auto damaged = scan_window(
        w, [&](std::uint64_t at, record r) { rp.on_record(at, std::move(r)); }, data_end);
    ::close(fd);
    if (w.error()) return w.error();
    auto l = rp.finish(w.end(), std::min(data_end, w.end()), std::move(damaged));
    l.report.read_peak = w.peak();
    return l;
}

std::string report_json(const std::string& path, const loaded& l) {
    const auto& r = l.report;
    std::string out = "{\"file\":";
    format::append_json_text(out, path);
    out += ",\"exists\":" + std::string{r.existed ? "true" : "false"};
    out += ",\"bytes\":" + std::to_string(r.file_bytes);
    out += ",\"records\":" + std::to_string(r.records);
    out += ",\"rejected_records\":" + std::to_string(r.rejected);
    out += ",\"sessions\":" + std::to_string(l.st.sessions().size());
    std::size_t subs = 0;
    for (const auto& [id, s] : l.st.sessions()) subs += s.subscriptions.size();
    out += ",\"subscriptions\":" + std::to_string(subs);
    out += ",\"retained\":" + std::to_string(l.st.retained().size());
    out += ",\"queued\":" + std::to_string(l.st.queued_count());
    out += ",\"inflight\":" + std::to_string(l.st.inflight_count());
    out += ",\"messages\":" + std::to_string(l.st.messages().size());
    out += ",\"damage\":[";
    for (std::size_t i = 0; i < r.damaged.size(); ++i) {
        const auto& d = r.damaged[i];
        if (i != 0) out += ',';
        out += "{\"offset\":" + std::to_string(d.offset) +
               ",\"length\":" + std::to_string(d.length) + ",\"kind\":\"" +
               std::string{to_string(d.kind)} + "\"}";
    }
    out += "],\"clean\":" + std::string{r.clean() ? "true" : "false"} + "}";
    return out;
}

// ---- replacement -------------------------------------------------------------------------

replacement::replacement(replacement&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), tmp_(std::move(o.tmp_)), size_(o.size_) {}

replacement& replacement::operator=(replacement&& o) noexcept {
    if (this != &o) {
        discard();
        fd_ = std::exchange(o.fd_, -1);
        tmp_ = std::move(o.tmp_);
        size_ = o.size_;
    }
    return *this;
}

replacement::~replacement() {
    discard();
}

void replacement::discard() noexcept {
    if (fd_ < 0) return;
    ::close(std::exchange(fd_, -1));
    ::unlink(tmp_.c_str());
}

std::error_code replacement::write(std::span<const std::uint8_t> bytes) {
    if (fd_ < 0) return std::make_error_code(std::errc::bad_file_descriptor);
    const auto ec = write_all(fd_, bytes);
    if (!ec) size_ += bytes.size();
    return ec;
}

std::error_code replacement::keep() {
    if (fd_ < 0) return std::make_error_code(std::errc::bad_file_descriptor);
    const auto ec = ::fsync(fd_) == 0 ? std::error_code{} : last_error();
    if (ec) return ec;  // discarded by the destructor
    ::close(std::exchange(fd_, -1));
    return {};
}

// ---- store_file -------------------------------------------------------------------------

store_file::store_file(store_file&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      dir_(std::move(o.dir_)),
      path_(std::move(o.path_)),
      size_(o.size_),
      allocated_(o.allocated_),
      no_room_below_(o.no_room_below_),
      snapshot_size_(o.snapshot_size_) {}

store_file& store_file::operator=(store_file&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(o.fd_, -1);
        dir_ = std::move(o.dir_);
        path_ = std::move(o.path_);
        size_ = o.size_;
        allocated_ = o.allocated_;
        no_room_below_ = o.no_room_below_;
        snapshot_size_ = o.snapshot_size_;
    }
    return *this;
}

store_file::~store_file() {
    if (fd_ >= 0) ::close(fd_);
}

// ---- store_file -------------------------------------------------------------------------

result<store_file> store_file::create(const std::string& dir, const std::string& name,
                                      const content_writer& content) {
    store_file f;
    f.dir_ = dir;
    f.path_ = join(dir, name);
    if (const auto ec = f.rewrite(content)) return ec;
    return f;
}

store_file store_file::unopened(const std::string& dir, const std::string& name) {
    store_file f;
    f.dir_ = dir;
    f.path_ = join(dir, name);
    return f;
}

result<store_file> store_file::open_append(const std::string& dir, const std::string& name,
                                           std::uint64_t data_end) {
    store_file f;
    f.dir_ = dir;
    f.path_ = join(dir, name);
    f.fd_ = ::open(f.path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (f.fd_ < 0) return last_error();
    const off_t end = ::lseek(f.fd_, 0, SEEK_END);
    if (end < 0) return last_error();
    f.allocated_ = static_cast<std::uint64_t>(end);
    f.size_ = std::min(data_end, f.allocated_);
    f.snapshot_size_ = f.size_;  // compaction once it has doubled (plus the slack)
    return f;
}

std::error_code store_file::rewrite(const content_writer& content) {
    auto r = begin_rewrite();
    if (!r) return r.error();
    if (const auto ec = content([&](std::span<const std::uint8_t> b) { return r->write(b); })) {
        return ec;  // r removes the temporary file
    }
    return replace(std::move(*r));
}

result<replacement> store_file::begin_rewrite() const {
    replacement r;
    r.tmp_ = path_ + ".new";
    r.fd_ = ::open(r.tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (r.fd_ < 0) return last_error();
    return r;
}

std::error_code store_file::replace(replacement r) {
    if (r.fd_ < 0) return std::make_error_code(std::errc::bad_file_descriptor);
    // On these errors r closes and removes the temporary file; NAME is as it was.
    if (::fsync(r.fd_) != 0) return last_error();
    if (::rename(r.tmp_.c_str(), path_.c_str()) != 0) return last_error();
    // NAME is the new file from here on, whatever the directory sync says: O_WRONLY at the
    // end of what was written, so appends go after it.
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(r.fd_, -1);
    size_ = r.size_;
    allocated_ = r.size_;
    snapshot_size_ = r.size_;
    return sync_dir(dir_);
}

void store_file::preallocate(std::uint64_t need) {
    // Zeros written, not fallocate(): blocks that were only reserved are converted on their
    // first write, a change of metadata that fdatasync must journal, as it must a new size.
    const std::uint64_t to = (need / prealloc_step + 1) * prealloc_step;
    static const std::vector<std::uint8_t> zeros(64 * 1024, 0);
    for (std::uint64_t at = allocated_; at < to;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), to - at));
        if (write_all_at(fd_, std::span{zeros}.first(n), at)) {
            // No room for it (a full disk, a file size limit): cut the zeros written off and
            // write the records without room ahead, which may still fit.
            if (::ftruncate(fd_, static_cast<off_t>(allocated_)) != 0) allocated_ = at;
            no_room_below_ = to;  // tried again once the records reach it
            return;
        }
        at += n;
    }
    allocated_ = to;
}

std::error_code store_file::append(std::span<const std::uint8_t> bytes) {
    if (fd_ < 0) return std::make_error_code(std::errc::bad_file_descriptor);
    if (size_ + bytes.size() > allocated_ && size_ + bytes.size() >= no_room_below_) {
        preallocate(size_ + bytes.size());
    }
    const auto ec = write_all_at(fd_, bytes, size_);
    if (ec) {
        // A partial write leaves a torn record: cut it off so later appends stay readable
        // (with the room ahead: it is made again by the next append).
        if (::ftruncate(fd_, static_cast<off_t>(size_)) == 0) allocated_ = size_;
        return ec;
    }
    size_ += bytes.size();
    allocated_ = std::max(allocated_, size_);
    return {};
}

std::error_code store_file::sync() {
    if (fd_ < 0) return std::make_error_code(std::errc::bad_file_descriptor);
    return ::fdatasync(fd_) == 0 ? std::error_code{} : last_error();
}

// ---- a set of store files replaced together ---------------------------------------------

namespace {

constexpr std::string_view set_header = "tern store set 1";

bool plain_name(const std::string& n) {
    return !n.empty() && n != "." && n != ".." && n.find_first_of("/\n") == std::string::npos;
}

// Writes what `content` produces to dir/name.new and syncs it, left there (not renamed).
std::error_code write_new(const std::string& dir, const std::string& name,
                          const content_writer& content) {
    auto r = store_file::unopened(dir, name).begin_rewrite();
    if (!r) return r.error();
    if (const auto ec = content([&](std::span<const std::uint8_t> b) { return r->write(b); })) {
        return ec;  // r removes the file
    }
    return r->keep();
}

// What the commit file says: the new files (each NAME.new until renamed) and the old ones
// to remove.
struct set_plan {
    std::vector<std::string> news;
    std::vector<std::string> removes;
};

std::string encode_plan(const set_plan& plan) {
    std::string out{set_header};
    out += '\n';
    for (const auto& n : plan.news) out += "new " + n + "\n";
    for (const auto& n : plan.removes) out += "remove " + n + "\n";
    out += "end\n";
    return out;
}

std::optional<set_plan> parse_plan(std::string_view text) {
    set_plan plan;
    bool first = true;
    bool ended = false;
    while (!text.empty()) {
        const auto eol = text.find('\n');
        if (eol == std::string_view::npos || ended) return std::nullopt;
        const auto line = text.substr(0, eol);
        text.remove_prefix(eol + 1);
        if (first) {
            if (line != set_header) return std::nullopt;
            first = false;
        } else if (line == "end") {
            ended = true;
        } else if (line.starts_with("new ") && plain_name(std::string{line.substr(4)})) {
            plan.news.emplace_back(line.substr(4));
        } else if (line.starts_with("remove ") && plain_name(std::string{line.substr(7)})) {
            plan.removes.emplace_back(line.substr(7));
        } else {
            return std::nullopt;
        }
    }
    if (!ended) return std::nullopt;
    return plan;
}

// The part after the commit file: renames (a NAME.new no longer there was renamed by an
// earlier try), removals, the directory synced, the commit file removed. Each step counts
// down `steps`; at 0 it returns, done so far.
std::error_code apply_plan(const std::string& dir, const std::string& commit, const set_plan& plan,
                           std::size_t& steps, store_set_report& rep) {
    for (const auto& n : plan.news) {
        if (steps == 0) return {};
        const auto from = join(dir, n + ".new");
        const auto to = join(dir, n);
        if (::rename(from.c_str(), to.c_str()) == 0) {
            ++rep.renamed;
        } else if (errno != ENOENT) {
            return last_error();
        }
        --steps;
    }
    for (const auto& n : plan.removes) {
        if (steps == 0) return {};
        const auto path = join(dir, n);
        if (::unlink(path.c_str()) == 0) {
            ++rep.removed;
        } else if (errno != ENOENT) {
            rep.not_removed.push_back(n + " (" + std::strerror(errno) + ")");
        }
        --steps;
    }
    // The renames are on disk before the commit file that would redo them is gone.
    if (const auto ec = sync_dir(dir)) return ec;
    if (steps == 0) return {};
    if (::unlink(commit.c_str()) != 0 && errno != ENOENT) return last_error();
    --steps;
    return sync_dir(dir);
}

}  // namespace

std::string store_set_commit_name(const std::string& file) {
    return file + ".commit";
}

result<store_set_report> commit_store_set(const std::string& dir, const std::string& file,
                                          const store_set& set, std::size_t stop_after) {
    set_plan plan;
    for (const auto& f : set.files) plan.news.push_back(f.name);
    plan.removes = set.remove;
    for (const auto* names : {&plan.news, &plan.removes}) {
        for (const auto& n : *names) {
            if (!plain_name(n)) return std::make_error_code(std::errc::invalid_argument);
        }
    }
    if (!plain_name(file)) return std::make_error_code(std::errc::invalid_argument);
    store_set_report rep;
    std::size_t steps = stop_after;
    std::size_t written = 0;
    const auto drop_written = [&] {
        for (std::size_t i = 0; i < written; ++i) {
            std::remove(join(dir, plan.news[i] + ".new").c_str());
        }
    };
    for (const auto& f : set.files) {
        if (steps == 0) return rep;
        if (const auto ec = write_new(dir, f.name, f.content)) {
            drop_written();
            return ec;
        }
        ++written;
        --steps;
    }
    if (steps == 0) return rep;
    // Every NAME.new is in the directory before the commit file that names it, which is
    // written as a compaction writes a store: NAME.new, synced, renamed, directory synced.
    const auto commit = join(dir, store_set_commit_name(file));
    const auto text = encode_plan(plan);
    std::error_code ec = sync_dir(dir);
    if (!ec) {
        auto made = store_file::create(dir, store_set_commit_name(file), [&](const byte_sink& out) {
            return out(std::span{reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
        });
        if (!made) ec = made.error();
    }
    if (ec) {
        // Not committed unless the rename is: the old set stays (a commit file renamed but
        // not synced is finished or not at the next start; either leaves one whole set).
        if (::access(commit.c_str(), F_OK) != 0) drop_written();
        return ec;
    }
    --steps;
    if (const auto e = apply_plan(dir, commit, plan, steps, rep)) return e;
    return rep;
}

result<store_set_report> finish_store_set(const std::string& dir, const std::string& file,
                                          std::size_t stop_after) {
    store_set_report rep;
    const auto commit = join(dir, store_set_commit_name(file));
    std::remove((commit + ".new").c_str());  // a commit file not written whole: no commit
    std::ifstream in{commit, std::ios::binary};
    if (!in) {
        if (::access(commit.c_str(), F_OK) != 0 && errno == ENOENT) return rep;
        return last_error();
    }
    rep.found = true;
    std::string text(std::size_t{1} << 20, '\0');  // more is not a file this code wrote
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    const auto plan = parse_plan(text);
    if (!plan) {
        rep.damaged = true;
        const auto kept = commit + ".damaged";
        if (::rename(commit.c_str(), kept.c_str()) != 0) return last_error();
        if (const auto e = sync_dir(dir)) return e;
        return rep;
    }
    std::size_t steps = stop_after;
    if (const auto e = apply_plan(dir, commit, *plan, steps, rep)) return e;
    return rep;
}

}  // namespace mqtt::store
