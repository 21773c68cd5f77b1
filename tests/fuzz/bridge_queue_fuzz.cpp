// libFuzzer target: the bridge's on-disk queue (mqtt/bridge/disk_queue.hpp) opened on a
// directory holding whatever the input makes of it, then driven. The queue promises to open
// whatever a crash or a hostile hand left there, and never to lose what it committed.
//
// The input: a knob byte (the bound, its policy, the segment size), then files until a
// 0xFF byte: segments of records the target encodes with valid CRCs (their sequences, the
// source's packet id, bodies; any record may get a wrong CRC or be cut short), the two
// state slots (generation, acked_through, sent_end, entries; valid CRC or not), raw files
// named like segments, a directory named like one, an unknown file. The rest is operations:
// take the next record, acknowledge one, PUBREC one, append and commit, save the state,
// close and open again.
//
// Checked, besides what ASan and UBSan catch: next() hands out increasing sequences; with
// the policies that drop nothing committed (block, drop-new), every record this run
// appended and committed and did not acknowledge comes back after the queue is opened again
// (drained, each acknowledged as it comes), and then no record and no byte is counted as
// waiting.
// The directory is under /dev/shm when there is one (fast), else TMPDIR or /tmp.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "mqtt/bridge/disk_queue.hpp"
#include "mqtt/store/record.hpp"

using namespace mqtt::bridge;
using bytes = std::vector<std::uint8_t>;

namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "bridge_queue_fuzz: %s\n", what);
        std::abort();
    }
}

// A reader of the input that yields zeros once it is used up.
struct input {
    std::span<const std::uint8_t> in;
    std::uint8_t u8() {
        if (in.empty()) return 0;
        const auto v = in[0];
        in = in.subspan(1);
        return v;
    }
    std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
    bytes take(std::size_t n) {
        n = std::min(n, in.size());
        bytes b(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
        in = in.subspan(n);
        return b;
    }
};

void put16(bytes& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v));
    out.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(bytes& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put64(bytes& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void set32(bytes& b, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
}

std::string segment_name(std::uint64_t first) {
    char name[32];
    std::snprintf(name, sizeof name, "seg-%016llx.q", static_cast<unsigned long long>(first));
    return name;
}

void write_file(const std::string& path, const bytes& b) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return;  // a directory of that name made before
    if (!b.empty()) check(std::fwrite(b.data(), 1, b.size(), f) == b.size(), "cannot write");
    std::fclose(f);
}

void remove_all(const std::string& dir) {
    if (DIR* d = ::opendir(dir.c_str())) {
        while (const dirent* e = ::readdir(d)) {
            const std::string n = e->d_name;
            if (n == "." || n == "..") continue;
            const std::string p = dir + "/" + n;
            if (::unlink(p.c_str()) != 0) remove_all(p);
        }
        ::closedir(d);
    }
    ::rmdir(dir.c_str());
}

// The process's directory, removed at exit (a crash leaves it, with the input's files).
const std::string& base_dir() {
    static const std::string* dir = [] {
        struct stat st {};
        const char* tmp = std::getenv("TMPDIR");
        std::string root = ::stat("/dev/shm", &st) == 0 ? "/dev/shm" : (tmp ? tmp : "/tmp");
        auto* d = new std::string(root + "/tern-bridge-queue-fuzz." + std::to_string(::getpid()));
        ::mkdir(d->c_str(), 0700);
        std::atexit([] { remove_all(base_dir()); });
        return d;
    }();
    return *dir;
}

// Segment: first sequence, then records until a count runs out.
bytes segment(input& in, std::uint64_t first) {
    bytes out;
    const std::size_t n = in.u8() % 16;
    std::uint64_t seq = first;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t flags = in.u8();
        if ((flags & 0x10) != 0) seq += 1 + in.u8();  // a gap
        const std::uint16_t source = (flags & 0x20) != 0 ? in.u16() : 0;
        const bytes body = in.take(in.u8());
        const std::size_t at = out.size();
        put32(out, static_cast<std::uint32_t>(body.size()));
        put32(out, 0);
        put64(out, seq);
        put16(out, source);
        out.insert(out.end(), body.begin(), body.end());
        std::uint32_t crc = mqtt::store::crc32c({out.data() + at + 8, out.size() - at - 8});
        if ((flags & 0x40) != 0) crc ^= 0x80;
        set32(out, at + 4, crc);
        if ((flags & 0x80) != 0) {  // cut short: the end of this segment
            out.resize(at + (out.size() - at) / 2);
            break;
        }
        ++seq;
    }
    return out;
}

bytes state_file(input& in) {
    const std::uint8_t flags = in.u8();
    bytes out{'T', 'B', 'Q', '2'};
    put32(out, 0);
    put64(out, in.u8());   // generation
    put64(out, in.u16());  // acked_through
    put64(out, in.u16());  // sent_end
    const std::size_t n = in.u8() % 32;
    put32(out, static_cast<std::uint32_t>((flags & 0x01) != 0 ? n + 1000 : n));
    for (std::size_t i = 0; i < n; ++i) {
        put64(out, in.u16());
        out.push_back(in.u8() % 4);
    }
    std::uint32_t crc = mqtt::store::crc32c({out.data() + 8, out.size() - 8});
    if ((flags & 0x02) != 0) crc ^= 1;
    set32(out, 4, crc);
    return out;
}

