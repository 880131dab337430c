// ASSERT_OK / EXPECT_OK: a gtest assertion that a Status is OK, printing the expression and the
// status when it is not.
#ifndef SHM_TESTS_COMMON_STATUS_ASSERT_H_
#define SHM_TESTS_COMMON_STATUS_ASSERT_H_

#include <gtest/gtest.h>

#include "shm/status.h"

#define ASSERT_OK(expr)                                     \
  do {                                                      \
    ::shm::Status s_ = (expr);                              \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                     \
  do {                                                      \
    ::shm::Status s_ = (expr);                              \
    EXPECT_TRUE(s_.ok()) << #expr << ": " << s_.ToString(); \
  } while (0)

#endif  // SHM_TESTS_COMMON_STATUS_ASSERT_H_
