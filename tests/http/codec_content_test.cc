// The pure codecs of codec.h, second half: what a file's answer is made of: Range, content types,
// Accept-Encoding and entity tags. Percent-encoding, query strings, cookies and HTTP dates are
// in codec_test.cc.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec.h"
#include "gtest/gtest.h"

namespace percore::http {
namespace {

using namespace std::literals;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// ---- Ranges.

struct RangeCase {
  std::string header;
  uint64_t size;
  RangeResult result;
  uint64_t first = 0;   // when kOk
  uint64_t length = 0;  // when kOk
};

TEST(ParseRangeTest, Table) {
  const std::vector<RangeCase> cases = {
      {"", 1000, RangeResult::kNone},
      {" \t", 1000, RangeResult::kNone},
      {"bytes=0-499", 1000, RangeResult::kOk, 0, 500},
      {"bytes=500-999", 1000, RangeResult::kOk, 500, 500},
      {"bytes=500-", 1000, RangeResult::kOk, 500, 500},
      {"bytes=-500", 1000, RangeResult::kOk, 500, 500},
      {"bytes=-1", 1000, RangeResult::kOk, 999, 1},
      {"bytes=-2000", 1000, RangeResult::kOk, 0, 1000},
      {"bytes=0-0", 1000, RangeResult::kOk, 0, 1},
      {"bytes=999-", 1000, RangeResult::kOk, 999, 1},
      {"bytes=999-999", 1000, RangeResult::kOk, 999, 1},
      {"bytes=900-5000", 1000, RangeResult::kOk, 900, 100},  // clamped
      {"bytes=0-18446744073709551615", 1000, RangeResult::kOk, 0, 1000},
      {"bytes=007-008", 1000, RangeResult::kOk, 7, 2},
      // Case and OWS tolerance, empty list elements.
      {"BYTES=0-1", 1000, RangeResult::kOk, 0, 2},
      {"Bytes = 0-1", 1000, RangeResult::kOk, 0, 2},
      {"bytes= 0-1 ", 1000, RangeResult::kOk, 0, 2},
      {"bytes=0-1,", 1000, RangeResult::kOk, 0, 2},
      {"bytes=, ,0-1", 1000, RangeResult::kOk, 0, 2},
      // Unsatisfiable: 416.
      {"bytes=1000-", 1000, RangeResult::kUnsatisfiable},
      {"bytes=1000-2000", 1000, RangeResult::kUnsatisfiable},
      {"bytes=18446744073709551615-", 1000, RangeResult::kUnsatisfiable},
      {"bytes=-0", 1000, RangeResult::kUnsatisfiable},
      {"bytes=0-", 0, RangeResult::kUnsatisfiable},
      {"bytes=0-0", 0, RangeResult::kUnsatisfiable},
      {"bytes=-0", 0, RangeResult::kUnsatisfiable},
      {"bytes=-5", 0, RangeResult::kIgnore},  // satisfiable, but 206 cannot describe it
      // Ignored: 200 with everything.
      {"bytes=0-1,2-3", 1000, RangeResult::kIgnore},
      {"bytes=0-1, 5-6, 9-10", 1000, RangeResult::kIgnore},
      {"bytes=0-1,2000-", 1000, RangeResult::kIgnore},
      {"bytes=5-1", 1000, RangeResult::kIgnore},
      {"bytes=abc", 1000, RangeResult::kIgnore},
      {"bytes=", 1000, RangeResult::kIgnore},
      {"bytes=,", 1000, RangeResult::kIgnore},
      {"bytes=-", 1000, RangeResult::kIgnore},
      {"bytes=--1", 1000, RangeResult::kIgnore},
      {"bytes=1-2-3", 1000, RangeResult::kIgnore},
      {"bytes=0 - 1", 1000, RangeResult::kIgnore},
      {"bytes=+1-2", 1000, RangeResult::kIgnore},
      {"bytes=0x10-", 1000, RangeResult::kIgnore},
      {"bytes=1", 1000, RangeResult::kIgnore},
      {"bytes=-1a", 1000, RangeResult::kIgnore},
      {"items=0-1", 1000, RangeResult::kIgnore},
      {"bytes0-1", 1000, RangeResult::kIgnore},
      {"bytesx=0-1", 1000, RangeResult::kIgnore},
      {"=0-1", 1000, RangeResult::kIgnore},
      // Numbers beyond uint64 must not wrap into a small, valid-looking range.
      {"bytes=18446744073709551616-", 1000, RangeResult::kIgnore},
      {"bytes=0-18446744073709551616", 1000, RangeResult::kIgnore},
      {"bytes=-18446744073709551616", 1000, RangeResult::kIgnore},
      {"bytes=-99999999999999999999999999", 1000, RangeResult::kIgnore},
      {"bytes=36893488147419103232-36893488147419103233", 1000, RangeResult::kIgnore},
      // Huge representations.
      {"bytes=0-", kMax, RangeResult::kOk, 0, kMax},
      {"bytes=-1", kMax, RangeResult::kOk, kMax - 1, 1},
      {"bytes=18446744073709551614-", kMax, RangeResult::kOk, kMax - 1, 1},
  };
  for (const RangeCase& c : cases) {
    uint64_t first = 12345, length = 67890;
    EXPECT_EQ(ParseRange(c.header, c.size, &first, &length), c.result)
        << c.header << " size " << c.size;
    if (c.result == RangeResult::kOk) {
      EXPECT_EQ(first, c.first) << c.header;
      EXPECT_EQ(length, c.length) << c.header;
    } else {
      EXPECT_EQ(first, 12345u) << c.header;
      EXPECT_EQ(length, 67890u) << c.header;
    }
  }
}

// ---- Content types.

TEST(MimeTypeForTest, Table) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"index.html", "text/html; charset=utf-8"},
      {"/a/b/INDEX.HTM", "text/html; charset=utf-8"},
      {"style.css", "text/css; charset=utf-8"},
      {"app.js", "text/javascript; charset=utf-8"},
      {"mod.MJS", "text/javascript; charset=utf-8"},
      {"data.json", "application/json"},
      {"app.js.map", "application/json"},
      {"notes.txt", "text/plain; charset=utf-8"},
      {"README.md", "text/markdown; charset=utf-8"},
      {"t.csv", "text/csv; charset=utf-8"},
      {"feed.xml", "application/xml"},
      {"logo.svg", "image/svg+xml"},
      {"a.png", "image/png"},
      {"a.JPG", "image/jpeg"},
      {"a.jpeg", "image/jpeg"},
      {"a.gif", "image/gif"},
      {"a.webp", "image/webp"},
      {"a.avif", "image/avif"},
      {"favicon.ico", "image/x-icon"},
      {"m.wasm", "application/wasm"},
      {"doc.pdf", "application/pdf"},
      {"a.zip", "application/zip"},
      {"a.tar.gz", "application/gzip"},
      {"a.tar", "application/x-tar"},
      {"v.mp4", "video/mp4"},
      {"v.webm", "video/webm"},
      {"s.mp3", "audio/mpeg"},
      {"s.ogg", "audio/ogg"},
      {"s.wav", "audio/wav"},
      {"f.woff", "font/woff"},
      {"f.woff2", "font/woff2"},
      {"f.ttf", "font/ttf"},
      {"f.otf", "font/otf"},
      {"site.webmanifest", "application/manifest+json"},
      {"/.well-known/.config.json", "application/json"},
      // No (known) extension.
      {"", "application/octet-stream"},
      {"README", "application/octet-stream"},
      {".bashrc", "application/octet-stream"},
      {"/home/u/.bashrc", "application/octet-stream"},
      {".html", "application/octet-stream"},  // a dotfile, not an HTML file
      {"/srv/.png", "application/octet-stream"},
      {"..json", "application/octet-stream"},
      {"..", "application/octet-stream"},
      {"file.", "application/octet-stream"},
      {"/dir.d/file", "application/octet-stream"},
      {"/dir.html/", "application/octet-stream"},
      {"a.exe", "application/octet-stream"},
      {"a.htmlx", "application/octet-stream"},
      {"a.h", "application/octet-stream"},
      {"a.webmanifestx", "application/octet-stream"},
      {"a.averyveryverylongextension", "application/octet-stream"},
  };
  for (const auto& [path, type] : cases) EXPECT_EQ(MimeTypeFor(path), type) << path;
}

