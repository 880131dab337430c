// The worker's HTTP server: listener on the inherited socket, one Session per connection
// (Beast's advanced server: DoRead/OnRead/DoWrite/OnWrite/DoClose kept alive by
// shared_from_this, pipelining with a bounded queue), heartbeat timer and graceful drain.
#include "shm/worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shm/api.h"
#include "shm/http_wire.h"
#include "shm/log.h"
#include "shm/mutex.h"
#include "shm/request_gate.h"
#include "shm/resp_server.h"
#include "wait_hub.h"

namespace shm {
namespace {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kQueueLimit = 8;  // Responses queued per connection before reads pause.
static_assert(kQueueLimit > 0, "a connection must be able to queue one response");
constexpr auto kHeartbeatPeriod = std::chrono::milliseconds(250);
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);
// After an error response the client may still be sending (an oversized body): read and drop
// that much, for that long, so it gets our answer instead of a reset.
constexpr size_t kLingerBytes = size_t{1} << 20;
constexpr auto kLingerTimeout = std::chrono::milliseconds(1000);
constexpr int kMaxThreads = 64;
// Bodies up to this size are copied behind the head and sent in one buffer; larger ones are sent
// from their own string. A connection keeps its last buffer for the next response up to
// kSpareBufferBytes, so one large answer does not pin memory.
constexpr size_t kInlineBodyBytes = 16 << 10;
constexpr size_t kSpareBufferBytes = 64 << 10;

// How long a draining worker still waits for the first request of a just-accepted connection.
constexpr std::chrono::milliseconds kFirstRequestGrace{1000};

// What the server needs of a connection whatever its executor type.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // The worker is stopping: finish what was received, then close.
  virtual void Drain() = 0;
};

// State shared by the listener, the sessions, the timers and the signal handler of one RunWorker.
// The io_context is the last member, so it is destroyed first: handlers it still holds destroy
// their sessions while the rest of the server is alive.
struct Server {
  Server(Segment* segment_in, const Router& router_in, const WorkerOptions& options_in)
      : segment(segment_in),
        router(router_in),
        options(options_in),
        gate(GateOptionsOf(options_in)),
        single_thread(options_in.threads <= 1),
        ioc(single_thread ? 1 : BOOST_ASIO_CONCURRENCY_HINT_DEFAULT) {}

  // Constant after construction.
  Segment* const segment;
  const Router& router;
  const WorkerOptions& options;
  const GateOptions gate;  // Views options.token.
  // One thread runs every handler, so sessions need no strand and Asio may skip its
  // multi-thread bookkeeping (concurrency hint 1).
  const bool single_thread;

  std::atomic<bool> draining{false};
  WaitHub* waits = nullptr;  // Set before the loop runs: where pops and acquires wait.

  Mutex mu;
  std::map<SessionBase*, std::weak_ptr<SessionBase>> sessions GUARDED_BY(mu);
  std::shared_ptr<RespServer> resp;  // Set before the loop runs; null without --resp-listen.

  // A draining worker stops once no HTTP or RESP connection is left.
  void StopIfDrainedLocked() REQUIRES(mu) {
    if (draining.load() && sessions.empty() && (!resp || resp->live() == 0)) ioc.stop();
  }

  net::io_context ioc;
};

