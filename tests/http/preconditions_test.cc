// Conditional requests (RFC 9110 13.1, 13.2): If-Match, If-Unmodified-Since, If-None-Match and
// If-Modified-Since, evaluated in 13.2.2's order, for Static and for handlers that set ETag or
// Last-Modified on a 2xx answer: EvaluatePreconditions on its own, then through the whole
// request path with percore::testing::TestClient.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "codec.h"
#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/testing/client.h"

namespace percore::http {
namespace {

using percore::testing::Fields;
using percore::testing::TestClient;
using percore::testing::TestResponse;

// The served file and the handlers' answer: the same body and validators, so that every rule is
// checked the same way on each.
constexpr int64_t kMtime = 1577836800;  // 2020-01-01T00:00:00Z, 0x5e0be100
constexpr std::string_view kLastModified = "Wed, 01 Jan 2020 00:00:00 GMT";
constexpr std::string_view kBody = "hello, conditions\n";  // 18 bytes
constexpr std::string_view kEtag = "\"5e0be100-12\"";      // Static's: mtime-size in hex
constexpr std::string_view kOlder = "Tue, 31 Dec 2019 23:59:59 GMT";
constexpr std::string_view kNewer = "Sat, 01 Jan 2022 00:00:00 GMT";  // in the past still

// An HTTP-date `seconds` from now.
std::string FromNow(int64_t seconds) {
  std::string date;
  AppendHttpDate(time(nullptr) + seconds, &date);
  return date;
}

// ---------------------------------------------------------------------------------------------
// EvaluatePreconditions and IfMatchMatches alone.

TEST(IfMatchMatchesTest, ComparesStrongly) {
  EXPECT_TRUE(IfMatchMatches("\"a\"", "\"a\""));
  EXPECT_TRUE(IfMatchMatches("\"x\", \"a\"", "\"a\""));
  EXPECT_TRUE(IfMatchMatches(" * ", "\"a\""));
  EXPECT_TRUE(IfMatchMatches("*", "W/\"a\""));
  EXPECT_FALSE(IfMatchMatches("W/\"a\"", "\"a\""));  // RFC 9110 8.8.3.2: weak never matches
  EXPECT_FALSE(IfMatchMatches("\"a\"", "W/\"a\""));
  EXPECT_FALSE(IfMatchMatches("W/\"a\"", "W/\"a\""));
  EXPECT_FALSE(IfMatchMatches("\"b\"", "\"a\""));
  EXPECT_FALSE(IfMatchMatches("\"a\"", ""));   // no ETag: no tag matches
  EXPECT_FALSE(IfMatchMatches("a", "\"a\""));  // malformed
  // If-None-Match keeps its weak comparison.
  EXPECT_TRUE(IfNoneMatchMatches("W/\"a\"", "\"a\""));
  EXPECT_TRUE(IfNoneMatchMatches("\"a\"", "W/\"a\""));
}

TEST(EvaluatePreconditionsTest, FollowsRfc9110Section13_2_2) {
  constexpr int64_t kNow = kMtime + 1000;
  const std::string at = std::string(kLastModified), older = std::string(kOlder);
  std::string future;
  AppendHttpDate(kNow + 1, &future);
  struct Case {
    ConditionalFields fields;
    Precondition result;
  };
  const Case cases[] = {
      {{}, Precondition::kPass},
      {{.if_match = "\"e\""}, Precondition::kPass},
      {{.if_match = "\"x\""}, Precondition::kFailed},
      {{.if_match = "W/\"e\""}, Precondition::kFailed},
      {{.if_unmodified_since = at}, Precondition::kPass},
      {{.if_unmodified_since = older}, Precondition::kFailed},
      {{.if_unmodified_since = "yesterday"}, Precondition::kPass},  // unparsable: ignored
      {{.if_match = "*", .if_unmodified_since = older}, Precondition::kPass},    // If-Match wins
      {{.if_match = "\"x\"", .if_none_match = "\"e\""}, Precondition::kFailed},  // step 1 first
      {{.if_unmodified_since = older, .if_modified_since = at}, Precondition::kFailed},
      {{.if_none_match = "W/\"e\""}, Precondition::kNotModified},
      {{.if_none_match = "\"x\"", .if_modified_since = at}, Precondition::kPass},  // 3 before 4
      {{.if_modified_since = at}, Precondition::kNotModified},
      {{.if_modified_since = older}, Precondition::kPass},
      {{.if_modified_since = future}, Precondition::kPass},  // later than now: invalid
  };
  const int64_t modified = kMtime;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.fields.if_match) + "|" + std::string(c.fields.if_unmodified_since) +
                 "|" + std::string(c.fields.if_none_match) + "|" +
                 std::string(c.fields.if_modified_since));
    EXPECT_EQ(EvaluatePreconditions(c.fields, "\"e\"", &modified, kNow), c.result);
  }
  // Without a modification date, the date conditions cannot fail nor spare the body.
  EXPECT_EQ(EvaluatePreconditions({.if_unmodified_since = older}, "\"e\"", nullptr, kNow),
            Precondition::kPass);
  EXPECT_EQ(EvaluatePreconditions({.if_modified_since = at}, "\"e\"", nullptr, kNow),
            Precondition::kPass);
}

