// Single-threaded cost of each proxy operation, next to the raw operation it wraps.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include "shm/counter.h"
#include "shm/segment.h"

namespace {

// One segment for the whole run, removed at exit.
shm::Segment* BenchSegment() {
  static std::unique_ptr<shm::Segment> segment = [] {
    shm::SegmentOptions options;
    options.name = "shmbench-proxy-" + std::to_string(getpid());
    options.size = size_t{256} << 20;
    std::unique_ptr<shm::Segment> s;
    shm::Status status = shm::Segment::Create(options, &s);
    if (!status.ok()) std::abort();
    std::atexit([] { shm::Segment::Remove("shmbench-proxy-" + std::to_string(getpid()) + ".1"); });
    return s;
  }();
  return segment.get();
}

void BM_RawFetchAdd(benchmark::State& state) {
  std::atomic<int64_t> word{0};
  for (auto _ : state) benchmark::DoNotOptimize(word.fetch_add(1));
}
BENCHMARK(BM_RawFetchAdd);

void BM_CounterAdd(benchmark::State& state) {
  shm::Counter counter;
  shm::Counter::Open(BenchSegment(), "bench-add", {shm::OpenMode::kCreateIfMissing}, &counter);
  int64_t value = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(counter.Add(1, &value));
  }
}
BENCHMARK(BM_CounterAdd);

void BM_CounterGet(benchmark::State& state) {
  shm::Counter counter;
  shm::Counter::Open(BenchSegment(), "bench-get", {shm::OpenMode::kCreateIfMissing}, &counter);
  int64_t value = 0;
  for (auto _ : state) benchmark::DoNotOptimize(counter.Get(&value));
}
BENCHMARK(BM_CounterGet);

void BM_CounterOpenByName(benchmark::State& state) {
  shm::Counter counter;
  for (auto _ : state) {
    benchmark::DoNotOptimize(shm::Counter::Open(BenchSegment(), "bench-open",
                                                {shm::OpenMode::kCreateIfMissing}, &counter));
  }
}
BENCHMARK(BM_CounterOpenByName);

}  // namespace

BENCHMARK_MAIN();
