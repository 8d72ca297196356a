// Static(): files under a root directory, through the whole request path (parser, middleware,
// router, response writer) with percore::testing::TestClient, on a fresh directory per test
// (static_suite.h): types and validators, ranges, HEAD, directories, hidden and missing files,
// other methods, links, and a table of hostile paths. Running out of descriptors is in
// static_descriptors_test.cc.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/testing/client.h"
#include "static_suite.h"

namespace percore::http {
namespace {

// ---------------------------------------------------------------------------------------------
// Files, their types and validators.

struct TypeCase {
  std::string_view target;
  std::string_view body;
  std::string_view type;
};

TEST_F(StaticTest, ServesFilesWithTheirTypeByExtension) {
  const TypeCase cases[] = {
      {"/files/a.txt", kA, "text/plain; charset=utf-8"},
      {"/files/style.css", kCss, "text/css; charset=utf-8"},
      {"/files/data.json", kJson, "application/json"},
      {"/files/sub/deep/x.js", kJs, "text/javascript; charset=utf-8"},
      {"/files/sub/index.html", kIndex, "text/html; charset=utf-8"},
      {"/files/big.bin", big_, "application/octet-stream"},
  };
  for (const TypeCase& c : cases) {
    SCOPED_TRACE(c.target);
    const TestResponse r = Get(c.target);
    ASSERT_EQ(r.status, 200) << r.error << r.body;
    EXPECT_EQ(r.body, c.body);
    EXPECT_EQ(r.Header("content-type"), c.type);
    EXPECT_EQ(r.Header("content-length"), std::to_string(c.body.size()));
    EXPECT_EQ(r.Header("accept-ranges"), "bytes");
  }
}

TEST_F(StaticTest, SendsEtagLastModifiedAndCacheControl) {
  const TestResponse r = Get("/files/a.txt");
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("etag"), EtagFor(kA.size()));
  EXPECT_EQ(r.Header("last-modified"), kLastModified);
  EXPECT_EQ(r.Header("cache-control"), "public, max-age=0");
}

TEST_F(StaticTest, MaxAgeSetsOrLeavesOutCacheControl) {
  app_.Use("/cached", Static(root_, {.max_age = 3600}));
  app_.Use("/uncached", Static(root_, {.max_age = -1}));
  EXPECT_EQ(Get("/cached/a.txt").Header("cache-control"), "public, max-age=3600");
  const TestResponse r = Get("/uncached/a.txt");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.Headers("cache-control").empty());
}

// Conditional requests (If-Match, If-None-Match, ...) are in preconditions_test.cc.

// ---------------------------------------------------------------------------------------------
// Ranges, on the 3 MiB file.

struct RangeCase {
  std::string_view range;
  uint64_t first;
  uint64_t length;
};

TEST_F(StaticTest, SingleRangeIs206WithExactBytes) {
  const std::string total = "/" + std::to_string(kBigSize);
  const RangeCase cases[] = {
      {"bytes=0-9", 0, 10},
      {"bytes=-5", kBigSize - 5, 5},
      {"bytes=100-", 100, kBigSize - 100},
      {"bytes=1048570-1048585", 1048570, 16},       // across the harness's 1 MiB reads
      {"bytes=3145720-99999999", kBigSize - 8, 8},  // last-pos clamped
      {"bytes=0-0", 0, 1},
  };
  for (const RangeCase& c : cases) {
    SCOPED_TRACE(c.range);
    const TestResponse r = Get("/files/big.bin", {{"Range", std::string(c.range)}});
    ASSERT_EQ(r.status, 206) << r.error;
    EXPECT_EQ(r.Header("content-range"), "bytes " + std::to_string(c.first) + "-" +
                                             std::to_string(c.first + c.length - 1) + total);
    EXPECT_EQ(r.Header("content-length"), std::to_string(c.length));
    ASSERT_EQ(r.body.size(), c.length);
    EXPECT_TRUE(r.body == std::string_view(big_).substr(c.first, c.length));
  }
}

