// End-to-end online growth: with --max-size above --size, filling the segment past its high-water
// mark makes the manager rebuild it into a bigger next generation, keeping every value.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using std::chrono::seconds;

std::string ValueFor(int i) { return std::string(3000, static_cast<char>('a' + i % 26)); }

TEST(GrowthTest, FillingPastTheHighWaterMarkGrowsTheSegmentAndKeepsEveryValue) {
  constexpr int64_t kMiB = 1 << 20;
  ServerProcess server("grow");
  ASSERT_STARTED(server.Start(
      {"--workers", "2", "--size", "2MiB", "--max-size", "8MiB", "--max-objects", "64"}));
  SegmentStats stats;
  ASSERT_TRUE(ReadSegmentStats(server.port(), &stats));
  ASSERT_EQ(stats.size_bytes, 2 * kMiB);

  // ~2.4 MB of values: more than a 2 MiB segment holds.
  HttpClient client(server.port(), seconds(10));
  client.set_resend_unanswered(true);  // A PUT is idempotent; a drained worker may close.
  HttpResult result;
  constexpr int kKeys = 800;
  for (int i = 0; i < kKeys; ++i) {
    std::string target = "/v1/dicts/big/k" + std::to_string(i);
    ASSERT_TRUE(client.Request("PUT", target, ValueFor(i), &result).ok()) << i;
    if (result.status == 507) {
      // Full before the manager's next check (every 100 ms): retry until it has grown.
      ASSERT_TRUE(WaitFor(
          [&] {
            return client.Request("PUT", target, ValueFor(i), &result).ok() && result.status != 507;
          },
          seconds(10)))
          << "segment did not grow after 507 at key " << i << "\n"
          << server.stderr_text();
    }
    ASSERT_EQ(result.status, 200) << i << ": " << result.body;
  }

  ASSERT_TRUE(ReadSegmentStats(server.port(), &stats));
  EXPECT_GE(stats.generation, 2);
  EXPECT_GT(stats.size_bytes, 2 * kMiB);
  EXPECT_LE(stats.size_bytes, 8 * kMiB);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(client.Get("/v1/dicts/big/k" + std::to_string(i), &result).ok());
    ASSERT_EQ(result.status, 200) << i;
    EXPECT_EQ(result.body, ValueFor(i)) << i;
  }
  // Only the current generation (and the lock file) is left in /dev/shm.
  std::vector<std::string> entries = ShmEntriesOf(server.name());
  EXPECT_EQ(entries.size(), 2u);
  for (const std::string& entry : entries) {
    EXPECT_TRUE(entry == server.name() + ".lock" ||
                entry == server.name() + "." + std::to_string(stats.generation))
        << entry;
  }
  EXPECT_NE(server.stderr_text().find("growing it to"), std::string::npos) << server.stderr_text();
  EXPECT_EQ(server.Stop().code, 0);
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

TEST(GrowthTest, MaxSizeBelowSizeIsRefused) {
  ServerProcess server("growbad");
  Status s = server.Start({"--size", "4MiB", "--max-size", "2MiB"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(server.exit().code, 2);
  EXPECT_NE(server.stderr_text().find("--max-size"), std::string::npos) << server.stderr_text();
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

}  // namespace
}  // namespace shm::test
