#include "shm/npy.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace shm {
namespace {

struct Fixture {
  DType dtype;
  std::vector<int64_t> shape;
  std::string file;  // Bytes numpy 1.24's np.save wrote.
};

const std::vector<Fixture>& Fixtures() {
  static const std::vector<Fixture> fixtures = {
      // np.save(bool [True, False, True])
      {DType::kBool,
       {3},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }                      "
                   "                                      \x0a"
                   "\x01"
                   "\x00"
                   "\x01"
                   "",
                   131)},
      // np.save(int8 [-128, 0, 127])
      {DType::kInt8,
       {3},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '|i1', 'fortran_order': False, 'shape': (3,), }                      "
                   "                                      \x0a"
                   "\x80"
                   "\x00"
                   "\x7f"
                   "",
                   131)},
      // np.save(int16 [-2, 1, 300])
      {DType::kInt16,
       {3},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }                      "
                   "                                      \x0a"
                   "\xfe"
                   "\xff"
                   "\x01"
                   "\x00"
                   ",\x01"
                   "",
                   134)},
      // np.save(int32 (3,4) arange)
      {DType::kInt32,
       {3, 4},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }                    "
                   "                                      \x0a"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x01"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x02"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x03"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x04"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x05"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x06"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x07"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x08"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x09"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x0a"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x0b"
                   "\x00"
                   "\x00"
                   "\x00"
                   "",
                   176)},
      // np.save(int64 [-1, 2**40])
      {DType::kInt64,
       {2},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }                      "
                   "                                      \x0a"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x01"
                   "\x00"
                   "\x00"
                   "",
                   144)},
      // np.save(uint8 [0, 255])
      {DType::kUInt8,
       {2},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }                      "
                   "                                      \x0a"
                   "\x00"
                   "\xff"
                   "",
                   130)},
      // np.save(uint16 [65535])
      {DType::kUInt16,
       {1},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }                      "
                   "                                      \x0a"
                   "\xff"
                   "\xff"
                   "",
                   130)},
      // np.save(uint32 (2,1,2))
      {DType::kUInt32,
       {2, 1, 2},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '<u4', 'fortran_order': False, 'shape': (2, 1, 2), }                 "
                   "                                      \x0a"
                   "\x01"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x02"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x03"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x04"
                   "\x00"
                   "\x00"
                   "\x00"
                   "",
                   144)},
      // np.save(uint64 [2**64-1])
      {DType::kUInt64,
       {1},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }                      "
                   "                                      \x0a"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "\xff"
                   "",
                   136)},
      // np.save(float32 [1.5, -2, 0.25])
      {DType::kFloat32,
       {3},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }                      "
                   "                                      \x0a"
                   "\x00"
                   "\x00"
                   "\xc0"
                   "\x3f"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\xc0"
                   "\x00"
                   "\x00"
                   "\x80"
                   ">",
                   140)},
      // np.save(float64 0-d 2.5)
      {DType::kFloat64,
       {},
       std::string("\x93"
                   "NUMPY\x01"
                   "\x00"
                   "v\x00"
                   "{'descr': '<f8', 'fortran_order': False, 'shape': (), }                        "
                   "                                      \x0a"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x00"
                   "\x04"
                   "@",
                   136)},
  };
  return fixtures;
}

TEST(NpyTest, ParsesWhatNumpyWritesForEveryDType) {
  ASSERT_EQ(Fixtures().size(), static_cast<size_t>(kDTypeCount));
  for (const Fixture& f : Fixtures()) {
    SCOPED_TRACE(std::string(DTypeName(f.dtype)));
    ASSERT_TRUE(LooksLikeNpy(f.file));
    ArrayData data;
    Status s = ParseNpy(f.file, &data);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(data.dtype, f.dtype);
    EXPECT_EQ(data.shape, f.shape);
    EXPECT_EQ(data.bytes, f.file.substr(128));  // numpy aligns the data to 64 bytes.
  }
}

TEST(NpyTest, WritesByteForByteWhatNumpyWrites) {
  for (const Fixture& f : Fixtures()) {
    SCOPED_TRACE(std::string(DTypeName(f.dtype)));
    ArrayData data;
    data.dtype = f.dtype;
    data.shape = f.shape;
    data.bytes = f.file.substr(128);
    std::string out;
    ASSERT_TRUE(WriteNpy(data, &out).ok());
    EXPECT_EQ(out, f.file);
  }
}

