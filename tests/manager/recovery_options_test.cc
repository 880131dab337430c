// The command-line side of recovery: --max-size (online growth), --snapshot, --snapshot-interval.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shm/server_options.h"

namespace shm {
namespace {

using std::chrono::milliseconds;

Status Parse(const std::vector<std::string>& args, ServerOptions* options) {
  CliAction action = CliAction::kServe;
  std::string help;
  return ParseServerArgs(args, nullptr, 2, options, &action, &help);
}

TEST(RecoveryOptionsTest, DefaultsMeanNoGrowthAndNoSnapshot) {
  ServerOptions o;
  ASSERT_TRUE(Parse({"serve", "--size", "16MiB"}, &o).ok());
  EXPECT_EQ(o.max_segment_size, size_t{16} << 20);  // Follows --size: no growth.
  EXPECT_TRUE(o.snapshot_path.empty());
  EXPECT_EQ(o.snapshot_interval, milliseconds(60000));
}

TEST(RecoveryOptionsTest, GrowthAndSnapshotFlags) {
  ServerOptions o;
  ASSERT_TRUE(Parse({"serve", "--size", "16MiB", "--max-size", "1GiB", "--snapshot", "/var/x.snap",
                     "--snapshot-interval", "5m"},
                    &o)
                  .ok());
  EXPECT_EQ(o.segment_size, size_t{16} << 20);
  EXPECT_EQ(o.max_segment_size, size_t{1} << 30);
  EXPECT_EQ(o.snapshot_path, "/var/x.snap");
  EXPECT_EQ(o.snapshot_interval, milliseconds(300000));
  ASSERT_TRUE(Parse({"serve", "--snapshot", "s", "--snapshot-interval", "0"}, &o).ok());
  EXPECT_EQ(o.snapshot_interval, milliseconds(0));  // Only at stop.
}

TEST(RecoveryOptionsTest, BadValuesNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string flag;
  };
  for (const Case& c :
       std::vector<Case>{{{"serve", "--size", "16MiB", "--max-size", "8MiB"}, "--max-size"},
                         {{"serve", "--max-size", "128GiB"}, "--max-size"},
                         {{"serve", "--max-size", "lots"}, "--max-size"},
                         {{"serve", "--snapshot-interval", "soon"}, "--snapshot-interval"},
                         {{"serve", "--snapshot-interval", "2d"}, "--snapshot-interval"},
                         {{"serve", "--snapshot", ""}, "--snapshot"},
                         {{"serve", "--snapshot", std::string(5000, 'x')}, "--snapshot"}}) {
    ServerOptions o;
    Status s = Parse(c.args, &o);
    ASSERT_TRUE(s.IsInvalidArgument()) << c.args.back();
    EXPECT_NE(std::string(s.message()).find(c.flag), std::string::npos) << s.ToString();
  }
}

}  // namespace
}  // namespace shm
