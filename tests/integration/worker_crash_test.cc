// End-to-end crash handling: killed, hung and orphaned processes of the real binary.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::seconds;

int64_t ValueOf(const HttpResult& result) {
  return boost::json::parse(result.body).at("value").to_number<int64_t>();
}

// The only worker is SIGKILLed: nobody else can answer, so the first answer proves the
// replacement is serving. The design promises that within 1 s: the manager replaces a worker
// at once (no backoff outside a crash loop), which its log says; the test asserts that rather
// than timing the answer on a busy machine. A worker is in the table before it serves, so the
// answering worker is the one /v1/stats lists, never the dead one (issue 21: that raced).
TEST(WorkerCrashTest, KilledWorkerIsReplacedAndAnsweringWithinOneSecond) {
  ServerProcess server("kill");
  ASSERT_STARTED(server.Start({"--workers", "1"}));
  HttpClient client(server.port(), seconds(5));
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/counters/c/incr", "", &result).ok());
  std::vector<pid_t> before;
  ASSERT_TRUE(server.WorkerPids(&before).ok());
  ASSERT_EQ(before.size(), 1u);
  client.Close();

  ASSERT_EQ(kill(before[0], SIGKILL), 0);
  HttpClient fresh(server.port(), seconds(5));
  Status s = fresh.Post("/v1/counters/c/incr", "", &result);
  ASSERT_TRUE(s.ok()) << s.ToString() << "\n" << server.stderr_text();
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(ValueOf(result), 2);  // State survived the worker.
  EXPECT_NE(result.Header("X-Worker-Pid"), std::to_string(before[0]));

  std::vector<pid_t> after;
  ASSERT_TRUE(server.WorkerPids(&after).ok());
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(after[0], before[0]);
  EXPECT_EQ(std::to_string(after[0]), result.Header("X-Worker-Pid"));
  EXPECT_NE(
      server.stderr_text().find("killed by signal 9 (SIGKILL); restarts so far 0; replacing it\n"),
      std::string::npos)
      << server.stderr_text();
  ChildExit exit = server.Stop();
  EXPECT_EQ(exit.code, 0);
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

TEST(WorkerCrashTest, RestartCountIsReportedPerSlot) {
  ServerProcess server("restarts");
  ASSERT_STARTED(server.Start({"--workers", "2"}));
  for (int round = 0; round < 3; ++round) {
    std::vector<pid_t> pids;
    ASSERT_TRUE(server.WorkerPids(&pids).ok());
    ASSERT_EQ(kill(pids[1], SIGKILL), 0);
    ASSERT_TRUE(WaitFor(
        [&] {
          std::vector<pid_t> now;
          return server.WorkerPids(&now).ok() && now.size() == 2 && now[1] != pids[1];
        },
        seconds(10)));
  }
  HttpClient client(server.port());
  HttpResult result;
  ASSERT_TRUE(client.Get("/v1/stats", &result).ok());
  boost::json::value stats = boost::json::parse(result.body);
  const auto& workers = stats.at("workers").as_array();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].at("restarts").to_number<int64_t>(), 0);
  EXPECT_EQ(workers[1].at("restarts").to_number<int64_t>(), 3);
  EXPECT_EQ(server.Stop().code, 0);
}

// The metric line of `series` (name and labels) in the Prometheus text, or "" when absent.
std::string MetricLine(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return "";
  return text.substr(at + 1, text.find('\n', at + 1) - at - 1);
}

// `promtool check metrics` on `text`, when promtool is installed (Debian's prometheus package):
// its output, or nullopt when it is not installed.
std::optional<std::string> PromtoolCheck(const std::string& text) {
  if (access("/usr/bin/promtool", X_OK) != 0) return std::nullopt;
  char path[] = "/tmp/shm-metrics-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return "mkstemp failed";
  bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  std::string command = "/usr/bin/promtool check metrics < " + std::string(path) + " 2>&1";
  std::string output = written ? "" : "write failed";
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char chunk[512];
    while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) output.append(chunk, n);
    if (pclose(pipe) != 0) output += " (promtool failed)";
  }
  unlink(path);
  return output;
}

