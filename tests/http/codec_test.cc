// The pure codecs of codec.h, first half: percent-encoding, query strings, cookies and HTTP
// dates. Range, content types, Accept-Encoding and entity tags are in codec_content_test.cc.
#include "codec.h"

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace percore::http {
namespace {

using namespace std::literals;

// ---- Percent-encoding.

struct DecodeCase {
  std::string in;
  bool plus_is_space;
  bool ok;
  std::string out;  // when ok
};

TEST(PercentDecodeTest, Table) {
  const std::vector<DecodeCase> cases = {
      {"", false, true, ""},
      {"plain", false, true, "plain"},
      {"a%20b", false, true, "a b"},
      {"a+b", false, true, "a+b"},
      {"a+b", true, true, "a b"},
      {"++", true, true, "  "},
      {"%2B", true, true, "+"},  // an encoded '+' stays a '+'
      {"%41%42%43", false, true, "ABC"},
      {"%e2%82%AC", false, true, "\xe2\x82\xac"},
      {"%00", false, true, "\0"s},
      {"a%00b", false, true, "a\0b"s},
      {"%25", false, true, "%"},
      {"%2525", false, true, "%25"},  // decoded once only
      {"%ff", false, true, "\xff"},
      {"x%2fy", false, true, "x/y"},
      {"%", false, false, ""},
      {"%4", false, false, ""},
      {"a%", false, false, ""},
      {"abc%2", false, false, ""},
      {"100%", true, false, ""},
      {"%zz", false, false, ""},
      {"%4g", false, false, ""},
      {"%g4", false, false, ""},
      {"%%41", false, false, ""},
      {"ok%20then%", false, false, ""},
      {"% 1", false, false, ""},
  };
  for (const DecodeCase& c : cases) {
    std::string out;
    EXPECT_EQ(PercentDecode(c.in, c.plus_is_space, &out), c.ok) << c.in;
    if (c.ok) {
      EXPECT_EQ(out, c.out) << c.in;
    }
  }
}

TEST(PercentDecodeTest, AppendsToExistingContent) {
  std::string out = "prefix:";
  ASSERT_TRUE(PercentDecode("a%20b+c", true, &out));
  EXPECT_EQ(out, "prefix:a b c");
  ASSERT_TRUE(PercentDecode("%21", false, &out));
  EXPECT_EQ(out, "prefix:a b c!");
}

TEST(PercentDecodeTest, EveryByteRoundTrips) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (int b = 0; b < 256; ++b) {
    encoded += '%';
    encoded += kHex[b >> 4];
    encoded += kHex[b & 15];
  }
  std::string out;
  ASSERT_TRUE(PercentDecode(encoded, false, &out));
  ASSERT_EQ(out.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(static_cast<unsigned char>(out[b]), b);
}

TEST(PercentDecodeTest, NeedsDecoding) {
  EXPECT_FALSE(NeedsDecoding("", false));
  EXPECT_FALSE(NeedsDecoding("/plain/path", false));
  EXPECT_TRUE(NeedsDecoding("a%20b", false));
  EXPECT_TRUE(NeedsDecoding("%", true));
  EXPECT_FALSE(NeedsDecoding("a+b", false));
  EXPECT_TRUE(NeedsDecoding("a+b", true));
  EXPECT_FALSE(NeedsDecoding("abc", true));
}

TEST(PercentDecodeTest, ValidPercentEncoding) {
  EXPECT_TRUE(ValidPercentEncoding(""));
  EXPECT_TRUE(ValidPercentEncoding("abc+def"));
  EXPECT_TRUE(ValidPercentEncoding("%20%41%fF"));
  EXPECT_TRUE(ValidPercentEncoding("a%2525"));
  EXPECT_FALSE(ValidPercentEncoding("%"));
  EXPECT_FALSE(ValidPercentEncoding("%2"));
  EXPECT_FALSE(ValidPercentEncoding("a%2x"));
  EXPECT_FALSE(ValidPercentEncoding("%zz"));
  EXPECT_FALSE(ValidPercentEncoding("%%20"));
  EXPECT_FALSE(ValidPercentEncoding("%25%"));
  EXPECT_FALSE(ValidPercentEncoding("%20 %g0"));
}

// ---- Query strings.

std::vector<std::pair<std::string, std::string>> AllPairs(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string_view key, value;
  while (NextQueryPair(&query, &key, &value)) pairs.emplace_back(key, value);
  return pairs;
}

TEST(NextQueryPairTest, Table) {
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(AllPairs(""), Pairs{});
  EXPECT_EQ(AllPairs("&&&"), Pairs{});
  EXPECT_EQ(AllPairs("a=1"), (Pairs{{"a", "1"}}));
  EXPECT_EQ(AllPairs("a=1&&b=2"), (Pairs{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(AllPairs("&a=1&"), (Pairs{{"a", "1"}}));
  EXPECT_EQ(AllPairs("a=1&b=&c&=v&d=x=y"),
            (Pairs{{"a", "1"}, {"b", ""}, {"c", ""}, {"", "v"}, {"d", "x=y"}}));
  // ';' is not a separator, and nothing is decoded.
  EXPECT_EQ(AllPairs("a=1;b=2"), (Pairs{{"a", "1;b=2"}}));
  EXPECT_EQ(AllPairs("a%20b=c+d&e%3D=%26"), (Pairs{{"a%20b", "c+d"}, {"e%3D", "%26"}}));
  EXPECT_EQ(AllPairs("x=1&x=2"), (Pairs{{"x", "1"}, {"x", "2"}}));
}

TEST(NextQueryPairTest, ViewsPointIntoTheInput) {
  const std::string query = "k=v";
  std::string_view rest = query, key, value;
  ASSERT_TRUE(NextQueryPair(&rest, &key, &value));
  EXPECT_EQ(key.data(), query.data());
  EXPECT_EQ(value.data(), query.data() + 2);
  EXPECT_TRUE(rest.empty());
  EXPECT_FALSE(NextQueryPair(&rest, &key, &value));
}

// ---- Cookies.

TEST(CookieTest, FindCookie) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"a=1; b=2", "a", "1"},
      {"a=1; b=2", "b", "2"},
      {"a=1;b=2", "b", "2"},
      {"  a = 1 ;\tb=2  ", "a", "1"},
      {"  a = 1 ;\tb=2  ", "b", "2"},
      {"sid=\"quoted value\"", "sid", "quoted value"},
      {"sid=\"\"", "sid", ""},
      {"sid=\"", "sid", "\""},  // a lone DQUOTE is not a pair of them
      {"a=1; a=2", "a", "1"},
      {"A=1; a=2", "a", "2"},  // names are case-sensitive
      {"ab=1; a=2", "a", "2"},
      {"a=1; b=2", "c", ""},
      {"", "a", ""},
      {"a=x=y", "a", "x=y"},
      {"a; b=2", "a", ""},  // "a" is a nameless cookie's value, not a name
      {"a; b=2", "b", "2"},
      {";;; b=2;", "b", "2"},
      {"a=1; b=2", "", ""},
  };
  for (const auto& [header, name, value] : cases) {
    EXPECT_EQ(FindCookie(header, name), value) << header << " / " << name;
  }
}

TEST(CookieTest, NextCookieIteratesEveryPair) {
  std::string_view rest = "a=1; ;b; c=\"x y\";=e;  d = 4 ";
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string_view name, value;
  while (NextCookie(&rest, &name, &value)) pairs.emplace_back(name, value);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"a", "1"}, {"", "b"}, {"c", "x y"}, {"", "e"}, {"d", "4"}};
  EXPECT_EQ(pairs, expected);
}

