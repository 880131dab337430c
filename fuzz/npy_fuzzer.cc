// Fuzzes the .npy reader (shm/npy.h). Checks: ParseNpyHeader and ParseNpy never crash; a file
// that parses holds exactly product(shape) elements of its dtype; writing it back gives a file
// that parses to the same dtype, shape and bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "shm/ndarray.h"
#include "shm/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using shm::fuzz::Check;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  shm::NpyHeader header;
  bool header_ok = shm::ParseNpyHeader(bytes, &header).ok();
  if (header_ok) Check(header.data_offset <= size, "data offset past the end of the file");

  shm::ArrayData array;
  if (!shm::ParseNpy(bytes, &array).ok()) return 0;
  Check(header_ok, "ParseNpy accepted a file whose header ParseNpyHeader refused");
  Check(array.dtype == header.dtype && array.shape == header.shape,
        "ParseNpy and ParseNpyHeader disagree");
  Check(array.bytes.size() == static_cast<size_t>(array.size()) * shm::DTypeSize(array.dtype),
        "data size is not product(shape) * itemsize");

  std::string written;
  shm::Status s = shm::WriteNpy(array, &written);
  Check(s.ok(), "WriteNpy refused a parsed array", s.ToString());
  shm::ArrayData again;
  s = shm::ParseNpy(written, &again);
  Check(s.ok(), "a written .npy does not parse", s.ToString());
  Check(again.dtype == array.dtype && again.shape == array.shape && again.bytes == array.bytes,
        "a written .npy does not round-trip");
  return 0;
}
