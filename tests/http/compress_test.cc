// Compress(): gzip of the bodies given to Send() and Json(), through the whole request path with
// percore::testing::TestClient; answers are inflated with zlib here to check the round trip.
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

class CompressTest : public ::testing::Test {
 protected:
  CompressTest() {
    app_.Use(Compress());
    app_.Get("/text", [](const Request&, Response& res) { res.Send(Big()); });
    app_.Get("/html", [](const Request&, Response& res) { res.Type("text/html").Send(Big()); });
    app_.Get("/small", [](const Request&, Response& res) { res.Send(Text(100)); });
    app_.Get("/exactly-min", [](const Request&, Response& res) { res.Send(Text(1024)); });
    app_.Get("/below-min", [](const Request&, Response& res) { res.Send(Text(1023)); });
    app_.Get("/noise", [](const Request&, Response& res) { res.Send(Noise(4096)); });
    app_.Get("/octet", [](const Request&, Response& res) {
      res.Type("application/octet-stream").Send(Big());
    });
    app_.Get("/png", [](const Request&, Response& res) { res.Type("image/png").Send(Big()); });
    app_.Get("/svg", [](const Request&, Response& res) { res.Type("image/svg+xml").Send(Big()); });
    app_.Get("/partial", [](const Request&, Response& res) {
      res.Status(206).Set("Content-Range", "bytes 0-10239/20480").Send(Big());
    });
    app_.Get("/no-content", [](const Request&, Response& res) { res.Status(204).Send(Big()); });
    app_.Get("/not-modified", [](const Request&, Response& res) { res.Status(304).Send(Big()); });
    app_.Get("/not-found", [](const Request&, Response& res) { res.Status(404).Send(Big()); });
    app_.Get("/encoded",
             [](const Request&, Response& res) { res.Set("Content-Encoding", "br").Send(Big()); });
    app_.Get("/vary-origin", [](const Request&, Response& res) { res.Vary("Origin").Send(Big()); });
    app_.Get("/type-after-vary", [](const Request&, Response& res) {
      res.Vary("Origin").Type("text/css").Send(Big());
    });
    app_.Get("/etag", [](const Request&, Response& res) { res.Set("ETag", "\"v1\"").Send(Big()); });
    app_.Get("/weak-etag",
             [](const Request&, Response& res) { res.Set("ETag", "W/\"v1\"").Send(Big()); });
    app_.Get("/json", [](const Request&, Response& res) { res.Json(BigJson()); });
    app_.Get("/deferred", [](const Request&, Response& res) {
      Response later = res.Defer();
      later.worker().Post(
          [later = std::move(later)]() mutable { later.Type("text/html").Send(Big()); });
    });
    app_.Get("/deferred-json", [](const Request&, Response& res) {
      Response later = res.Defer();
      later.worker().Post([later = std::move(later)]() mutable { later.Json(BigJson()); });
    });
    // Big() in three pieces; the last two once the test asks for them (GET /go).
    app_.Get("/streamed", [this](const Request&, Response& res) {
      Response later = res.Defer();
      later.Write(Big().substr(0, 1000));
      streamed_.emplace(std::move(later));
    });
    app_.Get("/go", [this](const Request&, Response& res) {
      streamed_->Write(Big().substr(1000, 4000));
      streamed_->Write(Big().substr(5000));
      streamed_->End();
      res.Send("gone");
    });
    app_.Get("/streamed-length", [](const Request&, Response& res) {
      Response later = res.Defer();
      later.Length(Big().size()).Write(Big());
      later.End();
    });
    app_.Get("/streamed-octets", [](const Request&, Response& res) {
      Response later = res.Defer();
      later.Type("application/octet-stream").Write(Big());
      later.End();
    });
  }

  static nlohmann::json BigJson() {
    nlohmann::json array = nlohmann::json::array();
    for (int i = 0; i < 1000; ++i)
      array.push_back({{"id", i}, {"name", "item " + std::to_string(i)}});
    return array;
  }

  TestClient& client() {
    if (client_ == nullptr) client_ = std::make_unique<TestClient>(app_);
    return *client_;
  }

  App app_;
  std::unique_ptr<TestClient> client_;
  std::optional<Response> streamed_;  // /streamed's, for /go
};

// ---------------------------------------------------------------------------------------------
// Accept-Encoding.

TEST_F(CompressTest, GzipsATextBodyWhenAccepted) {
  const TestResponse r = client().Get("/text", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("content-type"), "text/plain; charset=utf-8");
  ExpectGzipped(r, Big());
}

