// mp_driver: N processes hammer one object; aggregate ops/s next to physical references measured
// in the same run (a raw fetch_add on a shared mmap, a process-shared pthread mutex).
//
//   mp_driver [--procs 1,2] [--duration-ms 1000] [--workload all|counter|...]
// Prints one Markdown row per (workload, procs) with ops/s and the ratio to the reference.
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "shm/counter.h"
#include "shm/segment.h"

namespace {

struct Control {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  std::atomic<int> stop{0};
  std::atomic<uint64_t> ops[64];
};

// Shared anonymous memory created before fork: the physical reference.
template <class T>
T* SharedAnon() {
  void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    std::exit(1);
  }
  return new (p) T();
}

// Runs `op` in `procs` forked processes for `duration_ms`; returns aggregate ops/s.
double RunProcesses(int procs, int duration_ms, const std::function<void()>& op) {
  Control* control = SharedAnon<Control>();
  std::vector<pid_t> children;
  for (int p = 0; p < procs; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      control->ready.fetch_add(1);
      while (!control->go.load(std::memory_order_acquire)) {
      }
      uint64_t n = 0;
      while (!control->stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 64; ++i) op();
        n += 64;
      }
      control->ops[p].store(n);
      _exit(0);
    }
    children.push_back(pid);
  }
  while (control->ready.load() < procs) {
  }
  auto start = std::chrono::steady_clock::now();
  control->go.store(1, std::memory_order_release);
  usleep(static_cast<useconds_t>(duration_ms) * 1000);
  control->stop.store(1);
  for (pid_t pid : children) waitpid(pid, nullptr, 0);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t total = 0;
  for (int p = 0; p < procs; ++p) total += control->ops[p].load();
  munmap(control, sizeof(Control));
  return static_cast<double>(total) / seconds;
}

struct PshMutex {
  pthread_mutex_t mu;
  int64_t value = 0;
  PshMutex() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&mu, &attr);
  }
};

std::vector<int> ParseList(const char* text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> procs_list = {1, 2};
  int duration_ms = 1000;
  std::string workload = "all";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--procs")) procs_list = ParseList(argv[i + 1]);
    if (!std::strcmp(argv[i], "--duration-ms")) duration_ms = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--workload")) workload = argv[i + 1];
  }

  shm::SegmentOptions options;
  options.name = "shmbench-" + std::to_string(getpid());
  options.size = size_t{64} << 20;
  std::unique_ptr<shm::Segment> segment;
  shm::Status s = shm::Segment::Create(options, &segment);
  if (!s.ok()) {
    std::fprintf(stderr, "mp_driver: %s\n", s.ToString().c_str());
    return 1;
  }
  shm::Counter counter;
  shm::Counter::Open(segment.get(), "bench", {shm::OpenMode::kCreateIfMissing}, &counter);
  auto* raw = SharedAnon<std::atomic<int64_t>>();
  auto* locked = SharedAnon<PshMutex>();

  std::printf("| workload | procs | ops/s | reference | ratio |\n|---|---|---|---|---|\n");
  for (int procs : procs_list) {
    double raw_ops =
        RunProcesses(procs, duration_ms, [&] { raw->fetch_add(1, std::memory_order_acq_rel); });
    std::printf("| raw fetch_add (shared mmap) | %d | %.3g | - | 1.00 |\n", procs, raw_ops);
    double mutex_ops = RunProcesses(procs, duration_ms, [&] {
      pthread_mutex_lock(&locked->mu);
      ++locked->value;
      pthread_mutex_unlock(&locked->mu);
    });
    std::printf("| pthread mutex (process-shared) | %d | %.3g | raw fetch_add | %.2f |\n", procs,
                mutex_ops, mutex_ops / raw_ops);
    if (workload == "all" || workload == "counter") {
      double counter_ops = RunProcesses(procs, duration_ms, [&] {
        int64_t v;
        counter.Add(1, &v);
      });
      std::printf("| shm::Counter::Add | %d | %.3g | raw fetch_add | %.2f |\n", procs, counter_ops,
                  counter_ops / raw_ops);
    }
    std::fflush(stdout);
  }
  segment.reset();
  shm::Segment::Remove(shm::Segment::ShmName(options.name, 1));
  return 0;
}
