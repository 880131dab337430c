// KeyHash: the hash of a key or an object name wherever the segment keeps one (a dict's slots
// and entries, the registry's name index, the lines of blocked pops).
//
// Stable across builds and processes (std::hash promises neither): every process of a segment
// must place a key where the others look for it, so changing this function changes the layout
// (bump kLayoutVersion, layout.h). Process-safety: a pure function.
//
// Eight bytes at a time, each word folded in by a multiply and a xor-shift, then a murmur
// finalizer so that the top bits (a dict's shard and home slot) and the low 32 (its slot tag)
// all depend on every byte. FNV-1a, one multiply per byte in a dependent chain, was a third of a
// dict read for a 16-byte key; this takes about a quarter of its time (bench/RESULTS.md). The
// length enters multiplied, so keys that differ only in length land far apart, and a key of at
// most 8 bytes maps one-to-one onto its hash.
#ifndef SHM_SRC_KEY_HASH_H_
#define SHM_SRC_KEY_HASH_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace shm {

namespace key_hash_internal {

inline uint64_t Load8(const char* p) {
  uint64_t word;
  std::memcpy(&word, p, sizeof(word));
  return word;
}
inline uint64_t Load4(const char* p) {
  uint32_t word;
  std::memcpy(&word, p, sizeof(word));
  return word;
}
// One-to-one for a fixed `h`: an odd multiply, then a xor-shift.
inline uint64_t Fold(uint64_t h, uint64_t word) {
  h = (h ^ word) * 0xe7037ed1a0b428dbull;
  return h ^ (h >> 32);
}
// The last 1-7 bytes of a key shorter than 8 bytes, as one word (every byte read, none twice
// in a way that could make two tails of one length equal).
inline uint64_t ShortTail(const char* p, size_t n) {
  if (n >= 4) return (Load4(p) << 32) | Load4(p + n - 4);
  return (uint64_t{static_cast<unsigned char>(p[0])} << 16) |
         (uint64_t{static_cast<unsigned char>(p[n / 2])} << 8) |
         uint64_t{static_cast<unsigned char>(p[n - 1])};
}

}  // namespace key_hash_internal

inline uint64_t KeyHash(std::string_view key) {
  using key_hash_internal::Fold;
  const char* p = key.data();
  const size_t n = key.size();
  uint64_t h = 0xa0761d6478bd642full ^ (n * 0x9e3779b97f4a7c15ull);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) h = Fold(h, key_hash_internal::Load8(p + i));
  if (i < n) {
    // A key of 8 bytes or more ends with its last 8 bytes (overlapping the previous word).
    h = Fold(h, n >= 8 ? key_hash_internal::Load8(p + n - 8) : key_hash_internal::ShortTail(p, n));
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

}  // namespace shm

#endif  // SHM_SRC_KEY_HASH_H_
