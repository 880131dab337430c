// The worker over a real socket: RunWorker in a forked child on 127.0.0.1 (ephemeral port).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <map>
#include <string>
#include <thread>

#include "common/test_util.h"
#include "shm/api.h"
#include "shm/registry.h"
#include "shm/worker.h"

namespace shm {
namespace {

constexpr int kIoTimeoutMs = 10000;  // Bound on every wait; never reached when the worker is right.

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string body;
};

// A blocking-free HTTP/1.1 client on a raw socket: every wait is bounded by poll().
class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~Client() { close(fd_); }

  bool connected() const { return connected_; }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response (Content-Length framed; `bodiless`: the answer to a HEAD, whose
  // Content-Length is the GET's). False on EOF, error or timeout.
  bool Read(Response* response, bool bodiless = false) {
    size_t end = 0;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    *response = Response();
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return false;
    response->status = std::stoi(status_line.substr(9, 3));
    size_t pos = line_end;
    while (pos != std::string::npos && pos < head.size()) {
      size_t next = head.find("\r\n", pos + 2);
      std::string line =
          head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t value_start = line.find_first_not_of(' ', colon + 1);
        response->headers[name] = value_start == std::string::npos ? "" : line.substr(value_start);
      }
      pos = next;
    }
    size_t length = bodiless ? 0
                             : std::stoul(response->headers.count("content-length")
                                              ? response->headers["content-length"]
                                              : "0");
    while (buffer_.size() < length) {
      if (!Fill()) return false;
    }
    response->body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return true;
  }

  // True once the server closed the connection (EOF or reset) with nothing more to read.
  bool WaitClosed() {
    while (true) {
      if (!buffer_.empty()) return false;
      if (!Fill()) return eof_;
    }
  }

 private:
  bool Fill() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, kIoTimeoutMs) <= 0) return false;
    char chunk[4096];
    ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = n == 0 || errno == ECONNRESET;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

// A worker process serving the built-in API on an ephemeral loopback port.
class WorkerProcess {
 public:
  explicit WorkerProcess(Segment* segment, WorkerOptions options = SmallLimits())
      : segment_(segment) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(listen_fd_, 64);
    socklen_t length = sizeof address;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    int fd = listen_fd_;
    pid_ = test::ForkChild([segment, fd, options] {
      Router router;
      RegisterApiRoutes(&router);
      return RunWorker(segment, fd, router, options);
    });
    segment_->RegisterWorker(options.index, pid_, 0);
  }

  ~WorkerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      test::WaitChild(pid_, kIoTimeoutMs);
    }
    close(listen_fd_);
  }

  static WorkerOptions SmallLimits() {
    WorkerOptions options;
    options.threads = 2;
    options.max_body_bytes = 1024;
    options.max_header_bytes = 1024;
    options.read_timeout = std::chrono::milliseconds(300);
    options.drain_timeout = std::chrono::milliseconds(3000);
    return options;
  }

  // SIGTERM, then the exit status.
  test::ChildExit Terminate() {
    kill(pid_, SIGTERM);
    test::ChildExit exit = test::WaitChild(pid_, kIoTimeoutMs);
    pid_ = 0;
    return exit;
  }

  int port() const { return port_; }
  std::string pid() const { return std::to_string(pid_); }

 private:
  Segment* segment_;
  int listen_fd_ = -1;
  int port_ = 0;
  pid_t pid_ = 0;
};

std::string Request(std::string_view method, std::string_view target, std::string_view body = "",
                    std::string_view extra_headers = "") {
  return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n" +
         std::string(extra_headers) + "Content-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + std::string(body);
}

bool IsJsonError(const Response& r, std::string_view code) {
  return r.headers.count("content-type") && r.headers.at("content-type") == "application/json" &&
         r.body.find("{\"error\":{\"code\":\"" + std::string(code) + "\"") == 0;
}

