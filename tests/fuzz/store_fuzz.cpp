// libFuzzer target: tern-broker's store file read back from damaged or hostile bytes. The
// broker must start whatever its store holds, so reading a file must never crash, and what
// it rebuilds must be a state it can write again.
//
// The first input byte chooses how the rest becomes a file: as it is (raw bytes, where a
// mutation almost never makes a record whose CRC holds), or as a list of records the target
// frames itself with valid CRCs (type byte, length byte, payload), so the record decoders
// and the state's rules for every record type are explored; a type byte with its high bit
// set gets a wrong CRC, damage in the middle of a valid file.
//
// Checked, besides what ASan and UBSan catch:
// - load_file (the file read through a window of a few bytes to 1 MiB, as at start-up) finds
//   the same records, damage and state as load_bytes over the whole file;
// - the state's snapshot, the records compaction writes, reads back clean (no damage, no
//   rejected record) to the same snapshot, and so does the snapshot written a slice at a
//   time by snapshot_cursor.

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "mqtt/store/record.hpp"
#include "mqtt/store/snapshot_cursor.hpp"
#include "mqtt/store/state.hpp"
#include "mqtt/store/store_file.hpp"

using namespace mqtt::store;

namespace {

constexpr std::int64_t now_ms = 1'764'000'000'000;  // any fixed wall time

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "store_fuzz: %s\n", what);
        std::abort();
    }
}

// A framed record as store files hold it (record.hpp), its CRC right or, with `bad_crc`,
// wrong.
void frame(std::vector<std::uint8_t>& out, std::uint8_t type, std::span<const std::uint8_t> payload,
           bool bad_crc) {
    const auto n = static_cast<std::uint32_t>(payload.size());
    std::array<std::uint8_t, frame_header_size> h{0x54,
                                                  0x72,
                                                  format_version,
                                                  type,
                                                  static_cast<std::uint8_t>(n >> 24),
                                                  static_cast<std::uint8_t>(n >> 16),
                                                  static_cast<std::uint8_t>(n >> 8),
                                                  static_cast<std::uint8_t>(n),
                                                  0,
                                                  0,
                                                  0,
                                                  0};
    std::uint32_t crc = crc32c(payload, crc32c(std::span{h}.subspan(2, 6)));
    if (bad_crc) crc ^= 1;
    h[8] = static_cast<std::uint8_t>(crc >> 24);
    h[9] = static_cast<std::uint8_t>(crc >> 16);
    h[10] = static_cast<std::uint8_t>(crc >> 8);
    h[11] = static_cast<std::uint8_t>(crc);
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), payload.begin(), payload.end());
}

// Records as a list: type byte (its high bit: a wrong CRC), length byte, payload. A last
// item cut short is framed with what there is.
std::vector<std::uint8_t> framed_records(std::span<const std::uint8_t> in) {
    std::vector<std::uint8_t> file;
    std::size_t at = 0;
    while (at + 2 <= in.size()) {
        const std::uint8_t t = in[at];
        const std::size_t len = std::min<std::size_t>(in[at + 1], in.size() - at - 2);
        frame(file, static_cast<std::uint8_t>((t & 0x7F) % 24), in.subspan(at + 2, len),
              (t & 0x80) != 0);
        at += 2 + len;
    }
    return file;
}

std::vector<std::uint8_t> encode_all(const std::vector<record>& records) {
    std::vector<std::uint8_t> out;
    for (const auto& r : records) append_record(out, r);
    return out;
}

bool same_report(const load_report& a, const load_report& b) {
    return a.existed == b.existed && a.file_bytes == b.file_bytes && a.data_end == b.data_end &&
           a.records == b.records && a.rejected == b.rejected && a.damaged == b.damaged;
}

// The bytes in a memory file, read back by path as tern-broker reads its store.
struct memory_file {
    int fd = ::memfd_create("store_fuzz", 0);
    ~memory_file() {
        if (fd >= 0) ::close(fd);
    }
    std::string path(std::span<const std::uint8_t> bytes) const {
        check(fd >= 0 && ::ftruncate(fd, 0) == 0, "memfd");
        std::size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n =
                ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
            check(n > 0, "memfd write");
            done += static_cast<std::size_t>(n);
        }
        return "/proc/self/fd/" + std::to_string(fd);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t knobs = data[0];
    const std::span<const std::uint8_t> rest(data + 1, size - 1);
    const std::vector<std::uint8_t> file =
        (knobs & 0x80) != 0 ? framed_records(rest)
                            : std::vector<std::uint8_t>(rest.begin(), rest.end());

    const loaded whole = load_bytes(file);
    const auto snap = whole.st.snapshot(now_ms);

    // The windowed read of start-up: the same as reading the whole.
    static const memory_file mem;
    constexpr std::array<std::size_t, 4> chunks{1, 13, 4096, std::size_t{1} << 20};
    auto windowed = load_file(mem.path(file), nullptr, chunks[knobs & 3]);
    check(windowed.has_value(), "load_file failed on a memory file");
    check(same_report(whole.report, windowed->report), "load_file and load_bytes reports differ");
    check(windowed->st.snapshot(now_ms) == snap, "load_file and load_bytes states differ");

    // Compaction's output reads back clean, to the same state.
    const auto again = load_bytes(encode_all(snap));
    check(again.report.clean(), "a snapshot reads back with damage or rejected records");
    check(again.st.snapshot(now_ms) == snap, "a snapshot reads back to another state");

    // The same a slice at a time.
    const std::size_t slice = 1 + ((knobs >> 2) & 15);
    std::vector<record> sliced;
    snapshot_cursor cursor{now_ms};
    for (int steps = 0; !cursor.done(); ++steps) {
        check(steps <= 1'000'000, "snapshot_cursor does not finish");
        std::size_t taken = 0;
        cursor.step(whole.st, [&](const record& r) {
            sliced.push_back(r);
            return ++taken < slice;
        });
    }
    const auto from_slices = load_bytes(encode_all(sliced));
    check(from_slices.report.clean(),
          "a sliced snapshot reads back with damage or rejected records");
    check(from_slices.st.snapshot(now_ms) == snap, "a sliced snapshot reads back to another state");
    return 0;
}
