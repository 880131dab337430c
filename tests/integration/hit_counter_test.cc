// End-to-end test of the hit_counter example (examples/hit_counter): its own route next to the
// built-in API. The binary is $HIT_COUNTER_BIN, else "hit_counter" next to $SHMSTATE_BIN (both
// are built into the build directory's top; examples are on by default).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <set>
#include <thread>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

std::string HitCounterBinary() {
  if (const char* bin = std::getenv("HIT_COUNTER_BIN")) return bin;
  std::string shmstate = ShmstateBinary();
  size_t slash = shmstate.rfind('/');
  return slash == std::string::npos ? "" : shmstate.substr(0, slash + 1) + "hit_counter";
}

int64_t Field(const HttpResult& result, const char* name) {
  return boost::json::parse(result.body).at(name).to_number<int64_t>();
}

TEST(HitCounterTest, ConcurrentHitsAreNumberedOneToNAcrossWorkers) {
  if (access(HitCounterBinary().c_str(), X_OK) != 0) {
    GTEST_SKIP() << "no hit_counter binary at '" << HitCounterBinary()
                 << "' (configured with -DSHM_BUILD_EXAMPLES=OFF?)";
  }
  ServerProcess server("hits");
  ASSERT_STARTED(server.Start({"--workers", "3"}, HitCounterBinary()));
  constexpr int kClients = 60;
  std::vector<int64_t> numbers(kClients, -1);
  std::vector<std::string> pids(kClients);
  std::barrier start(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      HttpClient client(server.port());
      HttpResult result;
      Status s = client.Get("/healthz", &result);
      start.arrive_and_wait();
      if (s.ok()) s = client.Get("/hits", &result);
      if (s.ok() && result.status == 200) {
        numbers[i] = Field(result, "hits");
        pids[i] = result.Header("X-Worker-Pid");
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::sort(numbers.begin(), numbers.end());
  for (int i = 0; i < kClients; ++i) ASSERT_EQ(numbers[i], i + 1);
  EXPECT_GE(std::set<std::string>(pids.begin(), pids.end()).size(), 2u);

  // The application's counter is an ordinary shared object: the built-in API sees it too.
  HttpClient client(server.port());
  HttpResult result;
  ASSERT_TRUE(client.Get("/v1/counters/hit_counter.hits", &result).ok());
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(Field(result, "value"), kClients);
  ASSERT_TRUE(client.Post("/hits", "", &result).ok());
  EXPECT_EQ(result.status, 405);  // Known path, other method.

  ChildExit exit = server.Stop();
  EXPECT_EQ(exit.code, 0) << server.stderr_text();
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

}  // namespace
}  // namespace shm::test
