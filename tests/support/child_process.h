// A child process of an integration test (hello_cores, testssl): started with its stdout and
// stderr on pipes that the test reads as it asks, or both appended to a log file; it dies with
// the test (PR_SET_PDEATHSIG) and is killed (SIGKILL) and reaped by its pid when destroyed. With
// `own_group` it leads a process group of its own, and the whole group is killed: testssl forks
// openssl and more.
#ifndef PERCORE_TESTS_SUPPORT_CHILD_PROCESS_H_
#define PERCORE_TESTS_SUPPORT_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace percore::testing {

struct ChildOptions {
  std::string log;  // "": stdout and stderr on pipes; else both appended to this file
  bool own_group = false;
};

class ChildProcess {
 public:
  using Clock = std::chrono::steady_clock;
  // Starts `args` (args[0] a path); pid() is -1 if it could not.
  explicit ChildProcess(std::vector<std::string> args, ChildOptions options = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Whether it has not exited (it is reaped once it has).
  bool running();
  // Its wait status once it has exited, waiting until `deadline`; nullopt while it runs.
  std::optional<int> Wait(Clock::time_point deadline);
  // Whether its stdout (stderr) said `text`, now or within `timeout`; false at EOF. Pipes only.
  bool Says(std::string_view text, std::chrono::milliseconds timeout);
  bool StderrSays(std::string_view text, std::chrono::milliseconds timeout);
  // The port of hello_cores' "Listening on port N" line on stdout, or 0 (EOF, the deadline).
  int ListeningPort(std::chrono::milliseconds timeout);
  const std::string& stdout_text() const { return out_text_; }
  const std::string& stderr_text() const { return err_text_; }

 private:
  pid_t pid_ = -1;
  bool own_group_ = false;
  std::optional<int> status_;  // once reaped
  int stdout_ = -1, stderr_ = -1;
  std::string out_text_, err_text_;
};

// hello_cores (`binary`) on 127.0.0.1, any free port, with
// `flags`, on pipes: its port() once it listens (0 if it did not within `timeout`).
class HelloCores : public ChildProcess {
 public:
  HelloCores(const std::string& binary, std::vector<std::string> flags,
             std::chrono::milliseconds timeout);
  int port() const { return port_; }

 private:
  int port_ = 0;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_CHILD_PROCESS_H_
