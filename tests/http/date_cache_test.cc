#include "date_cache.h"

#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace percore::http {
namespace {

TEST(DateCacheTest, FormatsImfFixdate) {
  const std::vector<std::pair<time_t, std::string>> cases = {
      {784111777, "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"},  // RFC 9110's example
      {0, "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"},
      {951827696, "Date: Tue, 29 Feb 2000 12:34:56 GMT\r\n"},
      {1720083903, "Date: Thu, 04 Jul 2024 09:05:03 GMT\r\n"},
      {2147483647, "Date: Tue, 19 Jan 2038 03:14:07 GMT\r\n"},
      {4107542400, "Date: Mon, 01 Mar 2100 00:00:00 GMT\r\n"},
      {253402300799, "Date: Fri, 31 Dec 9999 23:59:59 GMT\r\n"},
  };
  DateCache cache;
  for (const auto& [when, line] : cases) {
    cache.Update(when);
    EXPECT_EQ(cache.line(), line) << when;
  }
}

TEST(DateCacheTest, EveryDayAndMonthName) {
  // 1 Jan 2023 was a Sunday; the first of each month of 2023 at noon.
  const std::vector<std::pair<time_t, std::string>> months = {
      {1672574400, "Sun, 01 Jan 2023 12:00:00"}, {1675252800, "Wed, 01 Feb 2023 12:00:00"},
      {1677672000, "Wed, 01 Mar 2023 12:00:00"}, {1680350400, "Sat, 01 Apr 2023 12:00:00"},
      {1682942400, "Mon, 01 May 2023 12:00:00"}, {1685620800, "Thu, 01 Jun 2023 12:00:00"},
      {1688212800, "Sat, 01 Jul 2023 12:00:00"}, {1690891200, "Tue, 01 Aug 2023 12:00:00"},
      {1693569600, "Fri, 01 Sep 2023 12:00:00"}, {1696161600, "Sun, 01 Oct 2023 12:00:00"},
      {1698840000, "Wed, 01 Nov 2023 12:00:00"}, {1701432000, "Fri, 01 Dec 2023 12:00:00"},
      {1672833600, "Wed, 04 Jan 2023 12:00:00"}, {1672920000, "Thu, 05 Jan 2023 12:00:00"},
      {1673006400, "Fri, 06 Jan 2023 12:00:00"}, {1673092800, "Sat, 07 Jan 2023 12:00:00"},
      {1672660800, "Mon, 02 Jan 2023 12:00:00"}, {1672747200, "Tue, 03 Jan 2023 12:00:00"},
  };
  DateCache cache;
  for (const auto& [when, text] : months) {
    cache.Update(when);
    EXPECT_EQ(cache.line(), "Date: " + text + " GMT\r\n") << when;
  }
}

TEST(DateCacheTest, LineLengthIs37) {
  EXPECT_EQ(DateCache::kLineLength, 37u);
  DateCache cache;
  EXPECT_EQ(cache.line().size(), 37u);
  EXPECT_EQ(cache.line().substr(0, 6), "Date: ");
  EXPECT_EQ(cache.line().substr(31), " GMT\r\n");
  for (time_t when : {time_t{0}, time_t{784111777}, time_t{253402300799}}) {
    cache.Update(when);
    EXPECT_EQ(cache.line().size(), 37u);
    EXPECT_EQ(cache.line().back(), '\n');
  }
}

TEST(DateCacheTest, StartsWithTheCurrentTime) {
  const time_t before = time(nullptr);
  DateCache cache;
  const time_t after = time(nullptr);
  DateCache expected_before, expected_after;
  expected_before.Update(before);
  expected_after.Update(after);
  EXPECT_TRUE(cache.line() == expected_before.line() || cache.line() == expected_after.line())
      << cache.line();
}

TEST(DateCacheTest, UpdateWithinTheSameSecondKeepsTheLine) {
  DateCache cache;
  cache.Update(784111777);
  const std::string first(cache.line());
  const char* data = cache.line().data();
  cache.Update(784111777);
  EXPECT_EQ(cache.line(), first);
  EXPECT_EQ(cache.line().data(), data);
  cache.Update(784111778);
  EXPECT_EQ(cache.line(), "Date: Sun, 06 Nov 1994 08:49:38 GMT\r\n");
  cache.Update(784111777);  // going back reformats too
  EXPECT_EQ(cache.line(), first);
}

}  // namespace
}  // namespace percore::http
