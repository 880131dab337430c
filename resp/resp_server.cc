// The RESP listener and session (see shm/resp_server.h).
#include "shm/resp_server.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "command_table.h"
#include "internal.h"
#include "shm/block_lines.h"
#include "shm/client_table.h"
#include "shm/log.h"
#include "shm/mutex.h"
#include "shm/resp_commands.h"
#include "shm/resp_protocol.h"
#include "shm/wait_queue.h"
#include "stamped_read.h"

namespace shm {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

constexpr size_t kReadChunk = 16 << 10;
// Replies batched before the session stops parsing and waits for the write (a long pipeline
// of large replies must not grow memory without bound).
constexpr size_t kMaxPendingOutput = size_t{4} << 20;
// Commands parsed, and their keys prefetched, at a time: a pipeline's batch (redis-benchmark -P
// 16) at once, few enough that the prefetched lines are still cached when the command runs.
constexpr size_t kParseAhead = 16;
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void Drain() = 0;
  // Closes the connection if CLIENT KILL (of any worker) asked for it.
  virtual void CloseIfKilled() = 0;
  // The end of the loop's pass: writes the replies the connection batched (Server::QueueFlush).
  virtual void FlushQueued() = 0;
};

// How often a worker looks for CLIENT KILL requests of its connections (ClientTable).
constexpr auto kKillSweepInterval = std::chrono::milliseconds(100);

// How long a connection waiting for its next command goes before the worker looks once whether
// the client has shut down its sending side (see Session::OnIdle).
constexpr auto kHalfCloseProbeDelay = std::chrono::milliseconds(200);

class Server final : public RespServer, public std::enable_shared_from_this<Server> {
 public:
  Server(net::io_context* ioc, bool single_thread, Segment* segment,
         const RespServerOptions& options, WaitQueue* waits, std::function<void()> on_drained)
      : ioc_(ioc),
        single_thread_(single_thread),
        waits_(waits),
        acceptor_(*ioc),
        retry_(*ioc),
        kill_sweep_(*ioc),
        on_drained_(std::move(on_drained)) {
    config_.segment = segment;
    config_.worker_index = options.worker_index;
    config_.password = options.password;
    config_.token_matches = options.token_matches;
    config_.started_ms = resp::NowMs();
    limits_.max_bulk_bytes = options.max_bulk_bytes;
    limits_.max_command_bytes = std::max<size_t>(options.max_bulk_bytes * 4, size_t{4} << 20);
    read_timeout_ = options.read_timeout;
    watch_ = options.watch;
  }

  Status Adopt(int fd);
  void DoAccept();
  // Answers the blocked pops' barriers (BlockLines::RequestBarrier) from this worker.
  void JoinBarrier(const RespServerOptions& options);
  void SweepKilled();
  void Drain() override;
  size_t live() const override { return live_.load(); }

  void Register(SessionBase* session, std::weak_ptr<SessionBase> weak) {
    MutexLock lock(&mu_);
    sessions_.emplace(session, std::move(weak));
    live_.fetch_add(1);
    resp::CountConnection(1);
  }
  void Unregister(SessionBase* session) {
    bool last = false;
    {
      MutexLock lock(&mu_);
      sessions_.erase(session);
      last = live_.fetch_sub(1) == 1;
    }
    resp::CountConnection(-1);
    if (last && draining_.load() && on_drained_) on_drained_();
  }

  // Writes `session`'s replies at the end of this pass of the event loop (single-threaded
  // worker only): after every connection the last epoll_wait(2) found readable has run its
  // commands, as redis-server writes its replies before it sleeps. The client then finds many
  // replies at once and sends many requests at once, so the next epoll_wait finds several
  // sockets ready instead of the one just answered. `session` unqueues itself if it goes first.
  void QueueFlush(SessionBase* session) {
    flush_.push_back(session);
    if (flush_.size() == 1) {
      // Posted from a handler, it runs after the reactor's next look at the sockets, which
      // does not block since a handler is queued (Asio's scheduler: epoll_wait with timeout 0).
      net::post(*ioc_, [self = shared_from_this()] { self->FlushAll(); });
    }
  }
  void Unqueue(SessionBase* session) { std::erase(flush_, session); }

  const resp::RespConfig& config() const { return config_; }
  const resp::RespLimits& limits() const { return limits_; }
  std::chrono::milliseconds read_timeout() const { return read_timeout_; }
  bool draining() const { return draining_.load(); }
  WaitQueue* waits() const { return waits_; }
  // Retries the waits of `key` at once when database `db`'s blocked pops' lines change.
  void WatchLines(const std::string& key, int db) const {
    ObjectRef ref;
    if (watch_ && resp::LinesObject(config_.segment, db, &ref)) watch_(key, ref);
  }

 private:
  template <typename Socket>
  void OnAccept(error_code ec, Socket socket);

