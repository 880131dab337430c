// End-to-end test of the array sharing demo (examples/array_demo): a small instance of each job
// driven over HTTP from C++ and checked exactly against a C++ reference. The binary is
// $ARRAY_DEMO_BIN, else "array_demo" next to $SHMSTATE_BIN (both built into the build directory's
// top; examples are on by default).
#include <gtest/gtest.h>
#include <unistd.h>

#include <barrier>
#include <boost/json.hpp>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/http_client.h"
#include "integration/server_process.h"
#include "shm/ndarray.h"
#include "shm/npy.h"

namespace shm::test {
namespace {

std::string ArrayDemoBinary() {
  if (const char* bin = std::getenv("ARRAY_DEMO_BIN")) return bin;
  std::string shmstate = ShmstateBinary();
  size_t slash = shmstate.rfind('/');
  return slash == std::string::npos ? "" : shmstate.substr(0, slash + 1) + "array_demo";
}

std::string Npy(const ArrayData& data) {
  std::string out;
  EXPECT_TRUE(WriteNpy(data, &out).ok());
  return out;
}

class ArrayDemoTest : public testing::Test {
 protected:
  void SetUp() override {
    if (access(ArrayDemoBinary().c_str(), X_OK) != 0) {
      GTEST_SKIP() << "no array_demo binary at '" << ArrayDemoBinary()
                   << "' (configured with -DSHM_BUILD_EXAMPLES=OFF?)";
    }
    ASSERT_STARTED(server_.Start({"--workers", "2"}, ArrayDemoBinary()));
    ASSERT_TRUE(server_.WorkerPids(&worker_pids_).ok());
  }

  void TearDown() override {
    if (server_.pid() <= 0) return;
    EXPECT_EQ(server_.Stop().code, 0) << server_.stderr_text();
    EXPECT_TRUE(ShmEntriesOf(server_.name()).empty());
  }

  // POSTs every (path, body) from its own thread and connection, all released at once; returns
  // the X-Worker-Pid of each answer. Fails the test on any non-200.
  std::vector<std::string> FanOut(const std::vector<std::string>& paths,
                                  const std::vector<std::string>& bodies) {
    std::vector<HttpResult> results(paths.size());
    std::vector<Status> statuses(paths.size());
    std::barrier start(static_cast<ptrdiff_t>(paths.size()));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < paths.size(); ++i) {
      threads.emplace_back([&, i] {
        HttpClient client(server_.port());
        start.arrive_and_wait();
        statuses[i] = client.Post(paths[i], bodies[i], &results[i]);
      });
    }
    for (std::thread& t : threads) t.join();
    std::vector<std::string> pids;
    for (size_t i = 0; i < paths.size(); ++i) {
      EXPECT_TRUE(statuses[i].ok()) << paths[i] << ": " << statuses[i].ToString();
      EXPECT_EQ(results[i].status, 200) << paths[i] << ": " << results[i].body;
      pids.push_back(results[i].Header("X-Worker-Pid"));
    }
    return pids;
  }

  void ExpectAllFromWorkers(const std::vector<std::string>& pids) {
    std::set<std::string> workers;
    for (pid_t pid : worker_pids_) workers.insert(std::to_string(pid));
    for (const std::string& pid : pids) EXPECT_TRUE(workers.count(pid)) << "pid " << pid;
  }

  HttpResult Send(const std::string& method, const std::string& target,
                  const std::string& body = "") {
    HttpClient client(server_.port());
    HttpResult result;
    Status s = client.Request(method, target, body, &result);
    EXPECT_TRUE(s.ok()) << method << " " << target << ": " << s.ToString();
    return result;
  }

  void Create(const std::string& name, const std::string& dtype, const std::string& shape) {
    HttpResult r =
        Send("POST", "/v1/arrays/" + name, "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + "}");
    ASSERT_EQ(r.status, 201) << r.body;
  }

  ArrayData Fetch(const std::string& name) {
    HttpResult r = Send("GET", "/v1/arrays/" + name + "/data?format=npy");
    EXPECT_EQ(r.status, 200) << r.body;
    ArrayData data;
    EXPECT_TRUE(ParseNpy(r.body, &data).ok());
    return data;
  }

