#include "crash_point.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "shm/mutex.h"

namespace shm {
namespace internal {
namespace {

struct ArmedPoint {
  Mutex mu;
  std::string name GUARDED_BY(mu);
  int remaining GUARDED_BY(mu) = 0;
};

ArmedPoint& Armed() {
  static ArmedPoint* armed = new ArmedPoint();  // Never destroyed: used until _exit.
  return *armed;
}

bool ArmFromEnvironment() {
  const char* spec = std::getenv("SHM_CRASH_POINT");
  if (spec == nullptr || *spec == '\0') return false;
  std::string text(spec);
  int hit = 1;
  if (auto colon = text.find(':'); colon != std::string::npos) {
    hit = std::atoi(text.c_str() + colon + 1);
    text.resize(colon);
  }
  SetCrashPoint(text.c_str(), hit < 1 ? 1 : hit);
  return true;
}

}  // namespace

std::atomic<bool> g_crash_points_armed{ArmFromEnvironment()};

void CrashPointSlow(const char* name) {
  ArmedPoint& armed = Armed();
  MutexLock guard(&armed.mu);
  if (armed.name != name) return;
  if (--armed.remaining > 0) return;
  _exit(kCrashPointExitCode);
}

}  // namespace internal

void SetCrashPoint(const char* name, int hit) {
  internal::ArmedPoint& armed = internal::Armed();
  MutexLock guard(&armed.mu);
  armed.name = name ? name : "";
  armed.remaining = hit;
  internal::g_crash_points_armed.store(name != nullptr, std::memory_order_relaxed);
}

}  // namespace shm
