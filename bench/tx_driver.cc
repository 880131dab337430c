// A transfer (two dict updates) in a shm::Transaction against the same two updates as plain
// Dict::Set calls, from 1 and 2 processes (each process on its own 8 accounts), in alternating
// rounds; prints each round and the medians (bench/RESULTS.md, "Transactions").
//
// Usage: tx_driver [rounds] [ms per phase] [transfer|sets]
// The third argument runs only that phase, in this process, for a profiler (perf record).
#include <sys/wait.h>
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

// Ops per second of `procs` processes running `mode` at once for `ms`.
double Phase(shm::Segment* seg, shm::Dict& dict, Mode mode, int procs, int ms) {
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
      uint64_t n = Loop(seg, dict, mode, p, ms);
      if (write(fds[1], &n, sizeof n) != sizeof n) _exit(3);
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
  for (int fd : pipes) {
    uint64_t n = 0;
    if (read(fd, &n, sizeof n) != sizeof n) std::abort();
    total += n;
    close(fd);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  return static_cast<double>(total) / seconds;
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
  for (int r = 0; r < rounds; ++r) {
    sets1.push_back(Phase(seg.get(), dict, Mode::kTwoSets, 1, ms));
    tx1.push_back(Phase(seg.get(), dict, Mode::kTransfer, 1, ms));
    sets2.push_back(Phase(seg.get(), dict, Mode::kTwoSets, 2, ms));
    tx2.push_back(Phase(seg.get(), dict, Mode::kTransfer, 2, ms));
    ratio1.push_back(sets1.back() / tx1.back());
    ratio2.push_back(sets2.back() / tx2.back());
    scale_tx.push_back(tx2.back() / tx1.back());
    scale_sets.push_back(sets2.back() / sets1.back());
    std::printf(
        "round %d: 1 proc: two sets %.0f/s, transfer %.0f/s (%.2fx); 2 procs: two sets %.0f/s, "
        "transfer %.0f/s (%.2fx); transfer 2/1 procs %.2fx\n",
        r, sets1.back(), tx1.back(), ratio1.back(), sets2.back(), tx2.back(), ratio2.back(),
        scale_tx.back());
  }
  std::printf(
      "median: 1 proc: two sets %.0f/s, transfer %.0f/s, cost ratio %.2fx (goal <= 3x)\n"
      "median: 2 procs: two sets %.0f/s, transfer %.0f/s, cost ratio %.2fx\n"
      "median: transfer 2 procs / 1 proc %.2fx (goal >= 1.5x); two sets 2/1 %.2fx\n",
      Median(sets1), Median(tx1), Median(ratio1), Median(sets2), Median(tx2), Median(ratio2),
      Median(scale_tx), Median(scale_sets));
  seg.reset();
  shm::Segment::Remove(shm::Segment::ShmName(options.name, 1));
  return 0;
}
