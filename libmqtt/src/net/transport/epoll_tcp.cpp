// Plain TCP on an epoll set per event loop (see epoll_tcp.hpp).

#include "net/transport/epoll_tcp.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/version.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mqtt::net {
namespace {

using boost::system::error_code;
using write_waiter = asio::any_completion_handler<void(error_code)>;

error_code last_error() {
    return {errno, boost::system::system_category()};
}

class epoll_service;

// The set is in the loop's reactor as an internal descriptor with one operation that never
// completes: each edge of the set's readiness runs the operation's perform step on the
// loop's thread, which dispatches the set's events. An ordinary readiness wait would be
// re-armed after every edge, and Asio re-arms a wait with an epoll_ctl (EPOLL_CTL_MOD): a
// system call per wake-up of the loop. This is Asio's own internal interface (the one its
// signal handling uses), so it is pinned to the Boost version it was written against.
static_assert(BOOST_VERSION / 100 == 1081,
              "epoll_tcp registers its set through Boost 1.81's reactor; check "
              "register_internal_descriptor and reactor_op against this version");
using reactor = asio::detail::reactor;
static_assert(std::is_same_v<reactor, asio::detail::epoll_reactor>);

// The transports live in their loop's table, not on the heap: a slot holds the transport,
// its pending readiness wait and the generation its events carry. Slots come in aligned
// chunks that never move (a handler may add sockets while a batch is dispatched), each
// starting with its service, which is how a transport finds it (and `delete` its slot).
constexpr std::size_t chunk_bytes = 16 * 1024;
constexpr std::size_t transport_bytes = 16;  // epoll_tcp: its vptr, descriptor and index

struct slot {
    alignas(8) std::byte object[transport_bytes];  // an epoll_tcp while the slot is taken
    std::shared_ptr<readable_listener> reader;
    std::uint32_t gen = 0;  // odd while the socket is in the set; its events carry it
    // Bytes (or the end, or an error) may be waiting: set by every input event, cleared by a
    // read that emptied the socket. While it is clear a read answers would_block without
    // asking the kernel: the socket's next bytes bring an event (edge-triggered) that sets it.
    bool maybe_readable = true;
    // An event said more than "readable" (the peer's FIN, an error, urgent data): a short
    // read no longer proves the socket empty (the FIN comes with the last bytes, and no
    // event follows it), so it stays readable until a read says would_block or the end.
    bool hangup = false;
};
static_assert(sizeof(slot) == 40, "what an idle connection holds in the table");
struct chunk_header {
    epoll_service* svc;
    std::uint32_t base;  // the index of the chunk's first slot
};
constexpr std::uint32_t chunk_slots =
    static_cast<std::uint32_t>((chunk_bytes - sizeof(chunk_header)) / sizeof(slot));
struct chunk {
    chunk_header head;
    slot slots[chunk_slots];
};
static_assert(sizeof(chunk) <= chunk_bytes);

chunk& chunk_of(const void* p) {
    return *reinterpret_cast<chunk*>(reinterpret_cast<std::uintptr_t>(p) & ~(chunk_bytes - 1));
}

// One per io_context: the epoll set, the table of its sockets and the writers that wait for
// EPOLLOUT. Used from the loop's thread only.
class epoll_service final : public asio::execution_context::service {
  public:
    static inline asio::execution_context::id id;

    explicit epoll_service(asio::io_context& io)
        : service(io), io_(io), reactor_(asio::use_service<reactor>(io)) {
        reactor_.init_task();  // the loop runs the reactor (as any socket's service makes it)
        set_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (set_fd_ < 0) return;  // add() refuses every socket: they stay on Asio
        if (reactor_.register_internal_descriptor(reactor::read_op, set_fd_, set_data_,
                                                  new set_op(*this)) != 0) {
            drop_set();
        }
    }
    ~epoll_service() override {
        if (set_fd_ >= 0) ::close(set_fd_);
        for (auto* c : chunks_) {
            c->~chunk();
            std::free(c);
        }
    }

    asio::io_context& context() noexcept { return io_; }
    std::size_t registered() const noexcept { return used_; }