TEST_F(CompressTest, WithoutAcceptEncodingSendsIdentityButVaries) {
  const TestResponse r = client().Get("/text");
  ASSERT_EQ(r.status, 200) << r.error;
  ExpectIdentity(r, Big());
  EXPECT_EQ(r.Header("vary"), "Accept-Encoding");
}

struct AcceptCase {
  std::string_view accept_encoding;
  bool gzip;
};

class CompressAcceptTest : public CompressTest, public ::testing::WithParamInterface<AcceptCase> {};

TEST_P(CompressAcceptTest, GzipsExactlyWhenAcceptEncodingAllowsIt) {
  const AcceptCase& c = GetParam();
  const TestResponse r =
      client().Get("/text", {{"Accept-Encoding", std::string(c.accept_encoding)}});
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("vary"), "Accept-Encoding");
  if (c.gzip) {
    ExpectGzipped(r, Big());
  } else {
    ExpectIdentity(r, Big());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Values, CompressAcceptTest,
    ::testing::Values(AcceptCase{"gzip", true}, AcceptCase{"GZIP", true},
                      AcceptCase{"x-gzip", true}, AcceptCase{"gzip, deflate, br", true},
                      AcceptCase{"br;q=1.0, gzip;q=0.5", true}, AcceptCase{"*", true},
                      AcceptCase{"br, *;q=0.1", true}, AcceptCase{"gzip;q=0", false},
                      AcceptCase{"gzip;q=0.000", false}, AcceptCase{"*;q=0", false},
                      AcceptCase{"*, gzip;q=0", false}, AcceptCase{"identity", false},
                      AcceptCase{"deflate, br", false}, AcceptCase{"", false}),
    [](const ::testing::TestParamInfo<AcceptCase>& info) {
      return "Case" + std::to_string(info.index);
    });

// ---------------------------------------------------------------------------------------------
// What is not compressed.

TEST_F(CompressTest, BodiesUnderMinBytesAreNotCompressedAndDoNotVary) {
  // Never compressed for any client: nothing varies.
  for (const std::string_view target : {"/small", "/below-min"}) {
    SCOPED_TRACE(target);
    const TestResponse r = client().Get(target, kGzip);
    ASSERT_EQ(r.status, 200) << r.error;
    ExpectIdentity(r, target == "/small" ? Text(100) : Text(1023));
    EXPECT_TRUE(r.Headers("vary").empty()) << r.Header("vary");
  }
  ExpectGzipped(client().Get("/exactly-min", kGzip), Text(1024));
}

TEST_F(CompressTest, MinBytesIsAnOption) {
  App app;
  app.Use(Compress({.min_bytes = 50}));
  app.Get("/", [](const Request&, Response& res) { res.Send(Text(100)); });
  TestClient client(app);
  ExpectGzipped(client.Get("/", kGzip), Text(100));
}

TEST_F(CompressTest, IncompressibleBodiesGoAsTheyAre) {
  const TestResponse r = client().Get("/noise", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  // gzip would only make it longer: it goes as it is, still varying on Accept-Encoding.
  ExpectIdentity(r, Noise(4096));
  EXPECT_EQ(r.Header("vary"), "Accept-Encoding");
}

struct TypeCase {
  std::string_view target;
  std::string_view type;
};

TEST_F(CompressTest, CompressedTypesOnlyAreCompressed) {
  for (const TypeCase c :
       {TypeCase{"/octet", "application/octet-stream"}, TypeCase{"/png", "image/png"}}) {
    SCOPED_TRACE(c.target);
    const TestResponse r = client().Get(c.target, kGzip);
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.Header("content-type"), c.type);
    ExpectIdentity(r, Big());
    EXPECT_TRUE(r.Headers("vary").empty()) << r.Header("vary");
  }
  for (const TypeCase c : {TypeCase{"/html", "text/html"}, TypeCase{"/svg", "image/svg+xml"}}) {
    SCOPED_TRACE(c.target);
    const TestResponse r = client().Get(c.target, kGzip);
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.Header("content-type"), c.type);
    ExpectGzipped(r, Big());
  }
}

TEST_F(CompressTest, HeadHasTheFieldsOfGetWithoutTheBody) {
  // RFC 9110 9.3.2: gzip's Content-Length, Content-Encoding, Vary and the weak ETag, as GET's.
  for (const std::string_view target :
       {"/text", "/etag", "/json", "/deferred", "/small", "/png", "/partial", "/encoded"}) {
    for (const Fields& fields : {kGzip, Fields{}}) {
      SCOPED_TRACE(std::string(target) + (fields.empty() ? "" : " gzip"));
      const TestResponse get = client().Get(target, fields);
      const TestResponse head = client().Fetch("HEAD", target, fields);
      ASSERT_EQ(head.status, get.status) << head.error;
      EXPECT_EQ(FieldsButDate(head), FieldsButDate(get));
      EXPECT_EQ(head.body, "");
    }
  }
  // The connection is still in step after them.
  ExpectGzipped(client().Get("/text", kGzip), Big());
}

