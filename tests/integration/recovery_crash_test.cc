// End-to-end rebuild of a poisoned segment: one worker of the real binary dies inside the
// allocator (crash point armed in that worker only, through the manager's test hook), the manager
// kills the others, copies the committed state into generation 2, unlinks generation 1 and
// respawns. Every acknowledged write must be there afterwards; unacknowledged ones may or may not.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::seconds;

bool HasEntry(const std::string& name, const std::string& entry) {
  for (const std::string& file : ShmEntriesOf(name)) {
    if (file == entry) return true;
  }
  return false;
}

// One request on a connection of its own, so the two workers share the load.
struct Outcome {
  bool answered = false;
  HttpResult result;
};
Outcome SendOnce(uint16_t port, const std::string& method, const std::string& target,
                 const std::string& body) {
  HttpClient client(port, seconds(10));
  Outcome outcome;
  outcome.answered = client.Request(method, target, body, &outcome.result).ok();
  return outcome;
}

TEST(RecoveryCrashTest, PoisonedSegmentIsRebuiltIntoTheNextGenerationWithEveryAcknowledgedWrite) {
  ServerProcess server("rebuild");
  // Worker 0's 25th allocator lock kills it with the allocator mutex held.
  server.add_env("SHMSTATE_TEST_WORKER_CRASH_POINT=0:inside_allocator:25");
  ASSERT_STARTED(server.Start({"--workers", "2", "--size", "4MiB", "--max-objects", "64"}));
  const uint16_t port = server.port();

  std::map<std::string, std::string> acked_keys;  // dict key -> value acknowledged
  std::vector<std::string> acked_items;           // list items acknowledged
  int acked_incrs = 0, unknown_incrs = 0, unanswered = 0, unavailable = 0;
  // 300 rounds, and on until worker 0 has died: how many of them reach it (and so how soon it
  // takes the allocator's lock for the 25th time) is the kernel's choice of worker per
  // connection, and a blob cache refills many blocks per lock.
  for (int i = 0; i < 300 || (unanswered == 0 && i < 5000); ++i) {
    std::string key = "k" + std::to_string(i), value = "value-" + std::to_string(i);
    Outcome put = SendOnce(port, "PUT", "/v1/dicts/cache/" + key, value);
    if (put.answered && put.result.status == 200) acked_keys[key] = value;
    Outcome push = SendOnce(port, "POST", "/v1/lists/jobs/push", "job" + std::to_string(i));
    if (push.answered && push.result.status == 200)
      acked_items.push_back("job" + std::to_string(i));
    Outcome incr = SendOnce(port, "POST", "/v1/counters/hits/incr", "");
    if (incr.answered && incr.result.status == 200) ++acked_incrs;
    if (!(incr.answered && incr.result.status == 200)) ++unknown_incrs;
    for (const Outcome* o : {&put, &push, &incr}) {
      if (!o->answered) ++unanswered;
      if (!o->answered) continue;
      // Poisoned (until the manager notices) is 503 with Retry-After; never a 5xx of another kind.
      if (o->result.status == 503) {
        ++unavailable;
        EXPECT_FALSE(o->result.Header("Retry-After").empty()) << o->result.body;
      } else {
        EXPECT_EQ(o->result.status, 200) << o->result.body;
      }
    }
  }
  EXPECT_GE(unanswered, 1) << "worker 0 never died inside the allocator";

  SegmentStats stats;
  ASSERT_TRUE(
      WaitFor([&] { return ReadSegmentStats(port, &stats) && stats.generation == 2; }, seconds(15)))
      << "generation " << stats.generation << "\n"
      << server.stderr_text();
  EXPECT_FALSE(HasEntry(server.name(), server.name() + ".1"));
  EXPECT_TRUE(HasEntry(server.name(), server.name() + ".2"));

  HttpClient client(port, seconds(10));
  client.set_resend_unanswered(true);  // Only reads below until the last write.
  HttpResult result;
  for (const auto& [key, value] : acked_keys) {
    ASSERT_TRUE(client.Get("/v1/dicts/cache/" + key, &result).ok());
    ASSERT_EQ(result.status, 200) << key;
    EXPECT_EQ(result.body, value) << key;
  }
  ASSERT_TRUE(client.Get("/v1/lists/jobs/items?start=0&stop=-1", &result).ok());
  ASSERT_EQ(result.status, 200) << result.body;
  std::multiset<std::string> items;
  boost::json::value list = boost::json::parse(result.body);
  for (const auto& item : list.at("items").as_array()) {
    items.insert(std::string(item.as_string()));
  }
  for (const std::string& item : acked_items) EXPECT_EQ(items.count(item), 1u) << item;
  ASSERT_TRUE(client.Get("/v1/counters/hits", &result).ok());
  ASSERT_EQ(result.status, 200) << result.body;
  int64_t hits = boost::json::parse(result.body).at("value").to_number<int64_t>();
  EXPECT_GE(hits, acked_incrs);
  EXPECT_LE(hits, acked_incrs + unknown_incrs);

  // The new generation takes writes (the allocator is healthy again).
  client.set_resend_unanswered(false);
  ASSERT_TRUE(client.Request("PUT", "/v1/dicts/cache/after", "rebuilt", &result).ok());
  EXPECT_EQ(result.status, 200) << result.body;

  std::string log = server.stderr_text();
  EXPECT_NE(log.find("exited with code 86"), std::string::npos) << log;
  EXPECT_NE(log.find("is poisoned"), std::string::npos) << log;
  EXPECT_NE(log.find("objects copied"), std::string::npos) << log;
  EXPECT_EQ(server.Stop().code, 0) << server.stderr_text();
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
  RecordProperty("unavailable_answers", unavailable);
}

