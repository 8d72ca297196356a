// The files under deploy/: the systemd unit passes `systemd-analyze verify` and its timeouts
// cover the drain; the Kubernetes manifest parses and its probes and grace period fit the
// drain; the Dockerfile's runtime stage installs every package hello_cores links. Each check
// skips, saying why, where its tool is missing.
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#ifndef PERCORE_HELLO_CORES
#error "PERCORE_HELLO_CORES must name the hello_cores binary"
#endif

namespace percore {
namespace {

namespace fs = std::filesystem;

// The repository's root: this file is tests/deploy/deploy_test.cc in it.
fs::path Root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

std::string ReadFile(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

struct Ran {
  int status = -1;     // the exit code; -1 if it did not run or did not exit
  std::string output;  // stdout and stderr
};

// Runs a shell command line (the arguments quoted by the caller).
Ran Shell(const std::string& command) {
  Ran ran;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return ran;
  char chunk[4096];
  for (size_t n; (n = fread(chunk, 1, sizeof(chunk), pipe)) > 0;) ran.output.append(chunk, n);
  const int status = pclose(pipe);
  if (status != -1 && WIFEXITED(status)) ran.status = WEXITSTATUS(status);
  return ran;
}

bool OnPath(const std::string& tool) { return Shell("command -v " + tool).status == 0; }

std::string Quoted(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// A scratch directory, removed with what is in it.
struct TempDir {
  TempDir() {
    char name[] = "/tmp/percore-deploy-XXXXXX";
    if (mkdtemp(name) != nullptr) path = name;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path.empty()) fs::remove_all(path, ignored);
  }
  fs::path path;
};

// systemd-analyze verify on `unit`: the lines that name it, and whether it exited 0. It also
// loads the units this one refers to and may warn about the machine (no systemd running, other
// units' problems); those lines do not name the unit and are not its errors. Errors in the unit
// itself (an unknown key, a bad value) are printed "<path>:<line>: ..." but still exit 0; a
// missing executable exits non-zero.
std::pair<bool, std::string> Verify(const fs::path& unit) {
  Ran ran = Shell("systemd-analyze verify --man=no " + Quoted(unit.string()));
  std::string about_unit;
  std::istringstream lines(ran.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(unit.filename().string()) != std::string::npos) about_unit += line + "\n";
  }
  return {ran.status == 0 && about_unit.empty(),
          about_unit + "(exit " + std::to_string(ran.status) + ")\n" + ran.output};
}

// The unit with `from` replaced by `to` (every occurrence), written to `dir`/`name`.
fs::path WriteUnit(const fs::path& dir, const std::string& name, const std::string& from,
                   const std::string& to) {
  std::string text = ReadFile(Root() / "deploy/systemd/percore.service");
  for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size()) {
    text.replace(at, from.size(), to);
  }
  const fs::path path = dir / name;
  std::ofstream(path) << text;
  return path;
}

const std::string kInstalledBinary = "/usr/bin/hello_cores";

TEST(SystemdUnitTest, PassesSystemdAnalyzeVerify) {
  if (!OnPath("systemd-analyze")) GTEST_SKIP() << "systemd-analyze is not installed";
  TempDir dir;
  ASSERT_FALSE(dir.path.empty());
  // verify checks that ExecStart's binary exists: the one just built stands in for the .deb's.
  const fs::path unit =
      WriteUnit(dir.path, "percore.service", kInstalledBinary, PERCORE_HELLO_CORES);
  auto [ok, report] = Verify(unit);
  EXPECT_TRUE(ok) << report;

  // The check itself: broken copies of the unit are reported.
  auto [bad_type, type_report] =
      Verify(WriteUnit(dir.path, "bad-type.service", "Type=notify", "Type=bogus"));
  EXPECT_FALSE(bad_type) << "Type=bogus passed:\n" << type_report;
  auto [bad_key, key_report] =
      Verify(WriteUnit(dir.path, "bad-key.service", "KillMode=mixed", "KillMood=mixed"));
  EXPECT_FALSE(bad_key) << "an unknown key passed:\n" << key_report;
  auto [missing, missing_report] =
      Verify(WriteUnit(dir.path, "missing.service", kInstalledBinary, "/nonexistent/hello_cores"));
  EXPECT_FALSE(missing) << "a missing ExecStart binary passed:\n" << missing_report;
}

// "45s", "1min 30s" is not used: whole seconds with an "s".
std::optional<int> Seconds(const std::string& text) {
  std::smatch match;
  if (!std::regex_match(text, match, std::regex("([0-9]+)s"))) return std::nullopt;
  return std::stoi(match[1]);
}

TEST(SystemdUnitTest, SettingsAndTimeoutsCoverTheDrain) {
  std::map<std::string, std::string> keys;
  std::istringstream lines(ReadFile(Root() / "deploy/systemd/percore.service"));
  for (std::string line; std::getline(lines, line);) {
    size_t equals = line.find('=');
    if (line.empty() || line[0] == '#' || line[0] == '[' || equals == std::string::npos) continue;
    keys[line.substr(0, equals)] = line.substr(equals + 1);
  }
  EXPECT_EQ(keys["Type"], "notify");
  EXPECT_EQ(keys["NotifyAccess"], "all");
  EXPECT_EQ(keys["KillMode"], "mixed");
  EXPECT_EQ(keys["ExecReload"], "/bin/kill -HUP $MAINPID");
  EXPECT_EQ(keys["LimitNOFILE"], "1048576");
  EXPECT_EQ(keys["Restart"], "on-failure");
  const std::optional<int> watchdog = Seconds(keys["WatchdogSec"]);
  ASSERT_TRUE(watchdog.has_value()) << keys["WatchdogSec"];
  EXPECT_GT(*watchdog, 10) << "WatchdogSec must exceed --stuck_ms (10 s)";

  const std::string& start = keys["ExecStart"];
  EXPECT_EQ(start.rfind(kInstalledBinary + " ", 0), 0u) << start;
  std::smatch drain, shutdown;
  ASSERT_TRUE(std::regex_search(start, drain, std::regex("--drain_delay=([0-9]+s)"))) << start;
  ASSERT_TRUE(std::regex_search(start, shutdown, std::regex("--shutdown_timeout=([0-9]+s)")))
      << start;
  const std::optional<int> stop = Seconds(keys["TimeoutStopSec"]);
  ASSERT_TRUE(stop.has_value()) << keys["TimeoutStopSec"];
  EXPECT_GT(*stop, *Seconds(drain[1]) + *Seconds(shutdown[1]))
      << "TimeoutStopSec must cover --drain_delay plus --shutdown_timeout";
}

TEST(KubernetesTest, ManifestParsesAndItsTimingFitsTheDrain) {
  if (!OnPath("python3")) GTEST_SKIP() << "python3 is not installed";
  if (Shell("python3 -c 'import yaml'").status != 0)
    GTEST_SKIP() << "python3-yaml is not installed";
  // The facts the rules below need, one "name value" a line.
  const std::string script = R"(
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
print("kinds", ",".join(d["kind"] for d in docs))
pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
c = pod["containers"][0]
print("grace", pod["terminationGracePeriodSeconds"])
print("args", " ".join(c["args"]))
print("liveness", c["livenessProbe"]["httpGet"]["path"])
r = c["readinessProbe"]
print("readiness", r["httpGet"]["path"])
print("readiness_window", r["periodSeconds"] * r["failureThreshold"])
print("prestop", c["lifecycle"]["preStop"]["exec"]["command"][-1])
print("cpu_limit", c["resources"]["limits"]["cpu"])
print("non_root", pod["securityContext"]["runAsNonRoot"])
)";
  TempDir dir;
  ASSERT_FALSE(dir.path.empty());
  std::ofstream(dir.path / "facts.py") << script;
  Ran ran = Shell("python3 " + Quoted((dir.path / "facts.py").string()) + " " +
                  Quoted((Root() / "deploy/kubernetes/deployment.yaml").string()));
  ASSERT_EQ(ran.status, 0) << ran.output;
  std::map<std::string, std::string> facts;
  std::istringstream lines(ran.output);
  for (std::string line; std::getline(lines, line);) {
    size_t space = line.find(' ');
    if (space != std::string::npos) facts[line.substr(0, space)] = line.substr(space + 1);
  }
  EXPECT_EQ(facts["kinds"], "Deployment,Service");
  EXPECT_EQ(facts["liveness"], "/healthz");
  EXPECT_EQ(facts["readiness"], "/readyz");
  EXPECT_EQ(facts["cpu_limit"], "2");
  EXPECT_EQ(facts["non_root"], "True");
  std::smatch drain, shutdown;
  const std::string args = facts["args"];
  ASSERT_TRUE(std::regex_search(args, drain, std::regex("--drain_delay=([0-9]+)s"))) << args;
  ASSERT_TRUE(std::regex_search(args, shutdown, std::regex("--shutdown_timeout=([0-9]+)s")))
      << args;
  const int drain_delay = std::stoi(drain[1]);
  EXPECT_LE(std::stoi(facts["readiness_window"]), drain_delay)
      << "the readiness probe must see the drain within drain_delay";
  EXPECT_GT(std::stoi(facts["grace"]),
            std::stoi(facts["prestop"]) + drain_delay + std::stoi(shutdown[1]))
      << "terminationGracePeriodSeconds must cover preStop, drain_delay and shutdown_timeout";
}

