// AsyncStampedRead: an asynchronous read of a TCP socket that also yields when its bytes
// reached this host (the kernel's SO_TIMESTAMPNS receive timestamp), started as Asio starts
// its own reads.
//
// Why not recvmsg(2) then async_wait: Asio's async_wait re-arms the descriptor with
// epoll_ctl(2) every time, and trying the read first costs an EAGAIN recvmsg whenever the
// client waits for its reply (every request-reply round trip): 4.5 system calls per command
// against redis-server's 2.2. This read is an operation of Asio's own reactor, as
// async_read_some is: tried at once only when the reactor saw the socket readable since the
// last short read, otherwise queued without a system call; the reactor performs it (one
// recvmsg with the timestamp) when epoll reports the socket readable.
//
// It reaches into Asio's reactor (boost::asio::detail, Boost 1.81's epoll_reactor), so it
// exists only where that reactor serves the sockets (kReactorStampedReads): not on io_uring.
//
// Thread-safety: the socket must be served by an io_context run by one thread (the handler
// runs on it, never inside AsyncStampedRead). The buffer must stay valid until the handler
// runs. No process-shared state.
#ifndef SHM_RESP_STAMPED_READ_H_
#define SHM_RESP_STAMPED_READ_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <memory>
#include <utility>

namespace shm::resp {

#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
inline constexpr bool kReactorStampedReads = true;
#else
inline constexpr bool kReactorStampedReads = false;
#endif

inline int64_t WallNowNs() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// The receive timestamp recvmsg(2) attached to `msg`, or now when it attached none (the kernel
// stamps packets only once some socket asked for stamps).
inline int64_t ReceiveStampOf(msghdr& msg) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
      timespec at{};
      std::memcpy(&at, CMSG_DATA(c), sizeof at);
      return static_cast<int64_t>(at.tv_sec) * 1'000'000'000 + at.tv_nsec;
    }
  }
  return WallNowNs();
}

// One recvmsg(2) of up to `size` bytes with room for the timestamp. Returns the bytes read,
// 0 at the end of the stream, or -1 with errno set (EAGAIN: nothing to read yet).
inline ssize_t RecvStamped(int fd, void* data, size_t size, int64_t* arrival_ns) {
  iovec iov{data, size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = 0;
  do {
    n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n > 0) *arrival_ns = ReceiveStampOf(msg);
  return n;
}

#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
namespace stamped_read_internal {

namespace net = boost::asio;
using Socket = net::basic_stream_socket<net::ip::tcp, net::io_context::executor_type>;

// basic_socket keeps its descriptor's reactor state protected; a member pointer formed in a
// derived class's scope reads it.
struct ImplAccess : Socket {
  static auto& Of(Socket& socket) { return (socket.*(&ImplAccess::impl_)).get_implementation(); }
};

// Handler: void(boost::system::error_code, size_t bytes, int64_t arrival_ns).
template <typename Handler>
class Op final : public net::detail::reactor_op {
 public:
  Op(int fd, void* data, size_t size, Handler handler)
      : reactor_op(boost::system::error_code(), &Perform, &Complete),
        fd_(fd),
        data_(data),
        size_(size),
        handler_(std::move(handler)) {}

 private:
  // Called by the reactor (or at once, speculatively) with the descriptor's lock held.
  static status Perform(reactor_op* base) {
    auto* op = static_cast<Op*>(base);
    const ssize_t n = RecvStamped(op->fd_, op->data_, op->size_, &op->arrival_ns_);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return not_done;
      op->ec_ = boost::system::error_code(errno, boost::system::system_category());
      return done;
    }
    if (n == 0) {
      op->ec_ = net::error::eof;
      return done;
    }
    op->bytes_transferred_ = static_cast<size_t>(n);
    // A short read took all there was (TCP's recvmsg returns short only with its receive
    // queue empty): the next read waits for epoll's next edge, which new bytes raise, instead
    // of trying first and failing with EAGAIN, as Asio's own reads do (they count a read as
    // exhausted only at 0 bytes). The one exception, a read that stops at TCP urgent data,
    // stalls only that client until it sends more or its idle timeout closes it.
    return op->bytes_transferred_ < op->size_ ? done_and_exhausted : done;
  }

  // Called by the io_context's thread; owner is null when the context is destroyed with the
  // operation pending (the handler is then dropped, not run).
  static void Complete(void* owner, net::detail::operation* base, const boost::system::error_code&,
                       size_t) {
    std::unique_ptr<Op> op(static_cast<Op*>(base));
    if (owner == nullptr) return;
    Handler handler(std::move(op->handler_));
    const boost::system::error_code ec = op->ec_;
    const size_t bytes = op->bytes_transferred_;
    const int64_t arrival_ns = op->arrival_ns_;
    op.reset();  // Freed before the handler runs: the handler usually starts the next read.
    handler(ec, bytes, arrival_ns);
  }

  int fd_;
  void* data_;
  size_t size_;
  int64_t arrival_ns_ = 0;
  Handler handler_;
};

}  // namespace stamped_read_internal

template <typename Handler>
void AsyncStampedRead(stamped_read_internal::Socket& socket, void* data, size_t size,
                      Handler handler) {
  namespace net = boost::asio;
  auto& impl = stamped_read_internal::ImplAccess::Of(socket);
  auto& reactor = net::use_service<net::detail::reactor>(socket.get_executor().context());
  auto* op = new stamped_read_internal::Op<Handler>(impl.socket_, data, size, std::move(handler));
  reactor.start_op(net::detail::reactor::read_op, impl.socket_, impl.reactor_data_, op,
                   /*is_continuation=*/false, /*allow_speculative=*/true);
}
#else
// Declared only, so that callers compile a branch that is never taken without the reactor.
template <typename Socket, typename Handler>
void AsyncStampedRead(Socket& socket, void* data, size_t size, Handler handler);
#endif

}  // namespace shm::resp

#endif  // SHM_RESP_STAMPED_READ_H_
