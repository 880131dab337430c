// PyWakeWord: the futex sequence word of a named object (shm/wake_word.h) for shmstate.Manager's
// proxies, bound as _shmstate._WakeWord (register_sync.cc). A proxy keeps its state in an
// ordinary dict (or list) object, committed by compare-and-set, and sleeps here between checks;
// the native proxy methods (register_manager.cc) call the C++ methods directly.
//
// Thread-safety: any thread; the GIL is released while it sleeps. The word follows the server
// into the generation it copied its state into (growth, a poisoned allocator).
#ifndef SHMSTATE_PYTHON_PY_WAKE_WORD_H_
#define SHMSTATE_PYTHON_PY_WAKE_WORD_H_

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "attachment.h"
#include "shm/registry.h"
#include "shm/segment.h"
#include "shm/status.h"
#include "shm/wake_word.h"

namespace shmstate {

class PyWakeWord {
 public:
  static inline PyTypeObject* type = nullptr;  // Set when the class is bound.

  PyWakeWord(pybind11::handle prefix, pybind11::handle name, pybind11::handle kind);

  // Also moves the word into the generation the server copied its state into, so waiters keep
  // meeting the wakers; callers re-check at least every few seconds (manager.py), which bounds a
  // sleep begun on the old generation. Call with the GIL held.
  uint32_t Sequence();
  // Sleeps while the sequence is `seen`, at most `timeout` (shm::WakeWord::Wait: a bounded spin,
  // then the futex), without the GIL. Call with the GIL held.
  void Wait(uint32_t seen, std::chrono::nanoseconds timeout);
  // Bumps the sequence and wakes every sleeper (WakeAll), or only if a sleeper of Wait marked it
  // (WakeWaiters: for objects whose sleepers all sleep in Wait).
  void WakeAll();
  void WakeWaiters();
  // Deletes `key` of this dict object only if it still has `version`; False if it changed or is
  // gone. One commit: nothing half-done to repair.
  bool DeleteIf(pybind11::handle key, pybind11::handle version_arg);

 private:
  shm::Status OpenIn();
  void Refresh();
  std::shared_ptr<shm::Segment> Segment();
  shm::WakeWord Word();

  const std::string name_;
  shm::ObjectKind kind_ = shm::ObjectKind::kNone;
  std::shared_ptr<Attachment> attachment_;
  std::mutex mu_;
  std::shared_ptr<shm::Segment> segment_;  // Keeps the mapping the word lives in.
  shm::WakeWord word_;
};

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_PY_WAKE_WORD_H_
