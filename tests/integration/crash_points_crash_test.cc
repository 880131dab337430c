// Deterministic crash points over HTTP: one worker of the real binary is armed (through the
// manager's test hook SHMSTATE_TEST_WORKER_CRASH_POINT) to die at one named step of the commit
// protocol, and the request that reaches that step is sent to it on a connection known to be
// served by it. The client must see the connection close without an answer; the worker is
// replaced; the object holds the old or the new value whole (which one the step decides); the
// next requests succeed. A death inside the allocator poisons the segment: the manager rebuilds
// it, and meanwhile only 503s are answered, never wrong data.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::seconds;

// Same size, so the write replaces the blob of the existing entry.
constexpr char kOldValue[] = "old-value-0001";
constexpr char kNewValue[] = "new-value-0002";
constexpr char kNextValue[] = "nxt-value-0003";

// What the object must hold after the armed worker died at the step.
enum class After {
  kOld,     // Died before the commit word was written: the write never happened.
  kNew,     // Died after it: the write happened, only its cleanup is left to recovery.
  kAbsent,  // Died creating the object: it does not exist.
};

struct CrashCase {
  const char* point;
  After after;
  // Overwrites of another key, of the same size, on the armed worker before the armed write: the
  // second caches a blob in the worker's thread, and the armed write takes it.
  bool warm_cache = false;
  // Which arrival at the step dies: the warm-up writes may reach it first.
  int hit = 1;
};

std::string PrintCase(const testing::TestParamInfo<CrashCase>& info) { return info.param.point; }

// The pid that answered on this connection (opens it if needed).
pid_t AnsweringPid(HttpClient* client) {
  HttpResult result;
  if (!client->Get("/healthz", &result).ok() || result.status != 200) return 0;
  return static_cast<pid_t>(std::atoi(result.Header("X-Worker-Pid").c_str()));
}

// Opens connections until one is served by `pid`. Each worker accepts its share, but a worker
// still starting on a loaded machine may let the other take every connection for a while, so this
// keeps trying for a bounded time; connections that reached the other worker stay open (a bounded
// number) so that the next accept is more likely to go elsewhere.
std::unique_ptr<HttpClient> ConnectionServedBy(uint16_t port, pid_t pid,
                                               std::vector<std::unique_ptr<HttpClient>>* others) {
  constexpr size_t kMaxOpen = 128;
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  for (int i = 0; i < 5000 && std::chrono::steady_clock::now() < deadline; ++i) {
    auto client = std::make_unique<HttpClient>(port, seconds(10));
    if (AnsweringPid(client.get()) == pid) return client;
    if (others->size() == kMaxOpen) others->erase(others->begin(), others->begin() + kMaxOpen / 2);
    others->push_back(std::move(client));
  }
  return nullptr;
}

// GET that waits (bounded) through 503s while a poisoned segment is rebuilt.
Status GetSettled(uint16_t port, const std::string& target, HttpResult* result) {
  for (int attempt = 0; attempt < 150; ++attempt) {
    HttpClient client(port, seconds(5));
    Status s = client.Get(target, result);
    if (s.ok() && result->status != 503) return s;
    if (s.ok()) {
      EXPECT_FALSE(result->Header("Retry-After").empty()) << result->body;
    }
    usleep(100 * 1000);
  }
  return Status::Timeout("GET " + target + " was not answered (or only with 503) for 15 s");
}

class CrashPointTest : public testing::TestWithParam<CrashCase> {};

