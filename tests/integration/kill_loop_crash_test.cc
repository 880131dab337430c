// Kill loop over HTTP: client threads write every kind of object through the real server while a
// killer SIGKILLs random workers. Afterwards, through HTTP, every acknowledged write is there
// whole and nothing that was never attempted is (docs/crash-safety.md, "Kill loop").
//
// Environment: SHM_KILL_LOOP_SECONDS (default 20), SHM_KILL_LOOP_INTERVAL_MS (mean gap between
// kills, default 15), SHM_KILL_LOOP_DICT_BYTES (dict value size, default 256),
// SHM_KILL_LOOP_SEED, and SHM_KILL_LOOP_EXPECT_VIOLATIONS=1 for scripts/negative-control (the test
// then passes only if it saw torn or invalid values). See docs/crash-safety.md.
#include <gtest/gtest.h>
#include <signal.h>

#include <array>
#include <atomic>
#include <boost/crc.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr int kWorkers = 4;
constexpr int kClients = 4;
constexpr int kCounters = 4;
constexpr int kDictKeys = 16;
constexpr int kRows = 8;
constexpr int kColumns = 256;
constexpr size_t kMaxViolationsKept = 50;
constexpr auto kRequestTimeout = seconds(5);

int64_t EnvInt(const char* name, int64_t fallback, int64_t low, int64_t high) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  return std::clamp<int64_t>(std::atoll(text), low, high);
}

struct Config {
  int seconds = 20;
  int kill_interval_ms = 15;
  size_t dict_bytes = 256;
  uint32_t seed = 20261125;
  bool expect_violations = false;

  static Config FromEnvironment() {
    Config c;
    c.seconds = static_cast<int>(EnvInt("SHM_KILL_LOOP_SECONDS", c.seconds, 1, 24 * 3600));
    c.kill_interval_ms =
        static_cast<int>(EnvInt("SHM_KILL_LOOP_INTERVAL_MS", c.kill_interval_ms, 1, 60000));
    c.dict_bytes = static_cast<size_t>(
        EnvInt("SHM_KILL_LOOP_DICT_BYTES", static_cast<int64_t>(c.dict_bytes), 64, 8 << 20));
    c.seed = static_cast<uint32_t>(EnvInt("SHM_KILL_LOOP_SEED", c.seed, 0, UINT32_MAX));
    c.expect_violations = EnvInt("SHM_KILL_LOOP_EXPECT_VIOLATIONS", 0, 0, 1) == 1;
    return c;
  }
};

std::string Crc32Hex(std::string_view bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(crc.checksum()));
  return hex;
}

// "<payload>:<crc32 of payload>", exactly `size` bytes, the payload naming key, client and seq.
std::string DictValue(int key, int client, int64_t seq, size_t size, std::mt19937* rng) {
  std::string payload =
      "k" + std::to_string(key) + "/t" + std::to_string(client) + "/n" + std::to_string(seq) + "/";
  size_t payload_size = size - 9;  // ":" and 8 hex digits.
  char fill = static_cast<char>('a' + (*rng)() % 26);
  payload.resize(std::max(payload.size(), payload_size), fill);
  return payload + ":" + Crc32Hex(payload);
}

// Empty when `value` is a well-formed value for `key`, else why not.
std::string DictValueProblem(int key, std::string_view value) {
  size_t colon = value.rfind(':');
  if (colon == std::string_view::npos) return "no checksum";
  std::string_view payload = value.substr(0, colon);
  if (Crc32Hex(payload) != value.substr(colon + 1)) return "bad checksum";
  std::string prefix = "k" + std::to_string(key) + "/";
  if (payload.substr(0, prefix.size()) != prefix) return "value of another key";
  return "";
}

// What one client thread attempted and what it got acknowledged. Written by its thread only,
// read after join.
struct ClientLog {
  std::array<int64_t, kCounters> incr_attempted{};
  std::array<int64_t, kCounters> incr_acked{};
  std::array<std::set<std::string>, kDictKeys> dict_attempted;
  std::array<bool, kDictKeys> dict_acked{};
  std::set<std::string> list_attempted;
  std::set<std::string> list_acked;
  std::array<std::set<int64_t>, kRows> row_attempted;
  int64_t requests = 0;
  int64_t acked = 0;
  int64_t unavailable = 0;  // 503: the segment is being rebuilt (or stays poisoned for now).
  int64_t failed = 0;       // Connection closed without an answer, refused or timed out.
  std::vector<std::string> unexpected;  // Other statuses: none of these requests may get them.
  std::vector<std::string> violations;  // Torn or invalid values seen while running.
};

