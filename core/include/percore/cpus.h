// percore/cpus.h — CPU lists as users write them ("0-3,6"), and how many CPUs the process may
// use: its affinity mask and its cgroup's CPU quota (what a container runtime sets for
// `--cpus=2` or a Kubernetes CPU limit).
//
//   absl::StatusOr<std::vector<int>> cpus = percore::ParseCpuList("0-3,6");  // {0,1,2,3,6}
//   std::vector<int> allowed = percore::AllowedCpus();  // honours taskset and cpusets
//   percore::DefaultLoops loops = percore::DefaultLoopCount();  // capped by the quota
//
// All functions are thread-safe.
#ifndef PERCORE_CPUS_H_
#define PERCORE_CPUS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace percore {

// Parses a comma-separated list of CPUs and inclusive ranges; sorted, without duplicates.
absl::StatusOr<std::vector<int>> ParseCpuList(std::string_view text);

// The CPUs this process may run on (sched_getaffinity), ascending.
std::vector<int> AllowedCpus();

// A cgroup's CPU quota in CPUs: quota / period, the CPU time its threads may use together per
// period (150000 / 100000 = 1.5 CPUs). nullopt for no limit ("max", -1) or text that is not one.
// `cpu_max` is cgroup v2's cpu.max ("max 100000", "150000 100000").
std::optional<double> ParseCpuMax(std::string_view cpu_max);
// cgroup v1's cpu.cfs_quota_us ("-1" for none) and cpu.cfs_period_us.
std::optional<double> ParseCfsQuota(std::string_view quota_us, std::string_view period_us);

// The directories of this process's cgroup in one hierarchy, from the texts of /proc/self/cgroup
// and /proc/self/mountinfo: its own first, then each ancestor up to where the hierarchy is
// mounted. `controller` names a cgroup v1 controller ("cpu"); empty means the v2 hierarchy.
// Empty when that hierarchy is not mounted or the cgroup lies outside what is mounted.
std::vector<std::string> CgroupDirectories(std::string_view proc_self_cgroup,
                                           std::string_view mountinfo, std::string_view controller);

// The smallest CPU quota set on this process's cgroup or an ancestor, v1 and v2 (the kernel
// throttles the process by each of them); nullopt if none is set or none can be read.
std::optional<double> CgroupCpuQuota();

// How many loops an engine runs when told neither a count nor CPUs.
struct DefaultLoops {
  int count = 1;                // min(cpus, quota rounded up), at least 1
  int cpus = 1;                 // the CPUs the process may use
  std::optional<double> quota;  // the cgroup CPU quota, if one is set
  // Whether the quota, not the CPU count, decided `count`.
  bool quota_decided() const { return count < cpus; }
  // "cgroup CPU quota 1.0 of 2 CPUs" when the quota decided, else empty.
  std::string Describe() const;
};
// One loop per CPU, capped by `quota` rounded up (1.5 CPUs of time is 2 loops each busy 75%).
DefaultLoops CapLoopsByQuota(int cpus, std::optional<double> quota);
// CapLoopsByQuota(AllowedCpus().size(), CgroupCpuQuota()).
DefaultLoops DefaultLoopCount();

}  // namespace percore

#endif  // PERCORE_CPUS_H_