  static std::vector<std::string> StripePaths(const std::string& job, int stripes,
                                              const std::string& query = "") {
    std::vector<std::string> paths;
    for (int i = 0; i < stripes; ++i) {
      paths.push_back("/demo/" + job + "/" + std::to_string(i) +
                      "?stripes=" + std::to_string(stripes) + query);
    }
    return paths;
  }

  ServerProcess server_{"array-demo"};
  std::vector<pid_t> worker_pids_;
};

TEST_F(ArrayDemoTest, MatmulStripesEqualTheReferenceProduct) {
  constexpr int64_t kN = 24, kInner = 17, kM = 19;
  constexpr int kStripes = 7;  // Does not divide kN: stripes of 3 and 4 rows.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<double> a(kN * kInner), b(kInner * kM);
  for (double& x : a) x = uniform(rng);
  for (double& x : b) x = uniform(rng);
  ASSERT_EQ(Send("POST", "/v1/arrays/demo.A", Npy(ArrayData::From({kN, kInner}, a))).status, 201);
  ASSERT_EQ(Send("POST", "/v1/arrays/demo.B", Npy(ArrayData::From({kInner, kM}, b))).status, 201);
  Create("demo.C", "float64", "[24,19]");

  ExpectAllFromWorkers(FanOut(StripePaths("matmul", kStripes), std::vector<std::string>(kStripes)));

  ArrayData c = Fetch("demo.C");
  ASSERT_EQ(c.dtype, DType::kFloat64);
  ASSERT_EQ(c.shape, (std::vector<int64_t>{kN, kM}));
  // The same summation order as the server (k ascending from 0.0), so equality is exact.
  for (int64_t i = 0; i < kN; ++i) {
    for (int64_t j = 0; j < kM; ++j) {
      double sum = 0.0;
      for (int64_t k = 0; k < kInner; ++k) sum += a[i * kInner + k] * b[k * kM + j];
      ASSERT_EQ(c.data<double>()[i * kM + j], sum) << "C[" << i << "," << j << "]";
    }
  }
}

int32_t ReferenceEscapeCount(double cx, double cy, int32_t max_iter) {
  double x = 0, y = 0;
  int32_t n = 0;
  for (; n < max_iter; ++n) {
    const double x2 = x * x, y2 = y * y;
    if (x2 + y2 > 4.0) break;
    y = 2.0 * x * y + cy;
    x = x2 - y2 + cx;
  }
  return n;
}

TEST_F(ArrayDemoTest, MandelbrotStripesEqualTheReferenceImage) {
  constexpr int64_t kHeight = 30, kWidth = 40;
  constexpr int32_t kMaxIter = 60;
  constexpr int kStripes = 8;
  Create("demo.mandel", "int32", "[30,40]");

  ExpectAllFromWorkers(FanOut(StripePaths("mandelbrot", kStripes, "&max_iter=60"),
                              std::vector<std::string>(kStripes)));

  ArrayData image = Fetch("demo.mandel");
  ASSERT_EQ(image.dtype, DType::kInt32);
  ASSERT_EQ(image.shape, (std::vector<int64_t>{kHeight, kWidth}));
  std::set<int32_t> distinct;
  for (int64_t i = 0; i < kHeight; ++i) {
    for (int64_t j = 0; j < kWidth; ++j) {
      const double cx = -2.2 + static_cast<double>(j) * (3.0 / kWidth);
      const double cy = -1.2 + static_cast<double>(i) * (2.4 / kHeight);
      int32_t pixel = image.data<int32_t>()[i * kWidth + j];
      ASSERT_EQ(pixel, ReferenceEscapeCount(cx, cy, kMaxIter)) << "pixel " << i << "," << j;
      distinct.insert(pixel);
    }
  }
  EXPECT_GT(distinct.size(), 10u);  // A real image, not a constant the zero fill could match.
  EXPECT_TRUE(distinct.count(kMaxIter));
}

TEST_F(ArrayDemoTest, HistogramOfConcurrentBatchesCountsEverySample) {
  constexpr int64_t kBins = 10;
  constexpr int kBatches = 6, kPerBatch = 500;
  Create("demo.hist", "int64", "[10]");
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<int64_t> expected(kBins, 0);
  std::vector<std::string> bodies;
  for (int batch = 0; batch < kBatches; ++batch) {
    std::vector<double> samples(kPerBatch);
    for (double& x : samples) x = uniform(rng) * uniform(rng);  // Skewed toward 0.
    if (batch == 0) samples[0] = 1.0;                           // The closed last edge.
    for (double x : samples) ++expected[std::min<int64_t>(static_cast<int64_t>(x * kBins), 9)];
    bodies.push_back(Npy(ArrayData::From({kPerBatch}, samples)));
  }

  ExpectAllFromWorkers(FanOut(std::vector<std::string>(kBatches, "/demo/hist"), bodies));

  ArrayData hist = Fetch("demo.hist");
  ASSERT_EQ(hist.dtype, DType::kInt64);
  ASSERT_EQ(hist.shape, (std::vector<int64_t>{kBins}));
  int64_t total = 0;
  for (int64_t bin = 0; bin < kBins; ++bin) {
    EXPECT_EQ(hist.data<int64_t>()[bin], expected[bin]) << "bin " << bin;
    total += hist.data<int64_t>()[bin];
  }
  EXPECT_EQ(total, kBatches * kPerBatch);
}

TEST_F(ArrayDemoTest, BadRequestsAreRefusedAndChangeNothing) {
  Create("demo.hist", "int64", "[4]");
  std::vector<double> bad = {0.5, 0.25, 1.5};
  HttpResult r = Send("POST", "/demo/hist", Npy(ArrayData::From({3}, bad)));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("outside [0, 1]"), std::string::npos) << r.body;
  std::vector<int32_t> wrong_dtype = {0};
  EXPECT_EQ(Send("POST", "/demo/hist", Npy(ArrayData::From({1}, wrong_dtype))).status, 400);
  EXPECT_EQ(Send("POST", "/demo/hist", "not npy").status, 400);
  EXPECT_EQ(Send("POST", "/demo/hist?x=1", "").status, 400);
  ArrayData hist = Fetch("demo.hist");
  for (int64_t bin = 0; bin < 4; ++bin) EXPECT_EQ(hist.data<int64_t>()[bin], 0);

