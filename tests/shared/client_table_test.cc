// ClientTable: rows claimed and freed by their owner, read by anyone, freed by the recovery of a
// dead process, and never torn for a reader while their owner writes.
#include "shm/client_table.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "common/test_util.h"

namespace shm {
namespace {

ClientRow Find(ClientTable& table, uint64_t id) {
  for (ClientRow& row : table.List()) {
    if (row.id == id) return row;
  }
  return ClientRow();
}

TEST(ClientTableTest, ClaimListSetRelease) {
  test::ScopedSegment segment;
  ClientTable table(segment.get());
  int slot = table.Claim(7, getpid(), 12, "127.0.0.1:5000", "127.0.0.1:6379", 1000);
  ASSERT_GE(slot, 0);
  table.SetName(slot, 7, "worker-a");
  table.SetCommand(slot, 7, "client|list", 2000);
  table.SetFlag(slot, 7, ClientRow::kBlocked, true);
  ClientRow row = Find(table, 7);
  EXPECT_EQ(row.pid, getpid());
  EXPECT_EQ(row.fd, 12);
  EXPECT_EQ(row.addr, "127.0.0.1:5000");
  EXPECT_EQ(row.laddr, "127.0.0.1:6379");
  EXPECT_EQ(row.name, "worker-a");
  EXPECT_EQ(row.cmd, "client|list");
  EXPECT_EQ(row.connected_ms, 1000);
  EXPECT_EQ(row.last_ms, 2000);
  EXPECT_EQ(row.flags, ClientRow::kBlocked);
  // Another id's writes do nothing to the row.
  table.SetName(slot, 8, "intruder");
  table.Release(slot, 8);
  EXPECT_EQ(Find(table, 7).name, "worker-a");
  table.Release(slot, 7);
  EXPECT_TRUE(table.List().empty());
}

TEST(ClientTableTest, FullTableAnswersMinusOneAndLongTextIsCut) {
  test::ScopedSegment segment;
  ClientTable table(segment.get());
  for (int i = 0; i < ClientTable::kMaxRows; ++i) {
    ASSERT_GE(table.Claim(i + 1, getpid(), i, "a", "b", 0), 0);
  }
  EXPECT_EQ(table.Claim(100000, getpid(), 1, "a", "b", 0), -1);
  EXPECT_EQ(table.List().size(), static_cast<size_t>(ClientTable::kMaxRows));
  table.SetName(0, 1, std::string(200, 'n'));
  EXPECT_EQ(Find(table, 1).name, std::string(ClientTable::kMaxName, 'n'));
}

TEST(ClientTableTest, KillAndUnblockRequestsReachTheRow) {
  test::ScopedSegment segment;
  ClientTable table(segment.get());
  int slot = table.Claim(5, getpid(), 3, "a", "b", 0);
  EXPECT_FALSE(table.RequestUnblock(5, false));  // Not blocked.
  table.SetFlag(slot, 5, ClientRow::kBlocked, true);
  EXPECT_TRUE(table.RequestUnblock(5, true));
  EXPECT_EQ(table.TakeUnblock(slot, 5), ClientRow::kUnblockError);
  EXPECT_EQ(table.TakeUnblock(slot, 5), 0u);
  EXPECT_FALSE(table.AnyKillRequested(getpid()));
  EXPECT_TRUE(table.RequestKill(5));
  EXPECT_FALSE(table.RequestKill(6));
  EXPECT_TRUE(table.KillRequested(slot, 5));
  EXPECT_TRUE(table.AnyKillRequested(getpid()));
}

// A worker that dies leaves its rows; the manager's recovery of its pid frees them and no
// other process's.
TEST(ClientTableTest, RecoveryOfADeadProcessFreesItsRows) {
  test::ScopedSegment segment;
  ClientTable table(segment.get());
  ASSERT_GE(table.Claim(1, getpid(), 3, "mine", "b", 0), 0);
  pid_t child = fork();
  if (child == 0) {
    ClientTable in_child(segment.get());
    bool ok = in_child.Claim(2, getpid(), 4, "child", "b", 0) >= 0 &&
              in_child.Claim(3, getpid(), 5, "child", "b", 0) >= 0;
    _exit(ok ? 0 : 1);  // Dies holding both rows.
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(table.List().size(), 3u);
  ASSERT_TRUE(segment->RecoverDeadProcess(child, nullptr).ok());
  std::vector<ClientRow> rows = table.List();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].addr, "mine");
}

// A reader sees a row's text as one write left it, never half of two.
TEST(ClientTableTest, ReadersNeverSeeATornName) {
  test::ScopedSegment segment;
  ClientTable table(segment.get());
  int slot = table.Claim(9, getpid(), 3, "a", "b", 0);
  const std::string a(ClientTable::kMaxName, 'a'), b(ClientTable::kMaxName, 'b');
  table.SetName(slot, 9, a);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 200000 && !stop.load(); ++i) table.SetName(slot, 9, i % 2 ? a : b);
  });
  int checked = 0;
  for (int i = 0; i < 20000; ++i) {
    for (const ClientRow& row : table.List()) {
      ASSERT_TRUE(row.name == a || row.name == b) << row.name;
      ++checked;
    }
  }
  stop.store(true);
  writer.join();
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace shm
