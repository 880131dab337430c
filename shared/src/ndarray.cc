// Placeholder until this kind is implemented: frees the body blob alone.
#include "kind_ops.h"

namespace shm {
namespace {
void Destroy(Segment::Impl* segment, uint64_t body) { segment->Free(body); }
}  // namespace
const KindOps kArrayOps = {nullptr, Destroy};
}  // namespace shm