// The next generation cannot be created (its name is taken): the manager must not go on serving
// the poisoned segment. It exits 1 with a clear log line, after saving the snapshot, and removes
// its own files; the restart restores every acknowledged write.
TEST(RecoveryCrashTest, RebuildThatCannotBeMadeStopsTheServerAfterSavingTheSnapshot) {
  char folder[] = "/tmp/shm-recovery-test-XXXXXX";
  ASSERT_NE(mkdtemp(folder), nullptr);
  std::string snapshot = std::string(folder) + "/state.snap";
  ServerProcess server("rebuildfail");
  // Late enough that ten or more writes are acknowledged first (a new dict's shard tables and
  // the first writes take the earlier allocations).
  server.add_env("SHMSTATE_TEST_WORKER_CRASH_POINT=0:inside_allocator:45");
  ASSERT_STARTED(server.Start({"--workers", "1", "--size", "4MiB", "--max-objects", "64",
                               "--snapshot", snapshot, "--snapshot-interval", "0"}));
  std::string squatter = "/dev/shm/" + server.name() + ".2";
  int fd = open(squatter.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  close(fd);

  std::map<std::string, std::string> acked_keys;
  bool died = false;
  for (int i = 0; i < 300 && !died; ++i) {
    std::string key = "k" + std::to_string(i), value = "value-" + std::to_string(i);
    Outcome put = SendOnce(server.port(), "PUT", "/v1/dicts/cache/" + key, value);
    if (put.answered && put.result.status == 200) acked_keys[key] = value;
    died = !put.answered;
  }
  ASSERT_TRUE(died) << "the worker never died inside the allocator";
  ChildExit exit = server.Wait(30000);
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 1);
  std::string log = server.stderr_text();
  EXPECT_NE(log.find("cannot rebuild the poisoned segment"), std::string::npos) << log;
  EXPECT_NE(log.find("snapshot written to " + snapshot), std::string::npos) << log;
  std::vector<std::string> left = ShmEntriesOf(server.name());
  EXPECT_EQ(left, std::vector<std::string>{server.name() + ".2"});  // Only the squatter.
  unlink(squatter.c_str());

  ServerProcess next("rebuildfail");
  ASSERT_STARTED(next.Start({"--workers", "1", "--snapshot", snapshot}));
  HttpClient client(next.port(), seconds(10));
  HttpResult result;
  for (const auto& [key, value] : acked_keys) {
    ASSERT_TRUE(client.Get("/v1/dicts/cache/" + key, &result).ok());
    ASSERT_EQ(result.status, 200) << key;
    EXPECT_EQ(result.body, value) << key;
  }
  EXPECT_GE(acked_keys.size(), 10u);
  EXPECT_EQ(next.Stop().code, 0);
  std::error_code ignored;
  std::filesystem::remove_all(folder, ignored);
}

}  // namespace
}  // namespace shm::test