TEST(SessionTest, KeepAliveAndPipelining) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  ASSERT_TRUE(client.connected());
  // Three requests in one write: answered in order on the same connection.
  ASSERT_TRUE(client.Send(Request("POST", "/v1/counters/p/incr") +
                          Request("POST", "/v1/counters/p/incr?by=10") +
                          Request("GET", "/v1/counters/p")));
  const char* expected[] = {"{\"value\":1}", "{\"value\":11}", "{\"value\":11}"};
  for (const char* body : expected) {
    Response r;
    ASSERT_TRUE(client.Read(&r));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, body);
    EXPECT_EQ(r.headers["x-worker-pid"], worker.pid());
  }
  // More pipelined requests than the queue holds: every one is answered, in order.
  std::string many;
  for (int i = 0; i < 20; ++i) many += Request("POST", "/v1/counters/q/incr");
  ASSERT_TRUE(client.Send(many));
  for (int i = 1; i <= 20; ++i) {
    Response r;
    ASSERT_TRUE(client.Read(&r));
    EXPECT_EQ(r.body, "{\"value\":" + std::to_string(i) + "}");
  }
  ASSERT_TRUE(client.Send(Request("GET", "/v1/counters/nope")));
  Response missing;
  ASSERT_TRUE(client.Read(&missing));
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(IsJsonError(missing, "NotFound"));
  EXPECT_EQ(missing.headers["x-worker-pid"], worker.pid());
  // Each response was counted in the worker's slot.
  std::vector<WorkerInfo> workers = seg->Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].requests, 24u);
  EXPECT_EQ(workers[0].client_errors, 1u);
}

TEST(SessionTest, ConnectionCloseIsHonoured) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  ASSERT_TRUE(client.Send(Request("GET", "/healthz", "", "Connection: close\r\n")));
  Response r;
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(client.WaitClosed());
}

TEST(SessionTest, BodyTooLargeIs413AndCloses) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  ASSERT_TRUE(client.Send(Request("PUT", "/v1/counters/big", std::string(5000, ' '))));
  Response r;
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(IsJsonError(r, "PayloadTooLarge")) << r.body;
  EXPECT_EQ(r.headers["x-worker-pid"], worker.pid());
  EXPECT_TRUE(client.WaitClosed());
  // The limit is inclusive of what fits.
  Client ok(worker.port());
  std::string body = "{\"value\":3}" + std::string(1024 - 11, ' ');
  ASSERT_TRUE(ok.Send(Request("PUT", "/v1/counters/big", body)));
  ASSERT_TRUE(ok.Read(&r));
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(SessionTest, HeaderTooLargeIs431AndCloses) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  ASSERT_TRUE(
      client.Send(Request("GET", "/healthz", "", "X-Big: " + std::string(2000, 'x') + "\r\n")));
  Response r;
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.status, 431);
  EXPECT_TRUE(IsJsonError(r, "HeaderTooLarge")) << r.body;
  EXPECT_EQ(r.headers["x-worker-pid"], worker.pid());
  EXPECT_TRUE(client.WaitClosed());
}

TEST(SessionTest, ContentLengthWithTransferEncodingIs400AndCloses) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  const char* smuggles[] = {
      "POST /v1/counters/s/incr HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST /v1/counters/s/incr HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
      "Content-Length: 5\r\n\r\n0\r\n\r\n",
      "POST /v1/counters/s/incr HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n"
      "Content-Length: 0\r\n\r\n",
  };
  for (const char* smuggle : smuggles) {
    Client client(worker.port());
    ASSERT_TRUE(client.Send(std::string(smuggle) + Request("POST", "/v1/counters/s/incr")));
    Response r;
    ASSERT_TRUE(client.Read(&r)) << smuggle;
    EXPECT_EQ(r.status, 400) << smuggle;
    EXPECT_TRUE(IsJsonError(r, "BadRequest")) << r.body;
    EXPECT_EQ(r.headers["x-worker-pid"], worker.pid());
    EXPECT_TRUE(client.WaitClosed()) << smuggle;
  }
  ObjectInfo info;
  EXPECT_TRUE(seg->registry().Lookup("s", &info).IsNotFound());
}

TEST(SessionTest, GarbageIs400AndCloses) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  for (std::string garbage :
       {std::string("\x01\x02\xff garbage\r\n\r\n", 15), std::string("GET / HTTP/9.9\r\n\r\n"),
        std::string("GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n")}) {
    Client client(worker.port());
    ASSERT_TRUE(client.Send(garbage));
    Response r;
    ASSERT_TRUE(client.Read(&r));
    EXPECT_EQ(r.status, 400);
    EXPECT_TRUE(IsJsonError(r, "BadRequest")) << r.body;
    EXPECT_EQ(r.headers["x-worker-pid"], worker.pid());
    EXPECT_TRUE(client.WaitClosed());
  }
}

