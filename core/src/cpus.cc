#include "percore/cpus.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace percore {
namespace {

constexpr int kMaxCpu = CPU_SETSIZE - 1;

absl::Status ListError(std::string_view whole, std::string_view why) {
  return absl::InvalidArgumentError("invalid CPU list \"" + std::string(whole) +
                                    "\": " + std::string(why));
}

// `text` without the `chars` it starts and ends with: spaces in a CPU list, also the newline a
// cgroup file ends with.
std::string_view Trim(std::string_view text, std::string_view chars = " \n") {
  while (!text.empty() && chars.find(text.front()) != std::string_view::npos) text.remove_prefix(1);
  while (!text.empty() && chars.find(text.back()) != std::string_view::npos) text.remove_suffix(1);
  return text;
}

bool ParseCpu(std::string_view text, int* cpu) {
  text = Trim(text, " ");
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *cpu);
  return !text.empty() && ec == std::errc() && ptr == end && *cpu >= 0 && *cpu <= kMaxCpu;
}

bool ParseInt(std::string_view text, int64_t* value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return !text.empty() && ec == std::errc() && ptr == end;
}

// Splits on `separator`; empty pieces are kept.
std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> pieces;
  while (true) {
    size_t at = text.find(separator);
    pieces.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return pieces;
    text.remove_prefix(at + 1);
  }
}

bool Contains(const std::vector<std::string_view>& pieces, std::string_view wanted) {
  return std::find(pieces.begin(), pieces.end(), wanted) != pieces.end();
}

std::optional<double> Ratio(int64_t quota, int64_t period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return static_cast<double>(quota) / static_cast<double>(period);
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

void KeepSmaller(std::optional<double>& smallest, std::optional<double> quota) {
  if (quota && (!smallest || *quota < *smallest)) smallest = quota;
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

std::optional<double> ParseCpuMax(std::string_view cpu_max) {
  std::vector<std::string_view> fields = Split(Trim(cpu_max), ' ');
  int64_t quota, period;
  if (fields.size() != 2 || !ParseInt(fields[0], &quota) || !ParseInt(fields[1], &period)) {
    return std::nullopt;  // "max 100000" among others
  }
  return Ratio(quota, period);
}

std::optional<double> ParseCfsQuota(std::string_view quota_us, std::string_view period_us) {
  int64_t quota, period;
  if (!ParseInt(Trim(quota_us), &quota) || !ParseInt(Trim(period_us), &period)) return std::nullopt;
  return Ratio(quota, period);
}

std::vector<std::string> CgroupDirectories(std::string_view proc_self_cgroup,
                                           std::string_view mountinfo,
                                           std::string_view controller) {
  // /proc/self/cgroup: "hierarchy-id:controllers:path" per hierarchy; v2's is "0::path". The
  // path is relative to the root of the process's cgroup namespace.
  std::optional<std::string_view> path;
  for (std::string_view line : Split(proc_self_cgroup, '\n')) {
    size_t first = line.find(':');
    if (first == std::string_view::npos) continue;
    size_t second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    if (controller.empty() ? line.substr(0, first) == "0" && controllers.empty()
                           : Contains(Split(controllers, ','), controller)) {
      path = Trim(line.substr(second + 1));
      break;
    }
  }
  if (!path || path->empty() || path->front() != '/') return {};

  // /proc/self/mountinfo: "id parent major:minor root mount-point options [tags] - fstype
  // source super-options"; `root` is the cgroup the mount shows at its mount point (a container
  // sees its own cgroup mounted at /sys/fs/cgroup). v1 lists its controllers in super-options.
  for (std::string_view line : Split(mountinfo, '\n')) {
    std::vector<std::string_view> fields = Split(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || fields.end() - dash < 4) continue;
    std::string_view type = dash[1];
    if (controller.empty() ? type != "cgroup2"
                           : type != "cgroup" || !Contains(Split(dash[3], ','), controller)) {
      continue;
    }
    std::string_view root = fields[3];
    if (root == "/") root = "";
    if (path->substr(0, root.size()) != root ||
        (path->size() > root.size() && (*path)[root.size()] != '/')) {
      continue;  // the cgroup is outside what this mount shows
    }
    std::string_view below = path->substr(root.size());  // "" or "/a/b"
    while (!below.empty() && below.back() == '/') below.remove_suffix(1);
    std::vector<std::string> directories;
    while (true) {
      directories.push_back(std::string(fields[4]) + std::string(below));
      if (below.empty()) return directories;
      below = below.substr(0, below.rfind('/'));
    }
  }
  return {};
}

std::optional<double> CgroupCpuQuota() {
  const std::string cgroup = ReadFile("/proc/self/cgroup");
  const std::string mountinfo = ReadFile("/proc/self/mountinfo");
  std::optional<double> smallest;
  for (const std::string& dir : CgroupDirectories(cgroup, mountinfo, "cpu")) {
    KeepSmaller(smallest, ParseCfsQuota(ReadFile(dir + "/cpu.cfs_quota_us"),
                                        ReadFile(dir + "/cpu.cfs_period_us")));
  }
  for (const std::string& dir : CgroupDirectories(cgroup, mountinfo, "")) {
    KeepSmaller(smallest, ParseCpuMax(ReadFile(dir + "/cpu.max")));
  }
  return smallest;
}

DefaultLoops CapLoopsByQuota(int cpus, std::optional<double> quota) {
  DefaultLoops loops;
  loops.cpus = std::max(cpus, 1);
  loops.quota = quota;
  loops.count = loops.cpus;
  if (quota) {
    // Less than a millionth over a whole number is the division's rounding, not a quota.
    const double rounded_up = std::ceil(*quota - 1e-6);
    if (rounded_up < loops.count) loops.count = std::max(1, static_cast<int>(rounded_up));
  }
  return loops;
}

DefaultLoops DefaultLoopCount() {
  return CapLoopsByQuota(static_cast<int>(AllowedCpus().size()), CgroupCpuQuota());
}

std::string DefaultLoops::Describe() const {
  if (!quota_decided() || !quota) return "";
  char text[32];
  snprintf(text, sizeof(text), "%.2f", *quota);
  std::string shown = text;
  if (shown.size() > 1 && shown.back() == '0') shown.pop_back();  // 1.00 -> 1.0, 1.50 -> 1.5
  return "cgroup CPU quota " + shown + " of " + std::to_string(cpus) + " CPUs";
}

}  // namespace percore
