// What compress_test and compress_files_test check answers with: zlib's inflate, bodies that
// compress or do not, and the fields a gzipped or identity answer has.
#ifndef PERCORE_TESTS_HTTP_GZIP_CHECKS_H_
#define PERCORE_TESTS_HTTP_GZIP_CHECKS_H_

#include <zlib.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "percore/testing/client.h"

namespace percore::http {

// A gzip or zlib stream inflated (15 + 32: either header, detected), or nullopt if it is not
// one complete, valid stream with nothing after it.
inline std::optional<std::string> Inflate(std::string_view in) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) return std::nullopt;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  int result = Z_OK;
  while (result == Z_OK) {
    char buf[16384];
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    result = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
    if (result == Z_BUF_ERROR && z.avail_in == 0) break;  // truncated
  }
  const bool complete = result == Z_STREAM_END && z.avail_in == 0;
  inflateEnd(&z);
  if (!complete) return std::nullopt;
  return out;
}

// About 10 KiB of text that compresses well.
inline std::string Text(size_t bytes) {
  std::string s;
  for (int line = 0; s.size() < bytes; ++line) {
    s += "line " + std::to_string(line) + ": the quick brown fox jumps over the lazy dog\n";
  }
  s.resize(bytes);
  return s;
}

// Bytes that do not compress: a xorshift sequence, all 256 values.
inline std::string Noise(size_t bytes) {
  std::string s(bytes, '\0');
  uint64_t x = 0x9e3779b97f4a7c15;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x >> 56);
  }
  return s;
}

inline const std::string& Big() {
  static const std::string big = Text(10 * 1024);
  return big;
}

inline const percore::testing::Fields kGzip = {{"Accept-Encoding", "gzip"}};

// Checks an answer was gzipped and inflates to `original`: whole, with its Content-Length, or,
// a file bigger than 64 KiB, gzipped as it is read, chunked.
inline void ExpectGzipped(const percore::testing::TestResponse& r, std::string_view original) {
  EXPECT_EQ(r.Header("content-encoding"), "gzip");
  EXPECT_EQ(r.Header("vary"), "Accept-Encoding");
  if (r.Header("transfer-encoding") == "chunked") {
    EXPECT_TRUE(r.Headers("content-length").empty()) << r.Header("content-length");
  } else {
    EXPECT_EQ(r.Header("content-length"), std::to_string(r.body.size()));
  }
  EXPECT_LT(r.body.size(), original.size());
  ASSERT_GE(r.body.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(r.body[0]), 0x1f);  // gzip's magic, not zlib's
  EXPECT_EQ(static_cast<unsigned char>(r.body[1]), 0x8b);
  const std::optional<std::string> inflated = Inflate(r.body);
  ASSERT_TRUE(inflated.has_value()) << "not a valid gzip stream";
  EXPECT_TRUE(*inflated == original) << inflated->size() << " bytes vs " << original.size();
}

// An answer's header fields but Date, which may differ between two answers.
inline std::multimap<std::string, std::string> FieldsButDate(
    const percore::testing::TestResponse& r) {
  std::multimap<std::string, std::string> fields = r.headers;
  fields.erase("date");
  return fields;
}

inline void ExpectIdentity(const percore::testing::TestResponse& r, std::string_view original) {
  EXPECT_TRUE(r.Headers("content-encoding").empty()) << r.Header("content-encoding");
  EXPECT_EQ(r.Header("content-length"), std::to_string(original.size()));
  EXPECT_TRUE(r.body == original) << r.body.size() << " bytes vs " << original.size();
}

}  // namespace percore::http

#endif  // PERCORE_TESTS_HTTP_GZIP_CHECKS_H_