  // FlushQueued only writes (a failed write closes the socket, whose pending read then
  // completes later, through the loop): it queues no flush and destroys no session, so the
  // list does not change while it runs.
  void FlushAll() {
    for (size_t i = 0; i < flush_.size(); ++i) flush_[i]->FlushQueued();
    flush_.clear();
  }

  net::io_context* ioc_;
  void AnswerBarrier(uint64_t request, int turns);
  static constexpr int kBarrierTurns = 4;

  const bool single_thread_;
  int barrier_slot_ = -1;
  std::atomic<uint64_t> barrier_asked_{0};
  WaitQueue* const waits_;  // The worker's, shared with HTTP: where blocked pops wait.
  resp::RespConfig config_;
  resp::RespLimits limits_;
  std::chrono::milliseconds read_timeout_{30000};
  std::function<void(const std::string&, const ObjectRef&)> watch_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
  net::steady_timer kill_sweep_;
  std::function<void()> on_drained_;
  std::atomic<bool> draining_{false};
  std::atomic<size_t> live_{0};
  Mutex mu_;
  std::map<SessionBase*, std::weak_ptr<SessionBase>> sessions_ GUARDED_BY(mu_);
  std::vector<SessionBase*> flush_;  // Loop thread only (single-threaded workers).
};

template <typename Executor>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Executor>> {
 public:
  using Socket = net::basic_stream_socket<tcp, Executor>;
  using Timer = net::basic_waitable_timer<Clock, net::wait_traits<Clock>, Executor>;

  Session(Socket&& socket, std::shared_ptr<Server> server)
      : socket_(std::move(socket)),
        idle_timer_(socket_.get_executor()),
        server_(std::move(server)) {}

  ~Session() override {
    if (flush_queued_) server_->Unqueue(this);
    ClientTable(server_->config().segment).Release(client_.table_slot, client_.id);
    server_->Unregister(this);
  }

  void CloseIfKilled() override {
    net::dispatch(socket_.get_executor(), [self = this->shared_from_this()] {
      if (self->closed_ || !ClientTable(self->server_->config().segment)
                                .KillRequested(self->client_.table_slot, self->client_.id)) {
        return;
      }
      // Killed after its current command: what was answered is still sent.
      self->closing_ = true;
      self->Unblock();
      self->Flush();
      if (!self->writing_) self->Close();
    });
  }

  void Run() {
    server_->Register(this, this->weak_from_this());
    client_.id = resp::NextClientId(server_->config().segment, server_->config().worker_index);
    client_.connected_ms = resp::NowMs();
    error_code ec;
    tcp::endpoint peer = socket_.remote_endpoint(ec);
    if (!ec) client_.address = peer.address().to_string() + ":" + std::to_string(peer.port());
    tcp::endpoint local = socket_.local_endpoint(ec);
    if (!ec)
      client_.local_address = local.address().to_string() + ":" + std::to_string(local.port());
    client_.fd = socket_.native_handle();
    client_.table_slot = ClientTable(server_->config().segment)
                             .Claim(client_.id, getpid(), client_.fd, client_.address,
                                    client_.local_address, client_.connected_ms);
    socket_.set_option(tcp::no_delay(true), ec);
    if constexpr (kStampedReads) {
      int on = 1;  // Receive timestamps: when a blocked pop's command arrived (ReadStamped).
      setsockopt(socket_.native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    }
    // Replies are written at once when the socket takes them (WriteNow); the socket must then
    // answer would_block rather than block the worker.
    socket_.non_blocking(true, ec);
    net::dispatch(socket_.get_executor(), [self = this->shared_from_this()] { self->DoRead(); });
  }

  void Drain() override {
    net::dispatch(socket_.get_executor(), [self = this->shared_from_this()] {
      self->closing_ = true;
      self->Flush();
      // An idle connection (nothing half-received, nothing to send) closes now; a blocked pop
      // gives up without taking an item.
      if (!self->writing_ && (self->blocked_ || self->start_ == self->used_)) self->Close();
    });
  }

 private:
  void DoRead() {
    if (reading_ || closed_) return;
    if (in_.size() - used_ < kReadChunk) in_.resize(used_ + kReadChunk);
    reading_ = true;
    if (!blocked_) StartIdleClock();
    if constexpr (kStampedReads) {
      ReadStamped();
    } else {
      socket_.async_read_some(net::buffer(in_.data() + used_, in_.size() - used_),
                              [self = this->shared_from_this()](error_code ec, size_t n) {
                                self->arrival_ns_ = resp::WallNowNs();
                                self->OnRead(ec, n);
                              });
    }
  }

  // With one thread on the loop, a read is recvmsg(2) itself, to learn when the bytes reached
  // the server (the kernel's receive timestamp): blocked pops line up by that (BlockLines), so
  // two clients that blocked on two workers are served in the order they sent, whichever worker
  // ran first. (With a pool of threads the session reads through Asio and stamps the time it
  // read.) On epoll the read is an operation of Asio's reactor (resp/stamped_read.h): one
  // recvmsg per command, no re-arm of the descriptor.
  void ReadStamped() {
    auto self = this->shared_from_this();
    if constexpr (resp::kReactorStampedReads) {
      resp::AsyncStampedRead(socket_, in_.data() + used_, in_.size() - used_,
                             [self](error_code ec, size_t n, int64_t arrival_ns) {
                               if (self->closed_) {
                                 self->reading_ = false;
                                 return;
                               }
                               if (!ec) self->arrival_ns_ = arrival_ns;
                               self->OnRead(ec, n);
                             });
    } else {
      ReadStampedThenWait(std::move(self));
    }
  }

  // Without Asio's reactor (io_uring): try the read, and when there is nothing to read wait
  // for readiness and read again. (No reactor runs between the read that found nothing and the
  // wait on this thread, so no readiness is missed.)
  void ReadStampedThenWait(std::shared_ptr<Session> self) {
    int64_t arrival_ns = 0;
    const ssize_t n = resp::RecvStamped(socket_.native_handle(), in_.data() + used_,
                                        in_.size() - used_, &arrival_ns);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      socket_.async_wait(Socket::wait_read, [self](error_code ec) {
        if (ec || self->closed_) return self->OnRead(ec ? ec : net::error::operation_aborted, 0);
        self->ReadStampedThenWait(self);
      });
      return;
    }
    error_code ec;
    if (n < 0) {
      ec = error_code(errno, boost::system::system_category());
    } else if (n == 0) {
      ec = net::error::eof;
    } else {
      arrival_ns_ = arrival_ns;
    }
    // Completed as Asio completes a read: through the loop, never inside the caller.
    net::post(socket_.get_executor(), [self, ec, n] {
      if (self->closed_) {
        self->reading_ = false;
        return;
      }
      self->OnRead(ec, ec ? 0 : static_cast<size_t>(n));
    });
  }

  // A connection must send its next command within the read timeout (a blocked pop excepted):
  // every read moves the deadline. The timer is not re-armed per read (an insert, a cancel and
  // a posted handler per command): it is armed only when none is pending, and when it fires
  // before the deadline it waits again for what is left. It also fires once per wait,
  // kHalfCloseProbeDelay into it, for the half-close probe (OnIdle).
  void StartIdleClock() {
    idle_since_ = Clock::now();
    idle_deadline_ = idle_since_ + server_->read_timeout();
    half_close_probed_ = false;
    if (!idle_timer_armed_) ArmIdleTimer();
  }

  void ArmIdleTimer() {
    idle_timer_armed_ = true;
    idle_timer_.expires_at(half_close_probed_
                               ? idle_deadline_
                               : std::min(idle_deadline_, idle_since_ + kHalfCloseProbeDelay));
    // A weak reference: a pending timer must not keep a finished connection alive.
    idle_timer_.async_wait([weak = this->weak_from_this()](error_code ec) {
      if (auto self = weak.lock()) self->OnIdle(ec);
    });
  }

  void OnIdle(error_code ec) {
    idle_timer_armed_ = false;
    // Nothing to time while no read is pending or a pop is blocked: the next read arms again.
    if (ec || closed_ || blocked_ || !reading_) return;
    const Clock::time_point now = Clock::now();
    if (now < idle_deadline_) {
      if (!half_close_probed_ && now >= idle_since_ + kHalfCloseProbeDelay) {
        half_close_probed_ = true;
        if (PeerShutDownSending()) {
          // Ends the pending read as a failed read ends: what is batched is written, then the
          // connection closes (OnRead).
          error_code ignored;
          socket_.cancel(ignored);
          return;
        }
      }
      return ArmIdleTimer();
    }
    SHM_LOG(kDebug) << "resp: closing idle connection " << client_.address;
    Close();
  }

  // Whether the client has shut down its sending side with nothing left unread. A read that
  // took everything there was waits for epoll's next edge (resp/stamped_read.h), and a FIN that
  // came before that read raises none (a pipeline sent then `shutdown(SHUT_WR)`, as `nc -N`
  // does): without this look, such a client would wait the whole read timeout for the close.
  // One peek per wait, kHalfCloseProbeDelay into it, instead of one per read.
  bool PeerShutDownSending() {
    char byte = 0;
    ssize_t n = 0;
    do {
      n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n == 0;
  }

  void OnRead(error_code ec, size_t bytes) {
    reading_ = false;
    if (ec) {
      // The client went away (or the idle timer closed the socket): a parked pop must not take
      // an item no one will read. Replies still batched go first (a client that shut down its
      // sending side still reads them).
      Unblock();
      Flush();
      if (!writing_) Close();
      closing_ = true;
      return;
    }
    used_ += bytes;
    Process();
  }

  // Runs every complete command in the buffer, in order, into one batch of replies, and writes
  // the batch with one system call.
  void Process() {
    while (RunCommands() && !writing_ && !closed_ && WriteNow()) {
      // The output bound paused parsing and the batch went out at once: parse on.
    }
    if (closing_) {
      Flush();
      if (!writing_ && out_.empty()) Close();
      return;
    }
    // Keep reading while blocked too: that is how a client that hangs up is noticed.
    if (out_.size() < kMaxPendingOutput && used_ - start_ <= server_->limits().max_command_bytes) {
      DoRead();
    }
    if (out_.empty() || writing_ || closed_) return;
    // One thread runs the loop: the replies wait for the end of its pass (Server::QueueFlush),
    // the pending read keeping the session alive until then.
    if (kOneThread && reading_) {
      if (!flush_queued_) {
        flush_queued_ = true;
        server_->QueueFlush(this);
      }
    } else {
      WriteNow();
    }
  }

  // Runs the complete commands in the buffer; true when it stopped for the output bound with
  // complete commands possibly left. Parses up to kParseAhead commands at a time and prefetches
  // the keys they will read, so that a pipeline waits on memory once per batch, not per key.
  bool RunCommands() {
    while (!blocked_ && !closing_ && out_.size() < kMaxPendingOutput && used_ - start_ >= needed_) {
      needed_ = 0;
      size_t parsed = 0;
      const resp::ParseStatus stop = ParseAhead(&parsed);
      if (parsed > 1) resp::Prefetch(server_->config(), std::span(ahead_.data(), parsed));
      batch_ms_ = resp::NowMs();  // The commands' time in the client table: one clock read.
      size_t ran = 0;
      for (; ran < parsed && !blocked_ && !closing_ && out_.size() < kMaxPendingOutput; ++ran) {
        start_ += ahead_[ran].consumed;
        if (!ahead_[ran].args.empty()) Run(ahead_[ran]);  // Empty: a blank inline line.
      }
      // Stopped early (blocked, closing, output bound): what was parsed past start_ is parsed
      // again on the next call.
      if (ran < parsed) break;
      if (stop == resp::ParseStatus::kIncomplete) {
        needed_ = ahead_[parsed].needed;
        break;
      }
      if (stop == resp::ParseStatus::kError) {
        resp::ReplyWriter(&out_, client_.protocol).Error("ERR " + ahead_[parsed].error);
        closing_ = true;
        break;
      }
    }
    // A pending read writes into in_ past used_: the buffer may move only between reads.
    if (!reading_) Compact();
    return !blocked_ && !closing_ && out_.size() >= kMaxPendingOutput;
  }

  // Parses commands from start_ into ahead_ until kParseAhead are parsed (answers kCommand) or
  // one is incomplete or bad (answers that; its ParsedCommand is ahead_[*parsed]).
  resp::ParseStatus ParseAhead(size_t* parsed) {
    size_t offset = start_;
    while (*parsed < kParseAhead) {
      resp::ParsedCommand& command = ahead_[*parsed];
      resp::ParseStatus status = resp::ParseCommand(
          std::string_view(in_.data() + offset, used_ - offset), server_->limits(), &command);
      if (status == resp::ParseStatus::kIncomplete || status == resp::ParseStatus::kError) {
        return status;
      }
      command.row = command.args.empty() ? nullptr : resp::Lookup(command.args[0]);
      offset += command.consumed;
      ++*parsed;
    }
    return resp::ParseStatus::kCommand;
  }

  void Run(const resp::ParsedCommand& command) {
    NoteCommand(command);
    const size_t mark = out_.size();
    // EXEC holds its database from blocked pops, so none sees the transaction half done (a
    // push then a delete of the same list): they are served after it, from what it left.
    BlockLines::Place hold;
    if (client_.in_multi && command.row != nullptr && command.row->name == "exec") {
      BlockLines(server_->config().segment).Hold(client_.db, &hold).ok();
    }
    resp::Outcome outcome = Execute(command);
    if (hold.valid()) BlockLines(server_->config().segment).Leave(hold);
    NoteState();
    if (outcome == resp::Outcome::kBlock) {
      Block();
    } else if (!client_.pushed.empty()) {
      ServeBeforeReply(mark);
    }
    if (client_.close_after_reply) closing_ = true;
  }

  resp::Outcome Execute(const resp::ParsedCommand& command) {
    try {
      return resp::Execute(server_->config(), &client_, command.row, command.args, &out_,
                           &blocked_pop_);
    } catch (const std::exception& e) {
      // A throw must not end the worker; the connection stays usable.
      SHM_LOG(kError) << "resp: " << e.what();
      resp::ReplyWriter(&out_, client_.protocol)
          .Error(std::string("ERR internal error: ") + e.what());
      return resp::Outcome::kReplied;
    }
  }

  // The connection's row (ClientTable): the command's name when it changed, and its time.
  void NoteCommand(const resp::ParsedCommand& command) {
    if (client_.table_slot < 0) return;
    client_.query_bytes = used_ - start_ + command.consumed;
    std::string_view name = command.row != nullptr ? command.row->name : "unknown";
    ClientTable table(server_->config().segment);
    if (command.row != nullptr && (command.row->flags & resp::kContainer) != 0 &&
        command.args.size() > 1) {
      // Redis's "container|subcommand" (client|list), lower case, bounded.
      std::string full(name);
      full += '|';
      for (char ch : command.args[1].substr(0, 24)) {
        full += static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
      }
      noted_command_ = {};
      table.SetCommand(client_.table_slot, client_.id, full, batch_ms_);
    } else if (name.data() != noted_command_.data() || name.size() != noted_command_.size()) {
      // Names are the rows' own (or one literal): the same command has the same pointer, so
      // the usual pipeline of one command costs no string compare.
      noted_command_ = name;
      table.SetCommand(client_.table_slot, client_.id, name, batch_ms_);
    } else if (batch_ms_ != noted_ms_) {  // A pipeline's commands share their batch's time.
      table.Touch(client_.table_slot, client_.id, batch_ms_);
    }
    noted_ms_ = batch_ms_;
  }
  // What a command may have changed in the row: MULTI state, protocol (HELLO).
  void NoteState() {
    if (client_.table_slot < 0) return;
    if (client_.in_multi != noted_multi_) {
      noted_multi_ = client_.in_multi;
      SetTableFlag(ClientRow::kInMulti, noted_multi_);
    }
    if (client_.protocol != noted_protocol_) {
      noted_protocol_ = client_.protocol;
      ClientTable(server_->config().segment)
          .SetProtocol(client_.table_slot, client_.id, noted_protocol_);
    }
  }
  void SetTableFlag(uint32_t flag, bool on) {
    ClientTable(server_->config().segment).SetFlag(client_.table_slot, client_.id, flag, on);
  }

  void Compact() {
    if (start_ == used_) {
      start_ = used_ = 0;
      if (in_.capacity() > (size_t{1} << 20)) std::string().swap(in_);
    } else if (start_ > 0 && start_ >= used_ / 2) {
      std::memmove(in_.data(), in_.data() + start_, used_ - start_);
      used_ -= start_;
      start_ = 0;
    }
  }

  // The pop takes its place in the lines of its keys (shm/block_lines.h: across workers, in the
  // order pops blocked), then waits in the worker's WaitQueue (shm/wait_queue.h) under a key of
  // its own: the line, not the queue, orders it. The queue retries it when its keyspace's word
  // rings (a pusher notified it) and on the worker's poll; its reply comes back through
  // OnUnblocked on this executor.
  void Block() {
    Segment* segment = server_->config().segment;
    Status joined = BlockLines(segment).Join(client_.db, blocked_pop_.keys, arrival_ns_, &place_);
    if (!joined.ok()) {
      resp::ReplyWriter(&out_, client_.protocol).Error("ERR " + std::string(joined.message()));
      return;
    }
    // In line before INFO counts it: a client that saw blocked_clients and pushes finds it.
    SetTableFlag(ClientRow::kBlocked, true);
    phase_ = Phase::kWaiting;
    if (blocked_pop_.first_try) barrier_ = BlockLines(segment).RequestBarrier();
    Park(
        blocked_pop_.deadline, [](Session& self, uint64_t seq) { return self.TryServePop(seq); },
        [](Session& self, uint64_t seq, bool stopping) { self.GiveUpPop(seq, stopping); });
  }

  // The command pushed to keys that blocked pops wait on: its reply (what it appended to out_
  // from `mark`) waits until their lines are served, as Redis serves them before the next
  // command (chains included: a served BLMOVE serves its destination's line the same way).
  void ServeBeforeReply(size_t mark) {
    service_ = resp::LineService(server_->config().segment, std::move(client_.pushed), false);
    client_.pushed.clear();
    if (service_.Step()) {
      service_ = {};
      return;
    }
    held_ = out_.substr(mark);
    out_.resize(mark);
    phase_ = Phase::kPushing;
    Park(
        Clock::now() + resp::LineService::kMaxServe,
        [](Session& self, uint64_t seq) {
          if (!self.service_.Step()) return false;
          self.FinishWait(seq, std::move(self.held_), false);
          return true;
        },
        [](Session& self, uint64_t seq, bool) {
          self.FinishWait(seq, std::move(self.held_), false);  // Bounded: answer anyway.
        });
  }

  template <typename Attempt, typename GiveUp>
  void Park(Clock::time_point deadline, Attempt attempt, GiveUp give_up) {
    blocked_ = true;
    const uint64_t seq = ++block_seq_;
    auto self = this->shared_from_this();
    std::string key = "resp-block:" + std::to_string(client_.id) + ":" + std::to_string(seq);
    WaitQueue::Wait wait{key, deadline, [self, seq, attempt] { return attempt(*self, seq); },
                         [self, seq, give_up](bool stopping) { give_up(*self, seq, stopping); }};
    const int db = phase_ == Phase::kPushing ? service_.db() : client_.db;
    wait_id_ = 0;
    if (!server_->waits()->Submit(std::move(wait), &wait_id_)) {
      server_->WatchLines(key, db);
      SHM_LOG(kDebug) << "resp: blocked pop of " << client_.address << " parked";
    }
  }

  // The queue's try of a blocked pop (any thread, under the queue's mutex; the session is
  // blocked, so nothing else uses its state).
  bool TryServePop(uint64_t seq) {
    Segment* segment = server_->config().segment;
    if (phase_ == Phase::kServing) {
      if (!service_.Step()) return false;
      FinishWait(seq, std::move(held_), false);
      return true;
    }
    std::string reply;
    if (TakeUnblockRequest(&reply)) {
      FinishWait(seq, std::move(reply), false);
      return true;
    }
    BlockLines lines(segment);
    if (blocked_pop_.first_try && !lines.BarrierDone(barrier_)) return false;
    const bool notified = lines.StateOf(place_) == BlockLines::State::kNotified;
    if (!notified && lines.BarrierPending()) return false;  // A pusher serves in turn soon.
    const bool taking = !notified && lines.BeginTake(place_);
    const bool answered =
        resp::TryBlockedPop(server_->config(), &client_, blocked_pop_, &place_, &reply);
    blocked_pop_.first_try = false;
    if (!answered) {
      // Notified but nothing to take (another client took it): back in line, and the pusher
      // moves on.
      if (notified && lines.Rearm(place_)) resp::RingLines(segment, client_.db);
      if (taking) lines.EndTake(place_);
      return false;
    }
    if (!client_.pushed.empty()) {  // A BLMOVE moved: its destination's line first.
      lines.Serve(place_);
      phase_ = Phase::kServing;
      held_ = std::move(reply);
      service_ = resp::LineService(segment, std::move(client_.pushed), true);
      client_.pushed.clear();
      return TryServePop(seq);
    }
    FinishWait(seq, std::move(reply), false);
    return true;
  }

  void GiveUpPop(uint64_t seq, bool stopping) {
    if (phase_ == Phase::kServing) return FinishWait(seq, std::move(held_), stopping);
    std::string reply;
    if (blocked_pop_.first_try && !stopping) {
      // The deadline came before the barrier (a tiny timeout): the command's own try, now.
      blocked_pop_.first_try = false;
      blocked_pop_.deadline = Clock::time_point::min();
      resp::TryBlockedPop(server_->config(), &client_, blocked_pop_, &place_, &reply);
      // A move's destination line is left to its own pops' retries, woken now.
      for (const auto& [db, key] : client_.pushed) resp::RingLines(server_->config().segment, db);
      client_.pushed.clear();
      return FinishWait(seq, std::move(reply), false);
    }
    if (!stopping) {
      resp::ReplyWriter w(&reply, client_.protocol);
      // BLMOVE and BRPOPLPUSH time out with a nil, the pops with *-1.
      if (blocked_pop_.kind == resp::BlockedPop::Kind::kMove) {
        w.Null();
      } else {
        w.NullArray();
      }
    }
    FinishWait(seq, std::move(reply), stopping);  // Stopping: close, as Drain does.
  }

  // The wait is over: leave the line (the next pop's turn) and hand the reply over.
  void FinishWait(uint64_t seq, std::string reply, bool close) {
    LeaveLine();
    Unblocked(seq, std::move(reply), close);
  }

  void LeaveLine() {
    phase_ = Phase::kNone;
    service_ = {};
    if (!place_.valid()) return;
    Segment* segment = server_->config().segment;
    BlockLines(segment).Leave(place_);
    place_ = {};
    resp::RingLines(segment, client_.db);
  }

  // Called from the queue (any thread): hands the reply to this connection's executor.
  void Unblocked(uint64_t seq, std::string reply, bool close) {
    net::post(socket_.get_executor(),
              [self = this->shared_from_this(), seq, reply = std::move(reply), close]() mutable {
                self->OnUnblocked(seq, std::move(reply), close);
              });
  }

  void OnUnblocked(uint64_t seq, std::string reply, bool close) {
    if (!blocked_ || seq != block_seq_ || closed_) return;  // Cancelled meanwhile.
    blocked_ = false;
    SetTableFlag(ClientRow::kBlocked, false);
    if (close) return Close();
    out_ += reply;
    if (reading_) StartIdleClock();  // The read kept pending while blocked had no deadline.
    Process();
  }

  // The blocked pop ends unanswered (the client went away): it must take nothing.
  // CLIENT UNBLOCK (of any worker) asked this pop to end: its answer, a timeout's nil or the
  // UNBLOCKED error, into *reply. Called by the queue's try (any thread): the table is
  // lock-free and the protocol is not changed while the connection is blocked.
  bool TakeUnblockRequest(std::string* reply) {
    uint32_t unblock =
        ClientTable(server_->config().segment).TakeUnblock(client_.table_slot, client_.id);
    if (unblock == 0) return false;
    resp::ReplyWriter w(reply, client_.protocol);
    unblock == ClientRow::kUnblockError ? w.Error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
                                        : w.NullArray();
    return true;
  }

  void Unblock() {
    if (!blocked_) return;
    SetTableFlag(ClientRow::kBlocked, false);
    blocked_ = false;
    ++block_seq_;
    server_->waits()->Cancel(wait_id_);
    LeaveLine();  // After the cancel: no try of the wait runs any more.
    held_.clear();
  }

  void FlushQueued() override {
    flush_queued_ = false;
    Flush();
  }

  // Writes the replies batched for the end of the pass now (what the socket does not take at
  // once goes out with a pending write).
  void Flush() {
    if (!out_.empty() && !writing_ && !closed_) WriteNow();
  }

  // Writes the batch at once when the socket takes it all (the usual case: no write operation,
  // no completion handler); whatever it does not take goes out with an async_write. False when
  // the batch is not all written (a write is pending, or the connection failed and closed).
  bool WriteNow() {
    error_code ec;
    size_t n = socket_.write_some(net::buffer(out_), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      ec = {};
      n = 0;
    }
    if (ec) {
      Unblock();
      Close();
      return false;
    }
    if (n == out_.size()) {
      out_.clear();
      if (out_.capacity() > kMaxPendingOutput) std::string().swap(out_);
      return true;
    }
    out_.erase(0, n);
    DoWrite();
    return false;
  }

  void DoWrite() {
    writing_ = true;
    std::swap(out_, sending_);
    net::async_write(
        socket_, net::buffer(sending_),
        [self = this->shared_from_this()](error_code ec, size_t) { self->OnWrite(ec); });
  }

  void OnWrite(error_code ec) {
    writing_ = false;
    sending_.clear();
    if (sending_.capacity() > kMaxPendingOutput) std::string().swap(sending_);
    if (ec) {
      Unblock();
      return Close();
    }
    if (closing_ && out_.empty() && (blocked_ || start_ == used_ || !reading_)) return Close();
    Process();  // Parsing may have paused for the output bound.
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    Unblock();
    error_code ec;
    idle_timer_.cancel();
    socket_.shutdown(Socket::shutdown_both, ec);
    socket_.close(ec);
  }

  Socket socket_;
  Timer idle_timer_;  // Pending while idle_timer_armed_; fires at or before idle_deadline_.
  Clock::time_point idle_deadline_;
  Clock::time_point idle_since_;  // When the pending read started (StartIdleClock).
  bool idle_timer_armed_ = false;
  bool half_close_probed_ = false;  // This wait's half-close probe is done.
  std::shared_ptr<Server> server_;
  std::string in_;  // Received bytes; [start_, used_) not yet parsed.
  size_t start_ = 0;
  size_t used_ = 0;
  size_t needed_ = 0;  // Bytes past start_ before parsing again can make progress.
  // Commands parsed ahead of start_ (RunCommands); one more than a batch, for the incomplete or
  // bad command that ends it.
  std::array<resp::ParsedCommand, kParseAhead + 1> ahead_;
  std::string out_;      // Replies of the current batch.
  std::string sending_;  // The batch being written.
  resp::RespClient client_;
  resp::BlockedPop blocked_pop_;
  // What the row was last told (NoteCommand, NoteState).
  std::string_view noted_command_;
  bool noted_multi_ = false;
  int noted_protocol_ = 2;
  int64_t batch_ms_ = 0;    // Wall clock when the current batch was parsed.
  int64_t noted_ms_ = 0;    // The time the row was last given.
  uint64_t block_seq_ = 0;  // Bumped per blocked pop and per cancel: stale replies are dropped.
  uint64_t wait_id_ = 0;    // The blocked pop's id in the WaitQueue.
  // What the parked wait is: a blocked pop waiting in line or serving its destination's line
  // (BLMOVE), or a command whose reply waits for the pops it serves (ServeBeforeReply).
  enum class Phase { kNone, kWaiting, kServing, kPushing };
  Phase phase_ = Phase::kNone;
  BlockLines::Place place_;    // The blocked pop's place in its keys' lines.
  resp::LineService service_;  // The lines a pusher (or a served BLMOVE) serves.
  std::string held_;           // The reply that waits for service_.
  // Wall-clock ns when the last bytes read reached the server: a blocked pop's place in line.
  int64_t arrival_ns_ = 0;
  uint64_t barrier_ = 0;  // The barrier a blocked pop's first try waits for (BlockedPop).
  // One thread runs the worker's loop (no strand): reads are stamped, replies wait for the end
  // of the loop's pass (Server::QueueFlush).
  static constexpr bool kOneThread = std::is_same_v<Executor, net::io_context::executor_type>;
  static constexpr bool kStampedReads = kOneThread;
  bool flush_queued_ = false;  // In the server's flush list.
  bool reading_ = false;
  bool writing_ = false;
  bool blocked_ = false;  // A BLPOP/BRPOP waits; later commands stay in the buffer.
  bool closing_ = false;  // Answer what was run, then close.
  bool closed_ = false;
};

Status Server::Adopt(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return Status::InvalidArgument("RESP listen fd " + std::to_string(fd) + " is not a socket");
  }
  error_code ec;
  acceptor_.assign(address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) return Status::Internal("cannot adopt the RESP listening socket: " + ec.message());
  return Status::OK();
}

