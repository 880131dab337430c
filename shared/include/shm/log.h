// Log: one line per event on stderr, "2026-11-25T19:00:00.123Z pid=123 warn message".
//
// Lines are written with a single write(2), so lines from many processes and threads never
// interleave. The level is process-wide. Thread-safe.
#ifndef SHM_LOG_H_
#define SHM_LOG_H_

#include <sstream>
#include <string_view>

#include "shm/status.h"

namespace shm {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// "debug", "info", "warn", "error", "off".
Status ParseLogLevel(std::string_view text, LogLevel* level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

// Builds one line and writes it when destroyed: SHM_LOG(kInfo) << "worker " << pid << " started";
class LogMessage {
 public:
  explicit LogMessage(LogLevel level) : level_(level) {}
  ~LogMessage() { LogLine(level_, stream_.str()); }
  std::ostringstream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace shm

#define SHM_LOG(level)                              \
  if (!::shm::LogEnabled(::shm::LogLevel::level)) { \
  } else                                            \
    ::shm::LogMessage(::shm::LogLevel::level).stream()

#endif  // SHM_LOG_H_
