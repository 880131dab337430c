#include "shm/segment.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/version.hpp>
#include <cstring>
#include <tuple>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "layout.h"
#include "segment_impl.h"
#include "shm/registry.h"
#include "shm/version.h"

namespace shm {
namespace {

TEST(SegmentTest, CreateIsMode0600AndAttachable) {
  test::ScopedSegment seg;
  ASSERT_NE(seg.get(), nullptr);
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm/" + seg.shm_name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::unique_ptr<Segment> attached;
  ASSERT_TRUE(Segment::Attach(seg.shm_name(), &attached).ok());
  EXPECT_EQ(attached->generation(), 1u);
  EXPECT_EQ(attached->size(), seg->size());
  EXPECT_GT(attached->free_bytes(), 0u);
}

TEST(SegmentTest, CreateTwiceIsAlreadyExists) {
  test::ScopedSegment seg;
  SegmentOptions options;
  options.name = seg.shm_name().substr(0, seg.shm_name().rfind('.'));
  options.size = 16 << 20;
  std::unique_ptr<Segment> second;
  EXPECT_TRUE(Segment::Create(options, &second).IsAlreadyExists());
}

TEST(SegmentTest, AttachMissingIsNotFound) {
  std::unique_ptr<Segment> seg;
  EXPECT_TRUE(Segment::Attach(test::UniquePrefix() + ".1", &seg).IsNotFound());
}

TEST(SegmentTest, TooBigForDevShmIsRefusedWithAClearMessage) {
  SegmentOptions options;
  options.name = test::UniquePrefix();
  options.size = size_t{1} << 50;  // 1 PiB.
  std::unique_ptr<Segment> seg;
  Status s = Segment::Create(options, &seg);
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();
  EXPECT_NE(s.message().find("/dev/shm"), std::string_view::npos);
  EXPECT_TRUE(Segment::Remove(Segment::ShmName(options.name, 1)).IsNotFound());
}

TEST(SegmentTest, BadPrefixAndTinySizeAreInvalid) {
  SegmentOptions options;
  std::unique_ptr<Segment> seg;
  options.name = "../etc";
  EXPECT_TRUE(Segment::Create(options, &seg).IsInvalidArgument());
  options.name = "a/b";
  EXPECT_TRUE(Segment::Create(options, &seg).IsInvalidArgument());
  options.name = test::UniquePrefix();
  options.size = 4096;
  EXPECT_TRUE(Segment::Create(options, &seg).IsInvalidArgument());
}

TEST(SegmentTest, AttachRefusesAWrongLayoutVersionNamingBoth) {
  test::ScopedSegment seg;
  Root* root = seg->impl()->root();
  root->layout_version = kLayoutVersion + 1;
  std::unique_ptr<Segment> attached;
  Status s = Segment::Attach(seg.shm_name(), &attached);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("layout v" + std::to_string(kLayoutVersion + 1)),
            std::string_view::npos)
      << s.ToString();
  root->layout_version = kLayoutVersion;
  root->magic = 42;
  EXPECT_NE(Segment::Attach(seg.shm_name(), &attached).message().find("magic"),
            std::string_view::npos);
  root->magic = kSegmentMagic;
  root->boost_version = 107000;
  EXPECT_NE(Segment::Attach(seg.shm_name(), &attached).message().find("Boost"),
            std::string_view::npos);
}

// A build of another layout version (a module or client of another release) gets one message
// naming both versions and what to do, never a misread: the frozen first fields of Root say so.
TEST(SegmentTest, AttachToAnotherLayoutSaysWhichSideToUpgrade) {
  test::ScopedSegment seg;
  Root* root = seg->impl()->root();
  std::unique_ptr<Segment> attached;
  const std::string ours = "layout v" + std::to_string(Segment::LayoutVersion());
  EXPECT_EQ(Segment::LayoutVersion(), kLayoutVersion);

  root->layout_version = kLayoutVersion + 1;  // The server is newer than this build.
  Status s = Segment::Attach(seg.shm_name(), &attached);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(attached, nullptr);
  std::string message(s.message());
  EXPECT_NE(message.find("has layout v" + std::to_string(kLayoutVersion + 1)), std::string::npos)
      << message;
  EXPECT_NE(message.find("reads " + ours), std::string::npos) << message;
  EXPECT_NE(message.find("upgrade this module/client"), std::string::npos) << message;
  EXPECT_NE(message.find(std::string("shmstate ") + SHMSTATE_VERSION), std::string::npos)
      << message;

  root->layout_version = kLayoutVersion - 1;  // The server is older.
  s = Segment::Attach(seg.shm_name(), &attached);
  message = std::string(s.message());
  EXPECT_TRUE(s.IsInvalidArgument()) << message;
  EXPECT_NE(message.find("has layout v" + std::to_string(kLayoutVersion - 1)), std::string::npos)
      << message;
  EXPECT_NE(message.find("upgrade the server"), std::string::npos) << message;
  EXPECT_NE(message.find("docs/deploy.md#upgrades"), std::string::npos) << message;

  root->layout_version = kLayoutVersion;
  EXPECT_TRUE(Segment::Attach(seg.shm_name(), &attached).ok());
}

// A segment of another release may differ in Boost's own header too, which Boost would misread:
// the versions are read from Root's frozen prefix before Boost parses anything. This one is
// crafted: garbage where Boost's header is, a Root prefix of a newer layout at a 64-byte offset.
TEST(SegmentTest, AnotherLayoutIsRefusedBeforeBoostReadsTheSegment) {
  for (auto [layout, boost, expected] :
       {std::tuple{kLayoutVersion + 7, uint32_t{BOOST_VERSION},
                   std::string("has layout v") + std::to_string(kLayoutVersion + 7)},
        std::tuple{kLayoutVersion, uint32_t{BOOST_VERSION} + 100,
                   std::string("made with Boost")}}) {
    std::string name = test::UniquePrefix() + ".1";
    int fd = shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    std::vector<unsigned char> head(64 * 1024, 0xA5);
    uint64_t magic = kSegmentMagic;
    memcpy(head.data() + 4096, &magic, 8);
    memcpy(head.data() + 4096 + 8, &layout, 4);
    memcpy(head.data() + 4096 + 12, &boost, 4);
    ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
    ASSERT_EQ(pwrite(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
    close(fd);
    std::unique_ptr<Segment> attached;
    Status s = Segment::Attach(name, &attached);
    EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
    EXPECT_NE(s.message().find(expected), std::string_view::npos) << s.ToString();
    EXPECT_EQ(attached, nullptr);
    EXPECT_TRUE(Segment::Remove(name).ok());
  }
}

// --group: 0660 and the group, so the app's user can attach; the default stays 0600.
TEST(SegmentTest, CreateForAGroupIs0660AndOwnedByTheGroup) {
  gid_t group = SegmentOptions::kNoGroup;
  if (geteuid() == 0) {
    group = getegid() == 0 ? 1 : 0;  // root may give it to any group: "daemon" (1) or root.
  } else {
    gid_t groups[64];
    int n = getgroups(64, groups);
    for (int i = 0; i < n; ++i) {
      if (groups[i] != getegid()) group = groups[i];
    }
  }
  if (group == SegmentOptions::kNoGroup) GTEST_SKIP() << "this user is in one group only";
  SegmentOptions options;
  options.name = test::UniquePrefix();
  options.size = 4 << 20;
  options.max_objects = 16;
  options.group = group;
  std::unique_ptr<Segment> seg;
  ASSERT_TRUE(Segment::Create(options, &seg).ok());
  std::string path = "/dev/shm/" + seg->shm_name();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, group);
  EXPECT_EQ(st.st_uid, geteuid());
  std::unique_ptr<Segment> attached;
  EXPECT_TRUE(Segment::Attach(seg->shm_name(), &attached).ok());
  attached.reset();
  seg.reset();
  EXPECT_TRUE(Segment::Remove(Segment::ShmName(options.name, 1)).ok());
}

// A group the creator may not chown to: refused, with nothing left in /dev/shm.
TEST(SegmentTest, CreateForAForeignGroupFailsAndLeavesNothing) {
  if (geteuid() == 0) GTEST_SKIP() << "root may give a segment to any group";
  gid_t foreign = 0;  // root's group: not ours unless we are in it.
  gid_t groups[64];
  int n = getgroups(64, groups);
  for (int i = 0; i < n; ++i) {
    if (groups[i] == foreign) GTEST_SKIP() << "this user is in group 0";
  }
  if (getegid() == foreign) GTEST_SKIP() << "this user's group is 0";
  SegmentOptions options;
  options.name = test::UniquePrefix();
  options.size = 4 << 20;
  options.max_objects = 16;
  options.group = foreign;
  std::unique_ptr<Segment> seg;
  Status s = Segment::Create(options, &seg);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("member of the group"), std::string_view::npos) << s.ToString();
  EXPECT_TRUE(Segment::Remove(Segment::ShmName(options.name, 1)).IsNotFound());
}

TEST(SegmentTest, ProbeIsOkOnAHealthySegment) {
  test::ScopedSegment seg;
  EXPECT_TRUE(seg->Probe().ok());
  EXPECT_FALSE(seg->poisoned());
}

TEST(SegmentTest, AllocateReportsOutOfSpace) {
  test::ScopedSegment seg(1 << 20, 16);
  uint64_t handle = 0;
  Status s = seg->impl()->Allocate(size_t{2} << 20, &handle);
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();
}

// Whether every page of [handle, handle + bytes) of the segment is in memory.
bool Resident(Segment::Impl* impl, uint64_t handle, uint64_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> pages((bytes + page - 1) / page);
  if (mincore(impl->Ptr<void>(handle), bytes, pages.data()) != 0) return false;
  for (unsigned char p : pages) {
    if ((p & 1) == 0) return false;
  }
  return true;
}

// A segment that grows (pushes carve blocks in address order off its free end) gets its pages a
// window ahead with one system call, not one fault per page; the allocator's accounting does not
// see it.
TEST(SegmentTest, AllocateManyPopulatesTheWindowAheadOfAGrowingSegment) {
  test::ScopedSegment seg;
  Segment::Impl* impl = seg->impl();
  constexpr uint64_t kWindow = Segment::Impl::kPopulateWindow;
  constexpr size_t kBytes = 80;
  uint64_t blocks[32];
  size_t got = 0;
  ASSERT_OK(impl->AllocateMany(kBytes, 32, blocks, &got));
  const uint64_t first_window = blocks[0] / kWindow;
  // Two windows ahead of the first batch: nothing has written there yet.
  const uint64_t ahead = (first_window + 2) * kWindow;
  ASSERT_FALSE(Resident(impl, ahead, kWindow));
  size_t free_before = impl->managed().get_free_memory();
  uint64_t allocated = 0;
  // Up to the batch that crosses into the window before `ahead`.
  while (blocks[got - 1] + kBytes < ahead - kWindow) {
    ASSERT_OK(impl->AllocateMany(kBytes, 32, blocks, &got));
    for (size_t i = 0; i < got; ++i) allocated += impl->BlockBytes(blocks[i]);
  }
  EXPECT_TRUE(Resident(impl, ahead, kWindow));
  EXPECT_FALSE(Resident(impl, ahead + kWindow, kWindow));
  EXPECT_EQ(impl->managed().get_free_memory(), free_before - allocated);
}

TEST(SegmentTest, WorkerTableRecordsResponses) {
  test::ScopedSegment seg;
  seg->RegisterWorker(3, 1234, 2);
  seg->CountResponse(3, 200);
  seg->CountResponse(3, 404);
  seg->CountResponse(3, 503);
  auto workers = seg->Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].pid, 1234);
  EXPECT_EQ(workers[0].restarts, 2u);
  EXPECT_EQ(workers[0].requests, 3u);
  EXPECT_EQ(workers[0].client_errors, 1u);
  EXPECT_EQ(workers[0].server_errors, 1u);
}

}  // namespace
}  // namespace shm
