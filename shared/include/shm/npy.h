// Npy: numpy's .npy file format (version 1.0 written; 1.0 and 2.0 read), for the array kinds.
//
// A file is the magic "\x93NUMPY", a version, a little-endian header length, a Python dict
// literal such as "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }" padded with
// spaces and '\n' so the data starts at a multiple of 64, then the data in C order. Only the
// dtypes of ndarray.h, little-endian, C order are accepted; anything else (Fortran order,
// big-endian, object or string dtypes, truncated or extra data) is InvalidArgument with a clear
// message. Process-safety: pure functions on process-local bytes.
#ifndef SHM_NPY_H_
#define SHM_NPY_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "shm/ndarray.h"
#include "shm/status.h"

namespace shm {

struct NpyHeader {
  DType dtype = DType::kFloat64;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // Where the data starts in the file.
};

// True when `bytes` starts with the .npy magic (how a request body is recognised).
bool LooksLikeNpy(std::string_view bytes);
// numpy's descr string of a dtype: "|b1", "|i1", "|u1", "<i2", ..., "<f8".
std::string NpyDescr(DType dtype);

// Parses the header of a .npy file (the data is not checked).
Status ParseNpyHeader(std::string_view bytes, NpyHeader* header);
// Parses a whole .npy file; the data must be exactly product(shape) elements.
Status ParseNpy(std::string_view bytes, ArrayData* result);
// Writes `data` as a version 1.0 .npy file, byte for byte as numpy.save does.
Status WriteNpy(const ArrayData& data, std::string* out);

}  // namespace shm

#endif  // SHM_NPY_H_