TEST_F(StaticTest, RangeStartingAtTheEndIs416) {
  for (const std::string& range :
       {"bytes=" + std::to_string(kBigSize) + "-", std::string("bytes=-0"),
        "bytes=" + std::to_string(kBigSize + 10) + "-" + std::to_string(kBigSize + 20)}) {
    SCOPED_TRACE(range);
    const TestResponse r = Get("/files/big.bin", {{"Range", range}});
    EXPECT_EQ(r.status, 416) << r.error;
    EXPECT_EQ(r.Header("content-range"), "bytes */" + std::to_string(kBigSize));
    EXPECT_EQ(r.Header("content-type"), "text/plain; charset=utf-8") << "not the file's type";
    EXPECT_EQ(r.body, "Range Not Satisfiable\n");
  }
}

TEST_F(StaticTest, RangesNotServedAsOnePartGetTheWholeFile) {
  for (const std::string_view range :
       {"bytes=0-1,5-6", "bytes=5-1", "items=0-9", "bytes=abc", "bytes=0-1, 0-1"}) {
    SCOPED_TRACE(range);
    const TestResponse r = Get("/files/big.bin", {{"Range", std::string(range)}});
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_TRUE(r.Headers("content-range").empty());
    EXPECT_EQ(r.body.size(), kBigSize);
    EXPECT_TRUE(r.body == big_);
  }
}

TEST_F(StaticTest, IfRangeMatchingGivesTheRangeOtherwiseTheWholeFile) {
  const std::string etag = EtagFor(kBigSize);
  TestResponse r = Get("/files/big.bin", {{"Range", "bytes=0-9"}, {"If-Range", etag}});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, big_.substr(0, 10));

  r = Get("/files/big.bin", {{"Range", "bytes=0-9"}, {"If-Range", std::string(kLastModified)}});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, big_.substr(0, 10));

  for (const std::string_view old :
       {"\"5e0be0ff-300000\"", "W/\"5e0be100-300000\"", "Tue, 31 Dec 2019 23:59:59 GMT"}) {
    SCOPED_TRACE(old);
    r = Get("/files/big.bin", {{"Range", "bytes=0-9"}, {"If-Range", std::string(old)}});
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.Headers("content-range").empty());
    EXPECT_EQ(r.body.size(), kBigSize);
  }
}

// ---------------------------------------------------------------------------------------------
// HEAD, directories, hidden and missing files, other methods.

TEST_F(StaticTest, HeadHasTheFilesLengthAndNoBody) {
  TestResponse r = Fetch("HEAD", "/files/big.bin");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("content-length"), std::to_string(kBigSize));
  EXPECT_EQ(r.Header("content-type"), "application/octet-stream");
  EXPECT_EQ(r.Header("etag"), EtagFor(kBigSize));
  EXPECT_EQ(r.body, "");
  EXPECT_FALSE(r.closed);
  // Had body bytes gone out after the head, this answer would not parse.
  r = Get("/files/a.txt");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, kA);
}

