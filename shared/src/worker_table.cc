// The worker table in Root: per-worker figures written by each worker, read by anyone (stats,
// /metrics, the manager's heartbeat check). Relaxed atomics: the figures are statistics.
#include <algorithm>

#include "layout.h"
#include "segment_impl.h"
#include "shm/segment.h"

namespace shm {

void Segment::RegisterWorker(int index, pid_t pid, uint32_t restarts) {
  if (index < 0 || index >= kMaxWorkers) return;
  WorkerSlot& w = impl_->root()->workers[index];
  w.pid.store(pid);
  w.restarts.store(restarts);
  w.heartbeat_ms.store(SteadyNowMs());
  w.started_ms.store(WallNowMs());
}

void Segment::Heartbeat(int index) {
  if (index < 0 || index >= kMaxWorkers) return;
  impl_->root()->workers[index].heartbeat_ms.store(SteadyNowMs(), std::memory_order_relaxed);
}

void Segment::CountResponse(int index, int http_status) {
  if (index < 0 || index >= kMaxWorkers) return;
  WorkerSlot& w = impl_->root()->workers[index];
  w.requests.fetch_add(1, std::memory_order_relaxed);
  if (http_status >= 500) {
    w.errors.fetch_add(1, std::memory_order_relaxed);
  } else if (http_status >= 400) {
    w.client_errors.fetch_add(1, std::memory_order_relaxed);
  }
}

int64_t Segment::LastHeartbeatMs(int index) const {
  if (index < 0 || index >= kMaxWorkers) return 0;
  return impl_->root()->workers[index].heartbeat_ms.load(std::memory_order_relaxed);
}

std::vector<WorkerInfo> Segment::Workers() const {
  std::vector<WorkerInfo> result;
  for (int i = 0; i < kMaxWorkers; ++i) {
    const WorkerSlot& w = impl_->root()->workers[i];
    pid_t pid = w.pid.load(std::memory_order_relaxed);
    if (pid == 0) continue;
    WorkerInfo info;
    info.index = i;
    info.pid = pid;
    info.restarts = w.restarts.load(std::memory_order_relaxed);
    info.heartbeat_ms = w.heartbeat_ms.load(std::memory_order_relaxed);
    info.started_ms = w.started_ms.load(std::memory_order_relaxed);
    info.requests = w.requests.load(std::memory_order_relaxed);
    info.client_errors = w.client_errors.load(std::memory_order_relaxed);
    info.server_errors = w.errors.load(std::memory_order_relaxed);
    result.push_back(info);
  }
  return result;
}

}  // namespace shm
