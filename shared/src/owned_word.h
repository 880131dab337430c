// AddOwned: an add to a segment word that only one thread at a time writes (the holder of a lock,
// or of a slot's cache), as a load and a release store instead of a locked read-modify-write.
//
// Why it is safe: no other thread writes the word while the caller owns it, so no add is lost to
// a race; readers without ownership (statistics, free_bytes) read a whole value, old or new, as
// they did. A death between the load and the store is a death before the add, which every such
// word already survives (docs/crash-protocol.md, "Counters owned by one writer"): derived counts
// are recomputed by the owner-death repair, a cache's counts are reset when it is dropped, and a
// version bump is only ever ahead of the change it announces. The release store keeps the word's
// place among the owner's other stores (a bump before a commit is visible before the commit).
// On x86 a locked add costs about 20 cycles and a fence; this, a load and a store.
#ifndef SHM_SRC_OWNED_WORD_H_
#define SHM_SRC_OWNED_WORD_H_

#include <atomic>
#include <type_traits>

namespace shm {

// REQUIRES: the caller owns `word` (see above). Returns the value before the add.
template <typename T>
T AddOwned(std::atomic<T>& word, std::type_identity_t<T> delta) {
  const T before = word.load(std::memory_order_relaxed);
  word.store(before + delta, std::memory_order_release);
  return before;
}
template <typename T>
T SubOwned(std::atomic<T>& word, std::type_identity_t<T> delta) {
  const T before = word.load(std::memory_order_relaxed);
  word.store(before - delta, std::memory_order_release);
  return before;
}

}  // namespace shm

#endif  // SHM_SRC_OWNED_WORD_H_
