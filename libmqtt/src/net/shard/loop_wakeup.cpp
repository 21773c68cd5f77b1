#include "loop_wakeup.hpp"

#include <boost/version.hpp>
#include <cerrno>
#include <cstdint>
#include <string>
#include <system_error>
#include <type_traits>

#include <sys/eventfd.h>
#include <unistd.h>

namespace mqtt::net::detail {

namespace asio = boost::asio;

// The eventfd is in the reactor as an internal descriptor with one operation that never
// completes: each write to it is an edge of its readiness (registered edge-triggered; the
// eventfd is never read, its counter only grows), and each edge runs the operation's perform
// step on the loop's thread. An ordinary readiness wait would be re-armed after every edge
// with an epoll_ctl, and an eventfd that is never read would be ready again at once. The same
// internal interface of Asio as the loop's epoll set (net/transport/epoll_tcp.cpp), pinned to
// the same Boost version.
static_assert(BOOST_VERSION / 100 == 1081,
              "loop_wakeup registers its descriptor through Boost 1.81's reactor; "
              "check register_internal_descriptor and reactor_op against this version");
using reactor = asio::detail::reactor;
static_assert(std::is_same_v<reactor, asio::detail::epoll_reactor>);

class loop_wakeup::op final : public asio::detail::reactor_op {
  public:
    explicit op(loop_wakeup& w)
        : reactor_op(boost::system::error_code{}, &op::perform, &op::complete), w_(w) {}

  private:
    static status perform(reactor_op* base) {
        static_cast<op*>(base)->w_.on_wake_();
        return not_done;
    }
    // Never completed; called only to destroy it (no owner) when the descriptor leaves the
    // reactor.
    static void complete(void* owner, asio::detail::operation* base,
                         const boost::system::error_code&, std::size_t) {
        if (owner == nullptr) delete static_cast<op*>(base);
    }
    loop_wakeup& w_;
};

loop_wakeup::loop_wakeup(asio::io_context& io, std::function<void()> on_wake, const char* what)
    : io_(io), on_wake_(std::move(on_wake)) {
    fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), std::string{what} + ": eventfd");
    auto& r = asio::use_service<reactor>(io_);
    r.init_task();  // the loop runs the reactor even before it has a socket
    // The operation is the descriptor's from here on, also when epoll_ctl fails (the
    // deregistration destroys it).
    const int err = r.register_internal_descriptor(reactor::read_op, fd_, data_, new op(*this));
    if (err != 0) {
        r.deregister_internal_descriptor(fd_, data_);
        r.cleanup_descriptor_data(data_);
        ::close(fd_);
        throw std::system_error(err, std::generic_category(), std::string{what} + ": epoll_ctl");
    }
}

loop_wakeup::~loop_wakeup() {
    auto& r = asio::use_service<reactor>(io_);
    r.deregister_internal_descriptor(fd_, data_);  // destroys the operation
    r.cleanup_descriptor_data(data_);
    ::close(fd_);
}

void loop_wakeup::notify() noexcept {
    const std::uint64_t one = 1;
    // Fails only with EAGAIN, after 2^64 - 2 writes.
    [[maybe_unused]] const auto n = ::write(fd_, &one, sizeof one);
}

}  // namespace mqtt::net::detail
