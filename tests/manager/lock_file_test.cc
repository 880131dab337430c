#include "shm/lock_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "common/test_util.h"
#include "shm/segment.h"

namespace shm {
namespace {

// A private directory per test, so lock files of parallel tests never meet.
class LockFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/shm-lockfile-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const std::string& file : {std::string("a.lock"), std::string("a.1"), std::string("a.22"),
                                    std::string("ab.1"), std::string("a.x1"), std::string("a.")}) {
      unlink((dir_ + "/" + file).c_str());
    }
    rmdir(dir_.c_str());
  }
  void Touch(const std::string& file) { std::ofstream(dir_ + "/" + file) << "x"; }
  bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

  std::string dir_;
};

TEST_F(LockFileTest, HeldLockIsOwnerOnlyAndHoldsTheHolderPid) {
  LockFile lock;
  std::string path = LockFile::PathFor("a", dir_);
  ASSERT_TRUE(lock.Acquire(path).ok());
  EXPECT_TRUE(lock.held());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  EXPECT_EQ(pid, getpid());
}

TEST_F(LockFileTest, SecondHolderIsRefusedWhileTheFirstLives) {
  std::string path = LockFile::PathFor("a", dir_);
  LockFile first;
  ASSERT_TRUE(first.Acquire(path).ok());
  // Another process, as a second manager would be.
  pid_t child = test::ForkChild([&] {
    LockFile second;
    Status s = second.Acquire(path);
    if (!s.IsAlreadyExists()) return 1;
    if (s.message().find("pid " + std::to_string(getppid())) == std::string_view::npos) return 2;
    return 0;
  });
  test::ChildExit exit = test::WaitChild(child, 20000);
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 0) << "1: not refused, 2: holder pid missing from the message";
  EXPECT_TRUE(Exists(path));  // The refused one did not remove the live holder's file.
}

TEST_F(LockFileTest, ReleaseRemovesTheFileAndFreesTheName) {
  std::string path = LockFile::PathFor("a", dir_);
  {
    LockFile lock;
    ASSERT_TRUE(lock.Acquire(path).ok());
  }
  EXPECT_FALSE(Exists(path));
  LockFile again;
  EXPECT_TRUE(again.Acquire(path).ok());
}

TEST_F(LockFileTest, LockOfADeadHolderIsStaleAndCanBeTaken) {
  std::string path = LockFile::PathFor("a", dir_);
  // The holder dies without releasing: the file stays, the kernel drops the lock.
  pid_t child = test::ForkChild([&] {
    LockFile lock;
    if (!lock.Acquire(path).ok()) return 1;
    _exit(0);
  });
  test::ChildExit exit = test::WaitChild(child, 20000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, 0);
  ASSERT_TRUE(Exists(path));
  LockFile lock;
  EXPECT_TRUE(lock.Acquire(path).ok());
}

TEST_F(LockFileTest, AbandonKeepsTheFileAndALaterAcquireWorks) {
  std::string path = LockFile::PathFor("a", dir_);
  LockFile lock;
  ASSERT_TRUE(lock.Acquire(path).ok());
  lock.Abandon();
  EXPECT_FALSE(lock.held());
  EXPECT_TRUE(Exists(path));
  LockFile other;
  EXPECT_TRUE(other.Acquire(path).ok());
}

TEST_F(LockFileTest, ListGenerationsMatchesOnlyGenerationsOfThatNameNewestFirst) {
  for (const char* file : {"a.lock", "a.1", "a.22", "ab.1", "a.x1", "a."}) Touch(file);
  std::vector<std::string> found = Segment::ListGenerations("a", dir_);
  EXPECT_EQ(found, (std::vector<std::string>{"a.22", "a.1"}));
}

}  // namespace
}  // namespace shm