// ---------------------------------------------------------------------------------------------
// Through the request path: a file under Static, a handler, and a handler's deferred answer.

class PreconditionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/percore-preconditions-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    const std::string file = dir_ + "/a.txt";
    {
      std::ofstream out(file, std::ios::binary);
      out << kBody;
      ASSERT_TRUE(out.good());
    }
    const timespec times[2] = {{kMtime, 0}, {kMtime, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, file.c_str(), times, 0), 0) << std::strerror(errno);

    app_.Use("/files", Static(dir_));
    app_.Get("/page", [](const Request&, Response& res) {
      res.Set("ETag", kEtag).Set("Last-Modified", kLastModified).Send(kBody);
    });
    app_.Get("/deferred", [](const Request&, Response& res) {
      Response later = res.Defer();
      later.worker().Post([later = std::move(later)]() mutable {
        later.Set("ETag", kEtag).Set("Last-Modified", kLastModified).Send(kBody);
      });
    });
    app_.Get("/etag-only",
             [](const Request&, Response& res) { res.Set("ETag", kEtag).Send(kBody); });
    app_.Get("/dated-only", [](const Request&, Response& res) {
      res.Set("Last-Modified", kLastModified).Send(kBody);
    });
    app_.Get("/plain", [](const Request&, Response& res) { res.Send(kBody); });
    app_.Get("/missing", [](const Request&, Response& res) {
      res.Status(404).Set("ETag", kEtag).Send("gone\n");
    });
    app_.Put("/page", [](const Request&, Response& res) {
      res.Set("ETag", "\"v2\"").Send("updated\n");  // acted already: too late for a 412
    });
  }
  void TearDown() override {
    client_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  TestClient& client() {
    if (client_ == nullptr) client_ = std::make_unique<TestClient>(app_);
    return *client_;
  }

  std::string dir_;
  App app_;
  std::unique_ptr<TestClient> client_;
};

// Each rule on each of the three.
class PreconditionsOnEachTest : public PreconditionsTest,
                                public ::testing::WithParamInterface<std::string_view> {
 protected:
  TestResponse Get(const Fields& fields) { return client().Get(GetParam(), fields); }

  void ExpectFull(const TestResponse& r) {
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.body, kBody);
    EXPECT_EQ(r.Header("etag"), kEtag);
  }
  void ExpectNotModified(const TestResponse& r) {
    EXPECT_EQ(r.status, 304) << r.error;
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.Header("etag"), kEtag);
    EXPECT_TRUE(r.Headers("content-type").empty()) << "a 304 has no representation to type";
  }
  void ExpectFailed(const TestResponse& r) {
    EXPECT_EQ(r.status, 412) << r.error;
    EXPECT_EQ(r.body, "Precondition Failed\n");
    EXPECT_EQ(r.Header("content-type"), "text/plain; charset=utf-8");
  }
};