// A restart makes the slot's one restart series rise (a dashboard's rate() sees it), rather
// than start a new series for the new pid; promtool finds nothing to complain about.
TEST(WorkerCrashTest, RestartsMetricIsOneRisingSeriesPerSlot) {
  ServerProcess server("restart-metric");
  ASSERT_STARTED(server.Start({"--workers", "1"}));
  HttpClient client(server.port());
  HttpResult before;
  ASSERT_TRUE(client.Get("/metrics", &before).ok());
  EXPECT_EQ(MetricLine(before.body, "shmstate_worker_restarts_total{worker=\"0\"}"),
            "shmstate_worker_restarts_total{worker=\"0\"} 0")
      << before.body;
  std::optional<std::string> lint = PromtoolCheck(before.body);
  if (lint) {
    EXPECT_EQ(*lint, "") << before.body;
  }
  std::vector<pid_t> pids;
  ASSERT_TRUE(server.WorkerPids(&pids).ok());
  ASSERT_EQ(kill(pids[0], SIGKILL), 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<pid_t> now;
        return server.WorkerPids(&now).ok() && now.size() == 1 && now[0] != pids[0];
      },
      seconds(10)));
  client.Close();  // Its connection was the killed worker's.
  HttpResult after;
  ASSERT_TRUE(client.Get("/metrics", &after).ok());
  EXPECT_EQ(MetricLine(after.body, "shmstate_worker_restarts_total{worker=\"0\"}"),
            "shmstate_worker_restarts_total{worker=\"0\"} 1")
      << after.body;
  lint = PromtoolCheck(after.body);
  if (lint) {
    EXPECT_EQ(*lint, "") << after.body;
  }
  EXPECT_EQ(server.Stop().code, 0);
}

// SIGSTOP freezes a worker: its heartbeat goes stale, the manager SIGKILLs and replaces it.
TEST(WorkerCrashTest, HungWorkerIsKilledAndReplaced) {
  ServerProcess server("hung");
  ASSERT_STARTED(server.Start({"--workers", "2", "--heartbeat-timeout", "1s"}));
  std::vector<pid_t> before;
  ASSERT_TRUE(server.WorkerPids(&before).ok());
  ASSERT_EQ(before.size(), 2u);
  ASSERT_EQ(kill(before[0], SIGSTOP), 0);
  bool replaced = WaitFor(
      [&] {
        std::vector<pid_t> now;
        return server.WorkerPids(&now).ok() && now.size() == 2 && now[0] != before[0] &&
               now[1] == before[1] && !ProcessAlive(before[0]);
      },
      seconds(15));
  EXPECT_TRUE(replaced) << server.stderr_text();
  EXPECT_NE(server.stderr_text().find("has not sent a heartbeat"), std::string::npos);
  HttpClient client(server.port());
  HttpResult result;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(client.Post("/v1/counters/h/incr", "", &result).ok());
    EXPECT_EQ(result.status, 200);
  }
  if (!replaced) kill(before[0], SIGKILL);
  EXPECT_EQ(server.Stop().code, 0);
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

