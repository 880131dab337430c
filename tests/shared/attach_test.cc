// A process started separately (exec, so the segment maps at another address) reads and writes
// what another process wrote.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <memory>
#include <string>

#include "common/test_util.h"
#include "segment_impl.h"
#include "shm/counter.h"

namespace shm {
namespace {

// Runs a command, returns its stdout; `exit_code` gets its exit status.
std::string RunCommand(const std::string& command, int* exit_code) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  std::array<char, 256> buffer;
  while (fgets(buffer.data(), buffer.size(), pipe) != nullptr) output += buffer.data();
  int status = pclose(pipe);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return output;
}

TEST(AttachTest, ExecedProcessSharesStateAtAnotherAddress) {
  test::ScopedSegment seg;
  Counter counter;
  ASSERT_TRUE(
      Counter::Open(seg.get(), "visits", {OpenMode::kCreateIfMissing, 41, 0}, &counter).ok());
  std::string tool = test::ToolPath("shm_attach") + " " + seg.shm_name();
  int code = -1;

  char here[32];
  std::snprintf(here, sizeof here, "%p", seg->impl()->managed().get_address());
  std::string there = RunCommand(tool + " base", &code);
  ASSERT_EQ(code, 0);
  EXPECT_NE(there, std::string(here)) << "the exec'd process must map the segment elsewhere";

  EXPECT_EQ(RunCommand(tool + " get visits", &code), "41");
  EXPECT_EQ(RunCommand(tool + " add visits 1000", &code), "1041");
  EXPECT_EQ(code, 0);
  int64_t value = 0;
  ASSERT_TRUE(counter.Get(&value).ok());
  EXPECT_EQ(value, 1041);

  // Objects it creates are visible here, by name.
  EXPECT_EQ(RunCommand(tool + " add made-there 2", &code), "2");
  Counter made_there;
  ASSERT_TRUE(Counter::Open(seg.get(), "made-there", {}, &made_there).ok());
  ASSERT_TRUE(made_there.Get(&value).ok());
  EXPECT_EQ(value, 2);
  EXPECT_EQ(RunCommand(tool + " list", &code), "made-there counter\nvisits counter");
}

TEST(AttachTest, AttachToSomethingElseIsRefused) {
  int code = -1;
  RunCommand(test::ToolPath("shm_attach") + " " + test::UniquePrefix() + ".1 get x 2>/dev/null",
             &code);
  EXPECT_EQ(code, 1);
}

}  // namespace
}  // namespace shm