enum class Outcome { kAcked, kNotFound, kUnavailable, kFailed, kUnexpected };

// What the killer may aim at: a client's request in flight and how long its requests take.
struct InFlight {
  std::atomic<uint64_t> request{0};       // (serving pid << 32) | sequence; 0 when none.
  std::atomic<int64_t> latency_us{1000};  // Moving average over answered requests.
};

// A client's connection and the worker serving it.
struct Connection {
  HttpClient* client;
  InFlight* in_flight;
  pid_t last_pid = 0;  // Answered the previous request on this connection.
  uint32_t sequence = 0;
};

Outcome Send(Connection* conn, ClientLog* log, const std::string& method, const std::string& target,
             const std::string& body, HttpResult* result, bool not_found_ok = false) {
  ++log->requests;
  if (conn->client->connected() && conn->last_pid > 0) {
    uint32_t sequence = ++conn->sequence == 0 ? ++conn->sequence : conn->sequence;
    conn->in_flight->request.store(uint64_t{static_cast<uint32_t>(conn->last_pid)} << 32 |
                                   sequence);
  }
  Clock::time_point start = Clock::now();
  Status s = conn->client->Request(method, target, body, result);
  conn->in_flight->request.store(0);
  if (!s.ok()) {
    conn->client->Close();
    conn->last_pid = 0;
    ++log->failed;
    return Outcome::kFailed;
  }
  int64_t took =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  int64_t average = conn->in_flight->latency_us.load();
  conn->in_flight->latency_us.store((7 * average + took) / 8);
  conn->last_pid = static_cast<pid_t>(std::atoi(result->Header("X-Worker-Pid").c_str()));
  if (result->status >= 200 && result->status < 300) {
    ++log->acked;
    return Outcome::kAcked;
  }
  if (result->status == 404 && not_found_ok) return Outcome::kNotFound;
  if (result->status == 503) {
    ++log->unavailable;
    return Outcome::kUnavailable;
  }
  if (log->unexpected.size() < kMaxViolationsKept) {
    log->unexpected.push_back(method + " " + target + " -> " + std::to_string(result->status) +
                              " " + result->body);
  }
  return Outcome::kUnexpected;
}

class KillLoop {
 public:
  KillLoop(ServerProcess* server, const Config& config) : server_(server), config_(config) {}

  void Run() {
    Clock::time_point deadline = Clock::now() + seconds(config_.seconds);
    std::vector<std::thread> threads;
    logs_.resize(kClients);
    for (int c = 0; c < kClients; ++c) {
      threads.emplace_back([this, c, deadline] { RunClient(c, deadline, &logs_[c]); });
    }
    std::thread killer([this, deadline] { RunKiller(deadline); });
    for (std::thread& t : threads) t.join();
    killer.join();
  }

  const std::vector<ClientLog>& logs() const { return logs_; }
  int64_t kills() const { return kills_; }

 private:
  void RunClient(int c, Clock::time_point deadline, ClientLog* log) {
    std::mt19937 rng(config_.seed + 1000u * static_cast<uint32_t>(c + 1));
    HttpClient client(server_->port(), kRequestTimeout);
    Connection conn{&client, &in_flight_[c]};
    HttpResult result;
    for (int64_t seq = 0; Clock::now() < deadline; ++seq) {
      // The negative control only breaks dict writes: spend the run on them, reading twice as
      // often as writing, so a torn value is seen before a later write to its key hides it.
      uint32_t op = config_.expect_violations ? (rng() % 3 == 0 ? 3 : 5) : rng() % 10;
      if (op < 3) {
        int i = static_cast<int>(rng() % kCounters);
        ++log->incr_attempted[i];
        if (Send(&conn, log, "POST", "/v1/counters/c" + std::to_string(i) + "/incr", "", &result) ==
            Outcome::kAcked) {
          ++log->incr_acked[i];
        }
      } else if (op < 5) {
        int key = static_cast<int>(rng() % kDictKeys);
        std::string value = DictValue(key, c, seq, config_.dict_bytes, &rng);
        log->dict_attempted[key].insert(value);
        if (Send(&conn, log, "PUT", "/v1/dicts/d/k" + std::to_string(key), value, &result) ==
            Outcome::kAcked) {
          log->dict_acked[key] = true;
        }
      } else if (op < 6) {
        // A read while writers are killed: catches a torn value before a later write hides it.
        int key = static_cast<int>(rng() % kDictKeys);
        std::string target = "/v1/dicts/d/k" + std::to_string(key);
        if (Send(&conn, log, "GET", target, "", &result, /*not_found_ok=*/true) ==
            Outcome::kAcked) {
          std::string problem = DictValueProblem(key, result.body);
          if (!problem.empty() && log->violations.size() < kMaxViolationsKept) {
            log->violations.push_back("read k" + std::to_string(key) + ": " + problem);
          }
        }
      } else if (op < 8) {
        std::string item = "t" + std::to_string(c) + "-" + std::to_string(seq);
        log->list_attempted.insert(item);
        if (Send(&conn, log, "POST", "/v1/lists/l/push", item, &result) == Outcome::kAcked) {
          log->list_acked.insert(item);
        }
      } else {
        int row = static_cast<int>(rng() % kRows);
        int64_t value = (c + 1) * int64_t{1000000000} + seq;
        log->row_attempted[row].insert(value);
        Send(&conn, log, "PUT", "/v1/arrays/a/data?slice=" + std::to_string(row),
             std::to_string(value), &result);
      }
    }
  }