TEST_F(CompressTest, PartialAndBodilessStatusesAreNotCompressed) {
  TestResponse r = client().Get("/partial", kGzip);
  ASSERT_EQ(r.status, 206) << r.error;
  ExpectIdentity(r, Big());
  EXPECT_EQ(r.Header("content-range"), "bytes 0-10239/20480");
  for (const std::string_view target : {"/no-content", "/not-modified"}) {
    SCOPED_TRACE(target);
    r = client().Get(target, kGzip);
    EXPECT_TRUE(r.status == 204 || r.status == 304) << r.status << r.error;
    EXPECT_TRUE(r.Headers("content-encoding").empty());
    EXPECT_EQ(r.body, "");
  }
  // The connection is still in step: no body went after the 204 and the 304.
  ExpectGzipped(client().Get("/text", kGzip), Big());
}

TEST_F(CompressTest, ErrorStatusesWithABodyAreCompressed) {
  const TestResponse r = client().Get("/not-found", kGzip);
  ASSERT_EQ(r.status, 404) << r.error;
  ExpectGzipped(r, Big());
}

TEST_F(CompressTest, ABodyTheHandlerEncodedIsLeftAlone) {
  const TestResponse r = client().Get("/encoded", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Headers("content-encoding"), std::vector<std::string>{"br"});
  EXPECT_EQ(r.Header("content-length"), std::to_string(Big().size()));
  EXPECT_TRUE(r.body == Big());
}

// gzip is a stage of a streamed body too: each piece is deflated and flushed as it is written,
// so what arrived decodes before the end, and the whole is one gzip stream.
TEST_F(CompressTest, StreamedBodiesAreGzippedPieceByPiece) {
  TestClient other(app_);  // GET /go goes on a connection of its own
  percore::testing::TestStream stream = client().Open("GET", "/streamed", kGzip);
  ASSERT_EQ(stream.head().status, 200) << stream.head().error;
  EXPECT_EQ(stream.head().Header("content-encoding"), "gzip");
  EXPECT_EQ(stream.head().Header("vary"), "Accept-Encoding");
  EXPECT_EQ(stream.head().Header("transfer-encoding"), "chunked");
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  auto inflate_some = [&z](const std::string& in) {
    std::string out(64 << 10, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int result = inflate(&z, Z_SYNC_FLUSH);
    out.resize(out.size() - z.avail_out);
    return result == Z_OK || result == Z_STREAM_END ? out : std::string("(inflate failed)");
  };
  const std::string first = stream.Next();
  EXPECT_EQ(inflate_some(first), Big().substr(0, 1000)) << "the first piece decodes at once";
  EXPECT_FALSE(stream.ended());
  EXPECT_EQ(other.Get("/go").body, "gone");
  std::string rest;
  while (!stream.ended()) rest += stream.Next();
  EXPECT_EQ(inflate_some(rest), Big().substr(1000));
  inflateEnd(&z);
  const std::optional<std::string> whole = Inflate(first + rest);
  ASSERT_TRUE(whole.has_value()) << "not one whole gzip stream";
  EXPECT_TRUE(*whole == Big());
}

TEST_F(CompressTest, AStreamedBodyOfDeclaredLengthGoesChunkedOnceGzipped) {
  const TestResponse gzipped = client().Get("/streamed-length", kGzip);
  ASSERT_EQ(gzipped.status, 200) << gzipped.error;
  EXPECT_EQ(gzipped.Header("transfer-encoding"), "chunked");
  ExpectGzipped(gzipped, Big());
  const TestResponse plain = client().Get("/streamed-length");
  EXPECT_EQ(plain.Header("content-length"), std::to_string(Big().size()));
  ExpectIdentity(plain, Big());
}

TEST_F(CompressTest, StreamedBodiesOfOtherTypesOrToHeadAreNotDeflated) {
  const TestResponse octets = client().Get("/streamed-octets", kGzip);
  EXPECT_TRUE(octets.Headers("content-encoding").empty());
  EXPECT_TRUE(octets.body == Big());
  const TestResponse head = client().Fetch("HEAD", "/streamed-length", kGzip);
  EXPECT_EQ(head.Header("content-encoding"), "gzip");  // GET's fields, no body
  EXPECT_TRUE(head.body.empty());
}

// ---------------------------------------------------------------------------------------------
// Vary, JSON, deferred answers, levels.

TEST_F(CompressTest, AcceptEncodingJoinsTheHandlersVary) {
  for (const std::string_view target : {"/vary-origin", "/type-after-vary"}) {
    SCOPED_TRACE(target);
    const TestResponse r = client().Get(target, kGzip);
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.Headers("vary"), std::vector<std::string>{"Origin, Accept-Encoding"});
    EXPECT_EQ(r.Header("content-encoding"), "gzip");
    EXPECT_EQ(Inflate(r.body), Big());
  }
  // The Content-Type set after Vary survives Vary's growth.
  EXPECT_EQ(client().Get("/type-after-vary", kGzip).Header("content-type"), "text/css");
}

