// What the Static() suites (static_test.cc, static_descriptors_test.cc) share: the files every
// test finds under a fresh root (texts of known types, a 3 MiB file, a dotfile, links inside and
// out of the root, a FIFO), their known mtime and ETag, and the fixture that mounts Static on
// "/files" and fetches through percore::testing::TestClient.
#ifndef PERCORE_TESTS_HTTP_STATIC_SUITE_H_
#define PERCORE_TESTS_HTTP_STATIC_SUITE_H_

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/testing/client.h"

namespace percore::http {

using percore::testing::TestClient;
using percore::testing::TestResponse;

// Every served file's mtime: 2020-01-01T00:00:00Z, so Last-Modified and ETag are known.
inline constexpr int64_t kMtime = 1577836800;  // 0x5e0be100
inline constexpr std::string_view kLastModified = "Wed, 01 Jan 2020 00:00:00 GMT";

inline constexpr std::string_view kA = "hello, static\n";
inline constexpr std::string_view kCss = "body { color: red; }\n";
inline constexpr std::string_view kJson = "{\"a\":1}\n";
inline constexpr std::string_view kIndex = "<h1>sub</h1>\n";
inline constexpr std::string_view kJs = "console.log(1);\n";
inline constexpr std::string_view kSecret = "dotfile secret\n";
inline constexpr std::string_view kOutside = "OUTSIDE-THE-ROOT secret\n";
inline constexpr size_t kBigSize = 3 * 1024 * 1024;

// The big file's content: a pattern with no power-of-two period, so a range off by any
// amount shows.
inline std::string BigContent() {
  std::string s(kBigSize, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('!' + i % 89);
  return s;
}

inline void WriteFile(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline void SetMtime(const std::string& path) {
  const timespec times[2] = {{kMtime, 0}, {kMtime, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0)
      << path << ": " << std::strerror(errno);
}

// The nginx-style ETag Static computes: "<mtime hex>-<size hex>".
inline std::string EtagFor(size_t size) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "\"5e0be100-%zx\"", size);
  return buf;
}

class StaticTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/percore-static-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
    base_ = tmpl;
    root_ = base_ + "/root";
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((root_ + "/sub").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((root_ + "/sub/deep").c_str(), 0755), 0);
    WriteFile(base_ + "/outside.txt", kOutside);
    WriteFile(root_ + "/a.txt", kA);
    WriteFile(root_ + "/style.css", kCss);
    WriteFile(root_ + "/data.json", kJson);
    WriteFile(root_ + "/sub/index.html", kIndex);
    WriteFile(root_ + "/sub/deep/x.js", kJs);
    WriteFile(root_ + "/.secret", kSecret);
    big_ = BigContent();
    WriteFile(root_ + "/big.bin", big_);
    for (const char* name :
         {"a.txt", "style.css", "data.json", "sub/index.html", "sub/deep/x.js", "big.bin"}) {
      SetMtime(root_ + "/" + name);
    }
    // Links that stay inside the root, to a file and to a directory.
    ASSERT_EQ(symlink("a.txt", (root_ + "/inside-link").c_str()), 0);
    ASSERT_EQ(symlink("sub", (root_ + "/sub-link").c_str()), 0);
    // Links that lead out: absolute, to a directory, and relative through "..".
    ASSERT_EQ(symlink("/etc/passwd", (root_ + "/out-link").c_str()), 0);
    ASSERT_EQ(symlink("/etc", (root_ + "/out-dir").c_str()), 0);
    ASSERT_EQ(symlink("../outside.txt", (root_ + "/up-link").c_str()), 0);
    ASSERT_EQ(symlink("../..", (root_ + "/sub/up-dir").c_str()), 0);
    ASSERT_EQ(mkfifo((root_ + "/fifo").c_str(), 0644), 0);
  }

  void TearDown() override {
    client_.reset();
    if (!base_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(base_, ec);
      EXPECT_FALSE(ec) << ec.message();
    }
  }

  // The app: Static on "/files" unless a test mounted something else first. Routes and hooks
  // must be added before the first request.
  TestClient& client() {
    if (client_ == nullptr) {
      if (!mounted_) Mount();
      client_ = std::make_unique<TestClient>(app_);
    }
    return *client_;
  }
  void Mount(StaticOptions options = {}) {
    app_.Use("/files", Static(root_, std::move(options)));
    mounted_ = true;
  }

  // One request on the client's keep-alive connection, then one pass of the loop, as a real
  // loop makes between a send completing and the next receive. Without it a request after an
  // answer larger than EngineOptions::max_pending_output crashes the loop: see
  // RequestAfterAnAnswerBeyondTheOutputLimitIsServed in static_test.cc.
  TestResponse Fetch(std::string_view method, std::string_view target,
                     const percore::testing::Fields& fields = {}, std::string_view body = {}) {
    TestResponse r = client().Fetch(method, target, fields, body);
    client().harness().RunUntil([] { return true; }, absl::ZeroDuration());
    return r;
  }
  TestResponse Get(std::string_view target, const percore::testing::Fields& fields = {}) {
    return Fetch("GET", target, fields);
  }

  std::string base_, root_, big_;
  App app_;
  bool mounted_ = false;
  std::unique_ptr<TestClient> client_;
};

}  // namespace percore::http

#endif  // PERCORE_TESTS_HTTP_STATIC_SUITE_H_
