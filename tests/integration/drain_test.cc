// Draining a worker (SIGTERM of the server, SIGHUP roll) answers the requests blocked in a wait:
// a pop gets 204, a lock acquire 503 with Retry-After, never a closed connection without a reply.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <future>
#include <string>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::seconds;

// Sends one request on its own connection in the background. The timeout (15 s) is past the
// manager's SIGKILL of a worker that does not stop (7 s), so a dropped request is seen as such.
std::future<HttpResult> SendInBackground(uint16_t port, std::string method, std::string target) {
  return std::async(std::launch::async, [=] {
    HttpClient client(port, seconds(15));
    HttpResult result;
    Status s = client.Request(method, target, "", &result);
    if (!s.ok()) {
      result.status = -1;  // No complete answer.
      result.body = s.ToString();
    }
    return result;
  });
}

// Waits (bounded) until the server logged `count` blocking waits (--log-level debug).
bool WaitForBlockedRequests(const ServerProcess& server, size_t count) {
  return WaitFor(
      [&] {
        std::string log = server.stderr_text();
        size_t found = 0;
        for (size_t at = log.find("may wait"); at != std::string::npos;
             at = log.find("may wait", at + 1)) {
          ++found;
        }
        return found >= count;
      },
      seconds(10));
}

// Both io threads of the only worker are blocked in waits of 20 s when SIGTERM comes.
TEST(DrainTest, SigtermAnswersBlockedPopAndLockWait) {
  ServerProcess server("drain");
  ASSERT_STARTED(server.Start({"--workers", "1", "--threads", "2", "--log-level", "debug"}));
  HttpClient holder(server.port());
  HttpResult held;
  ASSERT_TRUE(holder.Post("/v1/locks/l/acquire?ttl=60", "", &held).ok());
  ASSERT_EQ(held.status, 200) << held.body;
  std::future<HttpResult> pop = SendInBackground(server.port(), "POST", "/v1/lists/q/pop?wait=20");
  std::future<HttpResult> acquire =
      SendInBackground(server.port(), "POST", "/v1/locks/l/acquire?wait=20");
  ASSERT_TRUE(WaitForBlockedRequests(server, 2)) << server.stderr_text();
  holder.Close();
  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
  HttpResult popped = pop.get();
  EXPECT_EQ(popped.status, 204) << popped.body << "\n" << server.stderr_text();
  HttpResult waited = acquire.get();
  EXPECT_EQ(waited.status, 503) << waited.body;
  EXPECT_EQ(waited.Header("Retry-After"), "1");
  ChildExit exit = server.Wait();
  EXPECT_EQ(exit.code, 0);
  EXPECT_EQ(server.stderr_text().find("did not stop within"), std::string::npos)
      << server.stderr_text();
}

// A rolling restart stops the old worker, whose only thread is blocked in a pop: the pop is
// answered and the new worker serves.
TEST(DrainTest, SighupRollAnswersBlockedPop) {
  ServerProcess server("drain-roll");
  ASSERT_STARTED(server.Start({"--workers", "1", "--log-level", "debug"}));
  std::vector<pid_t> before;
  ASSERT_TRUE(server.WorkerPids(&before).ok());
  std::future<HttpResult> pop = SendInBackground(server.port(), "POST", "/v1/lists/q/pop?wait=20");
  ASSERT_TRUE(WaitForBlockedRequests(server, 1)) << server.stderr_text();
  ASSERT_EQ(kill(server.pid(), SIGHUP), 0);
  HttpResult popped = pop.get();
  EXPECT_EQ(popped.status, 204) << popped.body << "\n" << server.stderr_text();
  EXPECT_EQ(popped.Header("X-Worker-Pid"), std::to_string(before[0]));
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<pid_t> now;
        return server.WorkerPids(&now).ok() && now.size() == 1 && now[0] != before[0] &&
               !ProcessAlive(before[0]);
      },
      seconds(10)));
  HttpClient client(server.port());
  HttpResult pushed;
  ASSERT_TRUE(client.Post("/v1/lists/q/push", "x", &pushed).ok());
  EXPECT_EQ(pushed.status, 200);
  EXPECT_EQ(server.stderr_text().find("did not stop within"), std::string::npos)
      << server.stderr_text();
  EXPECT_EQ(server.Stop().code, 0);
}

}  // namespace
}  // namespace shm::test