  // Kills every few ms: 3 times in 4 the worker serving a request in flight, at a random point
  // of a typical request's span (so kills land anywhere inside requests, the commit included),
  // else any worker /v1/stats names.
  void RunKiller(Clock::time_point deadline) {
    std::mt19937 rng(config_.seed);
    std::uniform_int_distribution<int> gap(1, 2 * config_.kill_interval_ms);
    while (Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(gap(rng)));
      pid_t victim = 0;
      if (rng() % 4 != 0) {
        victim = WorkerInsideARequest(&rng);
        if (victim < 0) continue;  // That request ended first.
      }
      if (victim == 0) victim = AnyWorker(&rng);
      if (!IsWorker(victim)) continue;  // Being replaced: never signal a recycled pid.
      if (kill(victim, SIGKILL) == 0) ++kills_;
    }
  }

  // The pid serving a request in flight, after waiting a random part of that client's typical
  // request time; -1 if the request was answered meanwhile; 0 if none is in flight.
  pid_t WorkerInsideARequest(std::mt19937* rng) {
    int first = static_cast<int>((*rng)() % kClients);
    for (int i = 0; i < kClients; ++i) {
      InFlight& slot = in_flight_[(first + i) % kClients];
      uint64_t request = slot.request.load();
      if (request == 0) continue;
      int64_t span = std::max<int64_t>(1, slot.latency_us.load());
      std::this_thread::sleep_for(std::chrono::microseconds((*rng)() % span));
      if (slot.request.load() != request) return -1;
      return static_cast<pid_t>(request >> 32);
    }
    return 0;
  }

  pid_t AnyWorker(std::mt19937* rng) {
    std::vector<pid_t> pids;
    if (!server_->WorkerPids(&pids).ok() || pids.empty()) return 0;
    return pids[(*rng)() % pids.size()];
  }

  // A live child of the manager (read from /proc/<pid>/stat, quickly: the request is running).
  bool IsWorker(pid_t pid) const {
    char state = 0;
    pid_t parent = 0;
    return pid > 0 && ProcStateAndParent(pid, &state, &parent) && state != 'Z' &&
           parent == server_->pid();
  }

  ServerProcess* const server_;
  const Config config_;
  std::vector<ClientLog> logs_;
  std::array<InFlight, kClients> in_flight_;  // Per client: see Connection.
  std::atomic<int64_t> kills_{0};
};

// A read that waits (bounded) through 503s while the manager rebuilds a poisoned segment.
Status ReadSettled(HttpClient* client, const std::string& target, HttpResult* result) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    Status s = client->Get(target, result);
    if (!s.ok()) {
      client->Close();
    } else if (result->status != 503) {
      return s;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return Status::Timeout("GET " + target + " kept failing or answering 503");
}

// Checks the final state against the merged logs; returns the violations found.
class FinalCheck {
 public:
  FinalCheck(uint16_t port, const std::vector<ClientLog>& logs) : client_(port), logs_(logs) {}

  std::vector<std::string> Run() {
    for (auto check : {&FinalCheck::CheckCounters, &FinalCheck::CheckDict, &FinalCheck::CheckList,
                       &FinalCheck::CheckArray}) {
      try {
        (this->*check)();
      } catch (const std::exception& e) {
        Violation(std::string("malformed answer: ") + e.what() + " in " +
                  last_body_.substr(0, 300));
      }
    }
    return std::move(violations_);
  }

 private:
  void Violation(std::string what) {
    if (violations_.size() < kMaxViolationsKept) violations_.push_back(std::move(what));
  }