TEST_F(StaticTest, RequestAfterAnAnswerBeyondTheOutputLimitIsServed) {
  // The 3 MiB answer fills more than max_pending_output (1 MiB): the connection pauses. Once it
  // is all sent the loop queues the connection to resume and gives its output buffer back; a
  // receive before the loop's next pass (epoll reads right after writing; io_uring's multishot
  // receive may complete in the same batch as the send) must still be served. Run in a child
  // process: the bug this guards against is a crash.
  EXPECT_EXIT(
      {
        Mount();
        TestClient raw(app_);
        const TestResponse big = raw.Get("/files/big.bin");
        const TestResponse next = raw.Get("/files/a.txt");  // no loop pass in between
        std::exit(big.status == 200 && big.body.size() == kBigSize && next.status == 200 &&
                          next.body == kA
                      ? 0
                      : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(StaticTest, DirectoryWithSlashServesItsIndex) {
  const TestResponse r = Get("/files/sub/");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, kIndex);
  EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(r.Header("etag"), EtagFor(kIndex.size()));
}

TEST_F(StaticTest, DirectoryWithoutSlashRedirects) {
  struct Case {
    std::string_view target, location;
  };
  const Case cases[] = {
      {"/files/sub", "/files/sub/"},
      {"/files/sub?x=1&y", "/files/sub/?x=1&y"},
      {"/files/sub/deep", "/files/sub/deep/"},
      {"/files", "/files/"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.target);
    const TestResponse r = Get(c.target);
    EXPECT_EQ(r.status, 301) << r.error;
    EXPECT_EQ(r.Header("location"), c.location);
  }
}

TEST_F(StaticTest, DirectoryWithoutIndexIsNotFound) {
  EXPECT_EQ(Get("/files/").status, 404);
  EXPECT_EQ(Get("/files/sub/deep/").status, 404);
}

TEST_F(StaticTest, RedirectIsNeverProtocolRelative) {
  // Mounted at the root, "//sub" names the directory "sub": a Location of "//sub/" would send
  // the browser to the host "sub" (an open redirect).
  app_.Use(Static(root_));
  mounted_ = true;
  for (const std::string_view target : {"//sub", "///sub", "//sub/deep"}) {
    SCOPED_TRACE(target);
    const TestResponse r = Get(target);
    EXPECT_EQ(r.status, 301) << r.error;
    const std::string location = r.Header("location");
    EXPECT_EQ(location.front(), '/');
    EXPECT_FALSE(location.starts_with("//")) << location;
    EXPECT_TRUE(location.ends_with("/")) << location;
  }
}

TEST_F(StaticTest, FileWithTrailingSlashIsNotFound) {
  // As open("a.txt/") fails with ENOTDIR: "a.txt/" names a directory that is not there.
  EXPECT_EQ(Get("/files/a.txt/").status, 404);
  EXPECT_EQ(Get("/files/sub/index.html/").status, 404);
}

TEST_F(StaticTest, DotfilesAreHiddenUnlessAllowed) {
  TestResponse r = Get("/files/.secret");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body.find("secret"), std::string::npos) << r.body;
  EXPECT_EQ(Get("/files/sub/.hidden-dir/x").status, 404);
}

TEST_F(StaticTest, DotfilesOptionServesThem) {
  Mount({.dotfiles = true});
  const TestResponse r = Get("/files/.secret");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kSecret);
  EXPECT_EQ(r.Header("content-type"), "application/octet-stream");
}

TEST_F(StaticTest, MissingFileIs404) {
  const TestResponse r = Get("/files/missing.txt");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "Not Found\n");
  EXPECT_EQ(Get("/files/sub/missing/deeper.txt").status, 404);
  EXPECT_EQ(Get("/files/a.txt/x").status, 404);  // ENOTDIR
}

TEST_F(StaticTest, MissingFileGoesThroughTheErrorHook) {
  std::set<int> seen;
  app_.OnError([&seen](const Request& req, Response& res, const Error& error) {
    seen.insert(error.status);
    res.Status(error.status)
        .Send("custom " + std::to_string(error.status) + " for " + std::string(req.path()));
  });
  TestResponse r = Get("/files/missing.txt");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "custom 404 for /files/missing.txt");
  r = Get("/files/.secret");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "custom 404 for /files/.secret");
  // Refusals are HttpErrors: the hook answers them too.
  r = Get("/files/out-link");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "custom 403 for /files/out-link");
  EXPECT_EQ(seen, (std::set<int>{403, 404}));
}

TEST_F(StaticTest, OtherMethodsGoOnToTheRoutes) {
  app_.Post("/files/a.txt", [](const Request& req, Response& res) {
    res.Status(201).Send("posted " + std::string(req.body()));
  });
  TestResponse r = Fetch("POST", "/files/a.txt", {}, "x");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "posted x");
  // The GET of the same path is still the file's.
  r = Get("/files/a.txt");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kA);
}

TEST_F(StaticTest, OtherMethodsWithoutARouteAreNotFound) {
  for (const std::string_view method : {"POST", "PUT", "DELETE"}) {
    SCOPED_TRACE(method);
    const TestResponse r = Fetch(method, "/files/a.txt", {}, "x");
    EXPECT_EQ(r.status, 404) << r.error;
    EXPECT_EQ(r.body.find(kA), std::string::npos);
  }
}

