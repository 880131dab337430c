// RunWorker: one worker process's HTTP server over the shared segment.
//
// The manager forks a child, which calls RunWorker on the listening socket it inherited. The
// worker creates its own Asio threads (never before fork), serves the router's routes until
// SIGTERM/SIGINT, then stops accepting, lets in-flight requests finish (bounded) and returns.
#ifndef SHM_WORKER_H_
#define SHM_WORKER_H_

#include <chrono>
#include <cstddef>
#include <string>

#include "shm/router.h"
#include "shm/segment.h"

namespace shm {

struct WorkerOptions {
  int index = 0;                                  // Slot in the segment's worker table.
  int threads = 1;                                // Asio threads in this worker.
  size_t max_body_bytes = size_t{1} << 20;        // Larger bodies get 413.
  size_t max_header_bytes = size_t{8} << 10;      // Larger headers get 431.
  std::chrono::milliseconds read_timeout{30000};  // Idle or slow client: connection closed.
  std::chrono::milliseconds drain_timeout{5000};  // Graceful stop bound.
  std::string token;                              // Non-empty: Authorization: Bearer required
                                                  // (and the RESP AUTH password).
  int resp_listen_fd = -1;                        // >= 0: also serve RESP on this socket.
};

// Serves until asked to stop; returns the process exit code (0 on a clean stop).
int RunWorker(Segment* segment, int listen_fd, const Router& router, const WorkerOptions& options);

}  // namespace shm

#endif  // SHM_WORKER_H_
