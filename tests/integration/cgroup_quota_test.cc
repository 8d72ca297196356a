// hello_cores in a cgroup with a one-CPU quota, as a container runtime makes for `--cpus=1`: it
// starts one loop, says the quota decided, and serves. The test makes the cgroup (a child of its
// own, v1 cpu controller or v2 cpu.max) and removes it; it skips where cgroups cannot be made.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "percore/cpus.h"
#include "support/test_client.h"

#ifndef PERCORE_HELLO_CORES
#error "PERCORE_HELLO_CORES must name the hello_cores binary"
#endif

namespace percore {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kTimeout(30000);

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Writes `text` to a cgroup file; "" on success, else why not.
std::string WriteFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return "open " + path + ": " + strerror(errno);
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int error = errno;
  close(fd);
  return written ? "" : "write \"" + text + "\" to " + path + ": " + strerror(error);
}

// A child cgroup of this process's own, with a CPU quota of one CPU, removed on destruction.
class OneCpuCgroup {
 public:
  OneCpuCgroup() {
    const std::string self = ReadFile("/proc/self/cgroup");
    const std::string mounts = ReadFile("/proc/self/mountinfo");
    const std::string name = "/percore-test-" + std::to_string(getpid());
    if (std::vector<std::string> v1 = CgroupDirectories(self, mounts, "cpu"); !v1.empty()) {
      Make(v1[0] + name, {{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", "100000"}});
    } else if (std::vector<std::string> v2 = CgroupDirectories(self, mounts, ""); !v2.empty()) {
      // A v2 cgroup has cpu.max only if its parent hands the cpu controller down. The kernel
      // refuses to enable it in a non-root cgroup that has processes of its own (EBUSY).
      const std::string control = v2[0] + "/cgroup.subtree_control";
      if (ReadFile(control).find("cpu") == std::string::npos) {
        if (std::string error = WriteFile(control, "+cpu"); !error.empty()) {
          why_not_ =
              "the cpu controller is not available to children of " + v2[0] + " (" + error + ")";
          return;
        }
        enabled_in_ = control;
      }
      Make(v2[0] + name, {{"cpu.max", "100000 100000"}});
    } else {
      why_not_ = "no cgroup v1 cpu controller or cgroup v2 hierarchy is mounted";
    }
  }
  ~OneCpuCgroup() {
    Remove();
    if (!enabled_in_.empty()) WriteFile(enabled_in_, "-cpu");
  }
  OneCpuCgroup(const OneCpuCgroup&) = delete;
  OneCpuCgroup& operator=(const OneCpuCgroup&) = delete;

  // The cgroup's directory; empty if it could not be made, and why_not() says why.
  const std::string& dir() const { return dir_; }
  const std::string& why_not() const { return why_not_; }

 private:
  void Remove() {
    if (dir_.empty()) return;
    // A cgroup can be removed once it has no task; the kernel may take a moment after the last
    // one is reaped to see it empty (EBUSY meanwhile).
    const auto deadline = Clock::now() + kTimeout;
    while (rmdir(dir_.c_str()) != 0) {
      if (errno != EBUSY || Clock::now() >= deadline) {
        ADD_FAILURE() << "rmdir " << dir_ << ": " << strerror(errno);
        return;
      }
      std::this_thread::sleep_for(milliseconds(10));  // polling the condition, bounded above
    }
  }

  void Make(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& files) {
    if (mkdir(dir.c_str(), 0755) != 0) {
      why_not_ = "cannot create the cgroup " + dir + ": " + strerror(errno);
      return;
    }
    dir_ = dir;
    for (const auto& [file, value] : files) {
      if (std::string error = WriteFile(dir + "/" + file, value); !error.empty()) {
        why_not_ = error;
        return;  // the destructor removes the directory
      }
    }
  }

  std::string dir_;
  std::string why_not_;
  std::string enabled_in_;  // the subtree_control this test enabled cpu in
};

// hello_cores started inside a cgroup, stdout and stderr on one pipe; killed and reaped by pid.
class ChildInCgroup {
 public:
  ~ChildInCgroup() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int status;
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    if (out_ >= 0) close(out_);
  }

  bool Spawn(const std::string& cgroup, std::vector<std::string> args) {
    args.insert(args.begin(), PERCORE_HELLO_CORES);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const std::string procs = cgroup + "/cgroup.procs";
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      // Only async-signal-safe calls until exec. The child joins the cgroup itself, so that
      // hello_cores runs in it from its first instruction.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      char digits[16];
      char* end = digits + sizeof(digits);
      char* start = end;
      for (pid_t pid = getpid(); pid > 0; pid /= 10) *--start = static_cast<char>('0' + pid % 10);
      int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, start, static_cast<size_t>(end - start)) != end - start) _exit(125);
      close(fd);
      dup2(out[1], STDOUT_FILENO);
      dup2(out[1], STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
    return true;
  }

  pid_t pid() const { return pid_; }

  // Output lines until one starts with `prefix` (included), EOF or the deadline.
  std::vector<std::string> LinesUntil(std::string_view prefix) {
    std::vector<std::string> lines;
    const auto deadline = Clock::now() + kTimeout;
    while (true) {
      for (size_t eol; (eol = text_.find('\n')) != std::string::npos;) {
        lines.push_back(text_.substr(0, eol));
        text_.erase(0, eol + 1);
        if (lines.back().compare(0, prefix.size(), prefix) == 0) return lines;
      }
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      pollfd p{out_, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) == 0) return lines;
      char chunk[4096];
      ssize_t n = read(out_, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (!text_.empty()) lines.push_back(text_);
        return lines;
      }
      text_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string text_;
};

std::string Joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += "  " + line + "\n";
  return text;
}

TEST(CgroupQuotaTest, OneCpuQuotaStartsOneLoopAndSaysSo) {
  const std::vector<int> allowed = AllowedCpus();
  if (allowed.size() < 2) GTEST_SKIP() << "only one CPU allowed: a one-CPU quota decides nothing";
  if (std::optional<double> quota = CgroupCpuQuota(); quota && *quota <= 1.0) {
    GTEST_SKIP() << "this process already has a CPU quota of " << *quota;
  }
  OneCpuCgroup cgroup;
  if (!cgroup.why_not().empty()) {
    if (geteuid() != 0) GTEST_SKIP() << "not root: " << cgroup.why_not();
    GTEST_SKIP() << cgroup.why_not();
  }

  ChildInCgroup child;
  ASSERT_TRUE(child.Spawn(cgroup.dir(), {"--address", "127.0.0.1", "--port", "0"}))
      << strerror(errno);
  std::vector<std::string> lines = child.LinesUntil("Listening on port ");
  ASSERT_FALSE(lines.empty());
  ASSERT_EQ(lines.back().rfind("Listening on port ", 0), 0u) << Joined(lines);
  const int port = std::atoi(lines.back().c_str() + strlen("Listening on port "));
  ASSERT_GT(port, 0);
  EXPECT_EQ(lines[0], "Supervisor " + std::to_string(child.pid()) +
                          " is running 1 loop (cgroup CPU quota 1.0 of " +
                          std::to_string(allowed.size()) + " CPUs)")
      << Joined(lines);
  int workers = 0;
  for (const std::string& line : lines) {
    if (line.rfind("Worker ", 0) != 0) continue;
    ++workers;
    EXPECT_EQ(line.rfind("Worker 0 started on cpu " + std::to_string(allowed[0]) + " (", 0), 0u)
        << line;
  }
  EXPECT_EQ(workers, 1) << Joined(lines);
  EXPECT_NE(ReadFile("/proc/" + std::to_string(child.pid()) + "/cgroup")
                .find(cgroup.dir().substr(cgroup.dir().rfind('/'))),
            std::string::npos)
      << "hello_cores is not in " << cgroup.dir();

  std::optional<percore::testing::HttpResponse> response =
      percore::testing::Fetch(port, percore::testing::Get("/worker"), kTimeout);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "Hello World from worker 0 (cpu " + std::to_string(allowed[0]) +
                                ", pid " + std::to_string(child.pid()) + ")\n");
}

}  // namespace
}  // namespace percore
