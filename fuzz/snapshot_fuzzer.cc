// Fuzzes RestoreSegment with arbitrary bytes into an empty segment. The snapshot contract
// (shm/snapshot.h) is all-or-nothing: a refused snapshot leaves the segment as it was (no
// object, no memory kept), a restored one holds exactly the objects it reports and serializes
// again without error. The segment is emptied after each input.
//
// With SHM_FUZZ_WRITE_SEEDS=<dir> set, the binary instead writes seed snapshots of a segment
// holding every kind of object (made through the API) into <dir> and exits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_util.h"
#include "shm/snapshot.h"

namespace {

struct Target {
  Target() : segment(shm::fuzz::CreateScratchSegment("snap", size_t{4} << 20)) {
    empty_free_bytes = segment->free_bytes();
  }
  std::unique_ptr<shm::Segment> segment;
  size_t empty_free_bytes = 0;
};

// Each seed: the requests that fill the segment, then the snapshot of it.
struct Seed {
  const char* file;
  std::vector<std::pair<shm::http::verb, std::string>> requests;  // (method, target?body)
};

void WriteSeeds(const char* dir) {
  using shm::http::verb;
  const Seed seeds[] = {
      {"empty", {}},
      {"counter", {{verb::post, "/v1/counters/hits/incr?by=5"}}},
      {"dict",
       {{verb::put, "/v1/dicts/users/alice|{\"age\": 3}"}, {verb::put, "/v1/dicts/users/bob|x"}}},
      {"list", {{verb::post, "/v1/lists/q/push|one"}, {verb::post, "/v1/lists/q/push|two"}}},
      {"lock", {{verb::post, "/v1/locks/l/acquire?ttl=60"}}},
      {"array",
       {{verb::post, "/v1/arrays/a|{\"dtype\": \"int32\", \"shape\": [2, 3], \"fill\": 7}"}}},
      {"all_but_dict",
       {{verb::post, "/v1/counters/c/incr"},
        {verb::post, "/v1/lists/l/push|item"},
        {verb::post, "/v1/locks/k/acquire?ttl=60"},
        {verb::post, "/v1/arrays/f|{\"dtype\": \"float64\", \"shape\": [4]}"}}},
  };
  shm::fuzz::ApiUnderTest api;
  for (const Seed& seed : seeds) {
    for (const auto& [method, text] : seed.requests) {
      size_t bar = text.find('|');
      shm::HttpRequest request{method, text.substr(0, bar), 11};
      if (bar != std::string::npos) request.body() = text.substr(bar + 1);
      request.prepare_payload();
      shm::HttpResponse response = api.router.Handle(request, api.segment.get(), 0);
      shm::fuzz::Check(response.result_int() < 300, "seed request failed", text);
    }
    std::string snapshot;
    shm::SnapshotStats stats;
    shm::Status s = shm::SerializeSegment(api.segment.get(), &snapshot, &stats);
    shm::fuzz::DeleteAllObjects(api.segment.get());
    if (!s.ok()) {  // A kind whose snapshot is not written yet: no seed for it.
      std::fprintf(stderr, "no seed %s: %s\n", seed.file, s.ToString().c_str());
      continue;
    }
    std::ofstream(std::string(dir) + "/" + seed.file + ".snap", std::ios::binary) << snapshot;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (const char* dir = std::getenv("SHM_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Target* target = new Target();
  shm::Segment* segment = target->segment.get();
  std::string_view snapshot(reinterpret_cast<const char*>(data), size);

  shm::SnapshotStats stats;
  shm::Status s = shm::RestoreSegment(snapshot, segment, &stats);
  std::vector<std::string> names = shm::fuzz::LiveNames(segment);
  if (s.ok()) {
    shm::fuzz::Check(
        names.size() == stats.objects, "restored count differs from the registry",
        std::to_string(stats.objects) + " reported, " + std::to_string(names.size()) + " live");
    std::string again;
    shm::SnapshotStats again_stats;
    shm::Status reserialized = shm::SerializeSegment(segment, &again, &again_stats);
    shm::fuzz::Check(reserialized.ok(), "a restored segment does not serialize",
                     reserialized.ToString());
  } else {
    shm::fuzz::Check(s.IsInvalidArgument() || s.IsOutOfSpace() || s.IsAlreadyExists(),
                     "unexpected status from RestoreSegment", s.ToString());
    if (!names.empty()) {
      shm::fuzz::Fail("a refused snapshot left objects behind",
                      s.ToString() + "; first left: " + names.front());
    }
  }
  shm::fuzz::DeleteAllObjects(segment);
  shm::fuzz::Check(segment->free_bytes() == target->empty_free_bytes,
                   "segment memory leaked by a restore",
                   std::to_string(target->empty_free_bytes - segment->free_bytes()) +
                       " bytes; status " + s.ToString());
  return 0;
}
