// HTTP waits (a pop waiting for a push, an acquire waiting for a release) park on the worker's
// event loop: many waiters leave a worker with one thread serving, pushes and releases reach the
// waiters of a worker in arrival order, and a stopping worker answers every connection it
// accepted. Real server, real sockets; every step waits for a state (the debug log line a
// parked wait writes, an answer), never for a time.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::seconds;

// Sends one request on its own connection in the background (HttpClient, bounded).
std::future<HttpResult> SendInBackground(uint16_t port, std::string method, std::string target,
                                         std::string body = "") {
  return std::async(std::launch::async, [=] {
    HttpClient client(port, seconds(60));
    HttpResult result;
    Status s = client.Request(method, target, body, &result);
    if (!s.ok()) {
      result.status = -1;  // No complete answer.
      result.body = s.ToString();
    }
    return result;
  });
}

bool Answered(std::future<HttpResult>& f) {
  return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

size_t CountOf(const std::string& text, const std::string& needle) {
  size_t found = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++found;
  }
  return found;
}

// Waits (bounded) until the server logged `count` parked waits (--log-level debug): requests
// queued in a worker's WaitHub, not answered.
bool WaitForParked(const ServerProcess& server, size_t count) {
  return WaitFor([&] { return CountOf(server.stderr_text(), " parked\n") >= count; }, seconds(30));
}

// Connections in the listening socket's accept queue (not yet accepted by any worker), from
// /proc/net/tcp (rx_queue of the LISTEN row); -1 when the row is not found.
int AcceptBacklog(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  char local[64];
  std::getline(in, line);  // Header.
  char wanted[16];
  std::snprintf(wanted, sizeof wanted, "0100007F:%04X", port);
  while (std::getline(in, line)) {
    unsigned state = 0;
    unsigned tx = 0;
    unsigned rx = 0;
    if (std::sscanf(line.c_str(), " %*d: %63s %*s %x %x:%x", local, &state, &tx, &rx) != 4) {
      continue;
    }
    if (std::string(local) == wanted && state == 0x0A) return static_cast<int>(rx);
  }
  return -1;
}

// A raw connection, for what HttpClient does not do: pipelining, a request sent in parts.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~RawConnection() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  bool Send(const std::string& bytes) {
    return fd_ >= 0 && send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                           static_cast<ssize_t>(bytes.size());
  }
  // Everything the server sends until it closes, bounded by `limit`.
  std::string ReadUntilClosed(std::chrono::milliseconds limit) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd pfd{fd_, POLLIN, 0};
      if (left.count() <= 0 || poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
        return out + "<no close within the limit>";
      }
      char chunk[4096];
      ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return out;
      out.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
};

std::string PopRequest(const std::string& list, int wait_s) {
  return "POST /v1/lists/" + list + "/pop?wait=" + std::to_string(wait_s) +
         " HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
}