TEST_P(PreconditionsOnEachTest, IfMatchNeedsTheCurrentEtagByStrongComparison) {
  for (const std::string& tag :
       {std::string(kEtag), "\"x\", " + std::string(kEtag), std::string("*")}) {
    SCOPED_TRACE(tag);
    ExpectFull(Get({{"If-Match", tag}}));
  }
  for (const std::string& tag :
       {std::string("\"x\""), "W/" + std::string(kEtag), std::string("not a tag")}) {
    SCOPED_TRACE(tag);
    ExpectFailed(Get({{"If-Match", tag}}));
  }
  // HEAD as GET, without the body; the connection stays in step.
  const TestResponse head = client().Fetch("HEAD", GetParam(), {{"If-Match", "\"x\""}});
  EXPECT_EQ(head.status, 412);
  EXPECT_EQ(head.body, "");
  ExpectFull(Get({}));
}

TEST_P(PreconditionsOnEachTest, IfUnmodifiedSinceFailsForAnOlderDateAndIgnoresNonDates) {
  ExpectFull(Get({{"If-Unmodified-Since", std::string(kLastModified)}}));
  ExpectFull(Get({{"If-Unmodified-Since", std::string(kNewer)}}));
  ExpectFailed(Get({{"If-Unmodified-Since", std::string(kOlder)}}));
  // RFC 9110 13.1.4: not a valid HTTP-date (a list of them neither) is ignored.
  ExpectFull(Get({{"If-Unmodified-Since", "not a date"}}));
  ExpectFull(Get({{"If-Unmodified-Since", std::string(kOlder) + ", " + std::string(kOlder)}}));
}

TEST_P(PreconditionsOnEachTest, IfUnmodifiedSinceIsIgnoredWithIfMatch) {
  ExpectFull(Get({{"If-Match", std::string(kEtag)}, {"If-Unmodified-Since", std::string(kOlder)}}));
  ExpectFull(Get({{"If-Match", "*"}, {"If-Unmodified-Since", std::string(kOlder)}}));
  ExpectFailed(Get({{"If-Match", "\"x\""}, {"If-Unmodified-Since", std::string(kNewer)}}));
}

TEST_P(PreconditionsOnEachTest, IfNoneMatchComparesWeaklyAndWinsOverIfModifiedSince) {
  for (const std::string& tag : {std::string(kEtag), "W/" + std::string(kEtag),
                                 "\"x\", " + std::string(kEtag), std::string("*")}) {
    SCOPED_TRACE(tag);
    ExpectNotModified(Get({{"If-None-Match", tag}}));
  }
  ExpectFull(Get({{"If-None-Match", "\"x\""}}));
  // RFC 9110 13.2.2: If-Modified-Since is not looked at when If-None-Match is present.
  ExpectFull(Get({{"If-None-Match", "\"x\""}, {"If-Modified-Since", std::string(kLastModified)}}));
}

TEST_P(PreconditionsOnEachTest, IfModifiedSinceIgnoresDatesInTheFuture) {
  struct Case {
    std::string since;
    int status;
  };
  const Case cases[] = {
      {std::string(kLastModified), 304},
      {std::string(kNewer), 304},
      {"Wednesday, 01-Jan-20 00:00:00 GMT", 304},  // RFC 850 form
      {std::string(kOlder), 200},
      {"Thu, 01 Jan 1970 00:00:00 GMT", 200},
      {"not a date", 200},
      // RFC 9110 13.1.3: a date later than the server's clock is invalid.
      {FromNow(3600), 200},
      {"Fri, 01 Jan 2100 00:00:00 GMT", 200},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.since);
    const TestResponse r = Get({{"If-Modified-Since", c.since}});
    if (c.status == 304) {
      ExpectNotModified(r);
    } else {
      ExpectFull(r);
    }
  }
}