TEST(DockerfileTest, RuntimeStageInstallsWhatHelloCoresLinks) {
  if (!OnPath("ldd") || !OnPath("dpkg")) GTEST_SKIP() << "ldd or dpkg is not installed";
  const std::string dockerfile = ReadFile(Root() / "deploy/docker/Dockerfile");
  const size_t runtime = dockerfile.find("FROM debian:12-slim");
  ASSERT_NE(runtime, std::string::npos);
  ASSERT_NE(dockerfile.find("FROM debian:12 AS build"), std::string::npos);
  const std::string stage = dockerfile.substr(runtime);
  for (const char* line : {"USER 10001", "EXPOSE 3000", "STOPSIGNAL SIGTERM", "HEALTHCHECK"}) {
    EXPECT_NE(stage.find(line), std::string::npos) << line;
  }
  // Each shared library's Debian package, found by its real path (or the path without /usr,
  // where the package installed it before /usr was merged).
  Ran ldd = Shell("ldd " + Quoted(PERCORE_HELLO_CORES));
  ASSERT_EQ(ldd.status, 0) << ldd.output;
  std::set<std::string> packages;
  std::istringstream lines(ldd.output);
  const std::regex library(R"(=> (/\S+))");
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (!std::regex_search(line, match, library)) continue;
    const std::string real = fs::canonical(match[1].str()).string();
    Ran owner = Shell("dpkg -S " + Quoted(real));
    if (owner.status != 0 && real.rfind("/usr/", 0) == 0) {
      owner = Shell("dpkg -S " + Quoted(real.substr(4)));
    }
    ASSERT_EQ(owner.status, 0) << real << ": " << owner.output;
    packages.insert(owner.output.substr(0, owner.output.find_first_of(":,")));
  }
  packages.erase("libc6");  // in every Debian image
  // The sanitizer runtimes, when this suite runs against the ASan build (the image is Release).
  packages.erase("libasan8");
  packages.erase("libubsan1");
  EXPECT_FALSE(packages.empty());
  for (const std::string& package : packages) {
    std::string pattern;  // the name as a regular expression ("libstdc++6")
    for (char c : package)
      pattern +=
          std::isalnum(static_cast<unsigned char>(c)) ? std::string(1, c) : std::string("\\") + c;
    EXPECT_TRUE(std::regex_search(stage, std::regex("\\s" + pattern + "(\\s|$)")))
        << "hello_cores links a library of " << package << ", which the runtime stage lacks";
  }
}

}  // namespace
}  // namespace percore
