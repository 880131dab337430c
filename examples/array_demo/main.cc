// array_demo: many workers compute one numpy-like array together, in shared memory.
//
// The stock server (same flags, manager, forked workers, built-in /v1 API) plus three routes.
// The client creates the arrays through /v1/arrays (inputs uploaded as .npy), then fires the
// stripe requests concurrently; whichever worker answers computes its stripe and writes it in
// place into the shared result, which the client reads back with GET /v1/arrays/{name}/data:
//
//   POST /demo/matmul/{i}?stripes=S      rows i*n/S .. (i+1)*n/S of demo.C = demo.A @ demo.B
//   POST /demo/mandelbrot/{i}?stripes=S&max_iter=N   rows of demo.mandel (int32 escape counts)
//   POST /demo/hist   body: .npy float64 samples in [0, 1]; adds each to demo.hist (int64 bins)
//
// A stripe is computed outside any lock and copied into the shared array through the typed write
// view (NdArray::Update<T>), so the array's lock is held only for the copy and workers run in
// parallel; a worker killed mid-copy is rolled back by the next lock holder. The histogram uses
// lock-free per-element atomics (NdArray::FetchAdd). Bad input (stripe out of range, arrays of
// the wrong dtype or shape, a sample outside [0, 1]) is a 400 and changes nothing.
// See docs/array-demo.md; examples/array_demo/run drives it from numpy.
#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "shm/ndarray.h"
#include "shm/npy.h"
#include "shm/router.h"
#include "shm/server_main.h"
#include "shm/slice.h"

namespace {

using shm::ArrayData;
using shm::DType;
using shm::NdArray;
using shm::RequestContext;
using shm::Slice;
using shm::Status;

constexpr char kMatrixA[] = "demo.A";
constexpr char kMatrixB[] = "demo.B";
constexpr char kMatrixC[] = "demo.C";
constexpr char kMandelbrot[] = "demo.mandel";
constexpr char kHistogram[] = "demo.hist";

constexpr int64_t kMaxStripes = 4096;
constexpr int64_t kMaxIterations = 100000;
constexpr int64_t kDefaultIterations = 256;
// Most inner-loop steps (multiply-adds, Mandelbrot iterations) one request may ask for, a few
// seconds of one core: more is a 400 asking for more stripes.
constexpr int64_t kMaxStepsPerRequest = int64_t{1} << 31;

// The Mandelbrot region: pixel (i, j) of an h x w image is the point
// (kRealMin + j * (kRealSpan / w), kImagMin + i * (kImagSpan / h)).
constexpr double kRealMin = -2.2;
constexpr double kRealSpan = 3.0;
constexpr double kImagMin = -1.2;
constexpr double kImagSpan = 2.4;

// A strict integer in [min, max]: digits with an optional '-', nothing else.
Status ParseBounded(std::string_view what, std::string_view text, int64_t min, int64_t max,
                    int64_t* value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  if (text.empty() || ec != std::errc() || ptr != end || *value < min || *value > max) {
    return Status::InvalidArgument(std::string(what) + " must be an integer in [" +
                                   std::to_string(min) + ", " + std::to_string(max) + "], got '" +
                                   std::string(text) + "'");
  }
  return Status::OK();
}

Status CheckQueryKeys(const RequestContext& context,
                      std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, unused] : context.query) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Status::InvalidArgument("unknown query parameter '" + key + "'");
    }
  }
  return Status::OK();
}

Status QueryBounded(const RequestContext& context, const std::string& key, int64_t fallback,
                    int64_t min, int64_t max, int64_t* value) {
  auto it = context.query.find(key);
  if (it == context.query.end()) {
    *value = fallback;
    return Status::OK();
  }
  return ParseBounded(key, it->second, min, max, value);
}

// Opens `name` and checks it is a `dtype` array of `ndim` dimensions.
Status OpenArray(RequestContext& context, const char* name, DType dtype, int ndim, NdArray* array) {
  SHM_RETURN_IF_ERROR(NdArray::Open(context.segment, name, array));
  if (array->dtype() != dtype || static_cast<int>(array->shape().size()) != ndim) {
    return Status::InvalidArgument(std::string(name) + " must be a " + std::to_string(ndim) +
                                   "-d " + std::string(shm::DTypeName(dtype)) + " array, it is " +
                                   std::string(shm::DTypeName(array->dtype())) + " of shape " +
                                   shm::ShapeToString(array->shape()));
  }
  return Status::OK();
}