  Create("demo.mandel", "int32", "[4,4]");
  for (const char* target : {"/demo/mandelbrot/4?stripes=4", "/demo/mandelbrot/-1?stripes=4",
                             "/demo/mandelbrot/1x?stripes=4", "/demo/mandelbrot/0?stripes=0",
                             "/demo/mandelbrot/0?stripes=4097", "/demo/mandelbrot/0?max_iter=0",
                             "/demo/mandelbrot/0?max_iter=1.5", "/demo/mandelbrot/0?unknown=1"}) {
    r = Send("POST", target);
    EXPECT_EQ(r.status, 400) << target << ": " << r.body;
  }
  ArrayData image = Fetch("demo.mandel");
  for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(image.data<int32_t>()[i], 0);
  // One stripe of 30000 pixels x 100000 iterations is more work than one request may ask for.
  EXPECT_EQ(Send("DELETE", "/v1/arrays/demo.mandel").status, 204);
  Create("demo.mandel", "int32", "[1,30000]");
  r = Send("POST", "/demo/mandelbrot/0?max_iter=100000");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("use more stripes"), std::string::npos) << r.body;

  // Missing inputs are 404; inputs of the wrong kind or shape are 400 naming them.
  EXPECT_EQ(Send("POST", "/demo/matmul/0").status, 404);
  Create("demo.A", "float64", "[2,3]");
  Create("demo.B", "float64", "[2,3]");
  Create("demo.C", "float64", "[2,3]");
  r = Send("POST", "/demo/matmul/0");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("shapes do not multiply"), std::string::npos) << r.body;
  EXPECT_EQ(Send("DELETE", "/v1/arrays/demo.mandel").status, 204);
  Create("demo.mandel", "float64", "[4,4]");
  r = Send("POST", "/demo/mandelbrot/0");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("demo.mandel must be a 2-d int32 array"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace shm::test
