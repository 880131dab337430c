#include "shm/npy.h"

#include <cctype>
#include <charconv>
#include <cstring>

namespace shm {
namespace {

constexpr std::string_view kMagic("\x93NUMPY", 6);
constexpr size_t kPrefixV1 = 10;  // Magic, 2 version bytes, uint16 header length.
constexpr size_t kPrefixV2 = 12;  // Same with a uint32 header length.
constexpr size_t kMaxHeaderBytes = 64 * 1024;

Status BadNpy(std::string_view why) {
  return Status::InvalidArgument("bad .npy data: " + std::string(why));
}

// A tiny reader for the Python literals numpy writes in the header dict.
class DictReader {
 public:
  explicit DictReader(std::string_view text) : text_(text) {}

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < text_.size() && text_[pos_] == c;
  }
  bool ReadString(std::string* out) {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) return false;
    char quote = text_[pos_++];
    size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) return false;
    *out = std::string(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return true;
  }
  bool ReadWord(std::string* out) {
    SkipSpace();
    size_t start = pos_;
    while (pos_ < text_.size() && std::isalpha(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    *out = std::string(text_.substr(start, pos_ - start));
    return !out->empty();
  }
  bool ReadInt(int64_t* out) {
    SkipSpace();
    const char* begin = text_.data() + pos_;
    auto [ptr, ec] = std::from_chars(begin, text_.data() + text_.size(), *out);
    if (ec != std::errc()) return false;
    pos_ += static_cast<size_t>(ptr - begin);
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2 longs.
    return true;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == text_.size();
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

Status ParseDescr(const std::string& descr, DType* dtype) {
  if (descr == "O" || descr == "|O") return BadNpy("object dtype is not supported");
  if (descr.size() >= 2 && descr[0] == '>' && descr != ">i1" && descr != ">u1" && descr != ">b1") {
    return BadNpy("big-endian dtype '" + descr + "' is not supported (use little-endian)");
  }
  for (int i = 0; i < kDTypeCount; ++i) {
    auto d = static_cast<DType>(i);
    std::string want = NpyDescr(d);
    if (descr == want) {
      *dtype = d;
      return Status::OK();
    }
    // One-byte types have no byte order; numpy writes '|' but accepts '<', '>' and '='.
    if (DTypeSize(d) == 1 && descr.size() == 3 && descr.substr(1) == want.substr(1) &&
        (descr[0] == '<' || descr[0] == '>' || descr[0] == '=')) {
      *dtype = d;
      return Status::OK();
    }
  }
  return BadNpy("dtype '" + descr +
                "' is not supported (bool, int8-64, uint8-64, float32, float64)");
}

Status ParseShape(DictReader* r, std::vector<int64_t>* shape) {
  if (!r->Consume('(')) return BadNpy("'shape' is not a tuple");
  shape->clear();
  while (!r->Consume(')')) {
    int64_t d = 0;
    if (!r->ReadInt(&d) || d < 0) return BadNpy("'shape' has a bad dimension");
    shape->push_back(d);
    if (shape->size() > static_cast<size_t>(kMaxDims)) {
      return BadNpy("more than " + std::to_string(kMaxDims) + " dimensions");
    }
    if (!r->Consume(',') && !r->Peek(')')) return BadNpy("'shape' is not a tuple");
  }
  return Status::OK();
}

Status ParseDict(std::string_view text, NpyHeader* header) {
  DictReader r(text);
  if (!r.Consume('{')) return BadNpy("header is not a dict");
  bool have_descr = false, have_order = false, have_shape = false;
  while (!r.Consume('}')) {
    std::string key;
    if (!r.ReadString(&key) || !r.Consume(':')) return BadNpy("header dict is malformed");
    if (key == "descr") {
      std::string descr;
      if (!r.ReadString(&descr)) {
        return BadNpy("'descr' is not a simple dtype (structured dtypes are not supported)");
      }
      SHM_RETURN_IF_ERROR(ParseDescr(descr, &header->dtype));
      have_descr = true;
    } else if (key == "fortran_order") {
      std::string word;
      if (!r.ReadWord(&word) || (word != "True" && word != "False")) {
        return BadNpy("'fortran_order' is not True or False");
      }
      if (word == "True") return BadNpy("Fortran order is not supported (save in C order)");
      have_order = true;
    } else if (key == "shape") {
      SHM_RETURN_IF_ERROR(ParseShape(&r, &header->shape));
      have_shape = true;
    } else {
      return BadNpy("unexpected key '" + key + "' in header");
    }
    if (!r.Consume(',') && !r.Peek('}')) return BadNpy("header dict is malformed");
  }
  if (!r.AtEnd()) return BadNpy("text after the header dict");
  if (!have_descr || !have_order || !have_shape) {
    return BadNpy("header lacks 'descr', 'fortran_order' or 'shape'");
  }
  return Status::OK();
}

}  // namespace

bool LooksLikeNpy(std::string_view bytes) { return bytes.substr(0, kMagic.size()) == kMagic; }

std::string NpyDescr(DType dtype) {
  switch (dtype) {
    case DType::kBool:
      return "|b1";
    case DType::kInt8:
      return "|i1";
    case DType::kUInt8:
      return "|u1";
    default:
      break;
  }
  std::string kind = IsFloatDType(dtype) ? "f" : IsSignedDType(dtype) ? "i" : "u";
  return "<" + kind + std::to_string(DTypeSize(dtype));
}

Status ParseNpyHeader(std::string_view bytes, NpyHeader* header) {
  if (!LooksLikeNpy(bytes)) return BadNpy("no .npy magic");
  if (bytes.size() < kPrefixV1) return BadNpy("truncated header");
  auto major = static_cast<unsigned char>(bytes[6]);
  size_t prefix = 0, length = 0;
  if (major == 1) {
    prefix = kPrefixV1;
    length = static_cast<unsigned char>(bytes[8]) |
             static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8;
  } else if (major == 2) {
    if (bytes.size() < kPrefixV2) return BadNpy("truncated header");
    prefix = kPrefixV2;
    for (int i = 3; i >= 0; --i) length = length << 8 | static_cast<unsigned char>(bytes[8 + i]);
  } else {
    return BadNpy("format version " + std::to_string(major) + " is not supported (1.0, 2.0)");
  }
  if (length > kMaxHeaderBytes) return BadNpy("header longer than 64 KiB");
  if (bytes.size() < prefix + length) return BadNpy("truncated header");
  NpyHeader out;
  SHM_RETURN_IF_ERROR(ParseDict(bytes.substr(prefix, length), &out));
  out.data_offset = prefix + length;
  *header = std::move(out);
  return Status::OK();
}

Status ParseNpy(std::string_view bytes, ArrayData* result) {
  NpyHeader header;
  SHM_RETURN_IF_ERROR(ParseNpyHeader(bytes, &header));
  ArrayData out;
  out.dtype = header.dtype;
  out.shape = header.shape;
  uint64_t expected = DTypeSize(header.dtype);
  for (int64_t d : header.shape) {
    if (d != 0 && expected > kMaxArrayBytes / static_cast<uint64_t>(d)) {
      return BadNpy("array of shape " + ShapeToString(header.shape) + " is too large");
    }
    expected *= static_cast<uint64_t>(d);
  }
  size_t have = bytes.size() - header.data_offset;
  if (have != expected) {
    return BadNpy(std::string(have < expected ? "truncated" : "extra") + " data: shape " +
                  ShapeToString(header.shape) + " " + std::string(DTypeName(header.dtype)) +
                  " needs " + std::to_string(expected) + " bytes, got " + std::to_string(have));
  }
  out.bytes = std::string(bytes.substr(header.data_offset));
  *result = std::move(out);
  return Status::OK();
}

Status WriteNpy(const ArrayData& data, std::string* out) {
  SHM_RETURN_IF_ERROR(data.Check());
  std::string dict = "{'descr': '" + NpyDescr(data.dtype) +
                     "', 'fortran_order': False, 'shape': " + ShapeToString(data.shape) + ", }";
  // numpy >= 1.23 leaves room to grow the first axis in place (GROWTH_AXIS_MAX_DIGITS = 21), then
  // pads with spaces (1 to 64 of them) so that the data starts at a multiple of 64.
  if (!data.shape.empty()) dict.append(21 - std::to_string(data.shape[0]).size(), ' ');
  size_t total = kPrefixV1 + dict.size() + 1;
  dict.append(64 - total % 64, ' ');
  dict.push_back('\n');
  std::string file(kMagic);
  file.push_back('\x01');
  file.push_back('\x00');
  file.push_back(static_cast<char>(dict.size() & 0xff));
  file.push_back(static_cast<char>(dict.size() >> 8));
  file += dict;
  file += data.bytes;
  *out = std::move(file);
  return Status::OK();
}

}  // namespace shm
