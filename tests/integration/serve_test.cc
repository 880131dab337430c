// End-to-end: the real shmstate binary, its workers and the counter API over loopback.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

int64_t ValueOf(const HttpResult& result) {
  return boost::json::parse(result.body).at("value").to_number<int64_t>();
}

// Checks the SIGTERM contract: exit 0, no worker, no segment, no lock file.
void ExpectStopsCleanly(ServerProcess* server) {
  std::vector<pid_t> workers = ChildrenOf(server->pid());
  ASSERT_FALSE(workers.empty());
  ChildExit exit = server->Stop();
  EXPECT_TRUE(exit.exited) << "signal " << exit.signal << "; stderr:\n" << server->stderr_text();
  EXPECT_EQ(exit.code, 0) << server->stderr_text();
  for (pid_t pid : workers) EXPECT_FALSE(ProcessAlive(pid)) << "worker " << pid << " survived";
  EXPECT_TRUE(ShmEntriesOf(server->name()).empty())
      << "left in /dev/shm: " << ShmEntriesOf(server->name()).front();
}

TEST(ServeTest, HundredConcurrentClientsGetExactlyOneToHundredFromSeveralWorkers) {
  ServerProcess server("hundred");
  ASSERT_STARTED(server.Start({"--workers", "4"}));
  EXPECT_NE(server.listening_line().find("(4 workers, segment /dev/shm/" + server.name() +
                                         ".1, 64.0 MiB)"),
            std::string::npos)
      << server.listening_line();
  constexpr int kClients = 100;
  std::vector<int64_t> values(kClients, -1);
  std::vector<std::string> pids(kClients);
  std::vector<std::string> errors(kClients);
  // Every client connects first, then all send at once, so the requests really overlap.
  std::barrier start(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      HttpClient client(server.port());
      HttpResult result;
      Status s = client.Get("/healthz", &result);  // Opens the connection.
      start.arrive_and_wait();
      if (s.ok()) s = client.Post("/v1/counters/x/incr", "", &result);
      if (!s.ok() || result.status != 200) {
        errors[i] = s.ok() ? std::to_string(result.status) + " " + result.body : s.ToString();
        return;
      }
      values[i] = ValueOf(result);
      pids[i] = result.Header("X-Worker-Pid");
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& error : errors) ASSERT_EQ(error, "");
  std::sort(values.begin(), values.end());
  for (int i = 0; i < kClients; ++i) ASSERT_EQ(values[i], i + 1);
  std::set<std::string> distinct(pids.begin(), pids.end());
  EXPECT_GE(distinct.size(), 2u) << "every request went to worker " << *distinct.begin();
  ExpectStopsCleanly(&server);
}

