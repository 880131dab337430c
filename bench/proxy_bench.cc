// Single-threaded cost of each proxy operation, next to the raw operation it wraps.
#include <benchmark/benchmark.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/lease_lock.h"
#include "shm/list.h"
#include "shm/ndarray.h"
#include "shm/segment.h"
#include "shm/slice.h"

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

// What the lock paths of Dict/List/LeaseLock pay per call today (see docs/benchmarks.md):
// glibc's getpid() is a real system call since 2.25, and each op reads the clock 2-3 times.
void BM_GetpidSyscall(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(getpid());
}
BENCHMARK(BM_GetpidSyscall);

void BM_ClockGettime(benchmark::State& state) {
  timespec ts;
  for (auto _ : state) benchmark::DoNotOptimize(clock_gettime(CLOCK_MONOTONIC, &ts));
}
BENCHMARK(BM_ClockGettime);

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

// Dict: 16-byte keys and 64-byte values (docs/design.md, "Performance targets"), 1024 keys, walked
// in a fixed order.
constexpr int kDictKeys = 1024;

std::vector<std::string> DictKeys() {
  std::vector<std::string> keys;
  for (int i = 0; i < kDictKeys; ++i) {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "k%015d", i);
    keys.emplace_back(buffer, 16);
  }
  return keys;
}

shm::Dict FilledDict(const char* name) {
  shm::Dict dict;
  if (!shm::Dict::Open(BenchSegment(), name, shm::OpenMode::kCreateIfMissing, shm::DictOptions(),
                       &dict)
           .ok()) {
    std::abort();
  }
  const std::string value(64, 'v');
  for (const std::string& key : DictKeys()) {
    if (!dict.Set(key, value, shm::SetOptions()).ok()) std::abort();
  }
  return dict;
}

// The reference: the same lookup in a std::unordered_map behind a std::mutex.
void BM_StdMapGetUnderMutex(benchmark::State& state) {
  std::unordered_map<std::string, std::string> map;
  for (const std::string& key : DictKeys()) map[key] = std::string(64, 'v');
  std::vector<std::string> keys = DictKeys();
  std::mutex mu;
  std::string out;
  size_t i = 0;
  for (auto _ : state) {
    std::lock_guard<std::mutex> lock(mu);
    out = map.find(keys[i++ % kDictKeys])->second;
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_StdMapGetUnderMutex);

void BM_DictGet(benchmark::State& state) {
  shm::Dict dict = FilledDict("bench-dict-get");
  std::vector<std::string> keys = DictKeys();
  shm::DictValue value;
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(dict.Get(keys[i++ % kDictKeys], &value));
}
BENCHMARK(BM_DictGet);

void BM_DictSet(benchmark::State& state) {
  shm::Dict dict = FilledDict("bench-dict-set");
  std::vector<std::string> keys = DictKeys();
  const std::string value(64, 'w');
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(dict.Set(keys[i++ % kDictKeys], value, shm::SetOptions()));
  }
}
BENCHMARK(BM_DictSet);

void BM_DictIncr(benchmark::State& state) {
  shm::Dict dict = FilledDict("bench-dict-incr");
  int64_t result = 0;
  for (auto _ : state) benchmark::DoNotOptimize(dict.Incr("hits-counter-key", 1, 0, 0, &result));
}
BENCHMARK(BM_DictIncr);

// A key written new and then deleted: the insert path (a new key's place in insertion order).
void BM_DictInsertDelete(benchmark::State& state) {
  shm::Dict dict = FilledDict("bench-dict-insert");
  std::vector<std::string> keys = DictKeys();
  const std::string value(64, 'w');
  size_t i = 0;
  for (auto _ : state) {
    const std::string& key = keys[i++ % kDictKeys];
    benchmark::DoNotOptimize(dict.Delete(key));
    benchmark::DoNotOptimize(dict.Set(key, value, shm::SetOptions()));
  }
}
BENCHMARK(BM_DictInsertDelete);

