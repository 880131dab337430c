// A transfer (two dict updates) in a shm::Transaction against the same two updates as plain
// Dict::Set calls, from 1 and 2 processes (each process on its own 8 accounts), in alternating
// rounds; prints each round and the medians (bench/RESULTS.md, "Transactions"). Besides ops per
// wall second, ops per CPU second of the processes (CLOCK_PROCESS_CPUTIME_ID): on cores shared
// with other jobs the wall clock measures the scheduler too, and the CPU figure of 2 processes
// against 1 says what the processes cost each other (contention), which is what scaling needs.
//
// Usage: tx_driver [rounds] [ms per phase] [transfer|sets]
// The third argument runs only that phase, in this process, for a profiler (perf record).
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "shm/dict.h"
#include "shm/segment.h"
#include "shm/transaction.h"

namespace {

using Clock = std::chrono::steady_clock;

enum class Mode { kTwoSets, kTransfer };

// One process's loop for `ms`: transfers between its own accounts. Returns the count.
uint64_t Loop(shm::Segment* seg, shm::Dict& dict, Mode mode, int proc, int ms) {
  std::mt19937 rng(17 + proc);
  std::vector<std::string> keys;
  for (int i = 0; i < 8; ++i) keys.push_back("acct" + std::to_string(proc * 8 + i));
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  uint64_t n = 0;
  while (Clock::now() < until) {
    for (int batch = 0; batch < 64; ++batch, ++n) {
      const std::string& from = keys[rng() % 8];
      const std::string& to = keys[rng() % 8];
      if (mode == Mode::kTwoSets) {
        if (!dict.Set(from, "999", shm::SetOptions()).ok() ||
            !dict.Set(to, "1001", shm::SetOptions()).ok()) {
          std::abort();
        }
        continue;
      }
      shm::Status s = shm::Transaction::Run(seg, 100, [&](shm::Transaction& tx) {
        int64_t ignored = 0;
        SHM_RETURN_IF_ERROR(tx.Incr(dict, from, -1, 0, 0, &ignored));
        return tx.Incr(dict, to, 1, 0, 0, &ignored);
      });
      if (!s.ok()) std::abort();
    }
  }
  return n;
}

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::string LoadAverage() {
  char buf[64] = {};
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "?";
  if (std::fgets(buf, sizeof buf, f) == nullptr) buf[0] = 0;
  std::fclose(f);
  std::string s(buf);
  return s.substr(0, s.find(' '));
}

struct Rate {
  double wall;  // Ops per wall-clock second, all processes together.
  double cpu;   // Ops per CPU second of the processes.
};

struct Report {
  uint64_t ops;
  double cpu_seconds;
};

// The rates of `procs` processes running `mode` at once for `ms`.
Rate Phase(shm::Segment* seg, shm::Dict& dict, Mode mode, int procs, int ms) {
  std::vector<int> pipes;
  std::vector<pid_t> pids;
  int go[2];
  if (pipe(go) != 0) std::abort();
  for (int p = 0; p < procs; ++p) {
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      close(go[1]);
      char c;
      if (read(go[0], &c, 1) != 1) _exit(2);
      const double cpu_start = CpuSeconds();
      Report report{Loop(seg, dict, mode, p, ms), 0};
      report.cpu_seconds = CpuSeconds() - cpu_start;
      if (write(fds[1], &report, sizeof report) != sizeof report) _exit(3);
      _exit(0);
    }
    close(fds[1]);
    pipes.push_back(fds[0]);
    pids.push_back(pid);
  }
  close(go[0]);
  const auto start = Clock::now();
  if (write(go[1], std::string(procs, 'g').data(), procs) != procs) std::abort();
  close(go[1]);
  uint64_t total = 0;
  double cpu = 0;
  for (int fd : pipes) {
    Report report{};
    if (read(fd, &report, sizeof report) != sizeof report) std::abort();
    total += report.ops;
    cpu += report.cpu_seconds;
    close(fd);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  return Rate{static_cast<double>(total) / seconds, static_cast<double>(total) / cpu};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const int ms = argc > 2 ? std::atoi(argv[2]) : 300;
  shm::SegmentOptions options;
  options.name = "txbench" + std::to_string(getpid());
  options.size = size_t{64} << 20;
  std::unique_ptr<shm::Segment> seg;
  if (!shm::Segment::Create(options, &seg).ok()) return 1;
  shm::Dict dict;
  if (!shm::Dict::Open(seg.get(), "accounts", shm::OpenMode::kCreateIfMissing, shm::DictOptions(),
                       &dict)
           .ok()) {
    return 1;
  }
  for (int i = 0; i < 16; ++i) dict.Set("acct" + std::to_string(i), "1000", shm::SetOptions());
  if (argc > 3) {
    const Mode only = std::string(argv[3]) == "sets" ? Mode::kTwoSets : Mode::kTransfer;
    uint64_t n = 0;
    for (int r = 0; r < rounds; ++r) n += Loop(seg.get(), dict, only, 0, ms);
    std::printf("%s: %.0f/s\n", argv[3], n / (rounds * ms / 1000.0));
    seg.reset();
    shm::Segment::Remove(shm::Segment::ShmName(options.name, 1));
    return 0;
  }
  std::vector<double> sets1, tx1, sets2, tx2, ratio1, ratio2, scale_tx, scale_sets;
  std::vector<double> cpu_ratio1, cpu_tx1, cpu_tx2, cpu_scale_tx, cpu_scale_sets;
  const std::string load_before = LoadAverage();
  for (int r = 0; r < rounds; ++r) {
    const Rate s1 = Phase(seg.get(), dict, Mode::kTwoSets, 1, ms);
    const Rate t1 = Phase(seg.get(), dict, Mode::kTransfer, 1, ms);
    const Rate s2 = Phase(seg.get(), dict, Mode::kTwoSets, 2, ms);
    const Rate t2 = Phase(seg.get(), dict, Mode::kTransfer, 2, ms);
    sets1.push_back(s1.wall);
    tx1.push_back(t1.wall);
    sets2.push_back(s2.wall);
    tx2.push_back(t2.wall);
    ratio1.push_back(s1.wall / t1.wall);
    ratio2.push_back(s2.wall / t2.wall);
    scale_tx.push_back(t2.wall / t1.wall);
    scale_sets.push_back(s2.wall / s1.wall);
    cpu_tx1.push_back(t1.cpu);
    cpu_tx2.push_back(t2.cpu);
    cpu_ratio1.push_back(s1.cpu / t1.cpu);
    cpu_scale_tx.push_back(t2.cpu / t1.cpu);
    cpu_scale_sets.push_back(s2.cpu / s1.cpu);
    std::printf(
        "round %d: 1 proc: two sets %.0f/s, transfer %.0f/s (%.2fx; CPU %.2fx); 2 procs: two sets "
        "%.0f/s, transfer %.0f/s (%.2fx); transfer 2/1 procs %.2fx (per CPU-s %.2fx)\n",
        r, s1.wall, t1.wall, ratio1.back(), cpu_ratio1.back(), s2.wall, t2.wall, ratio2.back(),
        scale_tx.back(), cpu_scale_tx.back());
  }
  std::printf(
      "load average %s before, %s after\n"
      "median: 1 proc: two sets %.0f/s, transfer %.0f/s, cost ratio %.2fx (goal <= 3x); "
      "in CPU time %.2fx\n"
      "median: 2 procs: two sets %.0f/s, transfer %.0f/s, cost ratio %.2fx\n"
      "median: transfer 2 procs / 1 proc %.2fx (goal >= 1.5x); two sets 2/1 %.2fx\n"
      "median: per CPU-second: transfer 1 proc %.0f/s, 2 procs %.0f/s: 2/1 %.2fx (two sets "
      "%.2fx), so 2 processes on 2 free cores would do at most %.2fx one\n",
      load_before.c_str(), LoadAverage().c_str(), Median(sets1), Median(tx1), Median(ratio1),
      Median(cpu_ratio1), Median(sets2), Median(tx2), Median(ratio2), Median(scale_tx),
      Median(scale_sets), Median(cpu_tx1), Median(cpu_tx2), Median(cpu_scale_tx),
      Median(cpu_scale_sets), 2 * Median(cpu_scale_tx));
  seg.reset();
  shm::Segment::Remove(shm::Segment::ShmName(options.name, 1));
  return 0;
}