// Rows [first, last) of stripe {i} of ?stripes=S over `rows` rows (the last stripe may be empty
// when there are more stripes than rows).
struct Stripe {
  int64_t index = 0;
  int64_t first = 0;
  int64_t last = 0;
};

Status ParseStripe(const RequestContext& context, int64_t rows, Stripe* stripe) {
  int64_t stripes = 0;
  SHM_RETURN_IF_ERROR(QueryBounded(context, "stripes", 1, 1, kMaxStripes, &stripes));
  SHM_RETURN_IF_ERROR(
      ParseBounded("stripe index", context.params[0], 0, stripes - 1, &stripe->index));
  stripe->first = rows * stripe->index / stripes;
  stripe->last = rows * (stripe->index + 1) / stripes;
  return Status::OK();
}

// OK when `rows` rows of `steps_per_row` steps each are at most kMaxStepsPerRequest (checked by
// division: the product could overflow).
Status CheckWork(int64_t rows, int64_t steps_per_row) {
  if (rows > 0 && steps_per_row > kMaxStepsPerRequest / rows) {
    return Status::InvalidArgument("a stripe of " + std::to_string(rows) + " rows x " +
                                   std::to_string(steps_per_row) + " steps is more than " +
                                   std::to_string(kMaxStepsPerRequest) + ": use more stripes");
  }
  return Status::OK();
}

// A long stripe runs on the worker's only thread, where its heartbeat timer cannot fire: beat
// once per row so the supervisor does not take the busy worker for a hung one.
void Beat(RequestContext& context) { context.segment->Heartbeat(context.worker_index); }

// Copies C-order rows into rows [first, last) of a 2-d array, in place, under the array's lock
// (with its undo record): the only time the shared array is locked.
template <class T>
Status WriteRows(NdArray* array, const Stripe& stripe, const std::vector<T>& rows) {
  const int64_t width = array->shape()[1];
  return array->Update<T>(Slice().Range(stripe.first, stripe.last), [&](shm::StridedSpan<T>& span) {
    for (int64_t i = 0; i < span.shape(0); ++i) {
      for (int64_t j = 0; j < width; ++j) {
        span.at({i, j}) = rows[i * width + j];
      }
    }
  });
}

void SetJson(shm::HttpResponse* response, const boost::json::object& body) {
  response->result(shm::http::status::ok);
  response->set(shm::http::field::content_type, "application/json");
  response->body() = boost::json::serialize(body) + "\n";
}

void SetStripeAnswer(const char* job, const Stripe& stripe, shm::HttpResponse* response) {
  SetJson(response, {{"job", job},
                     {"stripe", stripe.index},
                     {"rows", boost::json::array{stripe.first, stripe.last}}});
}

// C[first:last] = A[first:last] @ B, each element summed over k in ascending order from 0.0.
Status MatmulStripe(RequestContext& context, shm::HttpResponse* response) {
  SHM_RETURN_IF_ERROR(CheckQueryKeys(context, {"stripes"}));
  NdArray a, b, c;
  SHM_RETURN_IF_ERROR(OpenArray(context, kMatrixA, DType::kFloat64, 2, &a));
  SHM_RETURN_IF_ERROR(OpenArray(context, kMatrixB, DType::kFloat64, 2, &b));
  SHM_RETURN_IF_ERROR(OpenArray(context, kMatrixC, DType::kFloat64, 2, &c));
  const int64_t n = a.shape()[0], inner = a.shape()[1], m = b.shape()[1];
  if (b.shape()[0] != inner || c.shape()[0] != n || c.shape()[1] != m) {
    return Status::InvalidArgument("shapes do not multiply: A " + shm::ShapeToString(a.shape()) +
                                   " @ B " + shm::ShapeToString(b.shape()) + " into C " +
                                   shm::ShapeToString(c.shape()));
  }
  Stripe stripe;
  SHM_RETURN_IF_ERROR(ParseStripe(context, n, &stripe));
  const int64_t rows = stripe.last - stripe.first;
  SHM_RETURN_IF_ERROR(CheckWork(rows, inner * m));
  // Copies of the inputs: the inputs' locks are held only while copying.
  ArrayData a_rows, b_all;
  SHM_RETURN_IF_ERROR(a.ReadSlice(Slice().Range(stripe.first, stripe.last), &a_rows));
  SHM_RETURN_IF_ERROR(b.ReadSlice(Slice(), &b_all));
  const double* a_data = a_rows.data<double>();
  const double* b_data = b_all.data<double>();
  std::vector<double> out(rows * m, 0.0);
  for (int64_t i = 0; i < rows; ++i) {
    Beat(context);
    for (int64_t k = 0; k < inner; ++k) {
      const double a_ik = a_data[i * inner + k];
      for (int64_t j = 0; j < m; ++j) out[i * m + j] += a_ik * b_data[k * m + j];
    }
  }
  SHM_RETURN_IF_ERROR(WriteRows(&c, stripe, out));
  SetStripeAnswer("matmul", stripe, response);
  return Status::OK();
}