// Returns whether it made a directory named like a segment: opening may then fail when the
// writer needs that name (a clear error, as for any queue file that cannot be created).
bool make_files(input& in, const std::string& dir) {
    bool made_dir = false;
    for (int files = 0; files < 8 && !in.in.empty(); ++files) {
        const std::uint8_t kind = in.u8();
        if (kind == 0xFF) return made_dir;
        switch (kind % 6) {
            case 0:
            case 1: {
                const std::uint64_t first =
                    kind % 2 == 0 ? in.u16() : (std::uint64_t{1} << 62) - in.u8();
                write_file(dir + "/" + segment_name(first), segment(in, first));
                break;
            }
            case 2:
                write_file(dir + "/state." + std::to_string((kind / 6) & 1), state_file(in));
                break;
            case 3:  // raw bytes under a segment's name
                write_file(dir + "/" + segment_name(in.u16()), in.take(in.u8()));
                break;
            case 4:  // a directory named like a segment
                made_dir |= ::mkdir((dir + "/" + segment_name(in.u16())).c_str(), 0700) == 0;
                break;
            default:
                write_file(dir + "/" + (kind % 2 == 0 ? "notes.txt" : "seg-zz.q"),
                           in.take(in.u8()));
                break;
        }
    }
    return made_dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    input in{std::span<const std::uint8_t>(data, size)};
    const std::uint8_t knobs = in.u8();
    queue_options opts;
    opts.max_bytes = (knobs & 1) != 0 ? 2048 : std::uint64_t{1} << 20;
    constexpr std::array<full_policy, 4> policies{full_policy::block, full_policy::drop_new,
                                                  full_policy::drop_oldest, full_policy::block};
    opts.policy = policies[(knobs >> 1) & 3];
    opts.segment_bytes = (knobs & 8) != 0 ? 256 : 4096;
    const bool keeps_all = opts.policy != full_policy::drop_oldest;

    const std::string dir = base_dir() + "/q";
    remove_all(dir);
    ::mkdir(dir.c_str(), 0700);
    const bool made_dir = make_files(in, dir);

    queue_recovery report;
    std::string error;
    auto q = disk_queue::open(dir, opts, report, error);
    if (q == nullptr) {
        check(made_dir && error.find("Is a directory") != std::string::npos,
              "a queue directory with any content must open");
        return 0;
    }

    std::set<std::uint64_t> mine;       // appended and committed by this run, not acknowledged
    std::vector<std::uint64_t> handed;  // handed out since the last open
    std::uint64_t at_least = 0;         // next() hands out increasing sequences
    std::uint64_t my_first = q->next_seq();
    for (int steps = 0; steps < 256 && !in.in.empty(); ++steps) {
        const std::uint8_t op = in.u8();
        switch (op % 7) {
            case 0:
            case 1:
                if (auto r = q->next()) {
                    check(r->seq >= at_least, "next() went back");
                    at_least = r->seq + 1;
                    handed.push_back(r->seq);
                }
                break;
            case 2:  // acknowledged: PUBACK or PUBCOMP
                if (!handed.empty()) {
                    const auto seq = handed[in.u8() % handed.size()];
                    q->done(seq);
                    mine.erase(seq);
                }
                break;
            case 3:  // PUBREC
                if (!handed.empty()) q->received(handed[in.u8() % handed.size()]);
                break;
            case 4: {
                const bytes body = in.take(in.u8() % 65);
                const std::uint64_t seq = q->next_seq();
                const auto st = q->append(body, in.u16());
                if (st == disk_queue::append_status::appended && q->commit()) mine.insert(seq);
                break;
            }
            case 5:
                q->save_state();
                break;
            case 6: {  // closed and opened again: what this run committed comes back
                q.reset();
                queue_recovery again;
                q = disk_queue::open(dir, opts, again, error);
                check(q != nullptr, "the queue must open again");
                check(q->next_seq() >= my_first, "sequences went back at reopening");
                // Past PUBREC in the saved state: in flight again at once (PUBREL goes).
                std::set<std::uint64_t> seen(q->released_at_open().begin(),
                                             q->released_at_open().end());
                at_least = 0;
                handed.clear();
                // Everything, each acknowledged as it comes (the id window holds back records
                // 32,767 past the oldest one in flight).
                for (const auto seq : seen) q->done(seq);
                for (int i = 0; i < 4096; ++i) {
                    auto r = q->next();
                    if (!r) break;
                    check(r->seq >= at_least, "next() went back after reopening");
                    at_least = r->seq + 1;
                    seen.insert(r->seq);
                    q->done(r->seq);
                }
                if (keeps_all) {
                    for (const auto seq : mine)
                        check(seen.contains(seq), "a committed record was lost");
                }
                check(q->records() == 0, "records counted after all were acknowledged");
                check(q->bytes() == 0, "bytes counted after all were acknowledged");
                mine.clear();
                break;
            }
        }
    }
    q.reset();
    return 0;
}