void Server::DoAccept() {
  using Plain = net::io_context::executor_type;
  using Strand = net::strand<Plain>;
  auto self = shared_from_this();
  if (single_thread_) {
    acceptor_.async_accept(ioc_->get_executor(), [self](error_code ec, Session<Plain>::Socket s) {
      self->OnAccept(ec, std::move(s));
    });
  } else {
    acceptor_.async_accept(
        net::make_strand(*ioc_),
        [self](error_code ec, Session<Strand>::Socket s) { self->OnAccept(ec, std::move(s)); });
  }
}

template <typename Socket>
void Server::OnAccept(error_code ec, Socket socket) {
  if (draining_.load() || ec == net::error::operation_aborted) return;
  if (ec) {
    SHM_LOG(kWarn) << "resp accept: " << ec.message();
    retry_.expires_after(kAcceptRetryDelay);
    retry_.async_wait([self = shared_from_this()](error_code wait_ec) {
      if (!wait_ec) self->DoAccept();
    });
    return;
  }
  using Executor = typename Socket::executor_type;
  std::make_shared<Session<Executor>>(std::move(socket), shared_from_this())->Run();
  DoAccept();
}

void Server::SweepKilled() {
  kill_sweep_.expires_after(kKillSweepInterval);
  kill_sweep_.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || self->draining_.load()) return;
    if (!ClientTable(self->config_.segment).AnyKillRequested(getpid())) return self->SweepKilled();
    std::vector<std::shared_ptr<SessionBase>> live;
    {
      MutexLock lock(&self->mu_);
      for (auto& [raw, weak] : self->sessions_) {
        if (auto session = weak.lock()) live.push_back(std::move(session));
      }
    }
    for (auto& session : live) session->CloseIfKilled();
    self->SweepKilled();
  });
}