    // Adds `fd` to the set; nullptr when it cannot (the caller keeps the descriptor). The
    // slot's storage is for the transport, and goes back to the table when it is deleted.
    slot* add(int fd, std::uint32_t& index) {
        if (set_fd_ < 0 || shut_) return nullptr;
        if (free_.empty() && !grow()) return nullptr;
        index = free_.back();
        auto& s = at(index);
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
        ev.data.u64 = key(index, s.gen + 1);
        if (::epoll_ctl(set_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return nullptr;
        free_.pop_back();
        ++s.gen;  // odd: in use
        s.maybe_readable = true;
        s.hangup = false;
        // The set's operation is not work to the loop: this is, while the set holds sockets.
        if (used_++ == 0) busy_.emplace(io_.get_executor());
        return &s;
    }

    // Takes `fd` out of the set (it stays open); a wait still pending ends with
    // operation_aborted, posted. The slot stays the transport's until it is deleted.
    void remove(std::uint32_t index, int fd) {
        auto& s = at(index);
        if (!shut_) ::epoll_ctl(set_fd_, EPOLL_CTL_DEL, fd, nullptr);
        ++s.gen;  // even: events already fetched for it are stale
        // No socket left: nothing to wait for, so the loop's run() can end (tern-broker
        // stops when its loop has no more work).
        if (--used_ == 0) busy_.reset();
        auto reader = std::move(s.reader);
        auto w = writers_.extract(index);
        if (shut_) return;  // what was pending goes with the loop
        if (reader) {
            asio::post(io_,
                       [r = std::move(reader)] { r->on_readable(asio::error::operation_aborted); });
        }
        if (!w.empty()) {
            asio::post(io_, [h = std::move(w.mapped())]() mutable {
                std::move(h)(error_code{asio::error::operation_aborted});
            });
        }
    }
    // The transport in slot `index` was deleted.
    void release(std::uint32_t index) { free_.push_back(index); }

    slot& at(std::uint32_t index) {
        return chunks_[index / chunk_slots]->slots[index % chunk_slots];
    }
    void set_observer(batch_observer* o) noexcept { observer_ = o; }

    void wait_readable(std::uint32_t index, std::shared_ptr<readable_listener> l) {
        if (shut_) return;  // the loop is going: nothing will run (and nothing may be held)
        at(index).reader = std::move(l);
    }
    void wait_writable(std::uint32_t index, write_waiter h) {
        if (shut_) return;
        writers_.insert_or_assign(index, std::move(h));
    }

  private:
    static constexpr int batch = 64;

    static std::uint64_t key(std::uint32_t index, std::uint32_t gen) {
        return (std::uint64_t{gen} << 32) | index;
    }
    bool grow() {
        void* mem = std::aligned_alloc(chunk_bytes, chunk_bytes);
        if (mem == nullptr) return false;
        const auto base = static_cast<std::uint32_t>(chunks_.size() * chunk_slots);
        chunks_.push_back(new (mem) chunk{{this, base}, {}});
        free_.reserve(free_.size() + chunk_slots);
        for (std::uint32_t i = chunk_slots; i-- > 0;) free_.push_back(base + i);
        return true;
    }

    // The set's operation: its perform step runs (on the loop's thread, inside the reactor's
    // completion of the set's readiness) at every edge, dispatches, and stays registered.
    class set_op final : public asio::detail::reactor_op {
      public:
        explicit set_op(epoll_service& svc)
            : reactor_op(error_code{}, &set_op::perform, &set_op::complete), svc_(svc) {}

      private:
        static status perform(reactor_op* base) {
            static_cast<set_op*>(base)->svc_.dispatch();
            return not_done;
        }
        // Never completed; called only to destroy it (no owner) when the set leaves the
        // reactor.
        static void complete(void* owner, asio::detail::operation* base, const error_code&,
                             std::size_t) {
            if (owner == nullptr) delete static_cast<set_op*>(base);
        }
        epoll_service& svc_;
    };

    // Takes the set out of the reactor (which destroys its operation).
    void drop_set() {
        reactor_.deregister_internal_descriptor(set_fd_, set_data_);
        reactor_.cleanup_descriptor_data(set_data_);
        ::close(set_fd_);
        set_fd_ = -1;
    }

    void dispatch() {
        epoll_event ev[batch];
        if (shut_) return;
        const int n = ::epoll_wait(set_fd_, ev, batch, 0);
        if (n <= 0) return;
        // What the handlers defer (the writers they wake) is done once, at the batch's end.
        if (observer_ != nullptr) observer_->batch_begin();
        for (int i = 0; i < n && !shut_; ++i) {
            const auto index = static_cast<std::uint32_t>(ev[i].data.u64);
            const auto gen = static_cast<std::uint32_t>(ev[i].data.u64 >> 32);
            if (index / chunk_slots >= chunks_.size()) continue;
            auto& s = at(index);
            if (s.gen != gen) continue;  // closed (and maybe reused) since the event was fetched
            const auto events = ev[i].events;
            if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
                auto w = writers_.extract(index);
                if (!w.empty()) {  // the writer tries again (an error shows in its sendmsg)
                    asio::post(
                        io_, [h = std::move(w.mapped())]() mutable { std::move(h)(error_code{}); });
                }
            }
            if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLPRI | EPOLLERR | EPOLLHUP)) != 0) {
                s.maybe_readable = true;
                if ((events & (EPOLLRDHUP | EPOLLPRI | EPOLLERR | EPOLLHUP)) != 0) s.hangup = true;
                if (s.reader) {
                    // The reader learns of it directly, as Asio's completion would; `r` keeps
                    // it alive through the call, whatever it closes.
                    const auto r = std::move(s.reader);
                    r->on_readable(error_code{});
                }
            }
        }
        if (observer_ != nullptr && !shut_) observer_->batch_end();
        // A full batch: more may be ready, and no new edge would tell. The rest after what
        // else waits on the loop.
        if (n == batch && !shut_) asio::post(io_, [this] { dispatch(); });
    }

    // The io_context is going: the pending waits are dropped (they hold their connections,
    // which hold their transports: nothing else would free them).
    void shutdown() override {
        shut_ = true;
        if (set_fd_ >= 0) drop_set();
        busy_.reset();
        std::vector<std::shared_ptr<readable_listener>> readers;
        for (auto* c : chunks_) {
            for (auto& s : c->slots) {
                if (s.reader) readers.push_back(std::move(s.reader));
            }
        }
        auto writers = std::move(writers_);
        writers_.clear();
        writers.clear();  // may destroy connections, whose transports call remove()
        readers.clear();
    }

    asio::io_context& io_;
    reactor& reactor_;
    int set_fd_ = -1;
    reactor::per_descriptor_data set_data_ = nullptr;
    // Work for the loop while the set holds sockets (their waits are not Asio operations).
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> busy_;
    std::vector<chunk*> chunks_;
    std::vector<std::uint32_t> free_;
    std::unordered_map<std::uint32_t, write_waiter> writers_;
    batch_observer* observer_ = nullptr;
    std::size_t used_ = 0;
    bool shut_ = false;
};

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// 16 bytes in its slot of the loop's table (40 bytes with the slot's wait and generation):
// what an idle plain-TCP connection holds for its socket. Made with placement new in the
// slot add() gave; `delete` gives the slot back.
class epoll_tcp final : public transport {
  public:
    epoll_tcp(int fd, std::uint32_t index) noexcept : fd_(fd), index_(index) {}
    ~epoll_tcp() override { close(); }
    static void* operator new(std::size_t, slot* where) noexcept { return where->object; }
    static void operator delete(void*, slot*) noexcept {}
    static void operator delete(void* p) noexcept {
        auto& c = chunk_of(p);
        const auto index = static_cast<std::uint32_t>(
            (static_cast<std::byte*>(p) - reinterpret_cast<std::byte*>(c.slots)) / sizeof(slot));
        c.head.svc->release(c.head.base + index);
    }

