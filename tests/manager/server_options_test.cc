#include "shm/server_options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shm/segment.h"

namespace shm {
namespace {

using std::chrono::milliseconds;

Status Parse(const std::vector<std::string>& args, ServerOptions* options,
             const char* env_token = nullptr) {
  CliAction action = CliAction::kServe;
  std::string help;
  Status s = ParseServerArgs(args, env_token, 3, options, &action, &help);
  if (s.ok()) {
    EXPECT_EQ(action, CliAction::kServe);
  }
  return s;
}

TEST(ParseSizeTest, BinarySuffixes) {
  size_t bytes = 0;
  ASSERT_TRUE(ParseSize("64MiB", &bytes).ok());
  EXPECT_EQ(bytes, size_t{64} << 20);
  ASSERT_TRUE(ParseSize("512KiB", &bytes).ok());
  EXPECT_EQ(bytes, size_t{512} << 10);
  ASSERT_TRUE(ParseSize("2GiB", &bytes).ok());
  EXPECT_EQ(bytes, size_t{2} << 30);
  ASSERT_TRUE(ParseSize("8M", &bytes).ok());
  EXPECT_EQ(bytes, size_t{8} << 20);
  ASSERT_TRUE(ParseSize("4096", &bytes).ok());
  EXPECT_EQ(bytes, 4096u);
}

TEST(ParseSizeTest, RejectsGarbageZeroAndOverflow) {
  size_t bytes = 7;
  for (const char* bad : {"", "MiB", "-1MiB", "1.5MiB", "12XB", "64 MiB", "0", "0KiB",
                          "99999999999999999999", "17179869184GiB"}) {
    Status s = ParseSize(bad, &bytes);
    EXPECT_TRUE(s.IsInvalidArgument()) << "'" << bad << "' gave " << s.ToString();
  }
  EXPECT_EQ(bytes, 7u);  // Bad input changes nothing.
}

TEST(ParseDurationTest, UnitsAndLimits) {
  milliseconds d{};
  ASSERT_TRUE(ParseDuration("5s", &d).ok());
  EXPECT_EQ(d, milliseconds(5000));
  ASSERT_TRUE(ParseDuration("250ms", &d).ok());
  EXPECT_EQ(d, milliseconds(250));
  ASSERT_TRUE(ParseDuration("2m", &d).ok());
  EXPECT_EQ(d, milliseconds(120000));
  ASSERT_TRUE(ParseDuration("3", &d).ok());
  EXPECT_EQ(d, milliseconds(3000));
  ASSERT_TRUE(ParseDuration("0", &d).ok());
  EXPECT_EQ(d, milliseconds(0));
  for (const char* bad : {"", "s", "5h", "1.5s", "-1s", "2000m"}) {
    EXPECT_TRUE(ParseDuration(bad, &d).IsInvalidArgument()) << bad;
  }
}

TEST(ParseListenAddressTest, Forms) {
  ListenAddress a;
  ASSERT_TRUE(ParseListenAddress("127.0.0.1:8080", &a).ok());
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8080);
  EXPECT_TRUE(a.IsLoopback());
  ASSERT_TRUE(ParseListenAddress("0.0.0.0:0", &a).ok());
  EXPECT_EQ(a.port, 0);
  EXPECT_FALSE(a.IsLoopback());
  ASSERT_TRUE(ParseListenAddress("localhost:9000", &a).ok());
  EXPECT_EQ(a.host, "127.0.0.1");
  ASSERT_TRUE(ParseListenAddress(":9001", &a).ok());
  EXPECT_EQ(a.ToString(), "127.0.0.1:9001");
  ASSERT_TRUE(ParseListenAddress("9002", &a).ok());
  EXPECT_EQ(a.ToString(), "127.0.0.1:9002");
  ASSERT_TRUE(ParseListenAddress("[::1]:8080", &a).ok());
  EXPECT_TRUE(a.ipv6);
  EXPECT_TRUE(a.IsLoopback());
  EXPECT_EQ(a.ToString(), "[::1]:8080");
}

TEST(ParseListenAddressTest, RejectsBadHostsAndPorts) {
  ListenAddress a;
  for (const char* bad : {"", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:http",
                          "example.com:80", "300.1.1.1:80", "::1:80", "[::1]80", "[nope]:80"}) {
    Status s = ParseListenAddress(bad, &a);
    EXPECT_TRUE(s.IsInvalidArgument()) << "'" << bad << "' gave " << s.ToString();
  }
}

TEST(ParseServerArgsTest, Defaults) {
  ServerOptions o;
  ASSERT_TRUE(Parse({"serve"}, &o).ok());
  EXPECT_EQ(o.listen.ToString(), "127.0.0.1:8080");
  EXPECT_EQ(o.workers, 3);  // The default_workers passed in: the core count.
  EXPECT_EQ(o.threads, 1);
  EXPECT_EQ(o.segment_size, size_t{64} << 20);
  EXPECT_EQ(o.name, "shmstate");
  EXPECT_EQ(o.max_body_bytes, size_t{1} << 20);
  EXPECT_EQ(o.log_level, LogLevel::kInfo);
  EXPECT_EQ(o.heartbeat_timeout, milliseconds(5000));
  EXPECT_TRUE(o.token.empty());
}

// --group takes a name or a gid of this machine; without it the segment stays owner-only.
TEST(ParseServerArgsTest, GroupByNameOrGidElseOwnerOnly) {
  ServerOptions o;
  ASSERT_TRUE(Parse({"serve"}, &o).ok());
  EXPECT_EQ(o.group_id, SegmentOptions::kNoGroup);
  ASSERT_TRUE(Parse({"serve", "--group", "root"}, &o).ok());
  EXPECT_EQ(o.group_id, 0u);
  EXPECT_EQ(o.group, "root");
  ASSERT_TRUE(Parse({"serve", "--group", "0"}, &o).ok());
  EXPECT_EQ(o.group, "root");
  for (const char* bad : {"", "no-such-group-shmstate", "4294967295", "-1"}) {
    Status s = Parse({"serve", "--group", bad}, &o);
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
    EXPECT_NE(s.message().find("--group"), std::string_view::npos) << s.ToString();
  }
}

TEST(ParseServerArgsTest, EveryFlag) {
  ServerOptions o;
  Status s = Parse({"serve",  "--listen",   "0.0.0.0:0",  "--workers",
                    "4",      "--threads",  "2",          "--size",
                    "16MiB",  "--name",     "app.one",    "--max-objects",
                    "100",    "--max-body", "64KiB",      "--log-level",
                    "warn",   "--token",    "t0k",        "--heartbeat-timeout",
                    "1500ms", "--snapshot", "/tmp/x.snap"},
                   &o);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(o.listen.ToString(), "0.0.0.0:0");
  EXPECT_EQ(o.workers, 4);
  EXPECT_EQ(o.threads, 2);
  EXPECT_EQ(o.segment_size, size_t{16} << 20);
  EXPECT_EQ(o.name, "app.one");
  EXPECT_EQ(o.max_objects, 100u);
  EXPECT_EQ(o.max_body_bytes, size_t{64} << 10);
  EXPECT_EQ(o.log_level, LogLevel::kWarn);
  EXPECT_EQ(o.token, "t0k");
  EXPECT_EQ(o.heartbeat_timeout, milliseconds(1500));
  EXPECT_EQ(o.snapshot_path, "/tmp/x.snap");
}

// Without --max-objects the registry takes at most half the segment; an explicit one that does
// not fit is a bad command line.
TEST(ParseServerArgsTest, DefaultRegistryScalesToTheSize) {
  ServerOptions o;
  ASSERT_TRUE(Parse({"serve"}, &o).ok());
  EXPECT_EQ(o.max_objects, 4096u);
  ASSERT_TRUE(Parse({"serve", "--size", "1MiB"}, &o).ok());
  EXPECT_LT(o.max_objects, 4096u);
  EXPECT_GE(o.max_objects, 100u);
  // As large as fits: the registry took the largest halving of 4096 within half the segment.
  EXPECT_LE(Segment::MinimumSize(o.max_objects), (size_t{1} << 20) / 2);
  EXPECT_GT(Segment::MinimumSize(o.max_objects * 2), (size_t{1} << 20) / 2);
  Status s = Parse({"serve", "--size", "1MiB", "--max-objects", "4096"}, &o);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("--max-objects"), std::string::npos) << s.message();
  ASSERT_TRUE(Parse({"serve", "--size", "1MiB", "--max-objects", "100"}, &o).ok());
  EXPECT_EQ(o.max_objects, 100u);
}