TEST(IsCompressibleTest, Table) {
  for (std::string_view yes :
       {"text/html"sv, "text/plain; charset=utf-8"sv, "TEXT/CSS"sv, "text/x-anything"sv,
        "application/json"sv, "Application/JSON; charset=utf-8"sv, "application/javascript"sv,
        "application/xml"sv, "image/svg+xml"sv, "application/ld+json"sv,
        "application/problem+json"sv, "application/atom+xml"sv, "application/wasm"sv,
        " text/html ;q"sv, "application/manifest+json"sv}) {
    EXPECT_TRUE(IsCompressible(yes)) << yes;
  }
  for (std::string_view no :
       {""sv, "text"sv, "/html"sv, "text/"sv, "image/png"sv, "image/jpeg"sv,
        "application/octet-stream"sv, "application/gzip"sv, "application/zip"sv, "video/mp4"sv,
        "font/woff2"sv, "application/jsonx"sv, "application/x-json"sv, "application/json+zip"sv,
        "application/pdf"sv, "textual/html"sv, "; text/html"sv}) {
    EXPECT_FALSE(IsCompressible(no)) << no;
  }
}

TEST(AcceptsGzipTest, Table) {
  for (std::string_view yes :
       {"gzip"sv, "gzip, deflate, br"sv, "deflate, gzip;q=1.0"sv, "GZIP"sv, "x-gzip"sv,
        "X-GZip;q=0.5"sv, "*"sv, "*;q=0.5"sv, "br;q=1.0, gzip;q=0.8, *;q=0.1"sv, "gzip;q=0.001"sv,
        " gzip ; q = 0.5 "sv, "gzip;Q=1"sv, "gzip;q=1.000"sv, "deflate, *"sv, "*;q=0, gzip"sv,
        "gzip;level=9;q=0.5"sv, ",,gzip,,"sv, "gzip;q=0.5, br;q=oops"sv}) {
    EXPECT_TRUE(AcceptsGzip(yes)) << yes;
  }
  for (std::string_view no :
       {""sv, " "sv, "identity"sv, "br"sv, "deflate, br"sv, "gzip;q=0"sv, "gzip;q=0.0"sv,
        "gzip;q=0.000"sv, "gzip; Q=0"sv, "gzip ;q= 0."sv, "*;q=0"sv, "gzip;q=0, *"sv,
        "*, gzip;q=0"sv, "x-gzip;q=0, *"sv, "gzip;q=0, gzip"sv, "*;q=0.5, *;q=0"sv, "gzipx"sv,
        "gzi"sv, "deflate;q=0, br"sv,
        // A malformed qvalue ignores the element.
        "gzip;q=2"sv, "gzip;q=0.0001"sv, "gzip;q=1.5"sv, "gzip;q="sv, "gzip;q=abc"sv, "gzip;q=.5"sv,
        "gzip;q=-1"sv, "*;q=1.01"sv}) {
    EXPECT_FALSE(AcceptsGzip(no)) << no;
  }
}

