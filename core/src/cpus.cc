#include "percore/cpus.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <string>

namespace percore {
namespace {

constexpr int kMaxCpu = CPU_SETSIZE - 1;

absl::Status ListError(std::string_view whole, std::string_view why) {
  return absl::InvalidArgumentError("invalid CPU list \"" + std::string(whole) +
                                    "\": " + std::string(why));
}

bool ParseCpu(std::string_view text, int* cpu) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *cpu);
  return !text.empty() && ec == std::errc() && ptr == end && *cpu >= 0 && *cpu <= kMaxCpu;
}

}  // namespace

absl::StatusOr<std::vector<int>> ParseCpuList(std::string_view text) {
  std::vector<int> cpus;
  std::string_view rest = text;
  while (true) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    size_t dash = item.find('-');
    int first, last;
    if (!ParseCpu(item.substr(0, dash), &first) ||
        (dash != std::string_view::npos && !ParseCpu(item.substr(dash + 1), &last))) {
      return ListError(text, "\"" + std::string(item) + "\" is not a CPU number or range");
    }
    if (dash == std::string_view::npos) last = first;
    if (last < first) return ListError(text, "range \"" + std::string(item) + "\" is reversed");
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

}  // namespace percore