TEST_F(StaticTest, LinksInsideTheRootAreFollowed) {
  TestResponse r = Get("/files/inside-link");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, kA);
  r = Get("/files/sub-link/deep/x.js");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, kJs);
  EXPECT_EQ(r.Header("content-type"), "text/javascript; charset=utf-8");
  r = Get("/files/sub-link/");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, kIndex);
}

TEST_F(StaticTest, EncodedNamesAreDecoded) {
  WriteFile(root_ + "/with space+plus.txt", "spaced\n");
  const TestResponse r = Get("/files/with%20space+plus.txt");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "spaced\n");
  EXPECT_EQ(Get("/files/%61.txt").body, kA);  // "%61" is 'a'
}

TEST_F(StaticTest, RootThatIsNotADirectoryThrows) {
  EXPECT_THROW(Static("/nonexistent"), std::invalid_argument);
  EXPECT_THROW(Static(root_ + "/a.txt"), std::invalid_argument);
  EXPECT_THROW(Static(""), std::invalid_argument);
  EXPECT_NO_THROW(Static(root_ + "/sub-link"));
}

// ---------------------------------------------------------------------------------------------
// Hostile paths: nothing outside the root comes out, whatever the encoding.

struct HostileCase {
  std::string_view target;
  int status;
  std::string_view why;
};

// 403: a ".." segment (decoded) or a link out of the root, refused by Static. 404: a name that
// is not there below the root, a NUL, a hidden name, something that is not a regular file.
// 400: a '%' not followed by two hex digits.
constexpr HostileCase kHostile[] = {
    {"/files/../outside.txt", 403, "a literal .. segment"},
    {"/files/%2e%2e/outside.txt", 403, "encoded dots"},
    {"/files/%2E%2E%2Foutside.txt", 403, "encoded dots and slash, upper case"},
    {"/files/..%2foutside.txt", 403, "an encoded slash"},
    {"/files/.%2e/outside.txt", 403, "half-encoded dots"},
    {"/files/sub/../../outside.txt", 403, ".. below a directory"},
    {"/files/sub/%2e%2e/%2e%2e/outside.txt", 403, "encoded .. below a directory"},
    {"/files/%2e%2e%5coutside.txt", 404, "a backslash is a name on Linux, and a hidden one"},
    {"/files/a.txt%00.css", 404, "NUL in a name"},
    {"/files/%00", 404, "NUL alone"},
    {"/files/out-link", 403, "absolute link out of the root"},
    {"/files/out-dir/passwd", 403, "link to a directory outside"},
    {"/files/up-link", 403, "relative link out through .."},
    {"/files/sub/up-dir/outside.txt", 403, "relative link to a directory outside"},
    {"/files//etc/passwd", 404, "a leading slash stays below the root"},
    {"/files/%2fetc%2fpasswd", 404, "an encoded leading slash stays below the root"},
    {"/files/fifo", 404, "a FIFO: not served, and not waited on"},
    {"/files/%zz", 400, "invalid percent-encoding"},
    {"/files/a%2", 400, "truncated percent-encoding"},
    {"/files/....//outside.txt", 404, "a .... segment is a (hidden) name"},
};

class StaticHostileTest : public StaticTest, public ::testing::WithParamInterface<HostileCase> {};

TEST_P(StaticHostileTest, IsRefusedWithoutLeakingAnything) {
  const HostileCase& c = GetParam();
  for (const std::string_view method : {"GET", "HEAD"}) {
    SCOPED_TRACE(method);
    const TestResponse r = Fetch(method, c.target);
    EXPECT_EQ(r.status, c.status) << r.error << " " << r.body;
    EXPECT_EQ(r.body.find("OUTSIDE-THE-ROOT"), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find("root:"), std::string::npos) << r.body;
    EXPECT_TRUE(r.Headers("etag").empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, StaticHostileTest, ::testing::ValuesIn(kHostile),
                         [](const ::testing::TestParamInfo<HostileCase>& info) {
                           return "Case" + std::to_string(info.index);
                         });

}  // namespace
}  // namespace percore::http