// One connection. `Executor` is the io_context's own executor in a single-threaded worker and a
// strand of it otherwise: a concrete type, so no operation pays for a polymorphic executor.
template <typename Executor>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Executor>> {
 public:
  using Socket = net::basic_stream_socket<tcp, Executor>;
  using Timer = net::basic_waitable_timer<Clock, net::wait_traits<Clock>, Executor>;

  Session(Socket&& socket, Server* server)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), server_(server) {}

  ~Session() override {
    MutexLock lock(&server_->mu);
    server_->sessions.erase(this);
    server_->StopIfDrainedLocked();
  }

  void Run() {
    {
      MutexLock lock(&server_->mu);
      server_->sessions.emplace(this, this->weak_from_this());
    }
    // Run on the connection's strand (or the single thread's executor): the handlers of one
    // session never run concurrently.
    net::dispatch(socket_.get_executor(),
                  beast::bind_front_handler(&Session::DoRead, this->shared_from_this()));
  }

  // An idle connection closes now.
  void Drain() override {
    net::dispatch(socket_.get_executor(), [self = this->shared_from_this()] { self->OnDrain(); });
  }

 private:
  // A request already executed must get its answer: only an idle read is cancelled, and only
  // once no write is in flight (cancel() aborts every operation on the socket). Otherwise
  // OnWrite cancels it when the queue empties.
  void OnDrain() {
    closing_ = true;
    if (queue_.empty()) CancelIdleRead();
  }

  // The pending read has not received a byte of a request: nothing was executed for it.
  bool ReadIsIdle() const {
    return reading_ && buffer_.size() == 0 && parser_ && !parser_->got_some();
  }

  // Requires: no write in flight (queue_ empty).
  void CancelIdleRead() {
    if (!ReadIsIdle()) return;  // A request is arriving: it runs, is answered, then we close.
    if (requests_read_ == 0) {
      // A connection accepted an instant ago carries a request on its way (its client may even
      // have sent it already); closing now would drop it unanswered. Give it a short grace: it
      // is answered with Connection: close, or the read times out.
      SetDeadline(kFirstRequestGrace);
      return;
    }
    beast::error_code ec;
    socket_.cancel(ec);
  }

  // Requests already sent on the connection when a draining worker answers: read and answered
  // (served, or refused after a wait the stop cut short) rather than closed on without a reply.
  bool DrainPending() {
    if (!server_->draining.load() || final_) return false;
    beast::error_code ec;
    return buffer_.size() > 0 || socket_.available(ec) > 0;
  }

  void DoRead() {
    // While a request is parked, the requests pipelined behind it wait in the socket.
    if (parked_ || (closing_ && !DrainPending())) return;
    reading_ = true;
    parser_.emplace();  // A fresh parser per request: limits and state never leak across.
    ApplyLimits(server_->gate, &*parser_);
    SetDeadline(server_->options.read_timeout);
    // The head first: a client that sent Expect: 100-continue waits for our go before its body.
    http::async_read_header(
        socket_, buffer_, *parser_,
        beast::bind_front_handler(&Session::OnReadHeader, this->shared_from_this()));
  }

  // A declared length over the limit has already failed here (Beast checks Content-Length
  // against body_limit with the head), so its 413 goes out without reading the body.
  void OnReadHeader(beast::error_code ec, size_t bytes) {
    if (ec || parser_->is_done()) return OnRead(ec, bytes);
    const HttpRequest& head = parser_->get();
    if (ExpectsContinue(head)) {
      // RFC 9110 §10.1.1: refuse now rather than invite a body we would not use.
      if (std::optional<HttpResponse> refusal = GateHead(head, server_->gate)) {
        reading_ = false;
        ++requests_read_;
        Enqueue(std::move(*refusal), Clock::now(), head.method_string(), head.target(),
                /*close=*/true);
        return;
      }
      // An interim response, queued behind the answers to earlier pipelined requests.
      queue_.push_back(Outgoing{"HTTP/1.1 100 Continue\r\n\r\n", {}, false});
      if (queue_.size() == 1) DoWrite();
    }
    http::async_read(socket_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, this->shared_from_this()));
  }

  static bool ExpectsContinue(const HttpRequest& head) {
    auto it = head.find(http::field::expect);
    return head.version() >= 11 && it != head.end() && beast::iequals(it->value(), "100-continue");
  }

  void OnRead(beast::error_code ec, size_t /*bytes*/) {
    reading_ = false;
    if (timed_out_) return;  // The socket is closed.
    if (ec == http::error::end_of_stream || ec == net::error::operation_aborted) {
      closing_ = true;
      final_ = true;
      if (queue_.empty()) DoClose();
      return;
    }
    if (ec) {
      std::optional<HttpResponse> error = GateReadError(ec);
      if (error) {
        Enqueue(std::move(*error), Clock::now(), "-", "-", /*close=*/true);
      } else {
        SHM_LOG(kDebug) << "read: " << ec.message();
      }
      return;
    }
    Clock::time_point start = Clock::now();
    HttpRequest request = parser_->release();
    ++requests_read_;
    if (refuse_rest_) {
      // Pipelined behind a wait the stop cut short: not run, but answered.
      Enqueue(ErrorResponse(503, "ShuttingDown",
                            "the worker is stopping; send the request again on a new connection",
                            request.version()),
              start, request.method_string(), request.target(), /*close=*/true);
      return;
    }
    std::optional<ParkedWait> park;
    HttpResponse response = Respond(request, &park);
    if (park) return Park(std::move(request), std::move(*park), start);
    Answer(request, std::move(response), start);
  }

  HttpResponse Respond(const HttpRequest& request, std::optional<ParkedWait>* park) {
    if (std::optional<HttpResponse> refusal = GateHead(request, server_->gate)) {
      return std::move(*refusal);
    }
    HttpResponse response =
        server_->router.Handle(request, server_->segment, server_->options.index, park);
    response.keep_alive(request.keep_alive());
    return response;
  }

  void Answer(const HttpRequest& request, HttpResponse&& response, Clock::time_point start) {
    // RFC 9110 §9.3.2: the GET's status and fields (Content-Length included), and no body.
    if (request.method() == http::verb::head) response.body().clear();
    Enqueue(std::move(response), start, request.method_string(), request.target(),
            /*close=*/false);
    // A push, release or delete that a parked wait of this worker waits for needs no kick from
    // here: it wakes the WaitHub's watcher through the segment, like one of another process.
  }

  // The request waits (a pop, an acquire) on the worker's WaitHub, holding no thread; reads
  // stop until it is answered (its answer must go out before those of later requests). The
  // answer always arrives through OnWaitDone, posted to this connection's executor.
  void Park(HttpRequest&& request, ParkedWait&& wait, Clock::time_point start) {
    const Clock::duration remaining = std::max<Clock::duration>(wait.deadline - Clock::now(), {});
    auto done = [self = this->shared_from_this()](Status status, HttpResponse response) {
      net::post(self->socket_.get_executor(),
                [self, status = std::move(status), response = std::move(response)]() mutable {
                  self->OnWaitDone(std::move(status), std::move(response));
                });
    };
    parked_.emplace(Parked{std::move(request), start, 0, false});
    if (server_->waits->SubmitHttp(std::move(wait), std::move(done), &parked_->id)) return;
    parked_->queued = true;
    SHM_LOG(kDebug) << "wait: " << parked_->request.method_string() << " "
                    << parked_->request.target() << " parked";
    SetDeadline(remaining + server_->options.read_timeout);
    WatchHangup();
  }

  void OnWaitDone(Status status, HttpResponse outcome) {
    if (!parked_) return;  // The client went away meanwhile.
    Parked parked = std::move(*parked_);
    parked_.reset();
    refuse_rest_ = parked.queued && server_->draining.load();
    HttpResponse response = Router::Finish(parked.request, status, std::move(outcome));
    response.keep_alive(parked.request.keep_alive());
    Answer(parked.request, std::move(response), parked.start);
  }

  // A parked request's client may hang up: notice it (the socket turns readable at EOF), so
  // its wait does not take an item nobody will read. Bytes of a pipelined request prove the
  // client is there; they are read once the parked request is answered.
  void WatchHangup() {
    socket_.async_wait(Socket::wait_read,
                       beast::bind_front_handler(&Session::OnReadable, this->shared_from_this()));
  }

  void OnReadable(beast::error_code ec) {
    if (ec || !parked_) return;  // Closed, or answered meanwhile.
    char byte = 0;
    ssize_t n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      return WatchHangup();
    }
    server_->waits->queue()->Cancel(parked_->id);
    SHM_LOG(kDebug) << "wait: the client of " << parked_->request.method_string() << " "
                    << parked_->request.target() << " went away; its wait is dropped";
    parked_.reset();
    closing_ = true;
    if (queue_.empty()) DoClose();
  }

  // Counts, logs and queues `response`; `close` (or a response that must end the connection, or
  // a draining worker) stops reading further requests on this connection.
  void Enqueue(HttpResponse&& response, Clock::time_point start, std::string_view method,
               std::string_view target, bool close) {
    // A draining worker closes after this answer, unless requests already sent on the
    // connection wait behind it: they get their 503 first.
    if (close || (server_->draining.load() && !DrainPending())) response.keep_alive(false);
    linger_ = linger_ || close;
    // Respond and ErrorResponse prepare the payload; keep_alive() changes only Connection.
    unsigned status = response.result_int();
    server_->segment->CountResponse(server_->options.index, static_cast<int>(status));
    LogAccess(method, target, status, response.body().size(), start);
    bool last = response.need_eof();
    closing_ = closing_ || last;
    final_ = final_ || last;
    // The wire bytes go out of a recycled buffer: no allocation per response once warm. A large
    // body is sent from its own string rather than copied.
    Outgoing& out = queue_.emplace_back(Outgoing{std::move(spare_), {}, last});
    if (response.body().size() > kInlineBodyBytes && !response.chunked()) {
      out.head.clear();
      AppendResponseHead(response, &out.head);
      out.body = std::move(response.body());
    } else {
      SerializeResponse(response, &out.head);
    }
    if (queue_.size() == 1) DoWrite();
    if ((!closing_ || DrainPending()) && !reading_ && queue_.size() < kQueueLimit) DoRead();
  }

  static void LogAccess(std::string_view method, std::string_view target, unsigned status,
                        size_t bytes, Clock::time_point start) {
    LogLevel level = status >= 500 ? LogLevel::kWarn : LogLevel::kDebug;
    if (!LogEnabled(level)) return;
    auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
    LogMessage(level).stream() << "http " << method << " " << target << " " << status << " "
                               << bytes << "B " << micros << "us";
  }

  void DoWrite() {
    SetDeadline(server_->options.read_timeout);
    const Outgoing& out = queue_.front();
    std::array<net::const_buffer, 2> buffers{net::buffer(out.head), net::buffer(out.body)};
    net::async_write(socket_, buffers,
                     beast::bind_front_handler(&Session::OnWrite, this->shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t /*bytes*/) {
    if (ec) {
      SHM_LOG(kDebug) << "write: " << ec.message();
      return;
    }
    bool last = queue_.front().need_eof;
    if (queue_.front().head.capacity() <= kSpareBufferBytes) {
      spare_ = std::move(queue_.front().head);
    }
    queue_.pop_front();
    if (last) return DoClose();
    if (!queue_.empty()) return DoWrite();
    if (closing_) {
      // A pipelined read is still pending (drain): a request in progress is still executed and
      // answered; an idle read is cancelled and OnRead closes. Half-closing now would leave the
      // answer of a request that is arriving unsendable.
      if (reading_) return CancelIdleRead();
      if (DrainPending()) return DoRead();
      return DoClose();
    }
    if (!reading_) DoRead();  // Reads paused while the queue was full.
  }

  // Graceful close: send FIN, then read and drop what the client still sends (bounded), so an
  // error response is not lost to a reset.
  void DoClose() {
    beast::error_code ec;
    socket_.shutdown(Socket::shutdown_send, ec);
    if (ec || !linger_) return;
    SetDeadline(std::min<Clock::duration>(kLingerTimeout, server_->options.read_timeout));
    DoLinger();
  }

  void DoLinger() {
    discard_.resize(16 << 10);
    socket_.async_read_some(
        net::buffer(discard_),
        beast::bind_front_handler(&Session::OnLinger, this->shared_from_this()));
  }

  // Every read and write of the connection must finish by one deadline, set when an operation
  // starts (as beast::tcp_stream's expires_after, which cost a timer insert and cancel per
  // operation). The timer is re-armed only when the deadline moves earlier or when it fires
  // before the deadline; past the deadline the socket is closed and pending operations end.
  void SetDeadline(Clock::duration timeout) {
    deadline_ = Clock::now() + timeout;
    if (timer_armed_ && timer_expiry_ <= deadline_) return;  // OnTimer will look again.
    ArmTimer();
  }

  void ArmTimer() {
    timer_armed_ = true;
    timer_expiry_ = deadline_;
    timer_.expires_at(deadline_);  // Cancels an earlier wait, whose handler then does nothing.
    // A weak reference: a pending timer must not keep a finished connection alive.
    timer_.async_wait([weak = this->weak_from_this()](beast::error_code ec) {
      if (auto self = weak.lock()) self->OnTimer(ec);
    });
  }

  void OnTimer(beast::error_code ec) {
    if (ec == net::error::operation_aborted) return;  // Re-armed (or closing): a newer wait runs.
    timer_armed_ = false;
    if (Clock::now() < deadline_) return ArmTimer();  // Operations started since: not yet.
    timed_out_ = true;
    beast::error_code ignored;
    socket_.close(ignored);
  }

  void OnLinger(beast::error_code ec, size_t bytes) {
    lingered_ += bytes;
    if (ec || lingered_ >= kLingerBytes) return;  // EOF, timeout or enough: the socket closes.
    DoLinger();
  }

  Socket socket_;
  Timer timer_;                     // Waits until timer_expiry_ while timer_armed_.
  Clock::time_point deadline_;      // Pending operations must finish by then.
  Clock::time_point timer_expiry_;  // When the armed timer fires: never after deadline_.
  bool timer_armed_ = false;
  bool timed_out_ = false;  // The deadline passed and the socket was closed.
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  // A response as sent: its serialized head (and small body), a large body apart, and whether
  // the connection ends after it.
  struct Outgoing {
    std::string head;
    std::string body;
    bool need_eof;
  };
  std::deque<Outgoing> queue_;  // Responses in request order; front() is being written.
  // The request waiting in the WaitHub, if any: answered by OnWaitDone.
  struct Parked {
    HttpRequest request;
    Clock::time_point start;
    uint64_t id;
    bool queued;  // It waited (was not answered at once).
  };
  std::optional<Parked> parked_;
  std::string spare_;           // The last written buffer, reused for the next response.
  bool reading_ = false;        // A read is outstanding.
  bool closing_ = false;        // No further requests: close once the queue is written.
  bool final_ = false;          // The last answer is queued (or the client ended): read no more.
  bool refuse_rest_ = false;    // The stop cut a parked wait: later requests get 503.
  uint64_t requests_read_ = 0;  // Requests read on this connection.
  bool linger_ = false;         // An error answer may leave unread bytes: drain on close.
  std::vector<char> discard_;
  size_t lingered_ = 0;
  Server* const server_;
};

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  explicit Listener(Server* server)
      : server_(server), acceptor_(server->ioc), retry_(server->ioc) {}

  Status Adopt(int listen_fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getsockname(listen_fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return Status::InvalidArgument("listen fd " + std::to_string(listen_fd) + " is not a socket");
    }
    tcp protocol = address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
    beast::error_code ec;
    acceptor_.assign(protocol, listen_fd, ec);
    if (ec) return Status::Internal("cannot adopt the listening socket: " + ec.message());
    return Status::OK();
  }

  void DoAccept() {
    using Plain = net::io_context::executor_type;
    using Strand = net::strand<Plain>;
    if (server_->single_thread) {
      acceptor_.async_accept(server_->ioc.get_executor(),
                             beast::bind_front_handler(&Listener::OnAccept<Session<Plain>::Socket>,
                                                       shared_from_this()));
    } else {
      acceptor_.async_accept(net::make_strand(server_->ioc),
                             beast::bind_front_handler(&Listener::OnAccept<Session<Strand>::Socket>,
                                                       shared_from_this()));
    }
  }

  void Stop() {
    beast::error_code ec;
    retry_.cancel();
    acceptor_.close(ec);
  }

 private:
  template <typename Socket>
  void OnAccept(beast::error_code ec, Socket socket) {
    if (server_->draining.load() || ec == net::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors or similar: wait a little rather than spin.
      SHM_LOG(kWarn) << "accept: " << ec.message();
      retry_.expires_after(kAcceptRetryDelay);
      retry_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
        if (!wait_ec) self->DoAccept();
      });
      return;
    }
    using Executor = typename Socket::executor_type;
    std::make_shared<Session<Executor>>(std::move(socket), server_)->Run();
    DoAccept();
  }

  Server* const server_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
};

