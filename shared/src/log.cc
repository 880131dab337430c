#include "shm/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <string>

namespace shm {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error", "off"};

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

Status ParseLogLevel(std::string_view text, LogLevel* level) {
  for (int i = 0; i < 5; ++i) {
    if (kLevelNames[i] == text) {
      *level = static_cast<LogLevel>(i);
      return Status::OK();
    }
  }
  return Status::InvalidArgument("unknown log level '" + std::string(text) +
                                 "' (debug, info, warn, error, off)");
}

void LogLine(LogLevel level, std::string_view message) {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc;
  gmtime_r(&seconds, &utc);
  char stamp[40];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string line;
  line.reserve(64 + message.size());
  line += stamp;
  line += '.';
  line += std::to_string(1000 + millis).substr(1);
  line += "Z pid=";
  line += std::to_string(getpid());
  line += ' ';
  line += kLevelNames[static_cast<int>(level)];
  line += ' ';
  line += message;
  line += '\n';
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace shm
