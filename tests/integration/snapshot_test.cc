// End-to-end snapshots of the real binary: --snapshot restores at start and saves at stop and
// every --snapshot-interval; a damaged file refuses the start and leaves nothing behind.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::seconds;

// A private folder for one test's snapshot files, removed at the end.
class TempFolder {
 public:
  TempFolder() {
    char path[] = "/tmp/shm-snapshot-test-XXXXXX";
    path_ = mkdtemp(path) != nullptr ? path : "";
  }
  ~TempFolder() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

int Lines(const std::string& text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

// Writes one object of each kind the test checks after a restart.
void WriteState(uint16_t port) {
  HttpClient client(port);
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/counters/hits/incr?by=41", "", &result).ok());
  ASSERT_EQ(result.status, 200) << result.body;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(client
                    .Request("PUT", "/v1/dicts/cache/k" + std::to_string(i),
                             "value-" + std::to_string(i), &result,
                             {{"Content-Type", "text/plain"}})
                    .ok());
    ASSERT_EQ(result.status, 200) << result.body;
  }
  for (const char* item : {"a", "b", "c"}) {
    ASSERT_TRUE(client.Post("/v1/lists/jobs/push", item, &result).ok());
    ASSERT_EQ(result.status, 200) << result.body;
  }
}

void ExpectState(uint16_t port) {
  HttpClient client(port);
  HttpResult result;
  ASSERT_TRUE(client.Get("/v1/counters/hits", &result).ok());
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(boost::json::parse(result.body).at("value").to_number<int64_t>(), 41);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(client.Get("/v1/dicts/cache/k" + std::to_string(i), &result).ok());
    ASSERT_EQ(result.status, 200) << i;
    EXPECT_EQ(result.body, "value-" + std::to_string(i));
    EXPECT_EQ(result.Header("Content-Type"), "text/plain");
  }
  ASSERT_TRUE(client.Get("/v1/lists/jobs/items?start=0&stop=-1", &result).ok());
  ASSERT_EQ(result.status, 200) << result.body;
  boost::json::value list = boost::json::parse(result.body);
  EXPECT_EQ(boost::json::serialize(list.at("items")), R"(["a","b","c"])");
}

// Runs a server with `snapshot` until SIGTERM after writing the state: the file then holds it.
void MakeSnapshot(const std::string& snapshot) {
  ServerProcess server("snapmake");
  ASSERT_STARTED(server.Start({"--workers", "2", "--snapshot", snapshot}));
  WriteState(server.port());
  ASSERT_EQ(server.Stop().code, 0) << server.stderr_text();
}

// A start that must fail because of the snapshot: exit 1, one line naming it, nothing left.
void ExpectRefused(const std::string& snapshot, const std::string& why) {
  std::string before = ReadFile(snapshot);
  ServerProcess server("snapbad");
  Status s = server.Start({"--workers", "1", "--snapshot", snapshot});
  ASSERT_FALSE(s.ok()) << why;
  EXPECT_EQ(server.exit().code, 1) << why;
  std::string err = server.stderr_text();
  EXPECT_EQ(Lines(err), 1) << why << ": " << err;
  EXPECT_EQ(err.rfind("shmstate: error: snapshot " + snapshot, 0), 0u) << why << ": " << err;
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty()) << why;
  EXPECT_EQ(ReadFile(snapshot), before) << why << ": the refused file must be left as it was";
}

TEST(SnapshotTest, StateSurvivesARestartAndTheFileIsPrivate) {
  TempFolder folder;
  std::string snapshot = folder.File("state.snap");
  MakeSnapshot(snapshot);
  struct stat info = {};
  ASSERT_EQ(stat(snapshot.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);

  ServerProcess server("snaprestore");
  ASSERT_STARTED(server.Start({"--workers", "2", "--snapshot", snapshot}));
  EXPECT_NE(server.stderr_text().find("restored 3 objects"), std::string::npos)
      << server.stderr_text();
  ExpectState(server.port());
  EXPECT_EQ(server.Stop().code, 0);
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

TEST(SnapshotTest, MissingFileStartsEmptyAndIsWrittenAtStop) {
  TempFolder folder;
  std::string snapshot = folder.File("new.snap");
  ServerProcess server("snapmissing");
  ASSERT_STARTED(server.Start({"--workers", "1", "--snapshot", snapshot}));
  EXPECT_NE(server.stderr_text().find("no snapshot at " + snapshot), std::string::npos)
      << server.stderr_text();
  HttpClient client(server.port());
  HttpResult result;
  ASSERT_TRUE(client.Get("/v1/objects", &result).ok());
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(access(snapshot.c_str(), F_OK), -1);  // Nothing written before the stop.
  EXPECT_EQ(server.Stop().code, 0);
  EXPECT_EQ(access(snapshot.c_str(), F_OK), 0);
}

// The periodic write is what survives a manager that is SIGKILLed (no snapshot at stop).
TEST(SnapshotTest, PeriodicSnapshotSurvivesAKilledManager) {
  TempFolder folder;
  std::string snapshot = folder.File("periodic.snap");
  ServerProcess crashed("snapperiodic");
  ASSERT_STARTED(
      crashed.Start({"--workers", "1", "--snapshot", snapshot, "--snapshot-interval", "200ms"}));
  WriteState(crashed.port());
  // Written at least once after the state was complete: the log line comes after the writes.
  std::string log_before = crashed.stderr_text();
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string log = crashed.stderr_text();
        return log.size() > log_before.size() &&
               log.find("snapshot written", log_before.size()) != std::string::npos;
      },
      seconds(10)))
      << crashed.stderr_text();
  kill(crashed.pid(), SIGKILL);
  crashed.Wait();

  ServerProcess next("snapperiodic");
  next.set_name(crashed.name());
  ASSERT_STARTED(next.Start({"--workers", "1", "--snapshot", snapshot}));
  ExpectState(next.port());
  EXPECT_EQ(next.Stop().code, 0);
  EXPECT_TRUE(ShmEntriesOf(next.name()).empty());
  crashed.set_name("");
}

TEST(SnapshotTest, TruncatedOrCorruptSnapshotRefusesTheStart) {
  TempFolder folder;
  std::string good = folder.File("good.snap");
  MakeSnapshot(good);
  std::string bytes = ReadFile(good);
  ASSERT_GT(bytes.size(), 64u);

  std::string truncated = folder.File("truncated.snap");
  WriteFile(truncated, bytes.substr(0, bytes.size() / 2));
  ExpectRefused(truncated, "truncated");

  std::string flipped = folder.File("flipped.snap");
  std::string corrupt = bytes;
  corrupt[corrupt.size() / 2] ^= 0x10;
  WriteFile(flipped, corrupt);
  ExpectRefused(flipped, "bit flip");

  std::string garbage = folder.File("garbage.snap");
  WriteFile(garbage, "not a snapshot at all");
  ExpectRefused(garbage, "garbage");
}

TEST(SnapshotTest, UnwritableSnapshotFolderRefusesTheStart) {
  ServerProcess server("snapnofolder");
  Status s = server.Start({"--workers", "1", "--snapshot", "/nonexistent-folder/x.snap"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(server.exit().code, 1);
  std::string err = server.stderr_text();
  EXPECT_NE(err.find("shmstate: error: cannot write the snapshot"), std::string::npos) << err;
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

}  // namespace
}  // namespace shm::test