  bool Read(const std::string& target, HttpResult* result) {
    Status s = ReadSettled(&client_, target, result);
    last_body_ = result->body;
    if (!s.ok()) Violation("read failed (deadlock?): " + s.ToString());
    return s.ok();
  }

  void CheckCounters() {
    for (int i = 0; i < kCounters; ++i) {
      int64_t attempted = 0;
      int64_t acked = 0;
      for (const ClientLog& log : logs_) {
        attempted += log.incr_attempted[i];
        acked += log.incr_acked[i];
      }
      HttpResult result;
      if (!Read("/v1/counters/c" + std::to_string(i), &result)) continue;
      int64_t value = 0;
      if (result.status == 200) {
        value = boost::json::parse(result.body).at("value").to_number<int64_t>();
      } else if (result.status != 404) {
        Violation("counter c" + std::to_string(i) + ": " + std::to_string(result.status));
        continue;
      }
      if (value < acked || value > attempted) {
        Violation("counter c" + std::to_string(i) + " = " + std::to_string(value) + ", acked " +
                  std::to_string(acked) + ", attempted " + std::to_string(attempted));
      }
    }
  }

  void CheckDict() {
    for (int key = 0; key < kDictKeys; ++key) {
      bool acked = false;
      std::set<std::string> attempted;
      for (const ClientLog& log : logs_) {
        acked = acked || log.dict_acked[key];
        attempted.insert(log.dict_attempted[key].begin(), log.dict_attempted[key].end());
      }
      std::string name = "dict key k" + std::to_string(key);
      HttpResult result;
      if (!Read("/v1/dicts/d/k" + std::to_string(key), &result)) continue;
      if (result.status == 404) {
        if (acked) Violation(name + ": acknowledged writes, now missing");
        continue;
      }
      if (result.status != 200) {
        Violation(name + ": " + std::to_string(result.status));
        continue;
      }
      std::string problem = DictValueProblem(key, result.body);
      if (!problem.empty()) {
        Violation(name + ": " + problem);
      } else if (attempted.count(result.body) == 0) {
        Violation(name + ": a value nobody wrote");
      }
    }
  }

  void CheckList() {
    std::set<std::string> attempted;
    std::set<std::string> acked;
    for (const ClientLog& log : logs_) {
      attempted.insert(log.list_attempted.begin(), log.list_attempted.end());
      acked.insert(log.list_acked.begin(), log.list_acked.end());
    }
    std::map<std::string, int> present;
    constexpr int64_t kPage = 5000;
    for (int64_t start = 0;; start += kPage) {
      HttpResult result;
      std::string target = "/v1/lists/l/items?start=" + std::to_string(start) +
                           "&stop=" + std::to_string(start + kPage - 1);
      if (!Read(target, &result)) return;
      if (result.status == 404 && start == 0) break;
      if (result.status != 200) return Violation("list range: " + std::to_string(result.status));
      boost::json::value page = boost::json::parse(result.body);
      const boost::json::array& items = page.at("items").as_array();
      for (const auto& item : items) ++present[std::string(item.as_string())];
      if (static_cast<int64_t>(items.size()) < kPage) break;
    }
    for (const auto& [item, count] : present) {
      if (attempted.count(item) == 0) Violation("list item nobody pushed: " + item);
      if (count != 1) Violation("list item " + item + " present " + std::to_string(count) + "x");
    }
    for (const std::string& item : acked) {
      if (present.count(item) == 0) Violation("acknowledged list item missing: " + item);
    }
  }

  void CheckArray() {
    HttpResult result;
    if (!Read("/v1/arrays/a/data", &result)) return;
    if (result.status != 200) return Violation("array read: " + std::to_string(result.status));
    boost::json::value array = boost::json::parse(result.body);
    const boost::json::array& rows = array.at("data").as_array();
    if (rows.size() != kRows)
      return Violation("array has " + std::to_string(rows.size()) + " rows");
    for (int r = 0; r < kRows; ++r) {
      std::set<int64_t> attempted = {0};  // The fill at creation.
      for (const ClientLog& log : logs_) {
        attempted.insert(log.row_attempted[r].begin(), log.row_attempted[r].end());
      }
      std::set<int64_t> values;
      for (const auto& v : rows[r].as_array()) values.insert(v.to_number<int64_t>());
      std::string name = "array row " + std::to_string(r);
      if (values.size() != 1) {
        Violation(name + " is torn (" + std::to_string(values.size()) + " distinct values)");
      } else if (attempted.count(*values.begin()) == 0) {
        Violation(name + " holds a value nobody wrote: " + std::to_string(*values.begin()));
      }
    }
  }

