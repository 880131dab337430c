// Hostile HTTP over real sockets: the real shmstate binary gets a corpus of malformed, smuggled,
// oversized and garbage requests on raw TCP connections. Every one must end in a 4xx answer or a
// closed connection (never a 5xx, never a hang), and afterwards the state must be exactly what
// the test made and every worker must still serve, without having been restarted.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"

namespace shm::test {
namespace {

using namespace std::chrono_literals;

constexpr int kMaxBody = 4096;  // --max-body: oversized bodies stay cheap to send.
constexpr std::chrono::milliseconds kExchangeLimit = 5000ms;
constexpr int kAnyClientError = 0;  // A HostileCase expecting "some 4xx or a close".

// What came back on one raw connection.
struct RawExchange {
  std::vector<int> statuses;         // Status of every complete response, in order.
  std::vector<bool> has_worker_pid;  // Whether each response carried X-Worker-Pid.
  bool closed = false;               // The server closed (or reset) the connection.
  bool timed_out = false;            // Neither closed nor answered within the limit.
  std::string received;              // Everything read, for failure messages.
};

// Lower-cased copy, for header names.
std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits `bytes` into complete HTTP responses (the server always sends Content-Length).
void ParseResponses(const std::string& bytes, RawExchange* exchange) {
  size_t at = 0;
  while (at < bytes.size()) {
    size_t head_end = bytes.find("\r\n\r\n", at);
    if (head_end == std::string::npos || bytes.compare(at, 5, "HTTP/") != 0) return;
    std::string head = Lower(std::string_view(bytes).substr(at, head_end - at));
    size_t space = head.find(' ');
    if (space == std::string::npos) return;
    exchange->statuses.push_back(std::atoi(head.c_str() + space + 1));
    exchange->has_worker_pid.push_back(head.find("\r\nx-worker-pid:") != std::string::npos);
    size_t length = 0;
    size_t cl = head.find("\r\ncontent-length:");
    if (cl != std::string::npos) length = std::strtoull(head.c_str() + cl + 17, nullptr, 10);
    at = head_end + 4 + length;
  }
}

// Connects to the server, sends `bytes` (as far as the server takes them), optionally
// half-closes, and reads until the server closes the connection or `limit` passes.
RawExchange Exchange(uint16_t port, std::string_view bytes, bool half_close = true,
                     std::chrono::milliseconds limit = kExchangeLimit) {
  RawExchange exchange;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "cannot connect to port " << port;
    if (fd >= 0) close(fd);
    return exchange;
  }
  auto deadline = std::chrono::steady_clock::now() + limit;
  auto left_ms = [&deadline] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  };
  // Write and read interleaved: a server that answers 413 early may stop reading our body.
  std::string_view unsent = bytes;
  bool write_open = true;
  while (true) {
    if (write_open && unsent.empty()) {
      if (half_close) shutdown(fd, SHUT_WR);
      write_open = false;
    }
    pollfd pfd{fd, static_cast<short>(POLLIN | (write_open ? POLLOUT : 0)), 0};
    int left = left_ms();
    if (left == 0 || poll(&pfd, 1, left) <= 0) {
      exchange.timed_out = true;
      break;
    }
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      char chunk[16384];
      ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) {
        exchange.closed = true;
        break;
      }
      exchange.received.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (write_open && (pfd.revents & POLLOUT)) {
      ssize_t n = send(fd, unsent.data(), unsent.size(), MSG_NOSIGNAL);
      if (n < 0) {
        write_open = false;  // The server stopped reading (EPIPE/ECONNRESET): read its answer.
        continue;
      }
      unsent.remove_prefix(static_cast<size_t>(n));
    }
  }
  close(fd);
  ParseResponses(exchange.received, &exchange);
  return exchange;
}

struct HostileCase {
  std::string name;
  std::string bytes;
  int expected = kAnyClientError;  // The first answer's exact status, or kAnyClientError.
};

std::string Request(const std::string& method, const std::string& target,
                    const std::string& headers = "", const std::string& body = "") {
  return method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + "\r\n" + body;
}

