#include "percore/cpus.h"

#include <sched.h>

#include <algorithm>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "percore/engine.h"

namespace percore {
namespace {

std::vector<int> Parsed(std::string_view text) {
  absl::StatusOr<std::vector<int>> cpus = ParseCpuList(text);
  EXPECT_TRUE(cpus.ok()) << text << ": " << cpus.status();
  return cpus.ok() ? *cpus : std::vector<int>{-1};
}

TEST(ParseCpuListTest, ListsAndRanges) {
  EXPECT_EQ(Parsed("0-3,6"), (std::vector<int>{0, 1, 2, 3, 6}));
  EXPECT_EQ(Parsed("0"), (std::vector<int>{0}));
  EXPECT_EQ(Parsed("5"), (std::vector<int>{5}));
  EXPECT_EQ(Parsed("2-2"), (std::vector<int>{2}));
  EXPECT_EQ(Parsed("1,3,5"), (std::vector<int>{1, 3, 5}));
  EXPECT_EQ(Parsed("0-1,4-5,8"), (std::vector<int>{0, 1, 4, 5, 8}));
}

TEST(ParseCpuListTest, SortsAndRemovesDuplicates) {
  EXPECT_EQ(Parsed("6,0-3"), (std::vector<int>{0, 1, 2, 3, 6}));
  EXPECT_EQ(Parsed("3,1,2,1,3"), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(Parsed("0-4,2-6"), (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(Parsed("7,7,7"), (std::vector<int>{7}));
}

TEST(ParseCpuListTest, SpacesAroundNumbers) {
  EXPECT_EQ(Parsed(" 1 , 2 - 3 "), (std::vector<int>{1, 2, 3}));
}

TEST(ParseCpuListTest, LargestCpu) {
  const std::string last = std::to_string(CPU_SETSIZE - 1);
  EXPECT_EQ(Parsed(last), (std::vector<int>{CPU_SETSIZE - 1}));
  EXPECT_EQ(Parsed("0-" + last).size(), static_cast<size_t>(CPU_SETSIZE));
}

TEST(ParseCpuListTest, Errors) {
  for (const char* text : {"",
                           " ",
                           "a",
                           "1a",
                           "a1",
                           "3-1",
                           "1-",
                           "-1",
                           "-",
                           ",",
                           "1,",
                           ",1",
                           "1,,2",
                           "1-2-3",
                           "1--2",
                           "+1",
                           "0x1",
                           "1.5",
                           "1;2",
                           "99999999999",
                           "99999999999999999999",
                           "0-99999999999",
                           "-5-3"}) {
    absl::StatusOr<std::vector<int>> cpus = ParseCpuList(text);
    EXPECT_FALSE(cpus.ok()) << "\"" << text << "\" gave " << cpus->size() << " CPUs";
    if (!cpus.ok()) {
      EXPECT_EQ(cpus.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(cpus.status().message().find(text), std::string_view::npos)
          << cpus.status().message();
    }
  }
}

TEST(ParseCpuListTest, BeyondCpuSetSizeIsAnError) {
  const std::string too_big = std::to_string(CPU_SETSIZE);
  EXPECT_FALSE(ParseCpuList(too_big).ok());
  EXPECT_FALSE(ParseCpuList("0-" + too_big).ok());
  EXPECT_FALSE(ParseCpuList("1," + too_big).ok());
  EXPECT_FALSE(ParseCpuList("2147483647").ok());
  EXPECT_FALSE(ParseCpuList("0-2147483647").ok());
}

TEST(AllowedCpusTest, NonEmptySortedAndMatchesAffinity) {
  std::vector<int> cpus = AllowedCpus();
  ASSERT_FALSE(cpus.empty());
  EXPECT_TRUE(std::is_sorted(cpus.begin(), cpus.end()));
  EXPECT_EQ(std::adjacent_find(cpus.begin(), cpus.end()), cpus.end());  // no duplicates
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(cpus.size(), static_cast<size_t>(CPU_COUNT(&set)));
  for (int cpu : cpus) {
    EXPECT_GE(cpu, 0);
    EXPECT_LT(cpu, CPU_SETSIZE);
    EXPECT_TRUE(CPU_ISSET(cpu, &set)) << cpu;
  }
}

TEST(AllowedCpusTest, FollowsTheThreadAffinity) {
  std::vector<int> all = AllowedCpus();
  ASSERT_FALSE(all.empty());
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(all.back(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  std::vector<int> pinned = AllowedCpus();
  ASSERT_EQ(sched_setaffinity(0, sizeof(saved), &saved), 0);
  EXPECT_EQ(pinned, (std::vector<int>{all.back()}));
  EXPECT_EQ(AllowedCpus(), all);
}

TEST(ParseCpuMaxTest, QuotaOverPeriod) {
  EXPECT_EQ(ParseCpuMax("100000 100000\n"), 1.0);
  EXPECT_EQ(ParseCpuMax("150000 100000\n"), 1.5);
  EXPECT_EQ(ParseCpuMax("50000 100000"), 0.5);
  EXPECT_EQ(ParseCpuMax("200000 50000\n"), 4.0);
}

TEST(ParseCpuMaxTest, NoLimitOrNotAQuota) {
  for (const char* text :
       {"max 100000\n", "max 100000", "max", "", "\n", "0 100000", "-1 100000", "100000 0",
        "100000", "100000 100000 1", "a 100000", "100000 b", "100000  100000", "1.5 1"}) {
    EXPECT_EQ(ParseCpuMax(text), std::nullopt) << "\"" << text << "\"";
  }
}

TEST(ParseCfsQuotaTest, QuotaOverPeriod) {
  EXPECT_EQ(ParseCfsQuota("100000\n", "100000\n"), 1.0);
  EXPECT_EQ(ParseCfsQuota("150000\n", "100000\n"), 1.5);
  EXPECT_EQ(ParseCfsQuota("25000", "100000"), 0.25);
}

TEST(ParseCfsQuotaTest, NoLimitOrNotAQuota) {
  EXPECT_EQ(ParseCfsQuota("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(ParseCfsQuota("0", "100000"), std::nullopt);
  EXPECT_EQ(ParseCfsQuota("100000", "0"), std::nullopt);
  EXPECT_EQ(ParseCfsQuota("", ""), std::nullopt);  // files missing
  EXPECT_EQ(ParseCfsQuota("100000", ""), std::nullopt);
  EXPECT_EQ(ParseCfsQuota("max", "100000"), std::nullopt);
}

// This machine's kind: cgroup v1 controllers, each mounted on its own, plus v2 at "unified".
constexpr std::string_view kHybridCgroup =
    "9:name=systemd:/\n8:pids:/\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";
constexpr std::string_view kHybridMounts =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

using Dirs = std::vector<std::string>;

TEST(CgroupDirectoriesTest, HybridRootCgroup) {
  EXPECT_EQ(CgroupDirectories(kHybridCgroup, kHybridMounts, "cpu"), Dirs{"/sys/fs/cgroup/cpu"});
  EXPECT_EQ(CgroupDirectories(kHybridCgroup, kHybridMounts, ""), Dirs{"/sys/fs/cgroup/unified"});
  EXPECT_EQ(CgroupDirectories(kHybridCgroup, kHybridMounts, "memory"), Dirs{});
}

TEST(CgroupDirectoriesTest, V1NestedCgroupWalksUpToTheMount) {
  constexpr std::string_view cgroup =
      "4:cpu,cpuacct:/user.slice/session-1.scope\n1:name=systemd:/user.slice\n";
  constexpr std::string_view mounts =
      "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup "
      "rw,cpu,cpuacct\n";
  EXPECT_EQ(CgroupDirectories(cgroup, mounts, "cpu"),
            (Dirs{"/sys/fs/cgroup/cpu,cpuacct/user.slice/session-1.scope",
                  "/sys/fs/cgroup/cpu,cpuacct/user.slice", "/sys/fs/cgroup/cpu,cpuacct"}));
  EXPECT_EQ(CgroupDirectories(cgroup, mounts, "cpuacct"), CgroupDirectories(cgroup, mounts, "cpu"));
  EXPECT_EQ(CgroupDirectories(cgroup, mounts, ""), Dirs{});  // no v2 line, no v2 mount
}

TEST(CgroupDirectoriesTest, ContainerSeesItsOwnCgroupAtTheMountPoint) {
  // Docker on v1 without a cgroup namespace: the path names the container's cgroup, and the
  // mount shows that cgroup (root field) at /sys/fs/cgroup/cpu.
  constexpr std::string_view cgroup = "5:cpu,cpuacct:/docker/0123abcd\n";
  constexpr std::string_view mounts =
      "700 690 0:30 /docker/0123abcd /sys/fs/cgroup/cpu,cpuacct ro,nosuid master:11 - cgroup "
      "cgroup rw,cpu,cpuacct\n";
  EXPECT_EQ(CgroupDirectories(cgroup, mounts, "cpu"), Dirs{"/sys/fs/cgroup/cpu,cpuacct"});
  // A cgroup outside what the mount shows, even one sharing the name's prefix, has no directory.
  EXPECT_EQ(CgroupDirectories("5:cpu:/docker/0123abcdef\n", mounts, "cpu"), Dirs{});
  EXPECT_EQ(CgroupDirectories("5:cpu:/other\n", mounts, "cpu"), Dirs{});
}

TEST(CgroupDirectoriesTest, V2Only) {
  constexpr std::string_view mounts =
      "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
      "rw,nsdelegate,memory_recursiveprot\n";
  EXPECT_EQ(CgroupDirectories("0::/system.slice/percore.service\n", mounts, ""),
            (Dirs{"/sys/fs/cgroup/system.slice/percore.service", "/sys/fs/cgroup/system.slice",
                  "/sys/fs/cgroup"}));
  // In a cgroup namespace (a container's default on v2) its own cgroup is "/".
  EXPECT_EQ(CgroupDirectories("0::/\n", mounts, ""), Dirs{"/sys/fs/cgroup"});
  EXPECT_EQ(CgroupDirectories("0::/\n", mounts, "cpu"), Dirs{});
}

TEST(CgroupDirectoriesTest, MalformedTexts) {
  EXPECT_EQ(CgroupDirectories("", kHybridMounts, "cpu"), Dirs{});
  EXPECT_EQ(CgroupDirectories(kHybridCgroup, "", "cpu"), Dirs{});
  EXPECT_EQ(CgroupDirectories("garbage\n1:cpu\n1:cpu:relative\n", kHybridMounts, "cpu"), Dirs{});
  EXPECT_EQ(CgroupDirectories(kHybridCgroup, "1 2 3\n- - -\n", "cpu"), Dirs{});
}

TEST(CgroupCpuQuotaTest, ThisProcess) {
  std::optional<double> quota = CgroupCpuQuota();
  if (quota) {
    EXPECT_GT(*quota, 0);
  }
  std::cout << "cgroup CPU quota here: " << (quota ? std::to_string(*quota) : "none") << "\n";
}

TEST(CapLoopsByQuotaTest, OnePerCpuCappedByTheQuotaRoundedUp) {
  struct Case {
    int cpus;
    std::optional<double> quota;
    int count;
    bool decided;
  };
  for (const Case& c : std::vector<Case>{{2, std::nullopt, 2, false},
                                         {2, 1.0, 1, true},
                                         {2, 1.5, 2, false},
                                         {2, 2.0, 2, false},
                                         {2, 8.0, 2, false},
                                         {64, 2.0, 2, true},
                                         {64, 1.5, 2, true},
                                         {64, 2.0000000001, 2, true},
                                         {64, 2.01, 3, true},
                                         {4, 0.1, 1, true},
                                         {1, 0.5, 1, false},
                                         {0, std::nullopt, 1, false}}) {
    DefaultLoops loops = CapLoopsByQuota(c.cpus, c.quota);
    EXPECT_EQ(loops.count, c.count) << c.cpus << " CPUs, quota " << c.quota.value_or(-1);
    EXPECT_EQ(loops.quota_decided(), c.decided)
        << c.cpus << " CPUs, quota " << c.quota.value_or(-1);
    EXPECT_EQ(loops.quota, c.quota);
  }
}

TEST(CapLoopsByQuotaTest, Describe) {
  EXPECT_EQ(CapLoopsByQuota(2, 1.0).Describe(), "cgroup CPU quota 1.0 of 2 CPUs");
  EXPECT_EQ(CapLoopsByQuota(64, 1.5).Describe(), "cgroup CPU quota 1.5 of 64 CPUs");
  EXPECT_EQ(CapLoopsByQuota(4, 0.25).Describe(), "cgroup CPU quota 0.25 of 4 CPUs");
  EXPECT_EQ(CapLoopsByQuota(2, 1.5).Describe(), "");
  EXPECT_EQ(CapLoopsByQuota(2, std::nullopt).Describe(), "");
}

TEST(DefaultLoopCountTest, AffinityCappedByThisProcessesQuota) {
  DefaultLoops loops = DefaultLoopCount();
  DefaultLoops expected = CapLoopsByQuota(static_cast<int>(AllowedCpus().size()), CgroupCpuQuota());
  EXPECT_EQ(loops.count, expected.count);
  EXPECT_EQ(loops.cpus, expected.cpus);
  EXPECT_EQ(loops.quota, expected.quota);
  EXPECT_EQ(Engine::LoopCount(EngineOptions{}), loops.count);
  EngineOptions two_threads;
  two_threads.threads = 2;
  EXPECT_EQ(Engine::LoopCount(two_threads), 2);  // a count given is not capped
}

}  // namespace
}  // namespace percore