// A client that stops mid-header is closed by the read timeout, with the strand (several
// threads) and without it (one thread); the worker keeps serving others.
TEST(SessionTest, SlowClientIsClosedByReadTimeout) {
  test::ScopedSegment seg;
  for (int threads : {1, 2}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    WorkerOptions options = WorkerProcess::SmallLimits();
    options.threads = threads;
    WorkerProcess worker(seg.get(), options);
    Client client(worker.port());
    ASSERT_TRUE(client.Send("GET /healthz HTTP/1.1\r\nHost:"));
    EXPECT_TRUE(client.WaitClosed());
    Client other(worker.port());
    ASSERT_TRUE(other.Send(Request("GET", "/healthz")));
    Response r;
    ASSERT_TRUE(other.Read(&r));
    EXPECT_EQ(r.status, 200);
  }
}

// The read timeout bounds each operation, not the connection: a client that keeps sending
// requests stays connected well past it (the worker's timer fires at the first deadline, finds
// a later one and waits again), and is closed once it goes quiet.
TEST(SessionTest, BusyConnectionOutlivesTheReadTimeoutThenIdleOneCloses) {
  test::ScopedSegment seg;
  for (int threads : {1, 2}) {
    WorkerOptions options = WorkerProcess::SmallLimits();
    options.threads = threads;
    options.read_timeout = std::chrono::milliseconds(600);
    WorkerProcess worker(seg.get(), options);
    Client client(worker.port());
    auto start = std::chrono::steady_clock::now();
    int answered = 0;
    // Requests 100 ms apart for three read timeouts.
    while (std::chrono::steady_clock::now() - start < 3 * options.read_timeout) {
      ASSERT_TRUE(
          client.Send(Request("POST", "/v1/counters/busy" + std::to_string(threads) + "/incr")));
      Response r;
      ASSERT_TRUE(client.Read(&r)) << "closed after " << answered << " requests";
      ASSERT_EQ(r.status, 200);
      EXPECT_EQ(r.body, "{\"value\":" + std::to_string(++answered) + "}");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_GE(answered, 5);
    EXPECT_TRUE(client.WaitClosed()) << threads << " threads";
  }
}

TEST(SessionTest, BearerTokenGuardsAllButHealthz) {
  test::ScopedSegment seg;
  WorkerOptions options = WorkerProcess::SmallLimits();
  options.token = "s3cret";
  WorkerProcess worker(seg.get(), options);
  Client client(worker.port());
  Response r;
  ASSERT_TRUE(client.Send(Request("GET", "/healthz")));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.status, 200);
  for (std::string auth : {std::string(""), std::string("Authorization: Bearer s3cre\r\n"),
                           std::string("Authorization: Bearer s3cret2\r\n"),
                           std::string("Authorization: Basic s3cret\r\n")}) {
    ASSERT_TRUE(client.Send(Request("POST", "/v1/counters/a/incr", "", auth)));
    ASSERT_TRUE(client.Read(&r));
    EXPECT_EQ(r.status, 401) << auth;
    EXPECT_TRUE(IsJsonError(r, "Unauthorized"));
    EXPECT_EQ(r.headers["x-worker-pid"], worker.pid());
  }
  ASSERT_TRUE(
      client.Send(Request("POST", "/v1/counters/a/incr", "", "Authorization: Bearer s3cret\r\n")));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"value\":1}");
}

TEST(SessionTest, SigtermDrainsAndReturnsZero) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client idle(worker.port());
  Response r;
  ASSERT_TRUE(idle.Send(Request("GET", "/healthz")));
  ASSERT_TRUE(idle.Read(&r));  // The connection is now idle, kept alive.
  // The heartbeat runs: the slot's stamp moves past the one RegisterWorker wrote.
  int64_t registered = seg->LastHeartbeatMs(0);
  int64_t deadline = SteadyNowMs() + kIoTimeoutMs;
  while (seg->LastHeartbeatMs(0) == registered && SteadyNowMs() < deadline) {
    Client probe(worker.port());  // Busy-wait with real work rather than sleeping.
    ASSERT_TRUE(probe.Send(Request("GET", "/healthz")));
    ASSERT_TRUE(probe.Read(&r));
  }
  EXPECT_GT(seg->LastHeartbeatMs(0), registered);
  test::ChildExit exit = worker.Terminate();
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 0);
  EXPECT_TRUE(idle.WaitClosed());
}

}  // namespace
}  // namespace shm

