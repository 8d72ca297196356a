// The integration suites run once per backend: the parameter values, their names in test
// output, and how a BackendKind prints.
#ifndef PERCORE_TESTS_SUPPORT_BACKENDS_H_
#define PERCORE_TESTS_SUPPORT_BACKENDS_H_

#include <ostream>
#include <string>

#include "gtest/gtest.h"
#include "percore/options.h"

namespace percore {

// Names the backend in test output (found by argument-dependent lookup).
inline void PrintTo(BackendKind kind, std::ostream* os) {
  *os << (kind == BackendKind::kEpoll     ? "epoll"
          : kind == BackendKind::kIoUring ? "io_uring"
                                          : "auto");
}

namespace testing {

// Every backend a suite runs against.
inline auto AllBackends() { return ::testing::Values(BackendKind::kIoUring, BackendKind::kEpoll); }

// The test-name suffix of a backend parameter: "IoUring" or "Epoll".
inline std::string BackendTestName(const ::testing::TestParamInfo<BackendKind>& info) {
  return info.param == BackendKind::kEpoll ? "Epoll" : "IoUring";
}

}  // namespace testing
}  // namespace percore

#endif  // PERCORE_TESTS_SUPPORT_BACKENDS_H_
