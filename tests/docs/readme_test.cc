// What the README tells a newcomer works as written: its example is the code of
// examples/readme/main.cc (which the build compiles), prints its port and answers; its run
// command sets up before it builds; scripts/build shows progress while keeping the build
// directory as its last line of output.
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace {

namespace fs = std::filesystem;

fs::path Root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `command` with sh; its standard output goes to *out. Returns its wait status.
int RunCommand(const std::string& command, std::string* out) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[256];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out->append(buffer, n);
  return pclose(pipe);
}

// The text of the first fenced block of `language` after `after` in `markdown`.
std::string Block(const std::string& markdown, const std::string& language,
                  const std::string& after = "") {
  const size_t from = markdown.find(after);
  if (from == std::string::npos) return "";
  const std::string fence = "```" + language + "\n";
  const size_t start = markdown.find(fence, from);
  if (start == std::string::npos) return "";
  const size_t end = markdown.find("```\n", start + fence.size());
  return markdown.substr(start + fence.size(), end - start - fence.size());
}

TEST(ReadmeTest, TheExampleIsTheCodeTheBuildCompiles) {
  std::string example = ReadFile(Root() / "examples/readme/main.cc");
  // Its opening comment says where it comes from; the rest is the README's.
  example.erase(0, example.find("\n\n") + 2);
  const std::string block = Block(ReadFile(Root() / "README.md"), "cpp", "## An example");
  ASSERT_FALSE(block.empty());
  EXPECT_EQ(block, example);
  // As hello_cores does, it says where it listens once it serves.
  EXPECT_NE(block.find("Listening on port %d\\n\", engine.port())"), std::string::npos);
}

#ifdef PERCORE_README_EXAMPLE
// The example listens on port 3000, as the README says: run in a network namespace of its own
// (unshare, as root), where that port is free whatever else this machine runs, and asked there.
TEST(ReadmeTest, TheExampleAnswers) {
  if (geteuid() != 0) GTEST_SKIP() << "a network namespace of its own needs root";
  // $1: the example.
  const std::string script = R"sh(
    ip link set lo up || exit 77
    out=$(mktemp)
    "$1" >"$out" 2>&1 &
    pid=$!
    for _ in $(seq 300); do grep -q "Listening on port 3000" "$out" && break; sleep 0.1; done
    get() { curl -s --max-time 5 "http://127.0.0.1:3000$1"; }
    echo "hits $(get /hits) $(get /hits)"
    echo "user $(get /users/7)"
    echo "later $(get /later)"
    kill -TERM $pid
    wait $pid
    echo "exit $?"
    rm -f "$out"
  )sh";
  const fs::path file =
      fs::temp_directory_path() / ("percore_readme_run_" + std::to_string(getpid()));
  std::ofstream(file) << script;
  const std::string command =
      "unshare --net sh '" + file.string() + "' '" PERCORE_README_EXAMPLE "' 2>&1";
  std::string out;
  const int status = RunCommand(command, &out);
  ASSERT_NE(status, -1);
  fs::remove(file);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << "no loopback: " << out;
  EXPECT_NE(out.find("hits 1 2\n"), std::string::npos) << out;  // one counter for every loop
  EXPECT_NE(out.find("user {\"id\":\"7\",\"worker\":"), std::string::npos) << out;
  EXPECT_NE(out.find("later done\n"), std::string::npos) << out;
  EXPECT_NE(out.find("exit 0\n"), std::string::npos) << out;  // drained on SIGTERM
}
#endif

TEST(ReadmeTest, TheRunCommandSetsUpFirst) {
  const std::string commands = Block(ReadFile(Root() / "README.md"), "sh");
  ASSERT_FALSE(commands.empty());
  const std::string first_line = commands.substr(0, commands.find('\n'));
  // scripts/build installs nothing: on a fresh machine only scripts/run and scripts/test (which
  // run scripts/setup) work.
  EXPECT_EQ(first_line.rfind("scripts/run --port 3000", 0), 0u) << first_line;
  EXPECT_EQ(commands.find("./build/hello_cores"), std::string::npos) << commands;
  const std::string run = ReadFile(Root() / "scripts/run");
  EXPECT_LT(run.find("\nscripts/setup\n"), run.find("scripts/build"));
}

// scripts/build with a stand-in ninja (and cmake) first on PATH: nothing is built.
TEST(ReadmeTest, BuildShowsProgressOnStderrAndTheDirectoryLastOnStdout) {
  const fs::path bin = fs::temp_directory_path() / ("percore_readme_" + std::to_string(getpid()));
  fs::create_directories(bin);
  for (const char* tool : {"ninja", "cmake"}) {
    std::ofstream(bin / tool) << "#!/bin/sh\necho \"[1/2] Building CXX object from fake " << tool
                              << "\"\n";
    fs::permissions(bin / tool, fs::perms::owner_all);
  }
  const fs::path err = bin / "stderr";
  const std::string command = "PATH='" + bin.string() + "':\"$PATH\" '" +
                              (Root() / "scripts/build").string() + "' 2>'" + err.string() + "'";
  std::string out;
  const int status = RunCommand(command, &out);
  ASSERT_NE(status, -1);
  const std::string progress = ReadFile(err);
  fs::remove_all(bin);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << progress;
  EXPECT_EQ(out, "build\n");
  EXPECT_NE(progress.find("[1/2] Building CXX object from fake ninja"), std::string::npos)
      << progress;
}

}  // namespace
