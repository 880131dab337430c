// The segment's key hash (shared/src/key_hash.h) against the byte-at-a-time FNV-1a (with the
// same finalizer) it replaced in layout v15, per key length: what a dict read, a dict write and
// a Redis-protocol command pay to hash their key (bench/RESULTS.md).
//
//   cmake --build build --target key_hash_bench && build/bench/key_hash_bench
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "key_hash.h"

namespace {

uint64_t Fnv1aWithFinalizer(std::string_view key) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

// 4096 distinct keys of `length` bytes, like redis-benchmark's "key:000000012345" at 16.
std::vector<std::string> Keys(size_t length) {
  std::vector<std::string> keys;
  for (int i = 0; i < 4096; ++i) {
    char digits[32];
    std::snprintf(digits, sizeof digits, "key:%012d", i * 7919);
    std::string key(digits);
    key.resize(length, 'x');
    if (length < key.size()) key = key.substr(key.size() - length);
    keys.push_back(key);
  }
  return keys;
}

template <uint64_t (*Hash)(std::string_view)>
void BM_Hash(benchmark::State& state) {
  const std::vector<std::string> keys = Keys(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(Hash(keys[i++ & 4095]));
  }
}

uint64_t KeyHashOf(std::string_view key) { return shm::KeyHash(key); }

BENCHMARK(BM_Hash<KeyHashOf>)->Name("KeyHash")->Arg(8)->Arg(16)->Arg(24)->Arg(64);
BENCHMARK(BM_Hash<Fnv1aWithFinalizer>)->Name("Fnv1a")->Arg(8)->Arg(16)->Arg(24)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