// ---- Entity tags.

TEST(EtagTest, IfNoneMatchMatches) {
  const std::string_view etag = "\"abc\"";
  for (std::string_view yes :
       {"\"abc\""sv, "W/\"abc\""sv, "\"x\", \"abc\""sv, "\"x\",\"abc\""sv, "*"sv, " * "sv,
        "\"x\",, ,\t\"abc\""sv, "W/\"x\", W/\"abc\", \"y\""sv}) {
    EXPECT_TRUE(IfNoneMatchMatches(yes, etag)) << yes;
  }
  for (std::string_view no :
       {""sv, "\"abd\""sv, "abc"sv, "\"ABC\""sv, "\"abc"sv, "w/\"abc\""sv, "\"x\" junk, \"abc\""sv,
        "\"x\"\"abc\""sv, "*, \"abc\""sv, "\"ab\"c\""sv, "\"\""sv}) {
    EXPECT_FALSE(IfNoneMatchMatches(no, etag)) << no;
  }
  // Weak on either side, and a ',' inside an opaque-tag is not a separator.
  EXPECT_TRUE(IfNoneMatchMatches("\"abc\"", "W/\"abc\""));
  EXPECT_TRUE(IfNoneMatchMatches("\"a,b\"", "\"a,b\""));
  EXPECT_FALSE(IfNoneMatchMatches("\"a,b\"", "\"b\""));
  EXPECT_FALSE(IfNoneMatchMatches("\"a,b\"", "\"a\""));
}

TEST(EtagTest, AppendEtag) {
  const auto etag = [](int64_t mtime, uint64_t size) {
    std::string out;
    AppendEtag(mtime, size, &out);
    return out;
  };
  EXPECT_EQ(etag(0x5e, 0x1a), "\"5e-1a\"");
  EXPECT_EQ(etag(0, 0), "\"0-0\"");
  EXPECT_EQ(etag(1700000000, 1234), "\"6553f100-4d2\"");
  EXPECT_EQ(etag(0x10, 0x100), "\"10-100\"");
  EXPECT_EQ(etag(-1, kMax), "\"ffffffffffffffff-ffffffffffffffff\"");
  EXPECT_EQ(etag(std::numeric_limits<int64_t>::max(), 1ull << 63),
            "\"7fffffffffffffff-8000000000000000\"");

  std::string out = "ETag: ";
  AppendEtag(1, 2, &out);
  EXPECT_EQ(out, "ETag: \"1-2\"");
  // What AppendEtag writes, If-None-Match recognises.
  EXPECT_TRUE(IfNoneMatchMatches(etag(1700000000, 1234), etag(1700000000, 1234)));
  EXPECT_FALSE(IfNoneMatchMatches(etag(1700000000, 1234), etag(1700000000, 1235)));
}

}  // namespace
}  // namespace percore::http