TEST(CookieTest, IsCookieName) {
  EXPECT_TRUE(IsCookieName("SID"));
  EXPECT_TRUE(IsCookieName("__Host-session"));
  EXPECT_TRUE(IsCookieName("!#$%&'*+-.^_`|~09azAZ"));
  for (std::string_view bad : {""sv, "a b"sv, "a=b"sv, "a;b"sv, "a\"b"sv, "a(b"sv, "a/b"sv, "a,b"sv,
                               "a\x7f"sv, "a\tb"sv, "\xc3\xa9"sv, "a\0b"sv}) {
    EXPECT_FALSE(IsCookieName(bad)) << bad;
  }
}

TEST(CookieTest, IsCookieValue) {
  for (std::string_view good :
       {""sv, "abc"sv, "\"abc\""sv, "\"\""sv, "base64+/=="sv, "!#$%&'()*+-./:<=>?@[]^_`{|}~"sv}) {
    EXPECT_TRUE(IsCookieValue(good)) << good;
  }
  for (std::string_view bad : {"\""sv, "\"abc"sv, "abc\""sv, "\"a\"b\""sv, "a b"sv, "a,b"sv,
                               "a;b"sv, "a\\b"sv, "a\tb"sv, "\x80"sv, "a\x7f"sv, "a\0b"sv}) {
    EXPECT_FALSE(IsCookieValue(bad)) << bad;
  }
}

