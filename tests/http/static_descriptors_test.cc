// Static() when the server itself is in trouble: out of descriptors, a file or an index that
// cannot be opened is a 503 with Retry-After (not a 403), logged, and through the error hook
// (static_suite.h has the fixture).
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/client.h"
#include "static_suite.h"

namespace percore::http {
namespace {

// ---------------------------------------------------------------------------------------------
// The server's own trouble.

// Lowers the soft limit on descriptors until destroyed, so that only `spare` more can be opened:
// after them, open() fails with EMFILE.
class DescriptorLimit {
 public:
  explicit DescriptorLimit(int spare) {
    EXPECT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0) << std::strerror(errno);
    // The lowest `spare` + 1 free descriptors: the limit is the last of them.
    std::vector<int> free_fds;
    for (int i = 0; i <= spare; ++i) free_fds.push_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
    for (const int fd : free_fds) close(fd);
    rlimit lowered = saved_;
    lowered.rlim_cur = static_cast<rlim_t>(free_fds.back());
    EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0) << std::strerror(errno);
  }
  ~DescriptorLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }
  DescriptorLimit(const DescriptorLimit&) = delete;
  DescriptorLimit& operator=(const DescriptorLimit&) = delete;

 private:
  rlimit saved_{};
};

// What is written to stderr (the failure log) until destroyed, through a pipe made up front: no
// descriptor is needed while the limit is lowered.
class StderrCapture {
 public:
  StderrCapture() {
    EXPECT_EQ(pipe2(pipe_, O_CLOEXEC | O_NONBLOCK), 0) << std::strerror(errno);
    saved_ = dup(STDERR_FILENO);
    dup2(pipe_[1], STDERR_FILENO);
  }
  ~StderrCapture() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    close(pipe_[0]);
    close(pipe_[1]);
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  std::string Take() {
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = read(pipe_[0], buf, sizeof(buf))) > 0;) text.append(buf, n);
    return text;
  }

 private:
  int pipe_[2] = {-1, -1};
  int saved_ = -1;
};

TEST_F(StaticTest, OutOfDescriptorsIs503WithRetryAfterNot403) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "the sanitizer runtime needs descriptors of its own (its vptr check opens a "
                  "pipe to probe memory), and this test leaves none";
#endif
  ASSERT_EQ(Get("/files/a.txt").status, 200);  // the connection is made before the limit
  struct Case {
    std::string_view target;
    int spare;  // 1: the directory opens, its index does not
  };
  StderrCapture log;
  for (const Case c : {Case{"/files/a.txt", 0}, Case{"/files/sub/", 0}, Case{"/files/sub/", 1}}) {
    SCOPED_TRACE(std::string(c.target) + " with " + std::to_string(c.spare) + " spare");
    TestResponse r;
    {
      DescriptorLimit limit(c.spare);
      r = Get(c.target);
    }
    EXPECT_EQ(r.status, 503) << r.error << r.body;
    EXPECT_EQ(r.Header("retry-after"), "1");
    EXPECT_EQ(r.body, "Service Unavailable\n");
    EXPECT_FALSE(r.closed);
  }
  // In the failure log of 5xx answers (at most a line a second per loop: the first, at least).
  const std::string lines = log.Take();
  EXPECT_NE(lines.find(std::string("Static: open: ") + std::strerror(EMFILE) + "; answered 503"),
            std::string::npos)
      << lines;
  // Descriptors again: the same file and index are served.
  EXPECT_EQ(Get("/files/a.txt").body, kA);
  EXPECT_EQ(Get("/files/sub/").body, kIndex);
}

TEST_F(StaticTest, OutOfDescriptorsGoesThroughTheErrorHookWithRetryAfter) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "the sanitizer runtime needs descriptors of its own (its vptr check opens a "
                  "pipe to probe memory), and this test leaves none";
#endif
  app_.OnError([](const Request&, Response& res, const Error& error) {
    res.Send("custom " + std::to_string(error.status) + ": " + std::string(error.message));
  });
  ASSERT_EQ(Get("/files/a.txt").status, 200);
  TestResponse r;
  {
    DescriptorLimit limit(0);
    r = Get("/files/a.txt");
  }
  EXPECT_EQ(r.status, 503) << r.error;
  EXPECT_EQ(r.Header("retry-after"), "1");
  EXPECT_EQ(r.body, std::string("custom 503: Static: open: ") + std::strerror(EMFILE));
}

}  // namespace
}  // namespace percore::http