// 200 pops and 50 lock acquires wait on 2 workers of one thread each: /healthz and counter
// increments are still answered by both workers while every one of the waits is pending.
// Then 200 pushes reach the 200 pops, each item exactly once.
TEST(ParkedWaitTest, WaitingRequestsLeaveOneThreadWorkersServing) {
  ServerProcess server("parked");
  ASSERT_STARTED(server.Start({"--workers", "2", "--threads", "1", "--log-level", "debug"}));
  const uint16_t port = server.port();
  HttpClient holder(port);
  HttpResult held;
  ASSERT_TRUE(holder.Post("/v1/locks/l/acquire?ttl=120", "", &held).ok());
  ASSERT_EQ(held.status, 200) << held.body;

  constexpr int kPops = 200;
  constexpr int kAcquires = 50;
  std::vector<std::future<HttpResult>> pops;
  std::vector<std::future<HttpResult>> acquires;
  for (int i = 0; i < kPops; ++i) {
    pops.push_back(SendInBackground(port, "POST", "/v1/lists/q/pop?wait=30"));
  }
  for (int i = 0; i < kAcquires; ++i) {
    acquires.push_back(SendInBackground(port, "POST", "/v1/locks/l/acquire?wait=30"));
  }
  ASSERT_TRUE(WaitForParked(server, kPops + kAcquires)) << server.stderr_text();

  // Both workers answer, each with 100-odd waits parked on its only thread.
  std::vector<pid_t> workers;
  ASSERT_TRUE(server.WorkerPids(&workers).ok());
  std::set<std::string> answered_by;
  int64_t increments = 0;
  for (int i = 0; i < 400 && answered_by.size() < workers.size(); ++i) {
    HttpClient client(port, seconds(10));
    HttpResult health;
    ASSERT_TRUE(client.Get("/healthz", &health).ok());
    ASSERT_EQ(health.status, 200) << health.body;
    answered_by.insert(health.Header("X-Worker-Pid"));
    HttpResult incr;
    ASSERT_TRUE(client.Post("/v1/counters/c/incr", "", &incr).ok());
    ASSERT_EQ(incr.status, 200) << incr.body;
    EXPECT_EQ(incr.body, "{\"value\":" + std::to_string(++increments) + "}");
  }
  EXPECT_EQ(answered_by.size(), 2u) << "only one worker answered in 400 connections";
  for (auto& pop : pops) EXPECT_FALSE(Answered(pop)) << "a pop was answered with nothing pushed";
  for (auto& acquire : acquires) EXPECT_FALSE(Answered(acquire)) << "an acquire of a held lock";

  HttpClient pusher(port);
  for (int i = 0; i < kPops; ++i) {
    HttpResult pushed;
    ASSERT_TRUE(pusher.Post("/v1/lists/q/push", "item-" + std::to_string(i), &pushed).ok());
    ASSERT_EQ(pushed.status, 200) << pushed.body;
  }
  std::set<std::string> items;
  for (auto& pop : pops) {
    HttpResult popped = pop.get();
    EXPECT_EQ(popped.status, 200) << popped.body;
    items.insert(popped.body);
  }
  EXPECT_EQ(items.size(), static_cast<size_t>(kPops)) << "an item was delivered twice";
  HttpResult length;
  ASSERT_TRUE(pusher.Get("/v1/lists/q", &length).ok());
  EXPECT_EQ(length.body, "{\"length\":0}");
  EXPECT_EQ(server.Stop().code, 0);  // The acquires are answered 503 by the stop.
  for (auto& acquire : acquires) EXPECT_EQ(acquire.get().status, 503);
}

// One worker: waiters parked in a known order get the pushed items in that order, and a pop
// without wait that arrives behind them does not take an item an earlier waiter is due.
TEST(ParkedWaitTest, PushesReachWaitersInArrivalOrder) {
  ServerProcess server("parked-order");
  ASSERT_STARTED(server.Start({"--workers", "1", "--log-level", "debug"}));
  const uint16_t port = server.port();
  constexpr int kWaiters = 20;
  std::vector<std::future<HttpResult>> pops;
  for (int i = 0; i < kWaiters; ++i) {
    pops.push_back(SendInBackground(port, "POST", "/v1/lists/fifo/pop?wait=30"));
    ASSERT_TRUE(WaitForParked(server, i + 1)) << server.stderr_text();
  }
  HttpClient client(port);
  HttpResult result;
  // One item, then a non-waiting pop: the item is the first waiter's, the late pop finds none.
  ASSERT_TRUE(client.Post("/v1/lists/fifo/push", "0", &result).ok());
  ASSERT_TRUE(client.Post("/v1/lists/fifo/pop", "", &result).ok());
  EXPECT_EQ(result.status, 204) << result.body;
  for (int i = 1; i < kWaiters; ++i) {
    ASSERT_TRUE(client.Post("/v1/lists/fifo/push", std::to_string(i), &result).ok());
    ASSERT_EQ(result.status, 200);
  }
  for (int i = 0; i < kWaiters; ++i) {
    HttpResult popped = pops[i].get();
    EXPECT_EQ(popped.status, 200) << popped.body;
    EXPECT_EQ(popped.body, std::to_string(i)) << "waiter " << i << " got another's item";
  }
  EXPECT_EQ(server.Stop().code, 0);
}

// One worker: acquirers parked in a known order get the lock in that order, one release each.
TEST(ParkedWaitTest, LockAcquirersAreServedInArrivalOrder) {
  ServerProcess server("parked-lock");
  ASSERT_STARTED(server.Start({"--workers", "1", "--log-level", "debug"}));
  const uint16_t port = server.port();
  HttpClient client(port);
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/locks/l/acquire?ttl=120", "", &result).ok());
  ASSERT_EQ(result.status, 200) << result.body;
  std::string token = boost::json::parse(result.body).at("token").as_string().c_str();
  constexpr int kWaiters = 6;
  std::vector<std::future<HttpResult>> acquires;
  for (int i = 0; i < kWaiters; ++i) {
    acquires.push_back(SendInBackground(
        port, "POST", "/v1/locks/l/acquire?ttl=120&wait=30&owner=w" + std::to_string(i)));
    ASSERT_TRUE(WaitForParked(server, i + 1)) << server.stderr_text();
  }
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_TRUE(client.Post("/v1/locks/l/release", "{\"token\": \"" + token + "\"}", &result).ok());
    ASSERT_EQ(result.status, 204) << result.body;
    HttpResult got = acquires[i].get();
    ASSERT_EQ(got.status, 200) << "waiter " << i << ": " << got.body;
    token = boost::json::parse(got.body).at("token").as_string().c_str();
    ASSERT_TRUE(client.Get("/v1/locks/l", &result).ok());
    EXPECT_NE(result.body.find("\"owner\":\"w" + std::to_string(i) + "\""), std::string::npos)
        << result.body;
    for (int later = i + 1; later < kWaiters; ++later) {
      EXPECT_FALSE(Answered(acquires[later])) << "waiter " << later << " answered early";
    }
  }
  EXPECT_EQ(server.Stop().code, 0);
}

