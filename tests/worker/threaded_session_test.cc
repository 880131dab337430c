// RunWorker with several Asio threads and many concurrent clients over real sockets, then a
// SIGTERM drain while connections are busy and idle. Exact results prove the handlers of one
// connection never interleave; scripts/tsan runs this under ThreadSanitizer to check the rest
// (sessions map, drain, timers, the proxy cache).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/http_client.h"
#include "common/test_util.h"
#include "shm/api.h"
#include "shm/counter.h"
#include "shm/worker.h"

namespace shm {
namespace {

constexpr int kThreads = 4;
constexpr int kClients = 8;
constexpr int kRequestsPerClient = 150;
constexpr int kWaitMs = 30000;  // Bound on the worker's exit; never reached when it is right.

// A worker process with `threads` Asio threads on an ephemeral loopback port.
class ThreadedWorker {
 public:
  ThreadedWorker(Segment* segment, int threads) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(listen_fd_, 128);
    socklen_t length = sizeof address;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    WorkerOptions options;
    options.threads = threads;
    options.drain_timeout = std::chrono::milliseconds(5000);
    int fd = listen_fd_;
    pid_ = test::ForkChild([segment, fd, options] {
      Router router;
      RegisterApiRoutes(&router);
      return RunWorker(segment, fd, router, options);
    });
    segment->RegisterWorker(0, pid_, 0);
  }
  ~ThreadedWorker() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      test::WaitChild(pid_, kWaitMs);
    }
    close(listen_fd_);
  }

  test::ChildExit Terminate() {
    kill(pid_, SIGTERM);
    test::ChildExit exit = test::WaitChild(pid_, kWaitMs);
    pid_ = 0;
    return exit;
  }
  uint16_t port() const { return port_; }

 private:
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  pid_t pid_ = 0;
};

int64_t ValueOf(const test::HttpResult& result) {
  return boost::json::parse(result.body).at("value").to_number<int64_t>();
}

TEST(ThreadedSessionTest, FourThreadsServeEightConcurrentClientsExactlyThenDrain) {
  test::ScopedSegment seg;
  ThreadedWorker worker(seg.get(), kThreads);
  std::vector<std::vector<int64_t>> shared_values(kClients);
  std::vector<std::string> errors(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      test::HttpClient client(worker.port());
      test::HttpResult result;
      std::string own = "/v1/counters/own" + std::to_string(c);
      std::string key = "/v1/dicts/d/k" + std::to_string(c);
      for (int i = 0; i < kRequestsPerClient && errors[c].empty(); ++i) {
        Status s = client.Post("/v1/counters/shared/incr", "", &result);
        if (!s.ok() || result.status != 200) {
          errors[c] = "shared incr: " + s.ToString() + " " + result.body;
          break;
        }
        shared_values[c].push_back(ValueOf(result));
        std::string value = std::to_string(c) + ":" + std::to_string(i);
        s = client.Request("PUT", key, value, &result);
        if (s.ok() && result.status == 200) s = client.Get(key, &result);
        if (!s.ok() || result.status != 200 || result.body != value) {
          errors[c] = "dict round trip: " + s.ToString() + " " + result.body;
        }
        s = client.Post(own + "/incr", "", &result);
        if (!s.ok() || result.status != 200 || ValueOf(result) != i + 1) {
          errors[c] = "own counter: " + s.ToString() + " " + result.body;
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  for (const std::string& error : errors) ASSERT_EQ(error, "");
  std::vector<int64_t> all;
  for (const auto& values : shared_values) all.insert(all.end(), values.begin(), values.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kClients * kRequestsPerClient));
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], static_cast<int64_t>(i + 1));

  // Drain with connections open: some idle, some sending while SIGTERM arrives.
  std::vector<std::unique_ptr<test::HttpClient>> idle;
  for (int c = 0; c < kClients; ++c) {
    idle.push_back(std::make_unique<test::HttpClient>(worker.port()));
    test::HttpResult result;
    ASSERT_TRUE(idle.back()->Get("/healthz", &result).ok());
  }
  std::atomic<int> answered{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int c = 0; c < kClients / 2; ++c) {
    busy.emplace_back([&] {
      test::HttpClient client(worker.port(), std::chrono::milliseconds(kWaitMs));
      test::HttpResult result;
      while (!stop.load()) {
        if (!client.Post("/v1/counters/drain/incr", "", &result).ok()) return;
        if (result.status == 200) answered.fetch_add(1);
        if (result.Header("Connection") == "close") return;  // The worker is draining.
      }
    });
  }
  int64_t deadline = SteadyNowMs() + kWaitMs;
  while (answered.load() < 50 && SteadyNowMs() < deadline) std::this_thread::yield();
  bool busy_when_stopped = answered.load() >= 50;
  test::ChildExit exit = worker.Terminate();
  stop.store(true);
  for (std::thread& t : busy) t.join();
  EXPECT_TRUE(busy_when_stopped) << "the busy clients were not answered";
  EXPECT_TRUE(exit.exited) << "signal " << exit.signal;
  EXPECT_EQ(exit.code, 0);
  // Every answered increment ran exactly once (a drained request is answered, never dropped).
  Counter drain;
  ASSERT_TRUE(Counter::Open(seg.get(), "drain", Counter::Options(), &drain).ok());
  int64_t value = 0;
  ASSERT_TRUE(drain.Get(&value).ok());
  EXPECT_EQ(value, answered.load());
}

}  // namespace
}  // namespace shm