// A SIGKILLed manager leaves its segment and lock file; its workers die with it (PDEATHSIG). The
// next start with that name finds the lock unheld, removes the leftovers and starts afresh.
TEST(WorkerCrashTest, StaleSegmentOfAKilledManagerIsCleanedAtTheNextStart) {
  ServerProcess crashed("stale");
  ASSERT_STARTED(crashed.Start({"--workers", "2"}));
  HttpClient client(crashed.port());
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/counters/old/incr", "", &result).ok());
  std::vector<pid_t> workers = ChildrenOf(crashed.pid());
  ASSERT_EQ(workers.size(), 2u);
  kill(crashed.pid(), SIGKILL);
  ChildExit exit = crashed.Wait();
  ASSERT_TRUE(exit.signaled);
  EXPECT_TRUE(WaitFor(
      [&] {
        for (pid_t pid : workers) {
          if (ProcessAlive(pid)) return false;
        }
        return true;
      },
      seconds(10)))
      << "workers outlived their manager";
  std::vector<std::string> left = ShmEntriesOf(crashed.name());
  EXPECT_EQ(left.size(), 2u);  // <name>.1 and <name>.lock

  ServerProcess next("stale");
  next.set_name(crashed.name());
  ASSERT_STARTED(next.Start({"--workers", "1"}));
  EXPECT_NE(next.stderr_text().find("removed stale segment /dev/shm/" + crashed.name() + ".1"),
            std::string::npos)
      << next.stderr_text();
  HttpClient fresh(next.port());
  ASSERT_TRUE(fresh.Get("/v1/counters/old", &result).ok());
  EXPECT_EQ(result.status, 404);  // A fresh segment, not the dead run's.
  EXPECT_EQ(next.Stop().code, 0);
  EXPECT_TRUE(ShmEntriesOf(crashed.name()).empty());
  crashed.set_name("");
}

// A worker that keeps dying is still replaced (with backoff) and the manager stays up.
TEST(WorkerCrashTest, CrashLoopKeepsTheManagerUpAndEndsWithAWorkingReplacement) {
  ServerProcess server("loop");
  ASSERT_STARTED(server.Start({"--workers", "1"}));
  for (int i = 0; i < 8; ++i) {
    std::vector<pid_t> pids;
    ASSERT_TRUE(WaitFor([&] { return server.WorkerPids(&pids).ok(); }, seconds(10)));
    kill(pids[0], SIGKILL);
    ASSERT_TRUE(WaitFor([&] { return !ProcessAlive(pids[0]); }, seconds(5)));
  }
  EXPECT_TRUE(ProcessAlive(server.pid()));
  HttpClient client(server.port(), seconds(10));
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/counters/l/incr", "", &result).ok());
  EXPECT_EQ(result.status, 200);
  EXPECT_NE(server.stderr_text().find("crash loop"), std::string::npos) << server.stderr_text();
  EXPECT_EQ(server.Stop().code, 0);
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

// A worker dies in the middle of creating an object, holding the registry lock with an intent
// recorded (crash point before_create_commit, armed through the environment for the 2nd create
// of each worker process). The manager reaps it, settles its intent, and the replacement serves:
// the half-created object does not exist, the committed one kept its value, and creating works.
TEST(WorkerCrashTest, WorkerDyingMidCreateIsSettledAndReplaced) {
  ServerProcess server("midcreate");
  server.add_env("SHM_CRASH_POINT=before_create_commit:2");
  ASSERT_STARTED(server.Start({"--workers", "1"}));
  HttpClient client(server.port(), seconds(10));
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/counters/kept/incr", "", &result).ok());
  ASSERT_EQ(result.status, 200);
  EXPECT_FALSE(client.Post("/v1/counters/lost/incr", "", &result).ok())
      << "the worker should have died before answering";
  client.Close();
  ASSERT_TRUE(client.Post("/v1/counters/kept/incr", "", &result).ok());
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(ValueOf(result), 2);
  ASSERT_TRUE(client.Get("/v1/counters/lost", &result).ok());
  EXPECT_EQ(result.status, 404) << result.body;
  ASSERT_TRUE(client.Post("/v1/counters/fresh/incr", "", &result).ok());  // 1st create: allowed.
  EXPECT_EQ(result.status, 200) << result.body;
  std::string log = server.stderr_text();
  EXPECT_NE(log.find("exited with code 86"), std::string::npos) << log;
  EXPECT_EQ(log.find("poisoned"), std::string::npos) << log;
  EXPECT_EQ(server.Stop().code, 0);
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

}  // namespace
}  // namespace shm::test