// ---- HTTP dates.

std::string HttpDate(int64_t t) {
  std::string out;
  AppendHttpDate(t, &out);
  return out;
}

TEST(HttpDateTest, Formats) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {784111777, "Sun, 06 Nov 1994 08:49:37 GMT"},  // RFC 9110's example
      {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
      {-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
      {951827696, "Tue, 29 Feb 2000 12:34:56 GMT"},
      {4107542400, "Mon, 01 Mar 2100 00:00:00 GMT"},
      {253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"},
      // Clamped to what a four-digit year can say.
      {253402300800, "Fri, 31 Dec 9999 23:59:59 GMT"},
      {std::numeric_limits<int64_t>::max(), "Fri, 31 Dec 9999 23:59:59 GMT"},
      {std::numeric_limits<int64_t>::min(), "Sat, 01 Jan 0000 00:00:00 GMT"},
  };
  for (const auto& [t, text] : cases) EXPECT_EQ(HttpDate(t), text) << t;
}

TEST(HttpDateTest, Appends) {
  std::string out = "Last-Modified: ";
  AppendHttpDate(0, &out);
  EXPECT_EQ(out, "Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT");
}

// Against the C library, from 1900 to 2200, in steps that visit every weekday, month, leap
// day and time of day over the run.
TEST(HttpDateTest, AgreesWithGmtimeAndRoundTrips) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int checked = 0;
  for (int64_t t = -2208988800; t < 7258118400; t += 86400 * 13 + 4567) {
    const time_t tt = static_cast<time_t>(t);
    tm parts;
    ASSERT_NE(gmtime_r(&tt, &parts), nullptr);
    char expected[64];
    snprintf(expected, sizeof(expected), "%s, %02d %s %04d %02d:%02d:%02d GMT",
             kDays[parts.tm_wday], parts.tm_mday, kMonths[parts.tm_mon], parts.tm_year + 1900,
             parts.tm_hour, parts.tm_min, parts.tm_sec);
    const std::string formatted = HttpDate(t);
    ASSERT_EQ(formatted, expected) << t;
    int64_t parsed = 0;
    ASSERT_TRUE(ParseHttpDate(formatted, &parsed)) << formatted;
    ASSERT_EQ(parsed, t) << formatted;

    char asctime_form[64];
    snprintf(asctime_form, sizeof(asctime_form), "%s %s %2d %02d:%02d:%02d %04d",
             kDays[parts.tm_wday], kMonths[parts.tm_mon], parts.tm_mday, parts.tm_hour,
             parts.tm_min, parts.tm_sec, parts.tm_year + 1900);
    ASSERT_TRUE(ParseHttpDate(asctime_form, &parsed)) << asctime_form;
    ASSERT_EQ(parsed, t) << asctime_form;
    ++checked;
  }
  EXPECT_GT(checked, 8000);
}