TEST(ServeTest, TwentyThousandIncrementsOverSixtyFourKeptAliveConnectionsAreExact) {
  ServerProcess server("twentyk");
  ASSERT_STARTED(server.Start({"--workers", "2"}));
  constexpr int kConnections = 64;
  constexpr int kTotal = 20000;
  std::vector<std::vector<int64_t>> seen(kConnections);
  std::atomic<int> failures{0};
  std::string first_failure;
  std::vector<std::thread> threads;
  for (int c = 0; c < kConnections; ++c) {
    threads.emplace_back([&, c] {
      int count = kTotal / kConnections + (c < kTotal % kConnections ? 1 : 0);
      HttpClient client(server.port());
      for (int i = 0; i < count; ++i) {
        HttpResult result;
        Status s = client.Post("/v1/counters/total/incr", "", &result);
        if (!s.ok() || result.status != 200) {
          if (failures.fetch_add(1) == 0) first_failure = s.ToString() + " " + result.body;
          return;
        }
        seen[c].push_back(ValueOf(result));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0) << first_failure;
  std::vector<int64_t> all;
  for (const auto& values : seen) all.insert(all.end(), values.begin(), values.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kTotal));
  for (int i = 0; i < kTotal; ++i) ASSERT_EQ(all[i], i + 1) << "duplicate or skipped number";
  HttpClient client(server.port());
  HttpResult result;
  ASSERT_TRUE(client.Get("/v1/counters/total", &result).ok());
  EXPECT_EQ(ValueOf(result), kTotal);
  ExpectStopsCleanly(&server);
}

TEST(ServeTest, SegmentAndLockFileAreOwnerOnly) {
  ServerProcess server("mode");
  ASSERT_STARTED(server.Start({"--workers", "1", "--size", "8MiB"}));
  for (const std::string& file : {server.name() + ".1", server.name() + ".lock"}) {
    struct stat st;
    ASSERT_EQ(stat(("/dev/shm/" + file).c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
  EXPECT_NE(server.listening_line().find("8.0 MiB"), std::string::npos);
  ExpectStopsCleanly(&server);
}

TEST(ServeTest, SigtermLeavesNoProcessNoSegmentNoLockFile) {
  ServerProcess server("term");
  ASSERT_STARTED(server.Start({"--workers", "3"}));
  std::vector<pid_t> pids;
  ASSERT_TRUE(server.WorkerPids(&pids).ok());
  EXPECT_EQ(pids.size(), 3u);
  std::vector<pid_t> children = ChildrenOf(server.pid());
  std::sort(pids.begin(), pids.end());
  std::sort(children.begin(), children.end());
  EXPECT_EQ(pids, children);  // The workers are the manager's direct children.
  EXPECT_EQ(ShmEntriesOf(server.name()).size(), 2u);  // Segment and lock file.
  ExpectStopsCleanly(&server);
}

TEST(ServeTest, SigintStopsCleanlyToo) {
  ServerProcess server("int");
  ASSERT_STARTED(server.Start({"--workers", "1"}));
  std::vector<pid_t> workers = ChildrenOf(server.pid());
  kill(server.pid(), SIGINT);
  ChildExit exit = server.Wait();
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 0);
  for (pid_t pid : workers) EXPECT_FALSE(ProcessAlive(pid));
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

TEST(ServeTest, TokenFromTheEnvironmentIsRequiredAndTheFlagWins) {
  for (bool by_flag : {false, true}) {
    ServerProcess server("token");
    server.add_env("SHMSTATE_TOKEN=env-secret");
    std::vector<std::string> extra = {"--workers", "1"};
    if (by_flag) extra.insert(extra.end(), {"--token", "flag-secret"});
    ASSERT_STARTED(server.Start(extra));
    std::string good = by_flag ? "flag-secret" : "env-secret";
    std::string bad = by_flag ? "env-secret" : "flag-secret";
    HttpClient client(server.port());
    HttpResult result;
    ASSERT_TRUE(client.Post("/v1/counters/t/incr", "", &result).ok());
    EXPECT_EQ(result.status, 401);
    ASSERT_TRUE(client
                    .Request("POST", "/v1/counters/t/incr", "", &result,
                             {{"Authorization", "Bearer " + bad}})
                    .ok());
    EXPECT_EQ(result.status, 401);
    ASSERT_TRUE(client
                    .Request("POST", "/v1/counters/t/incr", "", &result,
                             {{"Authorization", "Bearer " + good}})
                    .ok());
    EXPECT_EQ(result.status, 200);
    EXPECT_EQ(ValueOf(result), 1);  // The refused requests changed nothing.
    // The status page is static markup: served without the token. Only that exact path is.
    ASSERT_TRUE(client.Get("/ui", &result).ok());
    EXPECT_EQ(result.status, 200);
    for (const char* path : {"/ui/", "/ui/../v1/stats", "/v1/stats"}) {
      ASSERT_TRUE(client.Get(path, &result).ok());
      EXPECT_EQ(result.status, 401) << path;
    }
    EXPECT_EQ(server.Stop().code, 0);
  }
}

// Counts the lines of a stderr text that are not empty.
int Lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(ServeTest, BusyPortFailsWithOneLineAndLeavesNothing) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ServerProcess server("busy");
  server.set_listen("127.0.0.1:" + std::to_string(ntohs(address.sin_port)));
  Status s = server.Start({"--workers", "1"});
  close(fd);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(server.exit().exited);
  EXPECT_EQ(server.exit().code, 1);
  std::string err = server.stderr_text();
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find("already in use"), std::string::npos) << err;
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

TEST(ServeTest, LiveDuplicateNameFailsWithOneLineAndLeavesTheFirstAlone) {
  ServerProcess first("dup");
  ASSERT_STARTED(first.Start({"--workers", "1"}));
  HttpClient client(first.port());
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/counters/kept/incr?by=7", "", &result).ok());
  ServerProcess second("dup");
  second.set_name(first.name());
  Status s = second.Start({"--workers", "1"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(second.exit().code, 1);
  std::string err = second.stderr_text();
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find("another instance"), std::string::npos) << err;
  EXPECT_NE(err.find("pid " + std::to_string(first.pid())), std::string::npos) << err;
  // The first instance keeps its segment, lock file and state.
  EXPECT_EQ(ShmEntriesOf(first.name()).size(), 2u);
  ASSERT_TRUE(client.Get("/v1/counters/kept", &result).ok());
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(ValueOf(result), 7);
  second.set_name("");  // Its destructor must not clean up the first one's files.
  ExpectStopsCleanly(&first);
}

TEST(ServeTest, BadFlagsFailWithOneLineAndExitCodeTwo) {
  for (std::vector<std::string> extra :
       {std::vector<std::string>{"--workers", "zero"}, std::vector<std::string>{"--size", "1XB"},
        std::vector<std::string>{"--no-such-flag"},
        std::vector<std::string>{"--snapshot-interval", "soon"},
        std::vector<std::string>{"--size", "512KiB"},
        std::vector<std::string>{"--size", "1MiB", "--max-objects", "4096"}}) {
    ServerProcess server("badflag");
    Status s = server.Start(extra);
    ASSERT_FALSE(s.ok()) << extra[0];
    EXPECT_EQ(server.exit().code, 2) << extra[0];
    std::string err = server.stderr_text();
    EXPECT_EQ(Lines(err), 1) << err;
    EXPECT_EQ(err.rfind("shmstate: error: ", 0), 0u) << err;
    EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
  }
}

// The documented minimum --size starts with the other defaults (the registry scaled down to
// half the segment) and stores data.
TEST(ServeTest, MinimumSizeStartsAndServes) {
  ServerProcess server("minsize");
  ASSERT_STARTED(server.Start({"--size", "1MiB", "--workers", "1"}));
  HttpClient client(server.port());
  HttpResult result;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(client.Post("/v1/counters/c" + std::to_string(i) + "/incr", "", &result).ok());
    ASSERT_EQ(result.status, 200) << result.body;
  }
  ASSERT_TRUE(client.Request("PUT", "/v1/dicts/d/k", std::string(100000, 'v'), &result).ok());
  EXPECT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(server.Stop().code, 0);
}

uint64_t CachedBytes(uint16_t port) {
  HttpClient client(port);
  HttpResult result;
  if (!client.Get("/v1/stats", &result).ok() || result.status != 200) return UINT64_MAX;
  return boost::json::parse(result.body).at("segment").at("cached_bytes").to_number<uint64_t>();
}

// A worker's blob cache (blocks its writes freed) goes back to the allocator once it has been
// idle for a manager tick: /v1/stats shows the bytes leave.
TEST(ServeTest, AnIdleWorkersBlobCacheGoesBackToTheAllocator) {
  ServerProcess server("trim");
  ASSERT_STARTED(server.Start({"--workers", "1"}));
  HttpClient client(server.port());
  HttpResult result;
  // Eight values of eight size classes, then their deletes: each delete frees a cached block.
  for (int i = 0; i < 8; ++i) {
    std::string key = "/v1/dicts/d/k" + std::to_string(i);
    ASSERT_TRUE(client.Request("PUT", key, std::string(40 + i * 50, 'v'), &result).ok());
    ASSERT_EQ(result.status, 200) << result.body;
    ASSERT_TRUE(client.Request("DELETE", key, "", &result).ok());
    ASSERT_EQ(result.status, 204) << result.body;
  }
  ASSERT_TRUE(client.Request("PUT", "/v1/dicts/d/kept", "kept", &result).ok());
  uint64_t busy = CachedBytes(server.port());
  EXPECT_GT(busy, 2048u) << "the deletes left nothing in the worker's cache";
  EXPECT_NE(busy, UINT64_MAX);
  // Only reads from here on: the worker's cache is idle, and within two ticks it is emptied
  // (what remains is each writing thread's small cache record).
  EXPECT_TRUE(WaitFor([&] { return CachedBytes(server.port()) <= 1024; }, std::chrono::seconds(10)))
      << "still cached: " << CachedBytes(server.port());
  ASSERT_TRUE(client.Get("/v1/dicts/d/kept", &result).ok());
  EXPECT_EQ(result.body, "kept");
  EXPECT_EQ(server.Stop().code, 0);
}

TEST(ServeTest, TooLittleSharedMemoryFailsCleanly) {
  ServerProcess server("toobig");
  Status s = server.Start({"--workers", "1", "--size", "64GiB"});
  if (s.ok()) GTEST_SKIP() << "this machine has more than 64 GiB of /dev/shm";
  EXPECT_EQ(server.exit().code, 1);
  std::string err = server.stderr_text();
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find("/dev/shm"), std::string::npos) << err;
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

// Keeps one kept-alive client incrementing `counter` until told to stop.
class BusyClient {
 public:
  BusyClient(uint16_t port, std::string counter)
      : thread_([this, port, counter = std::move(counter)] { Loop(port, counter); }) {}
  ~BusyClient() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  int answers() const { return answers_.load(); }
  int resends() const { return resends_.load(); }
  const std::string& failure() const { return failure_; }  // After Stop().
  bool failed() const { return failed_.load(); }

 private:
  void Loop(uint16_t port, const std::string& counter) {
    HttpClient client(port);
    client.set_resend_unanswered(true);  // A draining worker closes kept-alive connections.
    while (!stop_.load()) {
      HttpResult result;
      Status s = client.Post("/v1/counters/" + counter + "/incr", "", &result);
      resends_.store(client.resends());
      if (!s.ok() || result.status != 200) {
        failure_ = s.ToString() + " " + std::to_string(result.status) + " " + result.body;
        failed_.store(true);
        return;
      }
      answers_.fetch_add(1);
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::atomic<int> answers_{0};
  std::atomic<int> resends_{0};
  std::string failure_;
  std::thread thread_;
};

// Sends SIGHUP and waits (bounded) until every worker slot has a new pid and the old ones are gone.
bool RollWorkers(ServerProcess* server) {
  std::vector<pid_t> before;
  if (!server->WorkerPids(&before).ok()) return false;
  kill(server->pid(), SIGHUP);
  return WaitFor(
      [&] {
        std::vector<pid_t> after;
        if (!server->WorkerPids(&after).ok() || after.size() != before.size()) return false;
        for (size_t i = 0; i < after.size(); ++i) {
          if (after[i] == before[i] || ProcessAlive(before[i])) return false;
        }
        return true;
      },
      std::chrono::seconds(20));
}

TEST(ServeTest, SighupReplacesEveryWorkerWhileAClientKeepsGettingAnswers) {
  ServerProcess server("hup");
  ASSERT_STARTED(server.Start({"--workers", "2"}));
  BusyClient client(server.port(), "hup");
  ASSERT_TRUE(
      WaitFor([&] { return client.answers() > 0 || client.failed(); }, std::chrono::seconds(10)));
  EXPECT_TRUE(RollWorkers(&server)) << server.stderr_text();
  int answers_at_roll_end = client.answers();
  // The client keeps being answered, now by the new workers.
  EXPECT_TRUE(
      WaitFor([&] { return client.answers() > answers_at_roll_end + 20 || client.failed(); },
              std::chrono::seconds(10)));
  client.Stop();
  EXPECT_EQ(client.failure(), "") << "after " << client.answers() << " answers";
  HttpClient reader(server.port());
  HttpResult result;
  ASSERT_TRUE(reader.Get("/v1/counters/hup", &result).ok());
  // Every answered increment happened; a request resent after its connection closed without an
  // answer may have run once more (see the disabled test below).
  EXPECT_GE(ValueOf(result), client.answers());
  EXPECT_LE(ValueOf(result), client.answers() + client.resends());
  ExpectStopsCleanly(&server);
}

// Regression (worker/worker.cc, Session::OnDrain): a draining worker used to cancel every
// operation of a connection whose pipelined read was idle, including the write of a response to
// a request it had executed, so a resent POST ran twice. Every executed request is answered now.
TEST(ServeTest, DrainAnswersEveryRequestItExecuted) {
  ServerProcess server("drain");
  ASSERT_STARTED(server.Start({"--workers", "2"}));
  BusyClient client(server.port(), "drain");
  ASSERT_TRUE(
      WaitFor([&] { return client.answers() > 0 || client.failed(); }, std::chrono::seconds(10)));
  for (int roll = 0; roll < 3; ++roll) ASSERT_TRUE(RollWorkers(&server));
  client.Stop();
  ASSERT_EQ(client.failure(), "");
  HttpClient reader(server.port());
  HttpResult result;
  ASSERT_TRUE(reader.Get("/v1/counters/drain", &result).ok());
  EXPECT_EQ(ValueOf(result), client.answers()) << client.resends() << " resends";
  ExpectStopsCleanly(&server);
}

}  // namespace
}  // namespace shm::test