TEST_P(CrashPointTest, ArmedWorkerDiesMidWriteAndTheStateIsWholeAndServing) {
  const CrashCase& c = GetParam();
  ServerProcess server(std::string("cp-") + c.point);
  server.add_env(std::string("SHMSTATE_TEST_WORKER_CRASH_POINT=0:") + c.point + ":" +
                 std::to_string(c.hit));
  ASSERT_STARTED(server.Start({"--workers", "2"}));
  const uint16_t port = server.port();
  std::vector<pid_t> pids;
  ASSERT_TRUE(server.WorkerPids(&pids).ok());
  ASSERT_EQ(pids.size(), 2u);

  // Set up through worker 1 only: worker 0's first arrival at the step must be our request.
  std::vector<std::unique_ptr<HttpClient>> others;
  std::unique_ptr<HttpClient> healthy = ConnectionServedBy(port, pids[1], &others);
  std::unique_ptr<HttpClient> armed = ConnectionServedBy(port, pids[0], &others);
  ASSERT_TRUE(healthy && armed) << "no connection reached each worker";
  others.clear();
  HttpResult result;
  ASSERT_TRUE(healthy->Request("PUT", "/v1/dicts/d/k", kOldValue, &result).ok());
  ASSERT_EQ(result.status, 200) << result.body;
  ASSERT_TRUE(armed->Get("/v1/dicts/d/k", &result).ok());  // Worker 0 opens the dict: no write.
  ASSERT_EQ(result.body, kOldValue);

  for (int i = 0; c.warm_cache && i < 2; ++i) {
    ASSERT_TRUE(armed->Request("PUT", "/v1/dicts/d/w", kOldValue, &result).ok());
    ASSERT_EQ(result.status, 200) << result.body;
  }

  // The write that reaches the step: an overwrite, or the creation of a new dict.
  const std::string target = c.after == After::kAbsent ? "/v1/dicts/fresh/k" : "/v1/dicts/d/k";
  Status sent = armed->Request("PUT", target, kNewValue, &result);
  EXPECT_FALSE(sent.ok()) << "answered " << result.status << ": worker 0 did not die at "
                          << c.point;

  // Worker 0 is replaced (after a rebuild every worker is).
  EXPECT_TRUE(WaitFor(
      [&] {
        std::vector<pid_t> now;
        return server.WorkerPids(&now).ok() && now.size() == 2 && now[0] != pids[0] && now[0] > 0 &&
               ProcessAlive(now[0]) && !ProcessAlive(pids[0]);
      },
      seconds(15)))
      << server.stderr_text();
  EXPECT_NE(server.stderr_text().find("exited with code 86"), std::string::npos)
      << server.stderr_text();

  // The state is the old or the new value whole, as the step decides.
  ASSERT_TRUE(GetSettled(port, target, &result).ok()) << server.stderr_text();
  switch (c.after) {
    case After::kOld:
      EXPECT_EQ(result.status, 200) << result.body;
      EXPECT_EQ(result.body, kOldValue);
      break;
    case After::kNew:
      EXPECT_EQ(result.status, 200) << result.body;
      EXPECT_EQ(result.body, kNewValue);
      break;
    case After::kAbsent:
      EXPECT_EQ(result.status, 404) << result.body;
      ASSERT_TRUE(GetSettled(port, "/v1/dicts/d/k", &result).ok());
      EXPECT_EQ(result.body, kOldValue);
      break;
  }

  // The next requests succeed, on fresh connections (either worker).
  for (int i = 0; i < 4; ++i) {
    HttpClient client(port, seconds(10));
    ASSERT_TRUE(client.Request("PUT", target, kNextValue, &result).ok());
    EXPECT_EQ(result.status, 200) << result.body;
    ASSERT_TRUE(client.Get(target, &result).ok());
    EXPECT_EQ(result.body, kNextValue);
    ASSERT_TRUE(client.Post("/v1/counters/after/incr", "", &result).ok());
    EXPECT_EQ(result.status, 200) << result.body;
    EXPECT_EQ(boost::json::parse(result.body).at("value").to_number<int64_t>(), i + 1);
  }

  ChildExit exit = server.Stop();
  EXPECT_TRUE(exit.exited && exit.code == 0) << server.stderr_text();
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

INSTANTIATE_TEST_SUITE_P(
    Steps, CrashPointTest,
    testing::Values(CrashCase{"after_allocate", After::kOld},
                    CrashCase{"after_intent", After::kOld}, CrashCase{"after_commit", After::kNew},
                    CrashCase{"before_free", After::kNew},
                    // The replaced blob goes into the worker thread's blob cache ...
                    CrashCase{"cache_put", After::kNew},
                    // ... and the next write of its size takes it from there: the first warm-up
                    // write refills the empty class and takes a block (take 1), the second takes
                    // one and caches the first's blob, which the armed write takes (take 3).
                    CrashCase{"cache_take", After::kOld, /*warm_cache=*/true, /*hit=*/3},
                    // The first allocator lock of the overwrite: the new blob's, before any commit.
                    CrashCase{"inside_allocator", After::kOld},
                    CrashCase{"before_create_commit", After::kAbsent}),
    PrintCase);

}  // namespace
}  // namespace shm::test