TEST(HttpDateTest, ParsesAllThreeFormats) {
  const std::vector<std::pair<std::string, int64_t>> cases = {
      {"Sun, 06 Nov 1994 08:49:37 GMT", 784111777},
      {"Sunday, 06-Nov-94 08:49:37 GMT", 784111777},
      {"Sun Nov  6 08:49:37 1994", 784111777},
      {"Sun Nov 06 08:49:37 1994", 784111777},
      {"  Sun, 06 Nov 1994 08:49:37 GMT\t", 784111777},  // OWS around a field value
      {"Sun, 06 Nov 1994 08:49:60 GMT", 784111800},      // leap second
      {"Thursday, 01-Jan-70 00:00:00 GMT", 0},
      {"Saturday, 01-Jan-00 00:00:00 GMT", 946684800},  // 00..69 is 20xx
      {"Friday, 31-Dec-99 23:59:59 GMT", 946684799},    // 70..99 is 19xx
      {"Wednesday, 31-Dec-69 23:59:59 GMT", 3155759999},
      {"Tue, 29 Feb 2000 12:34:56 GMT", 951827696},
      {"Mon, 01 Jan 0001 00:00:00 GMT", -62135596800},
      {"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799},
      // The weekday is not checked against the date.
      {"Mon, 06 Nov 1994 08:49:37 GMT", 784111777},
  };
  for (const auto& [text, expected] : cases) {
    int64_t t = -42;
    EXPECT_TRUE(ParseHttpDate(text, &t)) << text;
    EXPECT_EQ(t, expected) << text;
  }
}

TEST(HttpDateTest, RejectsMalformed) {
  for (std::string_view bad : {
           ""sv,
           "garbage"sv,
           "Sun, 06 Nov 1994 08:49:37 UTC"sv,
           "Sun, 06 Nov 1994 08:49:37 gmt"sv,
           "sun, 06 Nov 1994 08:49:37 GMT"sv,
           "Sun, 06 nov 1994 08:49:37 GMT"sv,
           "Foo, 06 Nov 1994 08:49:37 GMT"sv,
           "Sun, 6 Nov 1994 08:49:37 GMT"sv,
           "Sun, 06 Nov 94 08:49:37 GMT"sv,
           "Sun,06 Nov 1994 08:49:37 GMT "sv,
           "Sun, 06 Nov 1994 08:49:37 GMTX"sv,
           "Sun, 06-Nov-1994 08:49:37 GMT"sv,
           "Sun, 00 Nov 1994 08:49:37 GMT"sv,
           "Sun, 31 Nov 1994 08:49:37 GMT"sv,
           "Sun, 29 Feb 1900 08:49:37 GMT"sv,  // 1900 is not a leap year
           "Sun, 29 Feb 1995 08:49:37 GMT"sv,
           "Sun, 06 Nov 1994 24:00:00 GMT"sv,
           "Sun, 06 Nov 1994 08:60:00 GMT"sv,
           "Sun, 06 Nov 1994 08:49:61 GMT"sv,
           "Sun, 06 Nov 1994 08-49-37 GMT"sv,
           "Sun, 06 Nov 19x4 08:49:37 GMT"sv,
           "Sun, 06 Nov 1994 8:49:37  GMT"sv,
           "Sun, +6 Nov 1994 08:49:37 GMT"sv,
           "Sunday, 06-Nov-94 08:49:37 UTC"sv,
           "Sunday, 6-Nov-94 08:49:37 GMT"sv,
           "Sunday 06-Nov-94 08:49:37 GMT"sv,
           "Sun, 06-Nov-94 08:49:37 GMT"sv,
           "Funday, 06-Nov-94 08:49:37 GMT"sv,
           "Sunday, 06 Nov 94 08:49:37 GMT"sv,
           "Sunday, 31-Feb-94 08:49:37 GMT"sv,
           "Sun Nov 6 08:49:37 1994"sv,
           "Sun Nov  6 08:49:37 94"sv,
           "Sun Nov 6  08:49:37 1994"sv,
           "Sun Nov  x 08:49:37 1994"sv,
           "Sun Nov 31 08:49:37 1994"sv,
           "Sun Nov  6 08:49:37 1994 GMT"sv,
           "Sun, 06 Nov 1994 08:49:37 GMT\0"sv,
       }) {
    int64_t t = -42;
    EXPECT_FALSE(ParseHttpDate(bad, &t)) << bad;
    EXPECT_EQ(t, -42) << bad;
  }
}

}  // namespace
}  // namespace percore::http