TEST(ParseServerArgsTest, TokenFromEnvironmentUnlessTheFlagIsGiven) {
  ServerOptions o;
  ASSERT_TRUE(Parse({"serve"}, &o, "from-env").ok());
  EXPECT_EQ(o.token, "from-env");
  ASSERT_TRUE(Parse({"serve", "--token=flag"}, &o, "from-env").ok());
  EXPECT_EQ(o.token, "flag");
}

TEST(ParseServerArgsTest, BadFlagsGiveOneClearLineNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string mentions;
  };
  const Case cases[] = {
      {{"serve", "--workers", "-1"}, "--workers"},
      {{"serve", "--workers", "129"}, "--workers"},
      {{"serve", "--workers", "two"}, "--workers"},
      {{"serve", "--threads", "65"}, "--threads"},
      {{"serve", "--size", "12XB"}, "--size"},
      {{"serve", "--size", "512KiB"}, "--size"},  // Below the 1 MiB minimum.
      {{"serve", "--size", "65GiB"}, "--size"},
      {{"serve", "--max-body", "1"}, "--max-body"},
      {{"serve", "--max-objects", "0"}, "--max-objects"},
      {{"serve", "--listen", "nowhere"}, "--listen"},
      {{"serve", "--log-level", "loud"}, "--log-level"},
      {{"serve", "--heartbeat-timeout", "soon"}, "--heartbeat-timeout"},
      {{"serve", "--name", "../etc"}, "--name"},
      {{"serve", "--name", ""}, "--name"},
      {{"serve", "--bogus"}, "bogus"},
      {{"serve", "--workers"}, "workers"},
      {{"serve", "extra"}, "extra"},
      {{"frobnicate"}, "frobnicate"},
  };
  for (const Case& c : cases) {
    ServerOptions o;
    o.workers = 42;
    CliAction action = CliAction::kServe;
    std::string help;
    Status s = ParseServerArgs(c.args, nullptr, 3, &o, &action, &help);
    std::string joined;
    for (const std::string& a : c.args) joined += a + " ";
    ASSERT_TRUE(s.IsInvalidArgument()) << joined << "gave " << s.ToString();
    EXPECT_NE(s.message().find(c.mentions), std::string::npos) << joined << ": " << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
    EXPECT_EQ(o.workers, 42) << "bad input must change nothing: " << joined;
  }
}

