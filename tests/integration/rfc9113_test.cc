// RFC 9113 (HTTP/2) and RFC 7541 (HPACK) at the frame level, against hello_cores: the table of
// rfc9113_frames.py (rows in rfc9113_rows_frames.py and rfc9113_rows_http.py: each row a fresh
// connection, what the client sends after the preface and SETTINGS exchange, and exactly what
// the RFC says the server must do: GOAWAY or RST_STREAM with an error code, a PING ACK, a
// response), run by Debian's /usr/bin/python3 with python3-h2 (hyperframe and hpack), as
// testssl_test.cc runs testssl: skipped where that Python cannot import h2 (scripts/setup
// installs python3-h2). Once over plain TCP, HTTP/2 with prior knowledge; once over TLS, h2 by
// ALPN. The script prints a line for each row and, for a row that fails, what it expected, what
// came and the bytes it sent; it exits 0 only when every row passed. hello_cores (one loop) and
// the script are killed by their pids when the test ends, the temporary directory removed.
#include <stdlib.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "support/child_process.h"
#include "support/tls_peer.h"

#ifndef PERCORE_HELLO_CORES
#error "PERCORE_HELLO_CORES must name the hello_cores binary"
#endif

namespace percore {
namespace {

namespace fs = std::filesystem;
using percore::testing::ChildProcess;
using percore::testing::HelloCores;
using percore::testing::MakeCertificate;
using Clock = std::chrono::steady_clock;

// Debian's interpreter: a python3 earlier on PATH (pyenv, a venv) may lack Debian's modules.
constexpr char kPython[] = "/usr/bin/python3";
constexpr std::chrono::seconds kStartDeadline(15);
// The table takes about a second; each row has its own deadline (10 s, 30 s for the 100-stream
// rows), so even a server that answers nothing ends well within this.
constexpr std::chrono::seconds kTableDeadline(280);

fs::path Script() { return fs::path(__FILE__).parent_path() / "rfc9113_frames.py"; }

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The lines of the script's output that are not a passing row.
std::string NotPassing(const std::string& log) {
  std::stringstream in(log);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("PASS", 0) != 0) out += line + "\n";
  }
  return out;
}

class Rfc9113Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ChildProcess probe({kPython, "-c", "import h2, hpack, hyperframe"});
    const std::optional<int> status = probe.Wait(Clock::now() + std::chrono::seconds(30));
    if (probe.pid() < 0 || !status.has_value() || !WIFEXITED(*status) ||
        WEXITSTATUS(*status) != 0) {
      GTEST_SKIP() << kPython << " cannot import h2 (Debian: apt install python3-h2; "
                   << "scripts/setup does)";
    }
    std::string dir = (fs::temp_directory_path() / "percore-rfc9113-XXXXXX").string();
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // hello_cores with `flags` (one loop, no drain delay), then the table against it.
  void RunTable(std::vector<std::string> flags, bool tls) {
    flags.insert(flags.begin(), {"--threads", "1", "--drain_delay=0"});
    HelloCores server(PERCORE_HELLO_CORES, flags, kStartDeadline);
    ASSERT_GT(server.port(), 0) << "hello_cores did not start:\n"
                                << server.stdout_text() << server.stderr_text();
    const fs::path log = dir_ / (tls ? "table-tls.log" : "table.log");
    std::vector<std::string> args = {kPython, "-B", Script().string(), "--port",
                                     std::to_string(server.port())};
    if (tls) args.push_back("--tls");
    ChildProcess table(args, {.log = log.string()});
    ASSERT_GT(table.pid(), 0);
    const std::optional<int> status = table.Wait(Clock::now() + kTableDeadline);
    const std::string output = ReadFile(log);
    std::cout << output;
    ASSERT_TRUE(status.has_value())
        << "the table still ran after " << kTableDeadline.count() << " s:\n"
        << output;
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "rows failed (wait status " << *status << "):\n"
        << NotPassing(output);
    EXPECT_TRUE(server.running()) << "hello_cores exited:\n" << server.stderr_text();
  }

  fs::path dir_;
};

TEST_F(Rfc9113Test, PriorKnowledge) { RunTable({}, false); }

TEST_F(Rfc9113Test, TlsAlpn) {
  const TlsCertificate cert = MakeCertificate(dir_.string(), "h2", {"localhost"});
  RunTable({"--tls_cert", cert.cert_file, "--tls_key", cert.key_file}, true);
}

}  // namespace
}  // namespace percore
