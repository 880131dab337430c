// shm_attach: a separately started process that attaches to a segment with open_only, so the
// segment maps at another address than in the process that created it.
//
//   shm_attach <shm_name> base                  prints the mapping's base address
//   shm_attach <shm_name> get <counter>         prints the counter's value
//   shm_attach <shm_name> add <counter> <n>     adds 1 n times, prints the final value
//   shm_attach <shm_name> list                  prints "name kind" per object
//   shm_attach <shm_name> dict-get <dict> <key> prints the value
//   shm_attach <shm_name> dict-set <dict> <key> <value>
//   shm_attach <shm_name> list-items <list>     prints one item per line
//   shm_attach <shm_name> array-sum <array>     prints the sum of a numeric array
// Exit code 0 on success, 1 with the Status on stderr otherwise.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "segment_impl.h"
#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/list.h"
#include "shm/ndarray.h"
#include "shm/registry.h"
#include "shm/segment.h"
#include "shm/slice.h"

namespace {

int Fail(const shm::Status& s) {
  std::fprintf(stderr, "%s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: shm_attach <shm_name> base|get|add|list ...\n");
    return 2;
  }
  // Occupy some address space first so the segment cannot land where the creator mapped it.
  void* filler = mmap(nullptr, size_t{64} << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  (void)filler;
  std::unique_ptr<shm::Segment> segment;
  shm::Status s = shm::Segment::Attach(argv[1], &segment);
  if (!s.ok()) return Fail(s);
  std::string command = argv[2];
  if (command == "base") {
    std::printf("%p\n", segment->impl()->managed().get_address());
    return 0;
  }
  if (command == "list") {
    std::vector<shm::ObjectInfo> objects;
    s = segment->registry().List("", shm::ObjectKind::kNone, 100000, "", &objects);
    if (!s.ok()) return Fail(s);
    for (const auto& o : objects)
      std::printf("%s %s\n", o.name.c_str(), shm::KindName(o.kind).data());
    return 0;
  }
  if (command == "dict-get" && argc >= 5) {
    shm::Dict dict;
    shm::DictValue value;
    s = shm::Dict::Open(segment.get(), argv[3], shm::OpenMode::kOpenExisting, {}, &dict);
    if (s.ok()) s = dict.Get(argv[4], &value);
    if (!s.ok()) return Fail(s);
    std::printf("%s\n", value.data.c_str());
    return 0;
  }
  if (command == "dict-set" && argc >= 6) {
    shm::Dict dict;
    s = shm::Dict::Open(segment.get(), argv[3], shm::OpenMode::kCreateIfMissing, {}, &dict);
    if (s.ok()) s = dict.Set(argv[4], argv[5], {});
    return s.ok() ? 0 : Fail(s);
  }
  if (command == "list-items" && argc >= 4) {
    shm::List list;
    std::vector<std::string> items;
    s = shm::List::Open(segment.get(), argv[3], shm::OpenMode::kOpenExisting, {}, &list);
    if (s.ok()) s = list.Range(0, -1, &items);
    if (!s.ok()) return Fail(s);
    for (const auto& item : items) std::printf("%s\n", item.c_str());
    return 0;
  }
  if (command == "array-sum" && argc >= 4) {
    shm::NdArray array;
    shm::ArrayData data;
    s = shm::NdArray::Open(segment.get(), argv[3], &array);
    if (s.ok()) s = array.ReadSlice(shm::Slice(), &data);
    if (!s.ok()) return Fail(s);
    double sum = 0;
    for (int64_t i = 0; i < data.size(); ++i)
      sum += data.Get(i).f + static_cast<double>(data.Get(i).i);
    std::printf("%g\n", sum);
    return 0;
  }
  if (argc < 4) return 2;
  shm::Counter counter;
  s = shm::Counter::Open(segment.get(), argv[3], {shm::OpenMode::kCreateIfMissing}, &counter);
  if (!s.ok()) return Fail(s);
  int64_t value = 0;
  if (command == "get") {
    s = counter.Get(&value);
  } else if (command == "add" && argc >= 5) {
    long n = std::atol(argv[4]);
    for (long i = 0; i < n && s.ok(); ++i) s = counter.Add(1, &value);
  } else {
    return 2;
  }
  if (!s.ok()) return Fail(s);
  std::printf("%lld\n", static_cast<long long>(value));
  return 0;
}