void ScheduleHeartbeat(Server* server, net::steady_timer* timer) {
  server->segment->Heartbeat(server->options.index);
  timer->expires_after(kHeartbeatPeriod);
  timer->async_wait([server, timer](beast::error_code ec) {
    if (!ec) ScheduleHeartbeat(server, timer);
  });
}

// Stop accepting, drain every session, and stop the loop when they are gone or time is up.
void StartDrain(Server* server, Listener* listener, net::steady_timer* drain_timer) {
  SHM_LOG(kInfo) << "worker " << server->options.index << " draining";
  server->draining.store(true);
  server->waits->Stop();  // Parked waits answer now: a pop 204, an acquire 503.
  StopBlockingWaits();
  listener->Stop();
  if (server->resp) server->resp->Drain();
  drain_timer->expires_after(server->options.drain_timeout);
  drain_timer->async_wait([server](beast::error_code ec) {
    if (!ec) server->ioc.stop();
  });
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    MutexLock lock(&server->mu);
    server->StopIfDrainedLocked();
    for (auto& [raw, weak] : server->sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  for (auto& session : live) session->Drain();
}

void RunLoop(net::io_context* ioc) {
  while (true) {
    try {
      ioc->run();
      return;
    } catch (const std::exception& e) {
      // A throw escaping a handler must not end the worker.
      SHM_LOG(kError) << "worker loop: " << e.what();
    }
  }
}

}  // namespace