TEST_P(PreconditionsOnEachTest, IsEvaluatedInRfc9110Order) {
  // If-Match before If-None-Match, If-Unmodified-Since before If-Modified-Since.
  ExpectFailed(Get({{"If-Match", "\"x\""}, {"If-None-Match", std::string(kEtag)}}));
  ExpectFailed(Get({{"If-Unmodified-Since", std::string(kOlder)},
                    {"If-Modified-Since", std::string(kLastModified)}}));
  ExpectNotModified(Get({{"If-Match", std::string(kEtag)}, {"If-None-Match", std::string(kEtag)}}));
}

INSTANTIATE_TEST_SUITE_P(Answers, PreconditionsOnEachTest,
                         ::testing::Values("/files/a.txt", "/page", "/deferred"),
                         [](const ::testing::TestParamInfo<std::string_view>& info) {
                           return std::string(info.param == "/files/a.txt" ? "Static"
                                              : info.param == "/page"      ? "Handler"
                                                                           : "Deferred");
                         });

TEST_F(PreconditionsTest, StaticEvaluatesThemBeforeRange) {
  TestResponse r = client().Get("/files/a.txt", {{"Range", "bytes=0-4"}, {"If-Match", "\"x\""}});
  EXPECT_EQ(r.status, 412);
  EXPECT_TRUE(r.Headers("content-range").empty());
  r = client().Get("/files/a.txt", {{"Range", "bytes=100-"}, {"If-Match", "\"x\""}});
  EXPECT_EQ(r.status, 412) << "not 416: the precondition comes first";
  r = client().Get("/files/a.txt",
                   {{"Range", "bytes=0-4"}, {"If-Modified-Since", std::string(kLastModified)}});
  EXPECT_EQ(r.status, 304);
  r = client().Get("/files/a.txt", {{"Range", "bytes=0-4"}, {"If-Match", std::string(kEtag)}});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, kBody.substr(0, 5));
}

TEST_F(PreconditionsTest, AHandlersAnswerIsConditionalOnTheValidatorsItSets) {
  // An ETag only: the date conditions have nothing to compare.
  EXPECT_EQ(client().Get("/etag-only", {{"If-Match", "\"x\""}}).status, 412);
  EXPECT_EQ(client().Get("/etag-only", {{"If-Unmodified-Since", std::string(kOlder)}}).status, 200);
  EXPECT_EQ(client().Get("/etag-only", {{"If-None-Match", std::string(kEtag)}}).status, 304);
  // A Last-Modified only: no tag matches but "*".
  EXPECT_EQ(client().Get("/dated-only", {{"If-Match", std::string(kEtag)}}).status, 412);
  EXPECT_EQ(client().Get("/dated-only", {{"If-Match", "*"}}).status, 200);
  EXPECT_EQ(client().Get("/dated-only", {{"If-Unmodified-Since", std::string(kOlder)}}).status,
            412);
  EXPECT_EQ(client().Get("/dated-only", {{"If-Modified-Since", std::string(kLastModified)}}).status,
            304);
  // Neither: nothing to evaluate against, the answer is the handler's.
  EXPECT_EQ(client().Get("/plain", {{"If-Match", "\"x\""}}).status, 200);
  EXPECT_EQ(client().Get("/plain", {{"If-None-Match", "*"}}).status, 200);
}

TEST_F(PreconditionsTest, OnlyA2xxAnswerToGetOrHeadIsConditional) {
  EXPECT_EQ(client().Get("/page", {{"If-Match", "\"x\""}}).status, 412);
  // RFC 9110 13.2.1: a 404 would be the answer without the condition, so it is the answer.
  const TestResponse missing = client().Get("/missing", {{"If-Match", "\"x\""}});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, "gone\n");
  // A PUT's handler has acted by the time it answers: a 412 then would be a lie (the validator
  // is the new representation's, which the client cannot have had).
  const TestResponse put = client().Fetch("PUT", "/page", {{"If-Match", "\"v1\""}}, "x");
  EXPECT_EQ(put.status, 200);
  EXPECT_EQ(put.body, "updated\n");
}

}  // namespace
}  // namespace percore::http