namespace shm {
namespace {

// HEAD answers what GET would (status, fields, Content-Length of the GET's body) without the body,
// so the next requests on the connection are framed right.
TEST(SessionTest, HeadIsGetWithoutTheBody) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  ASSERT_TRUE(
      client.Send(Request("PUT", "/v1/dicts/d/k", "hello head", "Content-Type: text/x\r\n")));
  Response put;
  ASSERT_TRUE(client.Read(&put));
  ASSERT_EQ(put.status, 200) << put.body;
  ASSERT_TRUE(client.Send(Request("GET", "/v1/dicts/d/k")));
  Response get;
  ASSERT_TRUE(client.Read(&get));
  ASSERT_EQ(get.body, "hello head");
  // A HEAD, then a GET and a HEAD of a missing key, pipelined in one write.
  ASSERT_TRUE(client.Send(Request("HEAD", "/v1/dicts/d/k") + Request("GET", "/v1/counters/none") +
                          Request("HEAD", "/v1/counters/none")));
  Response head;
  ASSERT_TRUE(client.Read(&head, /*bodiless=*/true));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["content-length"], "10");
  EXPECT_EQ(head.headers["content-type"], "text/x");
  EXPECT_EQ(head.headers["etag"], get.headers["etag"]);
  Response missing;
  ASSERT_TRUE(client.Read(&missing));
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(IsJsonError(missing, "NotFound")) << missing.body;
  Response missing_head;
  ASSERT_TRUE(client.Read(&missing_head, /*bodiless=*/true));
  EXPECT_EQ(missing_head.status, 404);
  EXPECT_EQ(missing_head.headers["content-length"], missing.headers["content-length"]);
  // Nothing was sent past the heads: the next request's answer is the next bytes.
  ASSERT_TRUE(client.Send(Request("GET", "/healthz")));
  Response health;
  ASSERT_TRUE(client.Read(&health));
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body.find("{\"status\":\"ok\""), 0u) << health.body;
  // HEAD of a POST-only path: 405 listing the path's methods.
  ASSERT_TRUE(client.Send(Request("HEAD", "/v1/counters/c/incr")));
  Response not_allowed;
  ASSERT_TRUE(client.Read(&not_allowed, /*bodiless=*/true));
  EXPECT_EQ(not_allowed.status, 405);
  EXPECT_EQ(not_allowed.headers["allow"], "POST");
  ASSERT_TRUE(client.Send(Request("GET", "/v1/dicts/d/k")));
  ASSERT_TRUE(client.Read(&get));
  EXPECT_EQ(get.body, "hello head");
}

}  // namespace
}  // namespace shm

namespace shm {
namespace {

// A 405's Allow names each method of the path once, alphabetically, whatever the route order.
TEST(SessionTest, AllowIsAlphabetical) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  ASSERT_TRUE(client.Send(Request("PATCH", "/v1/dicts/d/k") + Request("PATCH", "/v1/dicts/d")));
  Response key;
  ASSERT_TRUE(client.Read(&key));
  EXPECT_EQ(key.status, 405);
  EXPECT_EQ(key.headers["allow"], "DELETE, GET, HEAD, PUT");
  Response dict;
  ASSERT_TRUE(client.Read(&dict));
  EXPECT_EQ(dict.status, 405);
  EXPECT_EQ(dict.headers["allow"], "GET, HEAD, POST");
}

}  // namespace
}  // namespace shm

namespace shm {
namespace {

// Floats come back in the shortest text that reads back exactly (as Python and JavaScript print
// them), integral ones with ".0"; integers stay integers.
TEST(SessionTest, JsonFloatsAreShortestRoundTrip) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  ASSERT_TRUE(
      client.Send(Request("POST", "/v1/arrays/f", R"({"dtype":"float64","shape":[6],"fill":0})")));
  Response r;
  ASSERT_TRUE(client.Read(&r));
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_TRUE(client.Send(
      Request("PUT", "/v1/arrays/f/data?slice=1:", "[0.7316522598266602, -2.5, 1e100, 3, 1e-7]")));
  ASSERT_TRUE(client.Read(&r));
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(client.Send(Request("GET", "/v1/arrays/f/data")));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(
      r.body,
      R"({"dtype":"float64","shape":[6],"data":[0.0,0.7316522598266602,-2.5,1e+100,3.0,1e-07]})");
  ASSERT_TRUE(client.Send(Request("GET", "/v1/arrays/f/reduce?op=sum&slice=:2")));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.body, R"({"value":0.7316522598266602})");
  // A session value keeps its float form too; integer arrays are untouched.
  ASSERT_TRUE(client.Send(Request("PUT", "/v1/session/x", R"({"value":{"a":[0.5,1,null]}})")));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.body, R"({"value":{"a":[0.5,1,null]}})");
  ASSERT_TRUE(
      client.Send(Request("POST", "/v1/arrays/i", R"({"dtype":"int64","shape":[2],"fill":-3})")));
  ASSERT_TRUE(client.Read(&r));
  ASSERT_TRUE(client.Send(Request("GET", "/v1/arrays/i/data")));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.body, R"({"dtype":"int64","shape":[2],"data":[-3,-3]})");
}

}  // namespace
}  // namespace shm

