// Compress() of files (SendFile, Static): whole up to 64 KiB, gzipped as the client reads them
// beyond, none over 4 MiB; through the whole request path with percore::testing::TestClient.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "http/gzip_checks.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/testing/client.h"

namespace percore::http {
namespace {

using percore::testing::Fields;
using percore::testing::TestClient;
using percore::testing::TestResponse;

// ---------------------------------------------------------------------------------------------
// Files: SendFile and Static, in a fresh directory.

constexpr size_t kMaxCompressedFile = 4 << 20;  // Response::SendFile's bound
// Bigger than the 64 KiB a file is compressed whole up to: gzipped as it is read, chunked.
constexpr size_t kStreamedFile = 2 << 20;

const std::string& Huge() {
  static const std::string huge = Text(kStreamedFile);
  return huge;
}

class CompressFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/percore-compress-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    Write("big.txt", Big());
    Write("small.txt", Text(100));
    Write("big.bin", Big());
    Write("huge.txt", Huge());
    app_.Use(Compress());
    app_.Use("/files", Static(dir_));
    app_.Get("/sendfile", [this](const Request&, Response& res) {
      const int fd = open((dir_ + "/big.txt").c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw std::runtime_error("open");
      res.Type("text/plain").SendFile(fd, 100, Big().size() - 100);
    });
    app_.Get("/deferred-file", [this](const Request&, Response& res) {
      Response later = res.Defer();
      const std::string path = dir_ + "/big.txt";
      later.worker().Post([later = std::move(later), path]() mutable {
        const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        later.Type("text/plain").SendFile(fd, 0, Big().size());
      });
    });
    app_.Get("/deferred-huge-file", [this](const Request&, Response& res) {
      Response later = res.Defer();
      const std::string path = dir_ + "/huge.txt";
      later.worker().Post([later = std::move(later), path]() mutable {
        const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        later.Type("text/plain").Set("ETag", "\"huge\"").SendFile(fd, 0, Huge().size());
      });
    });
  }
  void TearDown() override {
    client_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  void Write(const std::string& name, std::string_view content) {
    std::ofstream out(dir_ + "/" + name, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    ASSERT_TRUE(out.good());
  }
  TestClient& client() {
    if (client_ == nullptr) client_ = std::make_unique<TestClient>(app_);
    return *client_;
  }

  std::string dir_;
  App app_;
  std::unique_ptr<TestClient> client_;
};

TEST_F(CompressFilesTest, AStaticTextFileIsGzippedWithAWeakEtag) {
  const TestResponse identity = client().Get("/files/big.txt");
  ASSERT_EQ(identity.status, 200) << identity.error;
  ExpectIdentity(identity, Big());
  EXPECT_EQ(identity.Header("vary"), "Accept-Encoding");
  const std::string etag = identity.Header("etag");
  ASSERT_TRUE(etag.starts_with("\"")) << etag;

  const TestResponse r = client().Get("/files/big.txt", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  ExpectGzipped(r, Big());
  EXPECT_EQ(r.Header("etag"), "W/" + etag);
  EXPECT_EQ(r.Header("last-modified"), identity.Header("last-modified"));
  EXPECT_EQ(r.Header("content-type"), "text/plain; charset=utf-8");
}

TEST_F(CompressFilesTest, SendFileRangesAndDeferredFilesAreGzipped) {
  ExpectGzipped(client().Get("/sendfile", kGzip), std::string_view(Big()).substr(100));
  const TestResponse r = client().Get("/deferred-file", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  ExpectGzipped(r, Big());
}

TEST_F(CompressFilesTest, FilesNotWorthCompressingGoAsTheyAre) {
  TestResponse r = client().Get("/files/small.txt", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  ExpectIdentity(r, Text(100));
  EXPECT_TRUE(r.Headers("vary").empty());
  r = client().Get("/files/big.bin", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("content-type"), "application/octet-stream");
  ExpectIdentity(r, Big());
  EXPECT_TRUE(r.Headers("vary").empty());
}

TEST_F(CompressFilesTest, ARangeOfAFileIsNotCompressed) {
  const TestResponse r =
      client().Get("/files/big.txt", {{"Accept-Encoding", "gzip"}, {"Range", "bytes=10-19"}});
  ASSERT_EQ(r.status, 206) << r.error;
  ExpectIdentity(r, std::string_view(Big()).substr(10, 10));
  EXPECT_FALSE(r.Header("etag").starts_with("W/"));
}

TEST_F(CompressFilesTest, HeadOfAFileHasTheFieldsOfGetWithoutTheBody) {
  const TestResponse gzipped = client().Get("/files/big.txt", kGzip);
  ASSERT_EQ(gzipped.Header("content-encoding"), "gzip");
  const Fields revalidate = {{"Accept-Encoding", "gzip"},
                             {"If-None-Match", gzipped.Header("etag")}};
  const Fields range = {{"Accept-Encoding", "gzip"}, {"Range", "bytes=10-19"}};
  for (const std::string_view target :
       {"/files/big.txt", "/files/small.txt", "/files/big.bin", "/sendfile", "/deferred-file",
        "/files/huge.txt", "/deferred-huge-file"}) {
    for (const Fields& fields : {kGzip, Fields{}, revalidate, range}) {
      SCOPED_TRACE(std::string(target) + " " + (fields.empty() ? "" : fields.back().first));
      const TestResponse get = client().Get(target, fields);
      const TestResponse head = client().Fetch("HEAD", target, fields);
      ASSERT_EQ(head.status, get.status) << head.error;
      EXPECT_EQ(FieldsButDate(head), FieldsButDate(get));
      EXPECT_EQ(head.body, "");
    }
  }
  ExpectGzipped(client().Get("/files/big.txt", kGzip), Big());
}

TEST_F(CompressFilesTest, FilesUpTo4MiBAreCompressedBiggerOnesGoWithoutACopy) {
  const std::string at_bound = Text(kMaxCompressedFile);
  Write("at-bound.txt", at_bound);
  Write("over-bound.txt", Text(kMaxCompressedFile + 1));
  TestResponse r = client().Get("/files/at-bound.txt", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("transfer-encoding"), "chunked");
  ExpectGzipped(r, at_bound);
  // Last on this connection: an answer beyond max_pending_output followed by another request
  // crashes the loop (see static_test's RequestAfterAnAnswerBeyondTheOutputLimitIsServed).
  r = client().Get("/files/over-bound.txt", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_TRUE(r.Headers("content-encoding").empty());
  EXPECT_EQ(r.Header("content-length"), std::to_string(kMaxCompressedFile + 1));
  EXPECT_EQ(r.body.size(), kMaxCompressedFile + 1);
  EXPECT_FALSE(r.Header("etag").starts_with("W/"));
}

// Gzipped as the client reads it, a piece at a time, rather than whole into the connection's
// output: chunked, with the fields a whole one has (gzip_stream_test checks what it holds).
TEST_F(CompressFilesTest, ABigFileIsGzippedChunkedAsItIsRead) {
  const TestResponse identity = client().Get("/files/huge.txt");
  ASSERT_EQ(identity.status, 200) << identity.error;
  ExpectIdentity(identity, Huge());
  for (const std::string_view target : {"/files/huge.txt", "/deferred-huge-file"}) {
    SCOPED_TRACE(target);
    const TestResponse r = client().Get(target, kGzip);
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.Header("transfer-encoding"), "chunked");
    ExpectGzipped(r, Huge());
    EXPECT_TRUE(r.Header("etag").starts_with("W/\"")) << r.Header("etag");
    const TestResponse head = client().Fetch("HEAD", target, kGzip);
    ASSERT_EQ(head.status, 200) << head.error;
    EXPECT_EQ(FieldsButDate(head), FieldsButDate(r));
    EXPECT_EQ(head.body, "");
    // Revalidated: a 304 with the 200's weak ETag and Vary.
    const TestResponse again =
        client().Get(target, {{"Accept-Encoding", "gzip"}, {"If-None-Match", r.Header("etag")}});
    EXPECT_EQ(again.status, 304);
    EXPECT_EQ(again.Header("etag"), r.Header("etag"));
    EXPECT_EQ(again.Header("vary"), "Accept-Encoding");
    EXPECT_EQ(again.body, "");
    // An If-Match no ETag meets: 412, and no body is gzipped.
    const TestResponse failed =
        client().Get(target, {{"Accept-Encoding", "gzip"}, {"If-Match", "\"other\""}});
    EXPECT_EQ(failed.status, 412);
    EXPECT_TRUE(failed.Headers("content-encoding").empty());
  }
  // The connection is still in step after them.
  ExpectGzipped(client().Get("/files/huge.txt", kGzip), Huge());
}

TEST_F(CompressFilesTest, RevalidatingACompressedFileKeepsItsEtagAndVary) {
  // RFC 9110 15.4.5: a 304 MUST carry the ETag and Vary a 200 to the same request would have.
  const TestResponse full = client().Get("/files/big.txt", kGzip);
  ASSERT_EQ(full.Header("content-encoding"), "gzip");
  const std::string etag = full.Header("etag");
  ASSERT_TRUE(etag.starts_with("W/")) << etag;
  const TestResponse r =
      client().Get("/files/big.txt", {{"Accept-Encoding", "gzip"}, {"If-None-Match", etag}});
  EXPECT_EQ(r.status, 304);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.Header("etag"), etag);
  EXPECT_EQ(r.Header("vary"), "Accept-Encoding");
}

}  // namespace
}  // namespace percore::http
