// RespServer: the RESP (Redis protocol) listener of one worker, on the worker's io_context.
//
// Each connection is a session in the Beast style (DoRead/OnRead/DoWrite/OnWrite kept alive by
// shared_from_this): it parses every complete command in its buffer, answers them in order with
// one write per batch (pipelining), bounds what it buffers, closes idle connections, and parks a
// blocking pop on a timer so the event loop never sleeps. The commands themselves are the pure
// functions of shm/resp_commands.h.
// Process-safety: one RespServer per worker process; its methods run on the io_context threads.
#ifndef SHM_RESP_SERVER_H_
#define SHM_RESP_SERVER_H_

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "shm/registry.h"
#include "shm/resp_commands.h"
#include "shm/segment.h"
#include "shm/status.h"
#include "shm/wait_queue.h"

namespace shm {

class RespServer {
 public:
  virtual ~RespServer() = default;
  // Stops accepting and closes every connection once its in-flight command is answered.
  virtual void Drain() = 0;
  // Connections still open.
  virtual size_t live() const = 0;
};

// What a worker tells its RESP server (from its own WorkerOptions).
struct RespServerOptions {
  int listen_fd = -1;  // Adopted: closed by the server.
  int worker_index = 0;
  std::string password;                        // Non-empty: AUTH required.
  resp::TokenMatcher token_matches = nullptr;  // AUTH's compare (the HTTP gate's TokenMatches).
  size_t max_bulk_bytes = size_t{1} << 20;
  std::chrono::milliseconds read_timeout{30000};
  // Retries the waits of `key` at once when `object` changes (the worker's WaitHub::WatchObject):
  // blocked pops watch their keyspace, whose word rings when their line moves. Empty: they are
  // retried by the queue's poll alone.
  std::function<void(const std::string& key, const ObjectRef& object)> watch;
  // Watches `word` for the server's life, running `on_change` when it changes (the worker's
  // WaitHub::WatchWord): how the worker hears barriers of the blocked pops' lines. Empty: it
  // answers none, and pushers pass it by.
  std::function<void(std::atomic<uint32_t>* word, std::function<void()> on_change)> watch_word;
};

// Adopts `options.listen_fd` and starts accepting. Blocked pops wait in `waits` (the worker's,
// which HTTP waits share). `on_drained` runs (on a loop thread) when the last connection closes
// after Drain().
Status StartRespServer(boost::asio::io_context* ioc, bool single_thread, Segment* segment,
                       const RespServerOptions& options, WaitQueue* waits,
                       std::function<void()> on_drained, std::shared_ptr<RespServer>* result);

}  // namespace shm

#endif  // SHM_RESP_SERVER_H_
