// percore/cpus.h — CPU lists as users write them ("0-3,6").
//
//   absl::StatusOr<std::vector<int>> cpus = percore::ParseCpuList("0-3,6");  // {0,1,2,3,6}
//   std::vector<int> allowed = percore::AllowedCpus();  // honours taskset and cpusets
//
// All functions are thread-safe.
#ifndef PERCORE_CPUS_H_
#define PERCORE_CPUS_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace percore {

// Parses a comma-separated list of CPUs and inclusive ranges; sorted, without duplicates.
absl::StatusOr<std::vector<int>> ParseCpuList(std::string_view text);

// The CPUs this process may run on (sched_getaffinity), ascending.
std::vector<int> AllowedCpus();

}  // namespace percore

#endif  // PERCORE_CPUS_H_