int RunWorker(Segment* segment, int listen_fd, const Router& router, const WorkerOptions& options) {
  // The stop signals are blocked in every thread of the worker (threads inherit the mask, so
  // before the first one starts) and taken by the signal watcher below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  Server server(segment, router, options);
  WaitHub waits(&server.ioc);
  server.waits = &waits;
  auto listener = std::make_shared<Listener>(&server);
  Status s = listener->Adopt(listen_fd);
  if (!s.ok()) {
    SHM_LOG(kError) << "worker " << options.index << ": " << s.ToString();
    return 1;
  }
  if (options.resp_listen_fd >= 0) {
    RespServerOptions resp_options;
    resp_options.listen_fd = options.resp_listen_fd;
    resp_options.worker_index = options.index;
    resp_options.password = options.token;
    resp_options.token_matches = TokenMatches;
    resp_options.max_bulk_bytes = options.max_body_bytes;
    resp_options.read_timeout = options.read_timeout;
    resp_options.watch = [&waits](const std::string& key, const ObjectRef& object) {
      waits.WatchObject(key, object);
    };
    resp_options.watch_word = [&waits](std::atomic<uint32_t>* word, std::function<void()> fn) {
      waits.WatchWord(word, std::move(fn));
    };
    s = StartRespServer(
        &server.ioc, server.single_thread, segment, resp_options, waits.queue(),
        [&server] {
          MutexLock lock(&server.mu);
          server.StopIfDrainedLocked();
        },
        &server.resp);
    if (!s.ok()) {
      SHM_LOG(kError) << "worker " << options.index << ": " << s.ToString();
      return 1;
    }
  }
  net::steady_timer heartbeat(server.ioc);
  net::steady_timer drain_timer(server.ioc);
  // SIGTERM/SIGINT are taken by a thread of their own, blocked in every other one (threads
  // inherit the mask): the built-in waits park (WaitHub), but an application's handler may
  // still block an io thread, perhaps the only one, and a signal handled on the io_context
  // would wait for it, past the manager's SIGKILL. The watcher ends blocking library waits at
  // once (StopBlockingWaits), then drains on the io_context, which answers the parked waits.
  // (Blocked at the top of RunWorker, before any thread starts.)
  std::atomic<bool> stopped{false};
  std::thread signal_watcher([&] {
    for (int received = 0;;) {
      int signal = 0;
      if (sigwait(&stop_signals, &signal) != 0) continue;
      if (stopped.load()) return;
      if (++received == 1) {
        StopBlockingWaits();
        net::post(server.ioc, [&] { StartDrain(&server, listener.get(), &drain_timer); });
      } else {
        server.ioc.stop();  // A second signal: stop now.
      }
    }
  });
  ScheduleHeartbeat(&server, &heartbeat);
  listener->DoAccept();

  int threads = std::clamp(options.threads, 1, kMaxThreads);
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(RunLoop, &server.ioc);
  RunLoop(&server.ioc);
  for (std::thread& t : pool) t.join();
  // The stop signals stay blocked: one arriving now is not a reason to die instead of returning.
  stopped.store(true);
  pthread_kill(signal_watcher.native_handle(), SIGTERM);
  signal_watcher.join();
  // The RESP server's io objects must go before the io_context: dropped here when no session
  // holds it, else with the last session, while the io_context destroys its handlers (as the
  // HTTP sessions). As a member it would outlive the io_context (an ASan use-after-free).
  std::shared_ptr<RespServer> resp;
  {
    MutexLock lock(&server.mu);
    resp = std::move(server.resp);
  }
  resp.reset();
  SHM_LOG(kInfo) << "worker " << options.index << " stopped";
  return 0;
}

}  // namespace shm
