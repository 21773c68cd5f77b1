// store_driver at start: reading a store file (damage logged, the damaged file kept under a
// second name) and opening the driver on what was read (docs/persistence.md, "Recovery from
// damage"). The running part is store_driver.cpp.

#include <cerrno>
#include <filesystem>
#include <utility>

#include "store_driver.hpp"

namespace mqtt::net::detail {

std::error_code store_driver::open() {
    const auto now = store::clock_pair::now();
    auto loaded = load(path_, now, note_);
    if (!loaded) return loaded.error();
    const auto& r = loaded->report;
    const bool rewrite = !(r.existed && r.clean() && r.records != 0);
    return open_loaded(std::move(*loaded), now, rewrite, 0);
}

bool store_driver::out_of_room(std::error_code ec) noexcept {
    return ec == std::errc::no_space_on_device || ec == std::errc::file_too_large ||
           ec == std::error_code{EDQUOT, std::generic_category()};
}

result<store::loaded> store_driver::load(const std::string& path, const store::clock_pair& now,
                                         const note_function& note) {
    auto loaded = store::load_file(path, &now);
    if (!loaded) return loaded;
    const auto& r = loaded->report;
    for (const auto& d : r.damaged) {
        const bool tail = d.kind == store::damage_kind::torn_tail;
        note(0, true,
             "store " + path + ": " + (tail ? "cut off " : "skipped ") + std::to_string(d.length) +
                 " bytes at offset " + std::to_string(d.offset) +
                 (tail ? " (incomplete or corrupt record at the end)"
                       : " (corrupt records; reading went on at the next valid one)"));
    }
    if (r.rejected != 0) {
        note(0, true,
             "store " + path + ": ignored " + std::to_string(r.rejected) +
                 " records that referred to data the store does not have");
    }
    if (!r.clean()) {
        // Keep the damaged file for inspection; the compacted one replaces it. A second
        // name (a hard link, else a copy), not a rename: until the new file is renamed over
        // it the damaged file stays the store, so a start whose rewrite fails (a full disk)
        // and is killed reads it again rather than an empty store.
        const std::string kept = path + ".damaged";
        std::error_code ec;
        std::filesystem::remove(kept, ec);
        std::filesystem::create_hard_link(path, kept, ec);
        if (ec) {
            std::filesystem::copy_file(path, kept,
                                       std::filesystem::copy_options::overwrite_existing, ec);
        }
        note(0, true,
             "store " + path + ": " +
                 (ec ? "the damaged file could not be kept (" + ec.message() + ")"
                     : "the damaged file is kept as " + kept));
    }
    return loaded;
}

std::error_code store_driver::open_loaded(store::loaded l, const store::clock_pair& now,
                                          bool rewrite, std::size_t shard,
                                          std::error_code set_failed) {
    const bool secondary = shard != 0;
    const auto& r = l.report;
    store::restore(engine_, l.st, now, !secondary, listeners_);
    if (r.existed) {
        note_(1, false,
              "store " + path_ + ": " + std::to_string(r.records) + " records, " +
                  std::to_string(l.st.sessions().size()) + " sessions, " +
                  std::to_string(l.st.retained().size()) + " retained, " +
                  std::to_string(l.st.queued_count()) + " queued messages restored");
    }
    recorder_.emplace(std::move(l.st));
    if (secondary) recorder_->set_secondary_shard(shard);
    recorder_->set_listeners(listeners_);
    // An intact file is appended to as it is; a damaged or missing one is written anew from
    // what was recovered (which also cuts the damage off).
    std::error_code no_room = set_failed;
    awaits_set_ = bool{set_failed};
    auto file =
        awaits_set_
            ? result<store::store_file>{store::store_file::unopened(cfg_.location, cfg_.file)}
        : !rewrite ? store::store_file::open_append(cfg_.location, cfg_.file, r.data_end)
                   : store::store_file::create(cfg_.location, cfg_.file, snapshot());
    if (!file && rewrite && out_of_room(file.error())) {
        // A full disk (or a file size limit) does not stop the start: the broker runs with
        // the store failing, refusing QoS 1/2 publishes, and retry() writes it once there is
        // room. Whatever file was there stays as it was meanwhile.
        no_room = file.error();
        file = store::store_file::unopened(cfg_.location, cfg_.file);
    }
    if (!file) {
        recorder_.reset();
        return file.error();
    }
    file_ = std::move(*file);
    file_bytes_ = file_.size();
    snapshot_bytes_ = file_.snapshot_size();
    try {
        done_wake_.emplace(
            io_, [this] { drain(); }, "store sync thread");
    } catch (const std::system_error& e) {
        recorder_.reset();
        return e.code();
    }
    recorder_->set_pending_hook([this] { schedule(); });
    engine_.set_store(&*recorder_);
    thread_ = std::thread{[this] { sync_thread(); }};
    if (no_room) {
        report(no_room, awaits_set_ ? "writing the stores for this number of threads at start"
                                    : "writing the store at start");
    }
    return {};
}

}  // namespace mqtt::net::detail
