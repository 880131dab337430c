#include <gtest/gtest.h>

#include <string>

#include "api_test_util.h"
#include "shm/counter.h"
#include "shm/ndarray.h"
#include "shm/npy.h"

namespace shm {
namespace {

namespace json = boost::json;
using test::ErrorCode;
using test::Json;
using V = http::verb;

class ArraysApiTest : public testing::Test, public test::ApiFixture {
 protected:
  // Creates "m": int32 (3, 4) holding 0..11.
  void MakeArange() {
    HttpResponse r = Call(V::post, "/v1/arrays/m", R"({"dtype": "int32", "shape": [3, 4]})");
    ASSERT_EQ(r.result_int(), 201u) << r.body();
    r = Call(V::put, "/v1/arrays/m/data", "[[0,1,2,3],[4,5,6,7],[8,9,10,11]]");
    ASSERT_EQ(r.result_int(), 200u) << r.body();
  }
  json::value Data(std::string_view target) {
    HttpResponse r = Call(V::get, target);
    EXPECT_EQ(r.result_int(), 200u) << r.body();
    return Json(r).as_object()["data"];
  }
};

TEST_F(ArraysApiTest, CreateAndMetadata) {
  HttpResponse r =
      Call(V::post, "/v1/arrays/a", R"({"dtype": "uint8", "shape": [2, 3], "fill": 7})");
  ASSERT_EQ(r.result_int(), 201u) << r.body();
  EXPECT_EQ(test::PidHeader(r), test::MyPid());
  EXPECT_EQ(Json(r), json::parse(R"({"dtype":"uint8","shape":[2,3],"nbytes":6,"version":0})"));
  EXPECT_EQ(Json(Call(V::get, "/v1/arrays/a")), Json(r));
  EXPECT_EQ(Data("/v1/arrays/a/data"), json::parse("[[7,7,7],[7,7,7]]"));
  EXPECT_EQ(Call(V::post, "/v1/arrays/a", R"({"dtype": "uint8", "shape": [1]})").result_int(),
            409u);
  EXPECT_EQ(Call(V::get, "/v1/arrays/nope").result_int(), 404u);
  Counter c;
  ASSERT_TRUE(Counter::Open(segment(), "c", {OpenMode::kCreateIfMissing, 0, 0}, &c).ok());
  EXPECT_EQ(ErrorCode(Call(V::get, "/v1/arrays/c")), "WrongType");
  EXPECT_EQ(Call(V::delete_, "/v1/arrays/a").result_int(), 204u);
  EXPECT_EQ(Call(V::get, "/v1/arrays/a").result_int(), 404u);
}

TEST_F(ArraysApiTest, BadCreatesAre400) {
  for (const char* body :
       {R"({"dtype": "float16", "shape": [2]})", R"({"dtype": "int8", "shape": [2], "fill": 300})",
        R"({"dtype": "int8"})", R"({"shape": []})", R"({"shape": [1,1,1,1,1,1,1,1,1]})",
        R"({"shape": [-1]})", R"({"shape": [2.5]})", R"({"shape": [2], "colour": 1})",
        R"({"shape": [2], "fill": "x"})", "not json", "[1,2]"}) {
    HttpResponse r = Call(V::post, "/v1/arrays/bad", body);
    EXPECT_EQ(r.result_int(), 400u) << body << " -> " << r.body();
  }
  EXPECT_EQ(Call(V::post, "/v1/arrays/..", R"({"shape": [2]})").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/arrays/bad").result_int(), 404u);
}

TEST_F(ArraysApiTest, SlicedReadsAndWrites) {
  MakeArange();
  EXPECT_EQ(Data("/v1/arrays/m/data?slice=1:,::-1"), json::parse("[[7,6,5,4],[11,10,9,8]]"));
  HttpResponse r = Call(V::get, "/v1/arrays/m/data?slice=1,2");
  EXPECT_EQ(Json(r), json::parse(R"({"dtype":"int32","shape":[],"data":6})"));
  r = Call(V::put, "/v1/arrays/m/data?slice=::2,::-2", R"({"data": [[-1, -2], [-3, -4]]})");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(Json(r).as_object()["version"], 2);
  EXPECT_EQ(Data("/v1/arrays/m/data"), json::parse("[[0,-2,2,-1],[4,5,6,7],[8,-4,10,-3]]"));
  ASSERT_EQ(Call(V::put, "/v1/arrays/m/data?slice=...,0", "9").result_int(), 200u);
  EXPECT_EQ(Data("/v1/arrays/m/data?slice=:,0"), json::parse("[9,9,9]"));
  // Floats are truncated toward zero into an int array, as numpy's setitem.
  ASSERT_EQ(Call(V::put, "/v1/arrays/m/data?slice=0,:2", "[2.7, -2.7]").result_int(), 200u);
  EXPECT_EQ(Data("/v1/arrays/m/data?slice=0,:2"), json::parse("[2,-2]"));

  r = Call(V::put, "/v1/arrays/m/data?slice=0", "[1, 2, 3]");
  EXPECT_EQ(r.result_int(), 400u);
  EXPECT_NE(r.body().find("slice has shape (4,), data has shape (3,)"), std::string::npos);
  for (const char* body :
       {"[[1,2],[3]]", "[1, \"x\"]", "{\"data\": 1, \"x\": 2}", "[1e400]", "[1,2,3,3000000000]"}) {
    EXPECT_EQ(Call(V::put, "/v1/arrays/m/data?slice=0", body).result_int(), 400u) << body;
  }
  EXPECT_EQ(Call(V::get, "/v1/arrays/m/data?slice=5").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/arrays/m/data?slice=::0").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/arrays/m/data?format=csv").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/arrays/m/data?colour=red").result_int(), 400u);
  EXPECT_EQ(Data("/v1/arrays/m/data?slice=0"), json::parse("[2,-2,2,-1]"));  // Unchanged.
}

TEST_F(ArraysApiTest, NpyBodiesInAndOut) {
  std::string npy;
  ASSERT_TRUE(WriteNpy(ArrayData::From<float>({2, 2}, {1.5f, 2.5f, -1.0f, 0.0f}), &npy).ok());
  HttpResponse r = Call(V::post, "/v1/arrays/f", npy);
  ASSERT_EQ(r.result_int(), 201u) << r.body();
  EXPECT_EQ(Json(r), json::parse(R"({"dtype":"float32","shape":[2,2],"nbytes":16,"version":0})"));
  r = Call(V::get, "/v1/arrays/f/data?format=npy&slice=::-1");
  ASSERT_EQ(r.result_int(), 200u);
  ArrayData back;
  ASSERT_TRUE(ParseNpy(r.body(), &back).ok());
  EXPECT_EQ(back.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(back.Get(0), Scalar::Float(-1.0));

  std::string row;
  ASSERT_TRUE(WriteNpy(ArrayData::From<float>({2}, {8.0f, 9.0f}), &row).ok());
  ASSERT_EQ(Call(V::put, "/v1/arrays/f/data?slice=1", row).result_int(), 200u);
  EXPECT_EQ(Data("/v1/arrays/f/data?slice=1"), json::parse("[8.0, 9.0]"));
  std::string doubles;
  ASSERT_TRUE(WriteNpy(ArrayData::From<double>({2}, {8.0, 9.0}), &doubles).ok());
  r = Call(V::put, "/v1/arrays/f/data?slice=1", doubles);
  EXPECT_EQ(r.result_int(), 400u);
  EXPECT_NE(r.body().find("dtype mismatch: array is float32, data is float64"), std::string::npos);
  EXPECT_EQ(Call(V::post, "/v1/arrays/g", npy.substr(0, npy.size() - 1)).result_int(), 400u);
}

TEST_F(ArraysApiTest, OpsAndReductions) {
  MakeArange();
  HttpResponse r = Call(V::post, "/v1/arrays/m/ops", R"({"op": "mul", "value": 2, "slice": "1"})");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(Data("/v1/arrays/m/data?slice=1"), json::parse("[8,10,12,14]"));
  r = Call(V::post, "/v1/arrays/m/ops",
           R"({"op": "add", "array": [[1, 2], [3, 4]], "slice": "1:,:2"})");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(Data("/v1/arrays/m/data?slice=1:,:2"), json::parse("[[9,12],[11,13]]"));
  for (const char* body :
       {R"({"op": "pow", "value": 2})", R"({"op": "add"})",
        R"({"op": "add", "value": 1, "array": [1]})", R"({"op": "add", "array": [1, 2]})",
        R"({"op": "add", "value": 1, "slice": 3})"}) {
    EXPECT_EQ(Call(V::post, "/v1/arrays/m/ops", body).result_int(), 400u) << body;
  }

  r = Call(V::get, "/v1/arrays/m/reduce?op=sum");
  EXPECT_EQ(Json(r), json::parse(R"({"value": 98})")) << r.body();
  EXPECT_EQ(Json(Call(V::get, "/v1/arrays/m/reduce?op=max&axis=1")),
            json::parse(R"({"value": [3, 14, 13]})"));
  EXPECT_EQ(Json(Call(V::get, "/v1/arrays/m/reduce?op=mean&slice=0")),
            json::parse(R"({"value": 1.5})"));
  EXPECT_EQ(Call(V::get, "/v1/arrays/m/reduce?op=sum&axis=2").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/arrays/m/reduce?op=sum&axis=1.5").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/arrays/m/reduce?op=median").result_int(), 400u);
}

TEST_F(ArraysApiTest, AtomicsAnswerTheOldValue) {
  ASSERT_EQ(Call(V::post, "/v1/arrays/h", R"({"dtype": "int64", "shape": [4]})").result_int(),
            201u);
  HttpResponse r =
      Call(V::post, "/v1/arrays/h/atomic", R"({"op": "add", "index": [2], "value": 5})");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(Json(r), json::parse(R"({"old": 0})"));
  r = Call(V::post, "/v1/arrays/h/atomic",
           R"({"op": "cas", "index": [-2], "value": 1, "expected": 4})");
  EXPECT_EQ(r.result_int(), 409u);
  EXPECT_EQ(Json(r).as_object()["old"], 5);
  r = Call(V::post, "/v1/arrays/h/atomic",
           R"({"op": "cas", "index": [2], "value": 1, "expected": 5})");
  EXPECT_EQ(Json(r), json::parse(R"({"old": 5})"));
  EXPECT_EQ(Data("/v1/arrays/h/data"), json::parse("[0,0,1,0]"));
  for (const char* body :
       {R"({"op": "add", "index": [4], "value": 1})",
        R"({"op": "add", "index": [0, 0], "value": 1})",
        R"({"op": "add", "index": [0], "value": 0.5})",
        R"({"op": "cas", "index": [0], "value": 1})", R"({"op": "xor", "index": [0], "value": 1})",
        R"({"op": "add", "value": 1})"}) {
    EXPECT_EQ(Call(V::post, "/v1/arrays/h/atomic", body).result_int(), 400u) << body;
  }
}

}  // namespace
}  // namespace shm