    asio::awaitable<error_code> handshake(std::chrono::milliseconds, std::string&) override {
        co_return error_code{};
    }
    // Asio's read, for a caller that cannot wait for readiness (none in the broker).
    asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
        for (;;) {
            error_code ec;
            const auto n = read_now(b, ec);
            if (ec != asio::error::would_block) co_return io_result{ec, n};
            auto [wait_ec] = co_await asio::async_initiate<decltype(nothrow), void(error_code)>(
                [this](auto h) { wait(std::move(h)); }, nothrow);
            if (wait_ec) co_return io_result{wait_ec, 0};
        }
    }
    bool can_wait_readable() const noexcept override { return true; }
    std::size_t read_now(asio::mutable_buffer b, error_code& ec) override {
        ec = {};
        if (fd_ < 0) {
            ec = asio::error::bad_descriptor;
            return 0;
        }
        auto& s = svc().at(index_);
        if (!s.maybe_readable) {  // emptied by the last read, and no event since
            ec = asio::error::would_block;
            return 0;
        }
        for (;;) {
            const auto n = ::recv(fd_, b.data(), b.size(), 0);
            if (n > 0) {
                // Less than asked: the socket had no more (TCP hands over what it holds up
                // to the size), and bytes arriving after this bring an event.
                if (static_cast<std::size_t>(n) < b.size() && !s.hangup) s.maybe_readable = false;
                return static_cast<std::size_t>(n);
            }
            if (n == 0) {
                if (b.size() != 0) ec = asio::error::eof;
                return 0;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                s.maybe_readable = false;
                ec = asio::error::would_block;
            } else {
                ec = last_error();
            }
            return 0;
        }
    }
    void async_wait_readable(std::shared_ptr<readable_listener> l) override {
        if (fd_ < 0) {
            asio::post(svc().context(),
                       [l = std::move(l)] { l->on_readable(asio::error::bad_descriptor); });
            return;
        }
        svc().wait_readable(index_, std::move(l));
    }
    asio::awaitable<io_result> write(asio::const_buffer b) override { return send({}, b); }
    bool can_write_now() const noexcept override { return true; }
    std::size_t write_now(std::span<const asio::const_buffer> bufs, error_code& ec) override {
        std::size_t total = 0;
        std::size_t at = 0;
        std::size_t off = 0;
        ec = {};
        while (skip_written(bufs, at, off)) {
            const auto n = send_some(bufs.subspan(at), off, ec);
            if (ec) return total;  // would_block: the rest waits for EPOLLOUT
            total += n;
            advance(bufs, at, off, n);
        }
        return total;
    }
    asio::awaitable<io_result> write_gathered(std::span<const asio::const_buffer> b) override {
        return send(b, {});
    }
    asio::awaitable<void> shutdown() override {
        if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
        co_return;
    }
    void close() override {
        if (fd_ < 0) return;
        svc().remove(index_, fd_);
        ::close(fd_);
        fd_ = -1;
    }
    asio::any_io_executor get_executor() override { return svc().context().get_executor(); }
    const char* name() const noexcept override { return "tcp"; }

  private:
    // Writes all of `bufs` (or `one` when `bufs` is empty): sendmsg as long as the kernel
    // takes bytes, then a wait for EPOLLOUT. `one` lives in this frame.
    asio::awaitable<io_result> send(std::span<const asio::const_buffer> bufs,
                                    asio::const_buffer one) {
        if (bufs.empty()) bufs = std::span<const asio::const_buffer>{&one, 1};
        std::size_t total = 0;
        std::size_t at = 0;   // the buffer being written
        std::size_t off = 0;  // bytes of it written
        for (;;) {
            if (!skip_written(bufs, at, off)) co_return io_result{error_code{}, total};
            error_code ec;
            const auto n = send_some(bufs.subspan(at), off, ec);
            if (ec == asio::error::would_block) {
                auto [wait_ec] = co_await asio::async_initiate<decltype(nothrow), void(error_code)>(
                    [this](auto h) { svc().wait_writable(index_, std::move(h)); }, nothrow);
                if (wait_ec) co_return io_result{wait_ec, total};
                if (fd_ < 0) co_return io_result{asio::error::operation_aborted, total};
                continue;
            }
            if (ec) co_return io_result{ec, total};
            total += n;
            advance(bufs, at, off, n);
        }
    }
    // Past the buffers written whole (and empty ones); false when none is left.
    static bool skip_written(std::span<const asio::const_buffer> bufs, std::size_t& at,
                             std::size_t& off) {
        while (at < bufs.size() && off == bufs[at].size()) {
            ++at;
            off = 0;
        }
        return at < bufs.size();
    }
    // Past `n` bytes written from buffer `at`, offset `off`.
    static void advance(std::span<const asio::const_buffer> bufs, std::size_t& at,
                        std::size_t& off, std::size_t n) {
        while (n > 0) {
            const auto room = bufs[at].size() - off;
            if (n < room) {
                off += n;
                return;
            }
            n -= room;
            ++at;
            off = 0;
        }
    }
    // One sendmsg of up to 64 buffers (as Asio's), the first from `off`; MSG_NOSIGNAL: a peer
    // gone is an error here, not SIGPIPE.
    std::size_t send_some(std::span<const asio::const_buffer> bufs, std::size_t off,
                          error_code& ec) {
        if (fd_ < 0) {
            ec = asio::error::bad_descriptor;
            return 0;
        }
        iovec iov[64];
        std::size_t count = 0;
        for (const auto& b : bufs) {
            if (count == std::size(iov)) break;
            const auto skip = count == 0 ? off : 0;
            if (b.size() == skip) continue;
            iov[count].iov_base = const_cast<char*>(static_cast<const char*>(b.data()) + skip);
            iov[count].iov_len = b.size() - skip;
            ++count;
        }
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = count;
        for (;;) {
            const auto n = ::sendmsg(fd_, &m, MSG_NOSIGNAL);
            if (n >= 0) return static_cast<std::size_t>(n);
            if (errno == EINTR) continue;
            ec = errno == EAGAIN || errno == EWOULDBLOCK ? error_code{asio::error::would_block}
                                                         : last_error();
            return 0;
        }
    }
    // read_some()'s wait: a readiness wait whose listener completes `h`.
    template <class Handler>
    void wait(Handler h) {
        struct waiter final : readable_listener {
            explicit waiter(Handler&& h) : h(std::move(h)) {}
            void on_readable(const error_code& ec) override { std::move(h)(ec); }
            Handler h;
        };
        async_wait_readable(std::make_shared<waiter>(std::move(h)));
    }

    epoll_service& svc() const noexcept { return *chunk_of(this).head.svc; }

    int fd_;
    std::uint32_t index_;
};
static_assert(sizeof(epoll_tcp) <= transport_bytes);