TEST_F(CompressTest, AStrongEtagBecomesWeakWhenTheBodyIsGzipped) {
  // RFC 9110 8.8.3: the gzipped bytes are another representation than the handler's.
  TestResponse r = client().Get("/etag", kGzip);
  ExpectGzipped(r, Big());
  EXPECT_EQ(r.Headers("etag"), std::vector<std::string>{"W/\"v1\""});
  r = client().Get("/etag");
  ExpectIdentity(r, Big());
  EXPECT_EQ(r.Headers("etag"), std::vector<std::string>{"\"v1\""});
  r = client().Get("/weak-etag", kGzip);
  ExpectGzipped(r, Big());
  EXPECT_EQ(r.Headers("etag"), std::vector<std::string>{"W/\"v1\""});
}

TEST_F(CompressTest, JsonIsCompressed) {
  const TestResponse r = client().Get("/json", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("content-type"), "application/json");
  ExpectGzipped(r, BigJson().dump());
  EXPECT_EQ(nlohmann::json::parse(Inflate(r.body).value_or("null")), BigJson());
}

TEST_F(CompressTest, DeferredAnswersAreCompressed) {
  TestResponse r = client().Get("/deferred", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("content-type"), "text/html");
  ExpectGzipped(r, Big());
  r = client().Get("/deferred-json", kGzip);
  ASSERT_EQ(r.status, 200) << r.error;
  ExpectGzipped(r, BigJson().dump());
  r = client().Get("/deferred");
  ExpectIdentity(r, Big());
  EXPECT_EQ(r.Header("vary"), "Accept-Encoding");
}

TEST_F(CompressTest, OneConnectionCompressesManyAnswers) {
  // The loop reuses one zlib stream: each answer must be a complete stream of its own body.
  for (int i = 0; i < 3; ++i) {
    ExpectGzipped(client().Get("/text", kGzip), Big());
    ExpectGzipped(client().Get("/json", kGzip), BigJson().dump());
    ExpectIdentity(client().Get("/small", kGzip), Text(100));
  }
}

TEST_F(CompressTest, LevelsAreHonouredAndMayAlternate) {
  App app;
  app.Use("/fast", Compress({.level = 1}));
  app.Use("/best", Compress({.level = 9}));
  const std::string body = Text(64 * 1024);
  app.Get("/fast", [&body](const Request&, Response& res) { res.Send(body); });
  app.Get("/best", [&body](const Request&, Response& res) { res.Send(body); });
  TestClient client(app);
  for (int i = 0; i < 2; ++i) {
    const TestResponse fast = client.Get("/fast", kGzip);
    const TestResponse best = client.Get("/best", kGzip);
    ExpectGzipped(fast, body);
    ExpectGzipped(best, body);
    EXPECT_LE(best.body.size(), fast.body.size());
    // zlib writes the level into the header's XFL byte: 4 for the fastest, 2 for the best.
    ASSERT_GT(fast.body.size(), 8u);
    EXPECT_EQ(fast.body[8], 4);
    EXPECT_EQ(best.body[8], 2);
  }
}

TEST_F(CompressTest, WithoutTheMiddlewareNothingIsCompressed) {
  App app;
  app.Get("/", [](const Request&, Response& res) { res.Send(Big()); });
  TestClient client(app);
  const TestResponse r = client.Get("/", kGzip);
  ExpectIdentity(r, Big());
  EXPECT_TRUE(r.Headers("vary").empty());
}

TEST_F(CompressTest, LevelOutside1To9Throws) {
  EXPECT_THROW(Compress({.level = 0}), std::invalid_argument);
  EXPECT_THROW(Compress({.level = 10}), std::invalid_argument);
  EXPECT_THROW(Compress({.level = -1}), std::invalid_argument);
  EXPECT_NO_THROW(Compress({.level = 1}));
  EXPECT_NO_THROW(Compress({.level = 9}));
}

}  // namespace
}  // namespace percore::http