// SIGTERM with every kind of connection a worker holds: parked pops (204) and acquires (503 with
// Retry-After), a parked pop with a request pipelined behind it (204, then 503 for the request
// no handler read, then close), and a connection whose first request was only partly sent (its
// request is served). Every connection gets its answers; the server exits cleanly.
TEST(ParkedWaitTest, SigtermAnswersEveryAcceptedConnection) {
  ServerProcess server("parked-term");
  ASSERT_STARTED(server.Start({"--workers", "2", "--threads", "1", "--log-level", "debug"}));
  const uint16_t port = server.port();
  HttpClient holder(port);
  HttpResult held;
  ASSERT_TRUE(holder.Post("/v1/locks/l/acquire?ttl=120", "", &held).ok());
  ASSERT_EQ(held.status, 200) << held.body;
  holder.Close();

  constexpr int kPops = 40;
  constexpr int kAcquires = 10;
  constexpr int kPipelined = 10;
  constexpr int kPartial = 10;
  std::vector<std::future<HttpResult>> pops;
  std::vector<std::future<HttpResult>> acquires;
  for (int i = 0; i < kPops; ++i) {
    pops.push_back(SendInBackground(port, "POST", "/v1/lists/q/pop?wait=30"));
  }
  for (int i = 0; i < kAcquires; ++i) {
    acquires.push_back(SendInBackground(port, "POST", "/v1/locks/l/acquire?wait=30"));
  }
  std::vector<std::unique_ptr<RawConnection>> pipelined;
  for (int i = 0; i < kPipelined; ++i) {
    auto& c = pipelined.emplace_back(std::make_unique<RawConnection>(port));
    ASSERT_TRUE(c->ok());
    ASSERT_TRUE(c->Send(PopRequest("q", 30) + "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
  }
  ASSERT_TRUE(WaitForParked(server, kPops + kAcquires + kPipelined)) << server.stderr_text();
  std::vector<std::unique_ptr<RawConnection>> partial;
  const std::string request = PopRequest("other", 30);
  for (int i = 0; i < kPartial; ++i) {
    auto& c = partial.emplace_back(std::make_unique<RawConnection>(port));
    ASSERT_TRUE(c->ok());
    ASSERT_TRUE(c->Send(request.substr(0, 20)));
  }
  // Every connection is accepted by a worker (none left in the kernel's queue).
  ASSERT_TRUE(WaitFor([&] { return AcceptBacklog(port) == 0; }, seconds(10)));

  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
  for (auto& c : partial) ASSERT_TRUE(c->Send(request.substr(20)));
  for (auto& pop : pops) {
    HttpResult popped = pop.get();
    EXPECT_EQ(popped.status, 204) << popped.body;
  }
  for (auto& acquire : acquires) {
    HttpResult waited = acquire.get();
    EXPECT_EQ(waited.status, 503) << waited.body;
    EXPECT_EQ(waited.Header("Retry-After"), "1");
  }
  for (auto& c : pipelined) {
    std::string text = c->ReadUntilClosed(std::chrono::milliseconds(20000));
    EXPECT_EQ(text.find("HTTP/1.1 204"), 0u) << text;
    size_t refusal = text.find("HTTP/1.1 503");
    EXPECT_NE(refusal, std::string::npos) << text;
    EXPECT_NE(text.find("Retry-After: 1", refusal), std::string::npos) << text;
    EXPECT_NE(text.find("ShuttingDown", refusal), std::string::npos) << text;
    EXPECT_EQ(CountOf(text, "HTTP/1.1 "), 2u) << text;
    c.reset();  // The worker lingers on a closing connection until its client closes too.
  }
  for (auto& c : partial) {
    std::string text = c->ReadUntilClosed(std::chrono::milliseconds(20000));
    EXPECT_EQ(text.find("HTTP/1.1 204"), 0u) << text;
    EXPECT_EQ(CountOf(text, "HTTP/1.1 "), 1u) << text;
    c.reset();
  }
  ChildExit exit = server.Wait();
  EXPECT_EQ(exit.code, 0);
  EXPECT_EQ(server.stderr_text().find("did not stop within"), std::string::npos)
      << server.stderr_text();
}

// One queue per worker for both protocols: a Redis-protocol BLPOP parked between two HTTP pops
// holds neither up. A Redis key is not the HTTP list of the same name (a Redis list belongs to the
// keyspace, docs/resp.md), so each side is served by its own pushes; the HTTP waiters in their
// arrival order.
TEST(ParkedWaitTest, RedisBlpopParksBesideHttpPopsInOneQueue) {
  ServerProcess server("parked-resp");
  ASSERT_STARTED(
      server.Start({"--workers", "1", "--resp-listen", "127.0.0.1:0", "--log-level", "debug"}));
  const uint16_t port = server.port();
  const std::string& line = server.listening_line();
  size_t at = line.find("redis://127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << line;
  const uint16_t resp_port =
      static_cast<uint16_t>(std::stoi(line.substr(at + std::string("redis://127.0.0.1:").size())));

  std::future<HttpResult> first = SendInBackground(port, "POST", "/v1/lists/shared/pop?wait=30");
  ASSERT_TRUE(WaitForParked(server, 1)) << server.stderr_text();
  RawConnection redis(resp_port);
  ASSERT_TRUE(redis.ok());
  ASSERT_TRUE(redis.Send("*3\r\n$5\r\nBLPOP\r\n$6\r\nshared\r\n$2\r\n30\r\n"));
  ASSERT_TRUE(WaitForParked(server, 2)) << server.stderr_text();
  std::future<HttpResult> third = SendInBackground(port, "POST", "/v1/lists/shared/pop?wait=30");
  ASSERT_TRUE(WaitForParked(server, 3)) << server.stderr_text();

  HttpClient client(port);
  HttpResult result;
  for (const char* item : {"one", "two"}) {
    ASSERT_TRUE(client.Post("/v1/lists/shared/push", item, &result).ok());
    ASSERT_EQ(result.status, 200) << result.body;
  }
  EXPECT_EQ(first.get().body, "one");
  EXPECT_EQ(third.get().body, "two");
  RawConnection pusher(resp_port);
  ASSERT_TRUE(pusher.ok());
  ASSERT_TRUE(pusher.Send("*3\r\n$5\r\nRPUSH\r\n$6\r\nshared\r\n$1\r\nr\r\n*1\r\n$4\r\nQUIT\r\n"));
  EXPECT_EQ(pusher.ReadUntilClosed(std::chrono::milliseconds(20000)), ":1\r\n+OK\r\n");
  ASSERT_TRUE(redis.Send("*1\r\n$4\r\nQUIT\r\n"));
  EXPECT_EQ(redis.ReadUntilClosed(std::chrono::milliseconds(20000)),
            "*2\r\n$6\r\nshared\r\n$1\r\nr\r\n+OK\r\n");
  EXPECT_EQ(server.Stop().code, 0);
}

// A waiting client that hangs up takes nothing: its wait is dropped, and the next push is for
// whoever waits next.
TEST(ParkedWaitTest, WaiterThatHangsUpTakesNoItem) {
  ServerProcess server("parked-gone");
  ASSERT_STARTED(server.Start({"--workers", "1", "--log-level", "debug"}));
  const uint16_t port = server.port();
  {
    RawConnection gone(port);
    ASSERT_TRUE(gone.ok());
    ASSERT_TRUE(gone.Send(PopRequest("g", 30)));
    ASSERT_TRUE(WaitForParked(server, 1)) << server.stderr_text();
  }  // Closed while parked: the worker notices and drops the wait.
  ASSERT_TRUE(WaitFor([&] { return CountOf(server.stderr_text(), "went away") == 1; }, seconds(30)))
      << server.stderr_text();
  std::future<HttpResult> next = SendInBackground(port, "POST", "/v1/lists/g/pop?wait=30");
  ASSERT_TRUE(WaitForParked(server, 2)) << server.stderr_text();
  HttpClient client(port);
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/lists/g/push", "only", &result).ok());
  HttpResult popped = next.get();
  EXPECT_EQ(popped.status, 200);
  EXPECT_EQ(popped.body, "only");
  EXPECT_EQ(server.Stop().code, 0);
}

}  // namespace
}  // namespace shm::test