bool set_non_blocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL, 0);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

std::unique_ptr<transport> on_asio(asio::io_context& io, int fd, asio::ip::tcp protocol) {
    asio::ip::tcp::socket s{io};
    error_code ec;
    s.assign(protocol, fd, ec);
    if (ec) {
        ::close(fd);
        return nullptr;
    }
    return make_tcp_transport(std::move(s));
}

}  // namespace

std::unique_ptr<transport> make_epoll_tcp_transport(asio::io_context& io, int fd,
                                                    asio::ip::tcp protocol) {
    auto& svc = asio::use_service<epoll_service>(io);
    std::uint32_t index = 0;
    slot* where = set_non_blocking(fd) ? svc.add(fd, index) : nullptr;
    if (where == nullptr) return on_asio(io, fd, protocol);
    return std::unique_ptr<transport>{new (where) epoll_tcp(fd, index)};
}

std::unique_ptr<transport> make_epoll_tcp_transport(asio::ip::tcp::socket socket) {
    const auto* ex = socket.get_executor().target<asio::io_context::executor_type>();
    error_code ec;
    const auto local = socket.is_open() ? socket.local_endpoint(ec) : asio::ip::tcp::endpoint{};
    if (ex == nullptr || !socket.is_open() || ec) return make_tcp_transport(std::move(socket));
    // Out of Asio's reactor (its descriptor state goes back to the reactor's pool).
    const int fd = socket.release(ec);
    if (ec || fd < 0) return make_tcp_transport(std::move(socket));
    return make_epoll_tcp_transport(ex->context(), fd, local.protocol());
}

void set_batch_observer(asio::io_context& io, batch_observer* o) {
    asio::use_service<epoll_service>(io).set_observer(o);
}

std::size_t epoll_tcp_registered(asio::io_context& io) {
    if (!asio::has_service<epoll_service>(io)) return 0;
    return asio::use_service<epoll_service>(io).registered();
}

}  // namespace mqtt::net