namespace shm {
namespace {

// RFC 9110 §13.1: If-None-Match compares weakly (`*`, lists, W/ tags) and gives 304 without a
// Content-Length; If-Match compares strongly and gives 412.
TEST(SessionTest, ConditionalRequests) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  auto exchange = [&](std::string_view method, std::string_view target, std::string_view body,
                      std::string_view headers) {
    Response r;
    EXPECT_TRUE(client.Send(Request(method, target, body, headers)));
    EXPECT_TRUE(client.Read(&r, method == "HEAD"));
    return r;
  };
  Response put = exchange("PUT", "/v1/dicts/d/k", "v1", "");
  ASSERT_EQ(put.status, 200) << put.body;
  const std::string etag = put.headers["etag"];  // "n"
  const std::string weak = "W/" + etag;
  for (std::string condition :
       {std::string("*"), etag, weak, "\"0\", " + weak, "\"x\",," + etag + " , \"y\""}) {
    Response r = exchange("GET", "/v1/dicts/d/k", "", "If-None-Match: " + condition + "\r\n");
    EXPECT_EQ(r.status, 304) << condition;
    EXPECT_EQ(r.headers.count("content-length"), 0u) << condition;
    EXPECT_EQ(r.headers["etag"], etag) << condition;
    EXPECT_EQ(r.body, "") << condition;
    EXPECT_EQ(exchange("HEAD", "/v1/dicts/d/k", "", "If-None-Match: " + condition + "\r\n").status,
              304);
  }
  Response other = exchange("GET", "/v1/dicts/d/k", "", "If-None-Match: \"0\", W/\"0\"\r\n");
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.body, "v1");
  EXPECT_EQ(exchange("GET", "/v1/dicts/d/nope", "", "If-None-Match: *\r\n").status, 404);
  EXPECT_EQ(exchange("GET", "/v1/dicts/d/k", "", "If-None-Match: \"unclosed\r\n").status, 400);
  // If-Match: a weak tag never matches strongly; a list matches if one strong tag does.
  EXPECT_EQ(exchange("PUT", "/v1/dicts/d/k", "v2", "If-Match: " + weak + "\r\n").status, 412);
  EXPECT_EQ(exchange("GET", "/v1/dicts/d/k", "", "If-Match: " + weak + "\r\n").status, 412);
  EXPECT_EQ(exchange("GET", "/v1/dicts/d/k", "", "").body, "v1");
  Response listed = exchange("PUT", "/v1/dicts/d/k", "v2", "If-Match: \"0\", " + etag + "\r\n");
  EXPECT_EQ(listed.status, 200) << listed.body;
  EXPECT_EQ(exchange("PUT", "/v1/dicts/d/k", "v3", "If-Match: " + etag + "\r\n").status, 412);
  EXPECT_EQ(exchange("PUT", "/v1/dicts/d/k", "v3", "If-Match: *\r\n").status, 200);
  EXPECT_EQ(exchange("PUT", "/v1/dicts/d/new", "n", "If-Match: *\r\n").status, 412);
  // If-None-Match: * on a write means "create only".
  EXPECT_EQ(exchange("PUT", "/v1/dicts/d/k", "v4", "If-None-Match: *\r\n").status, 412);
  EXPECT_EQ(exchange("PUT", "/v1/dicts/d/new", "n", "If-None-Match: *\r\n").status, 200);
  EXPECT_EQ(exchange("GET", "/v1/dicts/d/k", "", "").body, "v3");
  EXPECT_EQ(exchange("DELETE", "/v1/dicts/d/new", "", "If-Match: W/\"1\"\r\n").status, 412);
  EXPECT_EQ(exchange("DELETE", "/v1/dicts/d/new", "", "If-Match: *\r\n").status, 204);
  EXPECT_EQ(exchange("DELETE", "/v1/dicts/d/new", "", "If-Match: *\r\n").status, 412);
  // A 204 carries no Content-Length either.
  EXPECT_EQ(exchange("DELETE", "/v1/dicts/d/k", "", "").headers.count("content-length"), 0u);
  EXPECT_EQ(exchange("GET", "/healthz", "", "").status, 200);  // Framing held throughout.
}

}  // namespace
}  // namespace shm

