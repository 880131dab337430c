// Little-endian encoding of integers and length-prefixed strings, for snapshots.
// ByteReader never reads past its input: every Get answers false on truncation.
#ifndef SHM_SRC_BYTE_IO_H_
#define SHM_SRC_BYTE_IO_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace shm {

class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}
  template <class T>
  void Put(T value) {
    static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>);
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));  // The platforms we build for are little-endian.
    out_->append(bytes, sizeof(T));
  }
  void PutBytes(std::string_view bytes) {
    Put<uint64_t>(bytes.size());
    out_->append(bytes);
  }
  void PutRaw(std::string_view bytes) { out_->append(bytes); }

 private:
  std::string* out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  template <class T>
  bool Get(T* value) {
    if (in_.size() < sizeof(T)) return false;
    std::memcpy(value, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool GetBytes(std::string_view* bytes) {
    uint64_t size = 0;
    if (!Get(&size) || size > in_.size()) return false;
    *bytes = in_.substr(0, size);
    in_.remove_prefix(size);
    return true;
  }
  bool GetRaw(size_t size, std::string_view* bytes) {
    if (size > in_.size()) return false;
    *bytes = in_.substr(0, size);
    in_.remove_prefix(size);
    return true;
  }
  size_t remaining() const { return in_.size(); }
  std::string_view rest() const { return in_; }

 private:
  std::string_view in_;
};

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "snapshots assume little-endian");

}  // namespace shm

#endif  // SHM_SRC_BYTE_IO_H_