// Every entry of a dict of 1024 keys, with values (what HGETALL reads): ListKeys then a Get per
// key, and Dict::Entries (insertion order).
void BM_DictListKeysThenGet(benchmark::State& state) {
  shm::Dict dict = FilledDict("bench-dict-list");
  for (auto _ : state) {
    std::vector<std::pair<std::string, std::string>> out;
    uint64_t cursor = 0;
    do {
      std::vector<std::string> keys;
      if (!dict.ListKeys("", shm::Dict::kMaxListLimit, cursor, &keys, &cursor).ok()) std::abort();
      for (std::string& key : keys) {
        shm::DictValue value;
        if (dict.Get(key, &value).ok()) out.emplace_back(std::move(key), std::move(value.data));
      }
    } while (cursor != 0);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_DictListKeysThenGet);

void BM_DictEntries(benchmark::State& state) {
  shm::Dict dict = FilledDict("bench-dict-entries");
  for (auto _ : state) {
    std::vector<shm::DictItem> items;
    if (!dict.Entries(true, &items).ok()) std::abort();
    benchmark::DoNotOptimize(items);
  }
}
BENCHMARK(BM_DictEntries);

void BM_ListPushPop(benchmark::State& state) {
  shm::List list;
  if (!shm::List::Open(BenchSegment(), "bench-list", shm::OpenMode::kCreateIfMissing,
                       shm::ListOptions(), &list)
           .ok()) {
    std::abort();
  }
  // 64 bytes: a blob per item; 3 (redis-benchmark's list values): inline in the slot word.
  const std::string payload(static_cast<size_t>(state.range(0)), 'i');
  std::string item;
  bool got = false;
  for (auto _ : state) {
    benchmark::DoNotOptimize(list.Push(shm::List::End::kRight, payload));
    benchmark::DoNotOptimize(
        list.Pop(shm::List::End::kLeft, std::chrono::milliseconds(0), &item, &got));
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_ListPushPop)->Arg(64)->Arg(3);

void BM_LeaseAcquireRelease(benchmark::State& state) {
  shm::LeaseLock lock;
  if (!shm::LeaseLock::Open(BenchSegment(), "bench-lease", shm::OpenMode::kCreateIfMissing, &lock)
           .ok()) {
    std::abort();
  }
  uint64_t token = 0;
  int64_t expires = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        lock.Acquire(10000, std::chrono::milliseconds(0), "bench", &token, &expires));
    benchmark::DoNotOptimize(lock.Release(token));
  }
}
BENCHMARK(BM_LeaseAcquireRelease);

// Bulk copies of a float64 array of range(0) bytes, next to memcpy of the same size.
void BM_Memcpy(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  std::vector<char> from(bytes, 1);
  std::vector<char> to(bytes);
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_Memcpy)->Arg(4 << 10)->Arg(1 << 20);

shm::NdArray BenchArray(const std::string& name, size_t bytes) {
  shm::NdArray array;
  shm::Status s = shm::NdArray::Open(BenchSegment(), name, &array);
  if (s.ok()) return array;
  if (!shm::NdArray::Create(BenchSegment(), name, shm::DType::kFloat64,
                            {static_cast<int64_t>(bytes / sizeof(double))}, shm::Scalar::Float(0),
                            &array)
           .ok()) {
    std::abort();
  }
  return array;
}

void BM_ArraySliceCopyOut(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  shm::NdArray array = BenchArray("bench-array-" + std::to_string(bytes), bytes);
  std::string out;
  for (auto _ : state) benchmark::DoNotOptimize(array.ReadSlice(shm::Slice(), &out));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_ArraySliceCopyOut)->Arg(4 << 10)->Arg(1 << 20);

void BM_ArraySliceCopyIn(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  shm::NdArray array = BenchArray("bench-array-" + std::to_string(bytes), bytes);
  const std::string in(bytes, '\0');
  for (auto _ : state) benchmark::DoNotOptimize(array.WriteSlice(shm::Slice(), in));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_ArraySliceCopyIn)->Arg(4 << 10)->Arg(1 << 20);

void BM_ArrayAtomicAdd(benchmark::State& state) {
  shm::NdArray array = BenchArray("bench-array-4096", 4 << 10);
  shm::Scalar old;
  const std::vector<int64_t> index = {7};
  for (auto _ : state) benchmark::DoNotOptimize(array.FetchAdd(index, shm::Scalar::Float(1), &old));
}
BENCHMARK(BM_ArrayAtomicAdd);

}  // namespace

BENCHMARK_MAIN();