std::string WithLength(const std::string& method, const std::string& target,
                       const std::string& body) {
  return Request(method, target, "Content-Length: " + std::to_string(body.size()) + "\r\n", body);
}

// A request that, if it ever got through, would create the object named `witness`.
std::string Push(const std::string& witness, const std::string& headers, const std::string& body) {
  return Request("POST", "/v1/lists/" + witness + "/push", headers, body);
}

std::vector<HostileCase> RequestLineCases() {
  return {
      {"garbage request line", "GARBAGE\r\n\r\n", 400},
      {"method only", "GET\r\n\r\n", 400},
      {"extra word after the version", "GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400},
      {"unknown method", Request("BREW", "/v1/counters/brew"), 405},
      {"lower-case method", Request("post", "/v1/counters/lower/incr")},
      {"HTTP/0.9 request line", "GET /v1/counters/nine\r\n\r\n"},
      {"HTTP/2.0 request line", "POST /v1/counters/two/incr HTTP/2.0\r\nHost: x\r\n\r\n"},
      {"HTTP/2 connection preface", std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")},
      {"absolute-form target", Request("POST", "http://evil.example/v1/counters/abs/incr")},
      {"target without a slash", Request("POST", "v1/counters/rel/incr"), 400},
      {"header without a colon", "GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400},
      {"space before a header colon", "GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400},
      {"bare CR in a header", "GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
  };
}

std::vector<HostileCase> SmugglingCases() {
  const std::string smuggled = "POST /v1/counters/smuggled/incr HTTP/1.1\r\nHost: x\r\n\r\n";
  return {
      {"Content-Length then Transfer-Encoding",
       Push("smug1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n" + smuggled),
       400},
      {"Transfer-Encoding then Content-Length",
       Push("smug2", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n" + smuggled),
       400},
      {"two different Content-Lengths",
       Push("smug3", "Content-Length: 3\r\nContent-Length: 50\r\n", "abc" + smuggled), 400},
      {"Content-Length list", Push("smug4", "Content-Length: 3, 50\r\n", "abc" + smuggled), 400},
      {"negative Content-Length", Push("smug5", "Content-Length: -1\r\n", "abc"), 400},
      {"signed Content-Length", Push("smug6", "Content-Length: +3\r\n", "abc"), 400},
      {"non-numeric Content-Length", Push("smug7", "Content-Length: 1e3\r\n", "abc"), 400},
      {"Content-Length past 2^64",
       Push("smug8", "Content-Length: 99999999999999999999999\r\n", "abc")},
      {"huge Content-Length", Push("smug9", "Content-Length: 1099511627776\r\n", "abc"), 413},
      {"non-hex chunk size",
       Push("smug10", "Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"), 400},
      {"negative chunk size",
       Push("smug11", "Transfer-Encoding: chunked\r\n", "-3\r\nabc\r\n0\r\n\r\n"), 400},
      {"chunk size past 2^64", Push("smug12", "Transfer-Encoding: chunked\r\n",
                                    "fffffffffffffffffffff\r\nabc\r\n0\r\n\r\n")},
      {"huge chunk size",
       Push("smug13", "Transfer-Encoding: chunked\r\n", "fffffffff\r\nabc\r\n0\r\n\r\n"), 413},
      {"chunk data longer than its size",
       Push("smug14", "Transfer-Encoding: chunked\r\n", "3\r\nabcdef\r\n0\r\n\r\n"), 400},
      {"chunks adding up past the body limit",
       Push("smug15", "Transfer-Encoding: chunked\r\n",
            "800\r\n" + std::string(0x800, 'a') + "\r\n800\r\n" + std::string(0x800, 'b') +
                "\r\n800\r\n" + std::string(0x800, 'c') + "\r\n0\r\n\r\n"),
       413},
  };
}

// RFC 9112 6.3: a request whose Transfer-Encoding does not end in chunked has no knowable length
// and must get 400 and a close. The worker instead reads it as a body-less request (executing it)
// and parses the body as the next request: a smuggling hole. Known bug, test disabled below.
std::vector<HostileCase> UnsupportedTransferEncodingCases() {
  return {
      {"Transfer-Encoding not ending in chunked",
       Push("te1", "Transfer-Encoding: chunked, gzip\r\n", "3\r\nabc\r\n0\r\n\r\n")},
      {"unknown Transfer-Encoding", Push("te2", "Transfer-Encoding: xchunked\r\n", "abc")},
  };
}

std::vector<HostileCase> SizeCases() {
  std::string many_headers;
  for (int i = 0; i < 200; ++i)
    many_headers += "X-Flood-" + std::to_string(i) + ": " + std::string(100, 'v') + "\r\n";
  std::string tiny_headers;
  for (int i = 0; i < 3000; ++i) tiny_headers += "a:b\r\n";
  return {
      {"header flood", Push("flood1", many_headers + "Content-Length: 1\r\n", "x"), 431},
      {"thousands of tiny headers", Push("flood2", tiny_headers + "Content-Length: 1\r\n", "x"),
       431},
      {"one 16 KiB header",
       Push("flood3", "X-Big: " + std::string(16384, 'h') + "\r\nContent-Length: 1\r\n", "x"), 431},
      {"16 KiB target", Request("POST", "/v1/counters/" + std::string(16384, 't') + "/incr"), 431},
      {"body one byte over the limit",
       WithLength("POST", "/v1/lists/big1/push", std::string(kMaxBody + 1, 'b')), 413},
      {"body of 256 KiB", WithLength("POST", "/v1/lists/big2/push", std::string(256 << 10, 'b')),
       413},
  };
}

std::vector<HostileCase> NameCases() {
  return {
      {"non-UTF-8 escaped name", Request("POST", "/v1/counters/%FF%FE/incr"), 400},
      {"NUL escaped in a name", Request("POST", "/v1/counters/a%00b/incr"), 400},
      {"raw NUL in the target", Request("POST", std::string("/v1/counters/a\0b/incr", 20)), 400},
      {"raw 0xFF in the target", Request("POST", "/v1/counters/\xff\xfe/incr"), 400},
      {"non-UTF-8 dict key", WithLength("PUT", "/v1/dicts/badkey/%C0%AF", "v"), 400},
      {"escaped slash in a name", Request("POST", "/v1/counters/a%2Fb/incr"), 400},
      {"dot-dot name", Request("POST", "/v1/counters/../incr"), 400},
      {"escaped dot-dot name", Request("POST", "/v1/counters/%2e%2e/incr"), 400},
      {"name starting with a dot", Request("POST", "/v1/counters/.hidden/incr"), 400},
      {"double slash before the name", Request("POST", "/v1/counters//incr")},
      {"double slash in the prefix", Request("POST", "/v1//counters/dbl/incr")},
      {"trailing slash", Request("POST", "/v1/counters/trail/incr/")},
      {"201-byte name", Request("POST", "/v1/counters/" + std::string(201, 'n') + "/incr"), 400},
      {"bad percent escape", Request("POST", "/v1/counters/x%zz/incr"), 400},
      {"truncated percent escape", Request("POST", "/v1/counters/x%2/incr"), 400},
      {"repeated query key", Request("POST", "/v1/counters/rep/incr?by=1&by=2"), 400},
      {"non-numeric increment", Request("POST", "/v1/counters/nan/incr?by=abc"), 400},
      {"increment past int64", Request("POST", "/v1/counters/big/incr?by=99999999999999999999"),
       400},
  };
}

std::vector<HostileCase> GarbageCases() {
  std::mt19937 rng(1234);
  std::string random_bytes;
  for (int i = 0; i < 512; ++i) random_bytes.push_back(static_cast<char>(rng() & 0xff));
  return {
      {"512 random bytes", random_bytes},
      {"TLS ClientHello",
       std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + std::string(64, '\x42')},
      {"4 KiB of NUL bytes", std::string(4096, '\0')},
      {"only line ends", "\r\n\r\n\r\n\r\n"},
      {"binary after a good request line",
       "POST /v1/counters/bin/incr HTTP/1.1\r\n" + std::string("\x01\x02\xff\x00\x7f", 5) +
           "\r\n\r\n",
       400},
  };
}

// Every object /v1/objects lists, in name order.
std::vector<std::string> ObjectNames(HttpClient* client) {
  HttpResult result;
  Status s = client->Get("/v1/objects?limit=1000", &result);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(result.status, 200) << result.body;
  std::vector<std::string> names;
  if (!s.ok() || result.status != 200) return names;
  boost::json::value listing = boost::json::parse(result.body);
  for (const auto& object : listing.at("objects").as_array()) {
    names.emplace_back(object.at("name").as_string());
  }
  return names;
}

class HostileHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = server_.Start({"--workers", "2", "--max-body", std::to_string(kMaxBody)});
    ASSERT_TRUE(s.ok()) << s.ToString();
    client_ = std::make_unique<HttpClient>(server_.port());
    HttpResult result;
    ASSERT_TRUE(client_->Post("/v1/counters/keep/incr?by=41", "", &result).ok());
    ASSERT_EQ(result.status, 200) << result.body;
    ASSERT_TRUE(server_.WorkerPids(&workers_before_).ok());
    ASSERT_EQ(workers_before_.size(), 2u);
  }

  // Sends each case on its own connection and checks its outcome.
  void RunCases(const std::vector<HostileCase>& cases) {
    for (const HostileCase& c : cases) {
      SCOPED_TRACE(c.name);
      RawExchange exchange = Exchange(server_.port(), c.bytes);
      EXPECT_FALSE(exchange.timed_out) << "no answer and no close within the limit";
      EXPECT_TRUE(exchange.closed);
      if (c.expected != kAnyClientError) {
        ASSERT_FALSE(exchange.statuses.empty())
            << "closed without an answer; got: " << exchange.received.substr(0, 300);
        EXPECT_EQ(exchange.statuses.front(), c.expected) << exchange.received.substr(0, 300);
      }
      for (size_t i = 0; i < exchange.statuses.size(); ++i) {
        EXPECT_GE(exchange.statuses[i], 400) << exchange.received.substr(0, 300);
        EXPECT_LT(exchange.statuses[i], 500) << exchange.received.substr(0, 300);
        EXPECT_TRUE(exchange.has_worker_pid[i]) << exchange.received.substr(0, 300);
      }
      if (exchange.statuses.empty()) {
        EXPECT_TRUE(exchange.received.empty())
            << "unparseable answer: " << exchange.received.substr(0, 300);
      }
    }
  }

  // The state is what SetUp made, the same workers are alive, and both answer good requests.
  void ExpectIntactAndServing() {
    HttpResult result;
    ASSERT_TRUE(client_->Get("/v1/counters/keep", &result).ok());
    EXPECT_EQ(result.status, 200);
    EXPECT_EQ(boost::json::parse(result.body).at("value").to_number<int64_t>(), 41);
    EXPECT_EQ(ObjectNames(client_.get()), std::vector<std::string>{"keep"});

    std::vector<pid_t> workers_after;
    ASSERT_TRUE(server_.WorkerPids(&workers_after).ok());
    EXPECT_EQ(workers_after, workers_before_) << "a worker was replaced: it crashed or hung";

    // Several connections open at once, so both workers get to accept some; bounded in time
    // (on a loaded machine one worker can take every connection of many rounds).
    std::set<std::string> pids;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (int round = 0;
         round < 2000 && pids.size() < 2 && std::chrono::steady_clock::now() < deadline; ++round) {
      std::vector<std::unique_ptr<HttpClient>> clients;
      for (int i = 0; i < 8; ++i) clients.push_back(std::make_unique<HttpClient>(server_.port()));
      for (auto& client : clients) {
        ASSERT_TRUE(client->Get("/v1/counters/keep", &result).ok());
        ASSERT_EQ(result.status, 200) << result.body;
        pids.insert(result.Header("X-Worker-Pid"));
      }
    }
    EXPECT_EQ(pids.size(), 2u) << "only one worker answered good requests";
  }

  ServerProcess server_{"hostile"};
  std::unique_ptr<HttpClient> client_;
  std::vector<pid_t> workers_before_;
};

TEST_F(HostileHttpTest, BadRequestLinesAndMethodsAreRefused) {
  RunCases(RequestLineCases());
  ExpectIntactAndServing();
}

TEST_F(HostileHttpTest, SmugglingAttemptsAreRefusedAndNothingIsSmuggledThrough) {
  RunCases(SmugglingCases());
  ExpectIntactAndServing();
}

TEST_F(HostileHttpTest, HeaderFloodsAndOversizedBodiesAreRefused) {
  RunCases(SizeCases());
  ExpectIntactAndServing();
}

TEST_F(HostileHttpTest, HostileNamesAndPathTricksAreRefused) {
  RunCases(NameCases());
  ExpectIntactAndServing();
}

TEST_F(HostileHttpTest, GarbageBytesAreRefusedOrClosed) {
  RunCases(GarbageCases());
  ExpectIntactAndServing();
}

// A Transfer-Encoding whose last coding is not "chunked" (found by the fuzzer: it used to run
// without its body, and the body was parsed as a second request) gets 400 and a close.
TEST_F(HostileHttpTest, TransferEncodingNotEndingInChunkedIsRefused) {
  RunCases(UnsupportedTransferEncodingCases());
  ExpectIntactAndServing();
}

TEST_F(HostileHttpTest, AllCasesOnOneServerLeaveStateAndWorkersIntact) {
  for (const auto& cases :
       {RequestLineCases(), SmugglingCases(), SizeCases(), NameCases(), GarbageCases()}) {
    RunCases(cases);
  }
  ExpectIntactAndServing();
}

// Whether `shmstate serve --help` lists `flag`.
bool ServeHasFlag(const std::string& flag) {
  std::string command = ShmstateBinary() + " serve --help 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return false;
  std::string help;
  char chunk[4096];
  size_t n = 0;
  while ((n = fread(chunk, 1, sizeof chunk, pipe)) > 0) help.append(chunk, n);
  pclose(pipe);
  return help.find(flag) != std::string::npos;
}

TEST(HostileHttpSlowTest, SlowlorisHeadersAreCutOffByTheReadTimeout) {
  if (!ServeHasFlag("--read-timeout")) {
    GTEST_SKIP() << "shmstate serve has no --read-timeout flag; the worker's read timeout "
                    "(30 s by default) is covered by tests/worker/session_test.cc";
  }
  ServerProcess server("slowloris");
  Status s = server.Start({"--workers", "2", "--read-timeout", "500ms"});
  ASSERT_TRUE(s.ok()) << s.ToString();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  // One byte every 250 ms: the request would take 10 s to arrive, 20 times the read timeout.
  const std::string request = "POST /v1/counters/slow/incr HTTP/1.1\r\nHost: x\r\n\r\n";
  bool cut_off = false;
  for (size_t i = 0; i < request.size() && !cut_off; ++i) {
    if (send(fd, &request[i], 1, MSG_NOSIGNAL) != 1) cut_off = true;
    pollfd pfd{fd, POLLIN, 0};
    if (!cut_off && poll(&pfd, 1, 250) > 0) {
      char byte;
      cut_off = recv(fd, &byte, 1, 0) <= 0;  // EOF or reset: the server closed the connection.
    }
  }
  close(fd);
  EXPECT_TRUE(cut_off) << "the dribbled request was read to the end";
  HttpClient client(server.port());
  HttpResult result;
  ASSERT_TRUE(client.Get("/v1/counters/slow", &result).ok());
  EXPECT_EQ(result.status, 404) << "the dribbled request was executed";
}

}  // namespace
}  // namespace shm::test