void Server::JoinBarrier(const RespServerOptions& options) {
  if (!options.watch_word) return;
  BlockLines lines(config_.segment);
  barrier_slot_ = lines.JoinBarrier();
  if (barrier_slot_ < 0) return;  // More workers than slots: pushers do not wait for this one.
  std::weak_ptr<Server> weak = shared_from_this();
  options.watch_word(lines.BarrierWord(), [weak] {
    auto self = weak.lock();
    if (!self || self->draining_.load()) return;
    const uint64_t request = BlockLines(self->config_.segment).BarrierRequested();
    uint64_t asked = self->barrier_asked_.load();
    if (request <= asked || !self->barrier_asked_.compare_exchange_strong(asked, request)) return;
    self->AnswerBarrier(request, kBarrierTurns);
  });
}

// A few turns of the loop, each behind the reactor's next look at the sockets: what reached
// this worker before the request (a pop's command) has been read and run before it answers.
void Server::AnswerBarrier(uint64_t request, int turns) {
  net::post(*ioc_, [self = shared_from_this(), request, turns] {
    if (turns > 1) return self->AnswerBarrier(request, turns - 1);
    BlockLines(self->config_.segment).AckBarrier(self->barrier_slot_, request);
  });
}

void Server::Drain() {
  draining_.store(true);
  BlockLines(config_.segment).LeaveBarrier(barrier_slot_);  // Pushers no longer wait for it.
  error_code ec;
  retry_.cancel();
  kill_sweep_.cancel();
  acceptor_.close(ec);
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    MutexLock lock(&mu_);
    for (auto& [raw, weak] : sessions_) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    if (sessions_.empty() && on_drained_) net::post(*ioc_, on_drained_);
  }
  for (auto& session : live) session->Drain();
}

}  // namespace

Status StartRespServer(net::io_context* ioc, bool single_thread, Segment* segment,
                       const RespServerOptions& options, WaitQueue* waits,
                       std::function<void()> on_drained, std::shared_ptr<RespServer>* result) {
  auto server =
      std::make_shared<Server>(ioc, single_thread, segment, options, waits, std::move(on_drained));
  SHM_RETURN_IF_ERROR(server->Adopt(options.listen_fd));
  server->JoinBarrier(options);
  server->DoAccept();
  server->SweepKilled();
  *result = server;
  return Status::OK();
}

}  // namespace shm