  HttpClient client_;
  const std::vector<ClientLog>& logs_;
  std::vector<std::string> violations_;
  std::string last_body_;  // For the message when an answer does not parse.
};

bool AllWorkersServing(ServerProcess* server) {
  std::vector<pid_t> pids;
  if (!server->WorkerPids(&pids).ok() || pids.size() != static_cast<size_t>(kWorkers)) {
    return false;
  }
  for (pid_t pid : pids) {
    if (pid <= 0 || !ProcessAlive(pid)) return false;
  }
  return ChildrenOf(server->pid()).size() == static_cast<size_t>(kWorkers);
}

TEST(KillLoopCrashTest, AcknowledgedWritesSurviveRandomWorkerKillsWhole) {
  const Config config = Config::FromEnvironment();
  ServerProcess server("killloop");
  // Room for every dict value twice (copy-on-write) besides the rest.
  size_t mib = size_t{1} << 20;
  size_t segment_mib = std::max<size_t>(64, (4 * kDictKeys * config.dict_bytes) / mib + 32);
  size_t body_mib = std::max<size_t>(1, 2 * config.dict_bytes / mib);
  ASSERT_STARTED(server.Start({"--workers", std::to_string(kWorkers), "--log-level", "warn",
                               "--size", std::to_string(segment_mib) + "MiB", "--max-body",
                               std::to_string(body_mib) + "MiB"}));
  {
    HttpClient setup(server.port());
    HttpResult result;
    std::string shape = R"({"dtype":"int64","shape":[)" + std::to_string(kRows) + "," +
                        std::to_string(kColumns) + "]}";
    ASSERT_TRUE(setup.Post("/v1/arrays/a", shape, &result).ok());
    ASSERT_EQ(result.status, 201) << result.body;
  }

  KillLoop loop(&server, config);
  loop.Run();

  // The run ended (no client hung past its timeout). The manager replaces what was killed
  // (with backoff for a slot that crashed often), then everything is checked through HTTP.
  EXPECT_TRUE(WaitFor([&] { return AllWorkersServing(&server); }, seconds(30)))
      << server.stderr_text();
  std::vector<std::string> violations = FinalCheck(server.port(), loop.logs()).Run();

  int64_t requests = 0, acked = 0, unavailable = 0, failed = 0, runtime_violations = 0;
  for (const ClientLog& log : loop.logs()) {
    requests += log.requests;
    acked += log.acked;
    unavailable += log.unavailable;
    failed += log.failed;
    runtime_violations += static_cast<int64_t>(log.violations.size());
    violations.insert(violations.end(), log.violations.begin(), log.violations.end());
    for (const std::string& u : log.unexpected) ADD_FAILURE() << "unexpected answer: " << u;
  }
  RecordProperty("seconds", config.seconds);
  RecordProperty("kills", static_cast<int>(loop.kills()));
  RecordProperty("requests", static_cast<int>(requests));
  RecordProperty("acked", static_cast<int>(acked));
  RecordProperty("unavailable_503", static_cast<int>(unavailable));
  RecordProperty("failed", static_cast<int>(failed));
  RecordProperty("violations", static_cast<int>(violations.size()));
  std::printf(
      "kill loop: %d s, %lld kills, %lld requests, %lld acked, %lld 503, %lld failed, "
      "%zu violations (%lld seen while running)\n",
      config.seconds, static_cast<long long>(loop.kills()), static_cast<long long>(requests),
      static_cast<long long>(acked), static_cast<long long>(unavailable),
      static_cast<long long>(failed), violations.size(),
      static_cast<long long>(runtime_violations));
  for (const std::string& v : violations) std::printf("  violation: %s\n", v.c_str());
  EXPECT_GT(loop.kills(), 0);
  EXPECT_GT(acked, 0);
  if (config.expect_violations) {
    EXPECT_FALSE(violations.empty()) << "negative control: the kill loop found nothing";
  } else {
    EXPECT_TRUE(violations.empty())
        << violations.size() << " violations, first: " << violations.front();
  }

  std::vector<pid_t> workers = ChildrenOf(server.pid());
  ChildExit exit = server.Stop();
  EXPECT_TRUE(exit.exited && exit.code == 0) << server.stderr_text();
  for (pid_t pid : workers) EXPECT_FALSE(ProcessAlive(pid)) << "worker " << pid << " survived";
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

}  // namespace
}  // namespace shm::test
