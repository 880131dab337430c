// Fuzzes RestoreSegment with arbitrary bytes into an empty segment; RestoreTarget
// (snapshot_check.h) checks the all-or-nothing contract. The segment is emptied after each input.
// Arbitrary bytes rarely pass the checksums: snapshot_records_fuzzer reaches the records behind
// them.
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
#include "snapshot_check.h"

namespace {

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
  static shm::fuzz::RestoreTarget* target = new shm::fuzz::RestoreTarget();
  target->RestoreAndCheck(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
