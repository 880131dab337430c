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
#include "shm/dict.h"
#include "shm/list.h"
#include "shm/ndarray.h"

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

// The containers keep only offsets: a process mapping the segment elsewhere walks a grown dict
// table, a list ring and array data written by this one, and writes back.
TEST(AttachTest, ExecedProcessReadsAndWritesEveryContainer) {
  test::ScopedSegment seg;
  Dict dict;
  ASSERT_TRUE(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict).ok());
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(dict.Set("k" + std::to_string(i), "v" + std::to_string(i * 7), {}).ok());
  }
  List list;
  ASSERT_TRUE(List::Open(seg.get(), "l", OpenMode::kCreateIfMissing, {}, &list).ok());
  std::string expected_items;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(list.Push(List::End::kRight, "item" + std::to_string(i)).ok());
    expected_items += (i ? "\n" : "") + std::string("item") + std::to_string(i);
  }
  NdArray array;
  ASSERT_TRUE(
      NdArray::Create(seg.get(), "a", DType::kInt32, {10, 10}, Scalar::Int(3), &array).ok());

  std::string tool = test::ToolPath("shm_attach") + " " + seg.shm_name();
  int code = -1;
  EXPECT_EQ(RunCommand(tool + " dict-get d k137", &code), "v959");
  EXPECT_EQ(RunCommand(tool + " list-items l", &code), expected_items);
  EXPECT_EQ(RunCommand(tool + " array-sum a", &code), "300");
  RunCommand(tool + " dict-set d from-there hello", &code);
  ASSERT_EQ(code, 0);
  DictValue value;
  ASSERT_TRUE(dict.Get("from-there", &value).ok());
  EXPECT_EQ(value.data, "hello");
}

TEST(AttachTest, AttachToSomethingElseIsRefused) {
  int code = -1;
  RunCommand(test::ToolPath("shm_attach") + " " + test::UniquePrefix() + ".1 get x 2>/dev/null",
             &code);
  EXPECT_EQ(code, 1);
}

}  // namespace
}  // namespace shm
