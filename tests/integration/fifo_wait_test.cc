// Waiting pops are served in arrival order across workers (the list's line, shm/list.h): waiters
// parked one after another on two workers get the pushed items in the order they arrived, and a
// worker killed with waiters in line does not stall the list. Real server, real sockets; every
// step waits for a state (the debug log line a parked wait writes, an answer), never for a time.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::seconds;

// The pids of the workers that parked pops of `list`, in the order they logged them
// (--log-level debug writes "... pid=<pid> ... wait: POST /v1/lists/<list>/pop?... parked").
std::vector<pid_t> ParkedBy(const std::string& log, const std::string& list) {
  std::vector<pid_t> pids;
  const std::string target = "wait: POST /v1/lists/" + list + "/pop?";
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string::npos) break;  // A line still being written.
    const std::string line = log.substr(start, end - start);
    start = end + 1;
    const size_t pid_at = line.find(" pid=");
    if (line.find(target) == std::string::npos || pid_at == std::string::npos || line.size() < 7 ||
        line.compare(line.size() - 7, 7, " parked") != 0) {
      continue;
    }
    pids.push_back(static_cast<pid_t>(std::atoi(line.c_str() + pid_at + 5)));
  }
  return pids;
}

// Kept-alive connections, `per_worker` on each of the two workers: connections are opened in
// concurrent bursts (the kernel hands a burst to whichever workers are accepting, while one at a
// time may all go to the same idle worker) and each asks /healthz which worker answered it.
// Bounded: fewer than two workers, or fewer connections, when the bursts never spread.
using Connections = std::map<pid_t, std::vector<std::unique_ptr<HttpClient>>>;
Connections ConnectionsOnEachWorker(uint16_t port, size_t per_worker) {
  Connections by_worker;
  auto enough = [&] {
    return by_worker.size() == 2 && by_worker.begin()->second.size() >= per_worker &&
           by_worker.rbegin()->second.size() >= per_worker;
  };
  constexpr int kBurst = 8;
  for (int round = 0; round < 100 && !enough(); ++round) {
    std::vector<std::future<std::pair<pid_t, std::unique_ptr<HttpClient>>>> burst;
    for (int i = 0; i < kBurst; ++i) {
      burst.push_back(std::async(std::launch::async, [port] {
        auto client = std::make_unique<HttpClient>(port, seconds(60));
        HttpResult result;
        if (!client->Get("/healthz", &result).ok() || result.status != 200) {
          return std::make_pair(pid_t{-1}, std::move(client));
        }
        const pid_t worker = static_cast<pid_t>(std::atoi(result.Header("X-Worker-Pid").c_str()));
        return std::make_pair(worker, std::move(client));
      }));
    }
    for (auto& connection : burst) {
      auto [worker, client] = connection.get();
      if (worker > 0 && by_worker[worker].size() < per_worker) {
        by_worker[worker].push_back(std::move(client));
      }
    }
  }
  return by_worker;
}

// Sends a waiting pop of `list` on an already connected client, in the background.
std::future<HttpResult> PopOn(HttpClient* client, const std::string& list) {
  return std::async(std::launch::async, [=] {
    HttpResult result;
    Status s = client->Request("POST", "/v1/lists/" + list + "/pop?wait=30", "", &result);
    if (!s.ok()) {
      result.status = -1;  // No complete answer.
      result.body = s.ToString();
    }
    return result;
  });
}

// Waits (bounded) until `count` pops of `list` were logged as parked; returns the parking workers.
std::vector<pid_t> WaitParked(const ServerProcess& server, const std::string& list, size_t count) {
  std::vector<pid_t> parked;
  WaitFor(
      [&] {
        parked = ParkedBy(server.stderr_text(), list);
        return parked.size() >= count;
      },
      seconds(30));
  return parked;
}