// Escape count of one point: z <- z^2 + c from 0 until |z|^2 > 4, at most max_iter steps.
int32_t EscapeCount(double cx, double cy, int32_t max_iter) {
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

Status MandelbrotStripe(RequestContext& context, shm::HttpResponse* response) {
  SHM_RETURN_IF_ERROR(CheckQueryKeys(context, {"stripes", "max_iter"}));
  int64_t max_iter = 0;
  SHM_RETURN_IF_ERROR(
      QueryBounded(context, "max_iter", kDefaultIterations, 1, kMaxIterations, &max_iter));
  NdArray image;
  SHM_RETURN_IF_ERROR(OpenArray(context, kMandelbrot, DType::kInt32, 2, &image));
  const int64_t height = image.shape()[0], width = image.shape()[1];
  Stripe stripe;
  SHM_RETURN_IF_ERROR(ParseStripe(context, height, &stripe));
  const int64_t rows = stripe.last - stripe.first;
  SHM_RETURN_IF_ERROR(CheckWork(rows, width * max_iter));
  const double dx = kRealSpan / static_cast<double>(width);
  const double dy = kImagSpan / static_cast<double>(height);
  std::vector<int32_t> out;
  out.reserve(rows * width);
  for (int64_t i = stripe.first; i < stripe.last; ++i) {
    Beat(context);
    const double cy = kImagMin + static_cast<double>(i) * dy;
    for (int64_t j = 0; j < width; ++j) {
      const double cx = kRealMin + static_cast<double>(j) * dx;
      out.push_back(EscapeCount(cx, cy, static_cast<int32_t>(max_iter)));
    }
  }
  SHM_RETURN_IF_ERROR(WriteRows(&image, stripe, out));
  SetStripeAnswer("mandelbrot", stripe, response);
  return Status::OK();
}

// Sample x in [0, 1] goes to bin min(floor(x * bins), bins - 1) (1.0 into the last bin, as
// numpy.histogram's closed last edge).
Status AddToHistogram(RequestContext& context, shm::HttpResponse* response) {
  SHM_RETURN_IF_ERROR(CheckQueryKeys(context, {}));
  NdArray histogram;
  SHM_RETURN_IF_ERROR(OpenArray(context, kHistogram, DType::kInt64, 1, &histogram));
  const int64_t bins = histogram.shape()[0];
  if (bins == 0) return Status::InvalidArgument(std::string(kHistogram) + " has no bins");
  ArrayData samples;
  SHM_RETURN_IF_ERROR(shm::ParseNpy(context.request.body(), &samples));
  if (samples.dtype != DType::kFloat64 || samples.shape.size() != 1) {
    return Status::InvalidArgument("samples must be a 1-d float64 .npy, got " +
                                   std::string(shm::DTypeName(samples.dtype)) + " of shape " +
                                   shm::ShapeToString(samples.shape));
  }
  const double* x = samples.data<double>();
  // Every sample is checked before the first add, so a bad batch changes nothing.
  for (int64_t i = 0; i < samples.size(); ++i) {
    if (!(x[i] >= 0.0 && x[i] <= 1.0)) {
      return Status::InvalidArgument("sample " + std::to_string(i) + " is " + std::to_string(x[i]) +
                                     ", outside [0, 1]");
    }
  }
  for (int64_t i = 0; i < samples.size(); ++i) {
    int64_t bin = std::min(static_cast<int64_t>(x[i] * static_cast<double>(bins)), bins - 1);
    shm::Scalar old;
    SHM_RETURN_IF_ERROR(histogram.FetchAdd({bin}, shm::Scalar::Int(1), &old));
  }
  SetJson(response, {{"added", samples.size()}, {"bins", bins}});
  return Status::OK();
}

void AddDemoRoutes(shm::Router* router) {
  router->Add(shm::http::verb::post, "/demo/matmul/{stripe}", MatmulStripe);
  router->Add(shm::http::verb::post, "/demo/mandelbrot/{stripe}", MandelbrotStripe);
  router->Add(shm::http::verb::post, "/demo/hist", AddToHistogram);
}

}  // namespace

int main(int argc, char** argv) { return shm::ServerMain(argc, argv, AddDemoRoutes); }
