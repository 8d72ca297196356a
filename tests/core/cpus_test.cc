#include "percore/cpus.h"

#include <sched.h>

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace percore
