// `shmstate serve --group NAME`: the segment is 0660 and owned by NAME so that an app running as
// another user in that group attaches; without it the segment stays 0600. Bad groups are refused
// at the command line with nothing left behind.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

int Lines(const std::string& text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

// A group other than ours that we may give a file to: www-data (or daemon) as root, else one
// of our supplementary groups. Empty if there is none.
std::string UsableGroup() {
  if (geteuid() == 0) {
    for (const char* name : {"www-data", "daemon"}) {
      if (getgrnam(name) != nullptr) return name;
    }
    return "";
  }
  gid_t groups[64];
  int n = getgroups(64, groups);
  for (int i = 0; i < n; ++i) {
    struct group* entry = getgrgid(groups[i]);
    if (groups[i] != getegid() && entry != nullptr) return entry->gr_name;
  }
  return "";
}

TEST(GroupTest, GroupMakesTheSegment0660ForThatGroupAndTheLockFileStaysOwnerOnly) {
  std::string group = UsableGroup();
  if (group.empty()) GTEST_SKIP() << "no group other than this user's own to test with";
  gid_t gid = getgrnam(group.c_str())->gr_gid;
  ServerProcess server("group");
  ASSERT_STARTED(server.Start({"--workers", "1", "--size", "4MiB", "--group", group}));
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm/" + server.name() + ".1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, gid);
  ASSERT_EQ(stat(("/dev/shm/" + server.name() + ".lock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  HttpClient client(server.port());
  HttpResult result;
  ASSERT_TRUE(client.Post("/v1/counters/g/incr", "", &result).ok());
  EXPECT_EQ(result.status, 200) << result.body;
  ChildExit exit = server.Stop();
  EXPECT_EQ(exit.code, 0) << server.stderr_text();
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

TEST(GroupTest, UnknownGroupFailsWithOneLineExitTwoAndLeavesNothing) {
  ServerProcess server("nogroup");
  Status s = server.Start({"--workers", "1", "--group", "no-such-group-shmstate"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(server.exit().code, 2);
  std::string err = server.stderr_text();
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find("--group: no group 'no-such-group-shmstate'"), std::string::npos) << err;
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

TEST(GroupTest, AGroupTheServerIsNotInFailsAtStartAndLeavesNothing) {
  if (geteuid() == 0) GTEST_SKIP() << "root may give the segment to any group";
  gid_t groups[64];
  int n = getgroups(64, groups);
  for (int i = 0; i < n; ++i) {
    if (groups[i] == 0) GTEST_SKIP() << "this user is in group root";
  }
  ServerProcess server("foreigngroup");
  Status s = server.Start({"--workers", "1", "--group", "root"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(server.exit().code, 1);
  std::string err = server.stderr_text();
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find("member of the group"), std::string::npos) << err;
  EXPECT_TRUE(ShmEntriesOf(server.name()).empty());
}

}  // namespace
}  // namespace shm::test