namespace shm {
namespace {

// The head of a request whose body is sent only after the server's go.
std::string ExpectContinueHead(std::string_view method, std::string_view target, size_t length,
                               std::string_view extra_headers = "") {
  return std::string(method) + " " + std::string(target) +
         " HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n" + std::string(extra_headers) +
         "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

// Expect: 100-continue gets 100 Continue before the body is read, behind the answers to earlier
// pipelined requests; a body over the limit, or a request the token refuses, is answered at once
// (the body never sent) and the connection closed.
TEST(SessionTest, ExpectContinue) {
  test::ScopedSegment seg;
  WorkerOptions options = WorkerProcess::SmallLimits();
  options.token = "tok";
  WorkerProcess worker(seg.get(), options);
  const std::string auth = "Authorization: Bearer tok\r\n";
  const std::string body = "{\"value\":7}";
  Client client(worker.port());
  ASSERT_TRUE(client.Send(Request("GET", "/healthz") +
                          ExpectContinueHead("PUT", "/v1/counters/c", body.size(), auth)));
  Response r;
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.status, 200);  // The pipelined GET first.
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.status, 100);
  ASSERT_TRUE(client.Send(body));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, body);
  // The connection goes on.
  ASSERT_TRUE(client.Send(Request("GET", "/v1/counters/c", "", auth)));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.body, body);

  Client big(worker.port());
  ASSERT_TRUE(big.Send(ExpectContinueHead("PUT", "/v1/counters/c", 5000, auth)));
  ASSERT_TRUE(big.Read(&r));
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(IsJsonError(r, "PayloadTooLarge")) << r.body;
  EXPECT_TRUE(big.WaitClosed());

  Client stranger(worker.port());
  ASSERT_TRUE(stranger.Send(ExpectContinueHead("PUT", "/v1/counters/c", body.size())));
  ASSERT_TRUE(stranger.Read(&r));
  EXPECT_EQ(r.status, 401);
  EXPECT_TRUE(stranger.WaitClosed());
  ASSERT_TRUE(client.Send(Request("GET", "/v1/counters/c", "", auth)));
  ASSERT_TRUE(client.Read(&r));
  EXPECT_EQ(r.body, body);  // Neither refused request changed anything.
}

}  // namespace
}  // namespace shm

namespace shm {
namespace {

// An entry that can never fit the dict's max_bytes is the client's error (400), whatever is
// evicted; one that does not fit now, with eviction off, is 507 (it may fit after deletes).
TEST(SessionTest, DictEntryLargerThanMaxBytesIs400AndFullIs507) {
  test::ScopedSegment seg;
  WorkerProcess worker(seg.get());
  Client client(worker.port());
  Response r;
  for (std::string_view dict : {"none", "clock"}) {
    std::string options = "{\"max_bytes\":200,\"eviction\":\"" + std::string(dict) + "\"}";
    ASSERT_TRUE(client.Send(Request("POST", "/v1/dicts/" + std::string(dict), options)));
    ASSERT_TRUE(client.Read(&r));
    ASSERT_EQ(r.status, 201) << r.body;
    // Charged: key 1 + content type 24 + value + 40.
    ASSERT_TRUE(client.Send(
        Request("PUT", "/v1/dicts/" + std::string(dict) + "/a", std::string(150, 'v'))));
    ASSERT_TRUE(client.Read(&r));
    EXPECT_EQ(r.status, 400) << dict;
    EXPECT_TRUE(IsJsonError(r, "InvalidArgument")) << r.body;
    EXPECT_NE(r.body.find("larger than the dict's max_bytes"), std::string::npos) << r.body;
    for (std::string_view key : {"a", "b"}) {
      ASSERT_TRUE(client.Send(Request(
          "PUT", "/v1/dicts/" + std::string(dict) + "/" + std::string(key), std::string(50, 'v'))));
      ASSERT_TRUE(client.Read(&r));
    }
    if (dict == "none") {
      EXPECT_EQ(r.status, 507) << r.body;
      EXPECT_TRUE(IsJsonError(r, "OutOfSpace")) << r.body;
    } else {
      EXPECT_EQ(r.status, 200) << r.body;  // "a" was evicted for it.
    }
  }
}

}  // namespace
}  // namespace shm