TEST(NpyTest, ValuesSurviveARoundTrip) {
  const auto& int8 = Fixtures()[1];
  ArrayData data;
  ASSERT_TRUE(ParseNpy(int8.file, &data).ok());
  EXPECT_EQ(data.Get(0), Scalar::Int(-128));
  EXPECT_EQ(data.Get(2), Scalar::Int(127));
  ArrayData u64;
  ASSERT_TRUE(ParseNpy(Fixtures()[8].file, &u64).ok());
  EXPECT_EQ(u64.Get(0), Scalar::UInt(UINT64_MAX));
  ArrayData f32;
  ASSERT_TRUE(ParseNpy(Fixtures()[9].file, &f32).ok());
  EXPECT_EQ(f32.Get(2), Scalar::Float(0.25));
  ArrayData big = ArrayData::From<double>({2, 3, 0}, {});
  std::string file;
  ASSERT_TRUE(WriteNpy(big, &file).ok());
  ArrayData back;
  ASSERT_TRUE(ParseNpy(file, &back).ok());
  EXPECT_EQ(back.shape, big.shape);
  EXPECT_EQ(file.size() % 64, 0u);
}

std::string File(std::string_view dict, std::string_view data, char major = 1) {
  std::string header(dict);
  header += '\n';
  std::string file("\x93NUMPY", 6);
  file += major;
  file += '\0';
  if (major == 2) {
    for (int i = 0; i < 4; ++i) file += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  } else {
    file += static_cast<char>(header.size() & 0xff);
    file += static_cast<char>(header.size() >> 8);
  }
  return file + header + std::string(data);
}

TEST(NpyTest, AcceptsOtherSpellingsNumpyReads) {
  ArrayData data;
  // Keys in another order, double quotes, no trailing comma, no padding, version 2.0.
  Status s = ParseNpy(File("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<i2\"}",
                           std::string("\x01\x00\x02\x00", 4), 2),
                      &data);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(data.dtype, DType::kInt16);
  EXPECT_EQ(data.Get(1), Scalar::Int(2));
  ASSERT_TRUE(
      ParseNpy(File("{'descr': '<u1', 'fortran_order': False, 'shape': (1,), }", "x"), &data).ok());
  EXPECT_EQ(data.dtype, DType::kUInt8);
}

TEST(NpyTest, RefusesWhatItCannotHoldWithClearMessages) {
  struct Bad {
    std::string file;
    std::string message;
  };
  const std::string i4 = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
  const std::vector<Bad> bad = {
      {File("{'descr': '<i4', 'fortran_order': True, 'shape': (2,), }", std::string(8, '\0')),
       "Fortran order is not supported"},
      {File("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", std::string(8, '\0')),
       "big-endian"},
      {File("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", std::string(16, '\0')),
       "object dtype"},
      {File("{'descr': '<U5', 'fortran_order': False, 'shape': (2,), }", std::string(40, '\0')),
       "dtype '<U5' is not supported"},
      {File("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,), }", ""),
       "structured"},
      {File(i4, std::string(7, '\0')), "truncated data"},
      {File(i4, std::string(9, '\0')), "extra data"},
      {File(i4, "", 3), "format version 3"},
      {File("{'descr': '<i4', 'shape': (2,), }", std::string(8, '\0')), "lacks"},
      {File("{'descr': '<i4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", "0000"),
       "more than 8 dimensions"},
      {File("{'descr': '<i4', 'fortran_order': False, 'shape': (-1,), }", ""), "bad dimension"},
      {File("{'descr': '<i4', 'fortran_order': False, 'shape': (2,)", ""), "malformed"},
      {File("{'descr': '<i8', 'fortran_order': False, 'shape': (1073741824, 2), }", ""),
       "too large"},
      {File(i4, std::string(8, '\0')).substr(0, 20), "truncated header"},
      {std::string("\x93NUMPY\x01", 7), "truncated header"},
      {"PK\x03\x04 not npy", "no .npy magic"},
  };
  for (const Bad& b : bad) {
    ArrayData data;
    Status s = ParseNpy(b.file, &data);
    EXPECT_TRUE(s.IsInvalidArgument()) << b.message << ": " << s.ToString();
    EXPECT_NE(s.message().find(b.message), std::string_view::npos) << s.ToString();
  }
}

TEST(NpyTest, WriteRefusesInconsistentData) {
  ArrayData data = ArrayData::From<int32_t>({3}, {1, 2});
  std::string out;
  EXPECT_TRUE(WriteNpy(data, &out).IsInvalidArgument());
}

}  // namespace
}  // namespace shm
