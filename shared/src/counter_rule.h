// A counter's add rule, the one Counter (counter.cc) and a transaction's counter add
// (transaction.cc) both apply, so both refuse an overflow with the same error.
#ifndef SHM_SRC_COUNTER_RULE_H_
#define SHM_SRC_COUNTER_RULE_H_

#include <cstdint>

#include "shm/status.h"

namespace shm {

// value + delta into *next; InvalidArgument (and *next unchanged) when it does not fit in int64.
Status CounterSum(int64_t value, int64_t delta, int64_t* next);

}  // namespace shm

#endif  // SHM_SRC_COUNTER_RULE_H_
