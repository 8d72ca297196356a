// The files under deploy/: the systemd unit passes `systemd-analyze verify` and its timeouts
// cover the drain; the Kubernetes manifest parses and its probes and grace period fit the
// drain; the Dockerfile's runtime stage installs every package hello_cores links; the TLS
// variants (the unit, the manifest, HAProxy passing TLS through) keep those rules and add their
// certificates, HTTPS probes and PROXY v2. Each check skips, saying why, where its tool is
// missing.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
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
#include "support/child_process.h"
#include "support/test_client.h"
#include "support/tls_peer.h"
#include "support/tls_socket.h"

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

void ReplaceAll(std::string& text, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size()) {
    text.replace(at, from.size(), to);
  }
}

// The unit `source` (deploy/systemd/percore.service by default) with `from` replaced by `to`
// (every occurrence), written to `dir`/`name`.
fs::path WriteUnit(const fs::path& dir, const std::string& name, const std::string& from,
                   const std::string& to,
                   const std::string& source = "deploy/systemd/percore.service") {
  std::string text = ReadFile(Root() / source);
  ReplaceAll(text, from, to);
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

// A unit's settings, key to value, in the order written (a key may repeat); a line ending in a
// backslash goes on on the next one, as systemd reads it (joined by a space).
std::multimap<std::string, std::string> UnitSettings(const std::string& source) {
  std::multimap<std::string, std::string> settings;
  std::istringstream lines(ReadFile(Root() / source));
  for (std::string line; std::getline(lines, line);) {
    while (!line.empty() && line.back() == '\\') {
      std::string next;
      if (!std::getline(lines, next)) break;
      line.pop_back();
      line.push_back(' ');
      line.append(next, std::min(next.find_first_not_of(' '), next.size()));
    }
    size_t equals = line.find('=');
    if (line.empty() || line[0] == '#' || line[0] == '[' || equals == std::string::npos) continue;
    settings.emplace(line.substr(0, equals), line.substr(equals + 1));
  }
  return settings;
}

// The last value of each key.
std::map<std::string, std::string> LastValues(const std::multimap<std::string, std::string>& all) {
  std::map<std::string, std::string> keys;
  for (const auto& [key, value] : all) keys[key] = value;
  return keys;
}

TEST(SystemdUnitTest, SettingsAndTimeoutsCoverTheDrain) {
  std::map<std::string, std::string> keys =
      LastValues(UnitSettings("deploy/systemd/percore.service"));
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

// The facts about a Kubernetes manifest that the rules below need, one "name value" a line
// printed by a Python script (PyYAML) run on deploy/kubernetes/`manifest`. Sets `skip` to why
// when python3 or its yaml module is missing.
const char kManifestFacts[] = R"(
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
print("schemes", c["livenessProbe"]["httpGet"].get("scheme", "HTTP"),
      r["httpGet"].get("scheme", "HTTP"))
print("ports", " ".join("%s:%s" % (p["name"], p["containerPort"]) for p in c["ports"]))
for m in c.get("volumeMounts", []):
    v = next(v for v in pod["volumes"] if v["name"] == m["name"])
    print("mount", m["mountPath"], m.get("readOnly", False), v.get("secret", {}).get("secretName"))
s = next(d for d in docs if d["kind"] == "Service")["spec"]["ports"][0]
print("service", "%s:%s->%s" % (s["name"], s["port"], s["targetPort"]))
)";

std::map<std::string, std::string> ManifestFacts(const std::string& manifest, std::string& skip) {
  std::map<std::string, std::string> facts;
  if (!OnPath("python3")) {
    skip = "python3 is not installed";
    return facts;
  }
  if (Shell("python3 -c 'import yaml'").status != 0) {
    skip = "python3-yaml is not installed";
    return facts;
  }
  TempDir dir;
  EXPECT_FALSE(dir.path.empty());
  std::ofstream(dir.path / "facts.py") << kManifestFacts;
  Ran ran = Shell("python3 " + Quoted((dir.path / "facts.py").string()) + " " +
                  Quoted((Root() / "deploy/kubernetes" / manifest).string()));
  EXPECT_EQ(ran.status, 0) << ran.output;
  std::istringstream lines(ran.output);
  for (std::string line; std::getline(lines, line);) {
    size_t space = line.find(' ');
    if (space != std::string::npos) facts[line.substr(0, space)] = line.substr(space + 1);
  }
  return facts;
}

// The rules every manifest keeps: the probes, the limits and the timing of the drain.
void ExpectTimingFitsTheDrain(std::map<std::string, std::string>& facts) {
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

TEST(KubernetesTest, ManifestParsesAndItsTimingFitsTheDrain) {
  std::string skip;
  std::map<std::string, std::string> facts = ManifestFacts("deployment.yaml", skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  ExpectTimingFitsTheDrain(facts);
  EXPECT_EQ(facts["schemes"], "HTTP HTTP");
  EXPECT_EQ(facts["service"], "http:80->http");
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

// The TLS variants: deploy/systemd/percore-tls.service, deploy/kubernetes/deployment-tls.yaml
// and deploy/haproxy/haproxy-tls-passthrough.cfg.
const std::string kTlsUnit = "deploy/systemd/percore-tls.service";

TEST(SystemdUnitTest, TlsUnitPassesSystemdAnalyzeVerify) {
  if (!OnPath("systemd-analyze")) GTEST_SKIP() << "systemd-analyze is not installed";
  TempDir dir;
  ASSERT_FALSE(dir.path.empty());
  auto [ok, report] = Verify(
      WriteUnit(dir.path, "percore-tls.service", kInstalledBinary, PERCORE_HELLO_CORES, kTlsUnit));
  EXPECT_TRUE(ok) << report;
  auto [bad, bad_report] = Verify(WriteUnit(dir.path, "bad-credential.service",
                                            "LoadCredential=", "LoadCredentials=", kTlsUnit));
  EXPECT_FALSE(bad) << "an unknown key passed:\n" << bad_report;
}

TEST(SystemdUnitTest, TlsUnitServesPort443WithItsCredentialsAndKeepsTheRest) {
  const std::multimap<std::string, std::string> settings = UnitSettings(kTlsUnit);
  std::map<std::string, std::string> keys = LastValues(settings);
  // The key stays root's: systemd copies both files for the service at start.
  std::vector<std::string> credentials;
  for (auto [at, end] = settings.equal_range("LoadCredential"); at != end; ++at) {
    credentials.push_back(at->second);
  }
  EXPECT_EQ(credentials, (std::vector<std::string>{"site.pem:/etc/percore/tls/site.pem",
                                                   "site.key:/etc/percore/tls/site.key"}));
  const std::string& start = keys["ExecStart"];
  EXPECT_EQ(start.rfind(kInstalledBinary + " ", 0), 0u) << start;
  for (const char* flag : {" --port 443 ", " --tls_cert ${CREDENTIALS_DIRECTORY}/site.pem ",
                           " --tls_key ${CREDENTIALS_DIRECTORY}/site.key "}) {
    EXPECT_NE((start + " ").find(flag), std::string::npos) << flag << " in " << start;
  }
  // A dynamic user binds port 443 with this capability alone.
  EXPECT_EQ(keys["DynamicUser"], "yes");
  EXPECT_EQ(keys["AmbientCapabilities"], "CAP_NET_BIND_SERVICE");
  EXPECT_EQ(keys["CapabilityBoundingSet"], "CAP_NET_BIND_SERVICE");
  // Everything else as in percore.service: the drain, the watchdog, the hardening.
  const std::map<std::string, std::string> plain =
      LastValues(UnitSettings("deploy/systemd/percore.service"));
  for (const auto& [key, value] : plain) {
    if (key == "Description" || key == "CapabilityBoundingSet") continue;
    if (key == "ExecStart") {
      std::smatch timing;
      ASSERT_TRUE(std::regex_search(value, timing, std::regex(" --drain_delay=.*"))) << value;
      EXPECT_NE(start.find(timing[0].str()), std::string::npos) << start;
      continue;
    }
    EXPECT_EQ(keys[key], value) << key;
  }
}

// What LoadCredential= gives the TLS unit, without a running systemd (a build container has
// none): root's files stay root's (0600 in a 0700 directory); copies, owned by the service's user
// and readable by it alone, go in a directory of its own; the unit's ExecStart, with
// ${CREDENTIALS_DIRECTORY} naming that directory, runs as that user (nobody) and serves TLS.
// Pointed at root's files instead, the same command refuses to start and says why.
TEST(SystemdUnitTest, TlsUnitsCommandServesAsAnotherUserFromCredentialCopies) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to own the files and to change user";
  if (!OnPath("setpriv")) GTEST_SKIP() << "setpriv (util-linux) is not installed";
  const std::string as_nobody = "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups ";
  if (Shell(as_nobody + "test -x " + Quoted(PERCORE_HELLO_CORES)).status != 0) {
    GTEST_SKIP() << "nobody cannot run " << PERCORE_HELLO_CORES << " (a directory above it)";
  }
  const uid_t nobody = 65534;
  TempDir dir;
  ASSERT_FALSE(dir.path.empty());
  fs::permissions(dir.path, fs::perms::owner_all | fs::perms::others_exec);
  const fs::path root_only = dir.path / "etc", copies = dir.path / "credentials";
  ASSERT_TRUE(fs::create_directory(root_only) && fs::create_directory(copies));
  const TlsCertificate cert = testing::MakeCertificate(root_only, "site", {"localhost"});
  for (const std::string& file : {cert.cert_file, cert.key_file}) {
    ASSERT_EQ(chmod(file.c_str(), 0600), 0);
    const fs::path copy = copies / fs::path(file).filename();
    ASSERT_TRUE(fs::copy_file(file, copy));
    ASSERT_EQ(chown(copy.c_str(), nobody, nobody), 0);
    ASSERT_EQ(chmod(copy.c_str(), 0400), 0);
  }
  ASSERT_EQ(chmod(root_only.c_str(), 0700), 0);
  ASSERT_EQ(chown(copies.c_str(), nobody, nobody), 0);
  ASSERT_EQ(chmod(copies.c_str(), 0500), 0);

  // The unit's command line, with this build's binary, any free port on 127.0.0.1 and the
  // directory systemd would name, as nobody.
  auto command = [&](const fs::path& credentials) {
    std::string start = LastValues(UnitSettings(kTlsUnit))["ExecStart"];
    for (auto [from, to] :
         {std::pair<std::string, std::string>{kInstalledBinary, PERCORE_HELLO_CORES},
          {"${CREDENTIALS_DIRECTORY}", credentials.string()},
          {"--port 443", "--port 0 --address 127.0.0.1 --threads 1"}}) {
      ReplaceAll(start, from, to);
    }
    std::vector<std::string> args;
    std::istringstream words(as_nobody + start);
    for (std::string word; words >> word;) args.push_back(word);
    return args;
  };
  const auto timeout = std::chrono::milliseconds(15000);
  testing::ChildProcess served(command(copies));
  const int port = served.ListeningPort(timeout);
  if (port == 0) served.StderrSays("\n\n", timeout);  // to EOF: what it said
  ASSERT_NE(port, 0) << "did not start: " << served.stdout_text() << served.stderr_text();
  testing::TlsSocket client(port, {.server_name = "localhost"});
  ASSERT_TRUE(client.Handshake());
  const std::optional<testing::HttpResponse> answer = client.Fetch(testing::Get("/"));
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->status, 200);

  testing::ChildProcess refused(command(root_only));
  EXPECT_TRUE(refused.StderrSays("cannot read the certificate", timeout)) << refused.stderr_text();
  const std::optional<int> status = refused.Wait(std::chrono::steady_clock::now() + timeout);
  ASSERT_TRUE(status.has_value()) << "still running";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0) << *status;
}

TEST(KubernetesTest, TlsManifestMountsItsSecretAndProbesOverHttps) {
  std::string skip;
  std::map<std::string, std::string> facts = ManifestFacts("deployment-tls.yaml", skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  ExpectTimingFitsTheDrain(facts);
  EXPECT_EQ(facts["schemes"], "HTTPS HTTPS");
  EXPECT_EQ(facts["mount"], "/etc/percore/tls True percore-tls");
  EXPECT_EQ(facts["ports"], "https:8443");
  EXPECT_EQ(facts["service"], "https:443->https");
  const std::string args = " " + facts["args"] + " ";
  for (const char* flag : {" --port 8443 ", " --tls_cert /etc/percore/tls/tls.crt ",
                           " --tls_key /etc/percore/tls/tls.key "}) {
    EXPECT_NE(args.find(flag), std::string::npos) << flag << " in" << args;
  }
  // The Secret's type gives the key names mounted above; kubectl makes it with this type.
  const std::string text = ReadFile(Root() / "deploy/kubernetes/deployment-tls.yaml");
  EXPECT_NE(text.find("kubernetes.io/tls"), std::string::npos);
  EXPECT_NE(text.find("kubectl create secret tls percore-tls"), std::string::npos);
}

TEST(HaproxyTest, TlsPassthroughConfigParsesAndSendsProxyV2BeforeTls) {
  const fs::path config = Root() / "deploy/haproxy/haproxy-tls-passthrough.cfg";
  const std::string text = ReadFile(config);
  // TLS passes through: no certificate in HAProxy, TCP mode, the checks over TLS with a PROXY
  // header, every connection to a host preceded by PROXY v2.
  EXPECT_EQ(text.find(" ssl "), std::string::npos) << "HAProxy must not end TLS";
  for (const char* pattern :
       {R"(\n\s*mode tcp\n)", R"(\n\s*bind :443\n)", R"(\n\s*balance roundrobin\n)",
        R"(\n\s*option httpchk\n)", R"(\n\s*http-check send meth GET uri /readyz )",
        R"(\n\s*default-server [^\n]*\bcheck-ssl verify none\b)",
        R"(\n\s*default-server [^\n]*\bcheck-send-proxy\b)",
        R"(\n\s*default-server [^\n]*\bsend-proxy-v2\b)", R"(\n\s*timeout connect \d)",
        R"(\n\s*timeout client \d)", R"(\n\s*timeout server \d)", R"(\n\s*timeout check \d)",
        R"(\n\s*server \S+ \S+:8443\n)"}) {
    EXPECT_TRUE(std::regex_search(text, std::regex(pattern))) << pattern;
  }
  if (!OnPath("haproxy")) GTEST_SKIP() << "haproxy is not installed";
  Ran ran = Shell("haproxy -c -q -f " + Quoted(config.string()));
  EXPECT_EQ(ran.status, 0) << ran.output;
  // The check itself: a broken copy is refused.
  TempDir dir;
  ASSERT_FALSE(dir.path.empty());
  std::string broken = text;
  broken.replace(broken.find("    mode tcp\n"), 12, "    mode tpc\n");
  std::ofstream(dir.path / "broken.cfg") << broken;
  EXPECT_NE(Shell("haproxy -c -q -f " + Quoted((dir.path / "broken.cfg").string())).status, 0);
}

}  // namespace
}  // namespace percore
