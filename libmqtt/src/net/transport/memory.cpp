// A connected pair of in-memory byte streams on one executor: what one end writes, the
// other reads, with no socket and no system call (tern-broker's own bridges reaching its
// engine). It keeps what the AF_UNIX socket pair it replaces gave for free:
//   back-pressure: a write waits while the peer has `capacity` bytes or more unread (it
//   then appends the whole write, so one direction holds at most capacity plus one write);
//   close semantics: after shutdown() or close() the peer reads what is left, then EOF; a
//   write towards an end that closed fails with broken_pipe; an end's own pending
//   operations complete with operation_aborted once it closes.
// Everything runs on one thread (the io_context both ends use), so nothing is locked. A
// waiting operation waits on a steady_timer that never expires and is cancelled to wake it
// (the bridge runner's idiom): the io_context owns the pending wait, so a wait left behind at
// shutdown is destroyed with it, as a socket's pending read would be.

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <utility>
#include <vector>

#include "net/transport/transport.hpp"

namespace mqtt::net {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
using timer = asio::steady_timer;

// The bytes travelling one way, and the two wake-ups of that way.
struct direction {
    explicit direction(const asio::any_io_executor& ex)
        : readable(ex, timer::time_point::max()), writable(ex, timer::time_point::max()) {}
    std::vector<std::uint8_t> bytes;
    std::size_t head = 0;      // bytes[head..] are unread
    bool eof = false;          // the writing end shut down or closed
    bool reader_gone = false;  // the reading end closed: writes fail
    timer readable;            // cancelled when bytes arrive or eof
    timer writable;            // cancelled when room appears or the reader goes
    std::size_t unread() const noexcept { return bytes.size() - head; }
};

struct pipe_state {
    pipe_state(const asio::any_io_executor& ex, std::size_t cap)
        : executor(ex), capacity(cap), way{direction{ex}, direction{ex}} {}
    asio::any_io_executor executor;
    std::size_t capacity;
    direction way[2];  // way[i]: written by end i, read by end 1 - i
    bool closed[2] = {false, false};
};

class memory_transport final : public transport {
  public:
    memory_transport(std::shared_ptr<pipe_state> st, int end) : st_(std::move(st)), end_(end) {}
    ~memory_transport() override { close(); }

    asio::awaitable<boost::system::error_code> handshake(std::chrono::milliseconds,
                                                         std::string&) override {
        co_return boost::system::error_code{};
    }
    asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
        return read(st_, end_, b);  // the coroutine holds the state, not this transport
    }
    asio::awaitable<io_result> write(asio::const_buffer b) override {
        return write_one(st_, end_, b);
    }
    asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> b) override {
        return write_all(st_, end_, b);
    }
    asio::awaitable<void> shutdown() override {
        auto& out = st_->way[end_];
        out.eof = true;
        out.readable.cancel();
        co_return;
    }
    void close() override {
        if (st_->closed[end_]) return;
        st_->closed[end_] = true;
        auto& out = st_->way[end_];
        auto& in = st_->way[1 - end_];
        out.eof = true;  // the peer reads what is left, then EOF
        in.reader_gone = true;
        in.bytes.clear();
        in.head = 0;
        for (auto* w : {&out, &in}) {
            w->readable.cancel();
            w->writable.cancel();
        }
    }
    asio::any_io_executor get_executor() override { return st_->executor; }
    const char* name() const noexcept override { return "memory"; }

  private:
    static asio::awaitable<io_result> read(std::shared_ptr<pipe_state> st, int end,
                                           asio::mutable_buffer b) {
        auto& in = st->way[1 - end];
        for (;;) {
            if (st->closed[end]) co_return io_result{asio::error::operation_aborted, 0};
            if (in.unread() > 0 || b.size() == 0) {
                const auto n = std::min(b.size(), in.unread());
                if (n > 0) std::memcpy(b.data(), in.bytes.data() + in.head, n);
                in.head += n;
                if (in.head == in.bytes.size()) {
                    in.bytes.clear();  // keeps the capacity for the next batch
                    in.head = 0;
                }
                if (in.unread() < st->capacity) in.writable.cancel();
                co_return io_result{boost::system::error_code{}, n};
            }
            if (in.eof) co_return io_result{asio::error::eof, 0};
            auto [ec] = co_await in.readable.async_wait(nothrow);
            (void)ec;
        }
    }

    // Appends all of `b` once the peer has less than `capacity` unread.
    static asio::awaitable<io_result> write_all(std::shared_ptr<pipe_state> st, int end,
                                                std::span<const asio::const_buffer> b) {
        auto& out = st->way[end];
        for (;;) {
            if (st->closed[end]) co_return io_result{asio::error::operation_aborted, 0};
            if (out.reader_gone) co_return io_result{asio::error::broken_pipe, 0};
            if (out.unread() < st->capacity) break;
            auto [ec] = co_await out.writable.async_wait(nothrow);
            (void)ec;
        }
        if (out.head > 0 && out.head >= out.bytes.size() / 2) {  // drop what was read
            out.bytes.erase(out.bytes.begin(),
                            out.bytes.begin() + static_cast<std::ptrdiff_t>(out.head));
            out.head = 0;
        }
        std::size_t total = 0;
        for (const auto& one : b) {
            const auto* p = static_cast<const std::uint8_t*>(one.data());
            out.bytes.insert(out.bytes.end(), p, p + one.size());
            total += one.size();
        }
        if (total > 0) out.readable.cancel();
        co_return io_result{boost::system::error_code{}, total};
    }
    static asio::awaitable<io_result> write_one(std::shared_ptr<pipe_state> st, int end,
                                                asio::const_buffer b) {
        co_return co_await write_all(std::move(st), end,
                                     std::span<const asio::const_buffer>(&b, 1));
    }

    std::shared_ptr<pipe_state> st_;
    int end_;
};

}  // namespace

std::pair<std::unique_ptr<transport>, std::unique_ptr<transport>> make_memory_pair(
    const asio::any_io_executor& ex, std::size_t capacity) {
    auto st = std::make_shared<pipe_state>(ex, std::max<std::size_t>(capacity, 1));
    return {std::make_unique<memory_transport>(st, 0), std::make_unique<memory_transport>(st, 1)};
}

}  // namespace mqtt::net