TEST(ParseServerArgsTest, HelpDocumentsEveryFlag) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--help"}, std::vector<std::string>{"serve", "--help"},
        std::vector<std::string>{}}) {
    ServerOptions o;
    CliAction action = CliAction::kServe;
    std::string help;
    ASSERT_TRUE(ParseServerArgs(args, nullptr, 1, &o, &action, &help).ok());
    EXPECT_EQ(action, CliAction::kHelp);
    for (const char* flag :
         {"--listen", "--workers", "--threads", "--size", "--name", "--max-objects", "--max-body",
          "--log-level", "--token", "--heartbeat-timeout", "--snapshot"}) {
      EXPECT_NE(help.find(flag), std::string::npos) << flag;
    }
  }
}

TEST(FormatSizeTest, HumanUnits) {
  EXPECT_EQ(FormatSize(size_t{64} << 20), "64.0 MiB");
  EXPECT_EQ(FormatSize(size_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(FormatSize(2048), "2.0 KiB");
  EXPECT_EQ(FormatSize(10), "10 bytes");
}

TEST(ParseServerArgsTest, RespListenIsOffUnlessGivenAndLoopbackByDefault) {
  ServerOptions o;
  ASSERT_TRUE(Parse({"serve"}, &o).ok());
  EXPECT_FALSE(o.resp);
  ASSERT_TRUE(Parse({"serve", "--resp-listen", "6380"}, &o).ok());
  EXPECT_TRUE(o.resp);
  EXPECT_EQ(o.resp_listen.ToString(), "127.0.0.1:6380");
  ASSERT_TRUE(Parse({"serve", "--resp-listen", "[::1]:0"}, &o).ok());
  EXPECT_TRUE(o.resp_listen.ipv6);
  Status s = Parse({"serve", "--resp-listen", "nowhere:1"}, &o);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("--resp-listen"), std::string_view::npos) << s.ToString();
}

}  // namespace
}  // namespace shm