// Two one-thread workers: waiters parked strictly one after another (each logged as parked before
// the next is sent), on both workers in a seeded random interleaving; then one push per waiter.
// Waiter i gets item i: an older waiter on one worker never loses an item to a newer one on the
// other.
TEST(FifoWaitTest, WaitersOnTwoWorkersAreServedInArrivalOrder) {
  ServerProcess server("fifo-order");
  ASSERT_STARTED(server.Start({"--workers", "2", "--threads", "1", "--log-level", "debug"}));
  constexpr size_t kPerWorker = 12;  // 24 waiters: below the line's 64 places.
  Connections connections = ConnectionsOnEachWorker(server.port(), kPerWorker);
  ASSERT_EQ(connections.size(), 2u) << "no connection reached the second worker";
  std::vector<pid_t> order;  // The worker of each waiter, in arrival order.
  for (const auto& [worker, clients] : connections) {
    ASSERT_EQ(clients.size(), kPerWorker);
    order.insert(order.end(), kPerWorker, worker);
  }
  std::mt19937 random(20261206);
  std::shuffle(order.begin(), order.end(), random);
  std::map<pid_t, size_t> used;
  std::vector<std::future<HttpResult>> pops;
  for (size_t i = 0; i < order.size(); ++i) {
    pops.push_back(PopOn(connections[order[i]][used[order[i]]++].get(), "fifo"));
    const std::vector<pid_t> parked = WaitParked(server, "fifo", i + 1);
    ASSERT_EQ(parked.size(), i + 1) << server.stderr_text();
    ASSERT_EQ(parked.back(), order[i]);
  }
  HttpClient client(server.port());
  HttpResult result;
  for (size_t i = 0; i < order.size(); ++i) {
    ASSERT_TRUE(client.Post("/v1/lists/fifo/push", std::to_string(i), &result).ok());
    ASSERT_EQ(result.status, 200) << result.body;
  }
  for (size_t i = 0; i < order.size(); ++i) {
    HttpResult popped = pops[i].get();
    EXPECT_EQ(popped.status, 200) << popped.body;
    EXPECT_EQ(popped.body, std::to_string(i)) << "waiter " << i << " got another's item";
    EXPECT_EQ(popped.Header("X-Worker-Pid"), std::to_string(order[i]));
  }
  EXPECT_EQ(server.Stop().code, 0);
}

// A worker SIGKILLed while its waiters are in line (and older than another worker's) does not
// stall the list: the next push goes to the surviving worker's waiter. The waiters are sent on
// connections known to be on each worker, so the line is the same whatever the kernel's choice
// of acceptor.
TEST(FifoWaitTest, KilledWorkersWaitersDoNotStallTheLine) {
  ServerProcess server("fifo-kill");
  ASSERT_STARTED(server.Start({"--workers", "2", "--threads", "1", "--log-level", "debug"}));
  Connections connections = ConnectionsOnEachWorker(server.port(), 1);
  ASSERT_EQ(connections.size(), 2u) << "no connection reached the second worker";
  const pid_t doomed = connections.begin()->first;
  const pid_t survivor = connections.rbegin()->first;
  std::future<HttpResult> doomed_pop = PopOn(connections[doomed][0].get(), "crash");
  ASSERT_EQ(WaitParked(server, "crash", 1), std::vector<pid_t>({doomed})) << server.stderr_text();
  std::future<HttpResult> survivor_pop = PopOn(connections[survivor][0].get(), "crash");
  ASSERT_EQ(WaitParked(server, "crash", 2), std::vector<pid_t>({doomed, survivor}))
      << server.stderr_text();
  ASSERT_EQ(kill(doomed, SIGKILL), 0);
  EXPECT_EQ(doomed_pop.get().status, -1) << "the waiter on the killed worker answered";
  HttpClient client(server.port());
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/lists/crash/push", "after the crash", &result).ok());
  ASSERT_EQ(result.status, 200) << result.body;
  HttpResult popped = survivor_pop.get();
  EXPECT_EQ(popped.status, 200) << popped.body;
  EXPECT_EQ(popped.body, "after the crash");
  EXPECT_EQ(popped.Header("X-Worker-Pid"), std::to_string(survivor));
  EXPECT_EQ(server.Stop().code, 0);
}

}  // namespace
}  // namespace shm::test
