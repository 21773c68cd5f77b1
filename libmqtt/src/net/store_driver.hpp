#pragma once

// The I/O side of persistence, private to mqtt_net: opens the store at start (recovery),
// writes the records the engine's recorder produced, syncs them according to the policy,
// compacts the file, and holds connections' output until the records it depends on are on
// disk (always / batch).
//
// Group commit (batch): the first record of a loop turn posts one flush to the end of the
// io_context's queue, so everything the connections that are ready now append goes out with
// one write and one fdatasync. A connection whose output may depend on records not yet
// synced asks to be held: at the flush its output is staged (it covers everything appended
// so far), then the records are synced, then it is woken to write what was staged.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "mqtt/broker/config.hpp"
#include "mqtt/broker/engine.hpp"
#include "mqtt/store/recorder.hpp"
#include "mqtt/store/store_file.hpp"

namespace mqtt::net::detail {

namespace asio = boost::asio;

// Implemented by a connection whose output waits for a sync.
class held_output {
  public:
    virtual void stage() = 0;    // take the session's output now: it is covered by this flush
    virtual void release() = 0;  // the flush is on disk: write what was staged

  protected:
    ~held_output() = default;
};

class store_driver {
  public:
    using note_function = std::function<void(int verbosity, bool error, std::string_view msg)>;

    store_driver(asio::io_context& io, broker::engine& e, broker::persistence_config cfg,
                 note_function note);
    ~store_driver();
    store_driver(const store_driver&) = delete;
    store_driver& operator=(const store_driver&) = delete;

    // Reads the store, rebuilds the engine's state, writes it back compacted and starts
    // recording. An error when the store cannot be written (a damaged one is not an error).
    std::error_code open();
    // Starts the periodic sync (periodic policy).
    void start();
    // Stops the periodic sync timer (the server is stopping).
    void cancel_timer() { autosave_.cancel(); }
    // Last flush and a compacted file (graceful stop).
    void close();

    // Whether output must wait for records (always, batch).
    bool holds_output() const noexcept { return cfg_.sync != broker::sync_policy::periodic; }
    bool all_synced() const noexcept { return synced_ == recorder_->appended(); }
    // `h` is staged and released at the next flush.
    void hold(held_output& h);
    void forget(held_output& h);
    // After each packet of a connection (always: sync now).
    void after_packet();
    // Writes (and syncs, per policy) what was recorded; stages and releases held output.
    void flush();

    const std::string& path() const noexcept { return path_; }

  private:
    void schedule();
    void periodic_sync();
    void report(std::error_code ec, std::string_view what);

    asio::io_context& io_;
    broker::engine& engine_;
    broker::persistence_config cfg_;
    note_function note_;
    std::string path_;
    std::optional<store::recorder> recorder_;
    store::store_file file_;
    std::vector<std::uint8_t> buffer_;
    std::vector<held_output*> held_;
    std::uint64_t synced_ = 0;  // recorder bytes on disk (or written, for periodic)
    bool posted_ = false;
    bool unsynced_ = false;  // periodic: written, not yet synced
    bool failing_ = false;   // the last write or sync failed (logged once until it works)
    asio::steady_timer autosave_;
};

}  // namespace mqtt::net::detail
