// hello_cores speaking HTTP/2 to real clients, once per backend: curl (h2 by ALPN over TLS, h2c
// by prior knowledge over plain TCP, HTTP/1.1 by ALPN when it asks for it), nghttp (several URLs
// on one connection), h2load (2000 requests, 100 streams at a time on one connection), a 1 MB
// upload echoed byte for byte and a 20 MB download, the stream counter of /metrics, and headless
// Chromium over TLS. hello_cores listens on 127.0.0.1 only (two loops, a plain and a TLS server,
// as a test needs them); each tool is a child with its output in a file of its own, waited for
// with a deadline and killed by its pid (Chromium with its process group) if it is still running.
// A test whose tool is not installed skips: scripts/setup installs nghttp2-client and chromium,
// curl only with --bench; a Chromium that cannot start here skips too.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "support/backends.h"
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
using std::chrono::milliseconds;
using std::chrono::seconds;

// Debian's tools (curl 7.88, nghttp2-client 1.52, chromium).
constexpr char kCurl[] = "/usr/bin/curl";
constexpr char kNghttp[] = "/usr/bin/nghttp";
constexpr char kH2load[] = "/usr/bin/h2load";
constexpr char kChromium[] = "/usr/bin/chromium";
// What curl writes after the body (-w), on a line of its own.
constexpr char kCurlWrites[] = "\ncurl-says %{http_version} %{http_code} %{size_download}\n";
constexpr milliseconds kStartDeadline(15000);
// Every run here takes well under a second or two; a tool still running after this is killed.
constexpr seconds kToolDeadline(60);

bool Installed(const char* path) { return access(path, X_OK) == 0; }

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The last `n` characters of a tool's output, for a failure message.
std::string Tail(const std::string& text, size_t n = 3000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// How a tool ended and what it printed (stdout and stderr together).
struct Ran {
  std::optional<int> code;  // its exit code; nullopt if killed (by a signal, or at the deadline)
  std::string output;
};

// What curl's -w printed.
struct Fetched {
  std::string version;  // %{http_version}: "2", "1.1"
  int status = 0;
  uint64_t size = 0;  // bytes of body received
  std::string body;   // what -o wrote
  std::string output;
};

// h2load's summary lines.
struct H2load {
  std::string protocol;  // "Application protocol: h2" (TLS) or "h2c"
  long total = -1, started = -1, done = -1, succeeded = -1, failed = -1, errored = -1, timeout = -1,
       s2xx = -1, s3xx = -1, s4xx = -1, s5xx = -1;
};

std::optional<H2load> ParseH2load(const std::string& output) {
  H2load r;
  const size_t protocol = output.find("Application protocol: ");
  const size_t requests = output.find("\nrequests: ");
  const size_t codes = output.find("\nstatus codes: ");
  if (protocol == std::string::npos || requests == std::string::npos ||
      codes == std::string::npos) {
    return std::nullopt;
  }
  const size_t from = protocol + sizeof("Application protocol: ") - 1;
  r.protocol = output.substr(from, output.find('\n', from) - from);
  if (std::sscanf(output.c_str() + requests,
                  "\nrequests: %ld total, %ld started, %ld done, %ld succeeded, %ld failed, %ld "
                  "errored, %ld timeout",
                  &r.total, &r.started, &r.done, &r.succeeded, &r.failed, &r.errored,
                  &r.timeout) != 7 ||
      std::sscanf(output.c_str() + codes, "\nstatus codes: %ld 2xx, %ld 3xx, %ld 4xx, %ld 5xx",
                  &r.s2xx, &r.s3xx, &r.s4xx, &r.s5xx) != 4) {
    return std::nullopt;
  }
  return r;
}

// The rows of `nghttp -s`'s table ("id responseEnd requestStart process code size path"), by path.
struct NghttpRow {
  int id = 0, code = 0;
  long size = -1;
};
std::map<std::string, NghttpRow> ParseNghttp(const std::string& output) {
  std::map<std::string, NghttpRow> rows;
  const size_t header = output.rfind("\nid  responseEnd");
  if (header == std::string::npos) return rows;
  std::stringstream in(output.substr(output.find('\n', header + 1) + 1));
  for (std::string line; std::getline(in, line);) {
    std::stringstream fields(line);
    NghttpRow row;
    std::string end, start, process, path;
    if (fields >> row.id >> end >> start >> process >> row.code >> row.size >> path) {
      rows[path] = row;
    }
  }
  return rows;
}

// The sum over the loops of percore_http2_streams_total{...,event="<event>"}, or -1 if none.
long StreamsTotal(const std::string& metrics, const std::string& event) {
  long sum = -1;
  std::stringstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("percore_http2_streams_total{", 0) != 0 ||
        line.find("event=\"" + event + "\"") == std::string::npos) {
      continue;
    }
    sum = std::max(sum, 0L) + std::atol(line.c_str() + line.rfind(' ') + 1);
  }
  return sum;
}

class HelloCoresH2Test : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override {
    std::string dir = (fs::temp_directory_path() / "percore-h2-XXXXXX").string();
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    cert_ = MakeCertificate(dir_.string(), "localhost", {"localhost"});
  }
  void TearDown() override {
    plain_.reset();
    tls_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // hello_cores (two loops) on plain TCP or on TLS with the certificate for localhost; skips
  // where io_uring cannot run.
  void Start(bool tls) {
    std::vector<std::string> flags = {"--threads", "2", "--backend",
                                      GetParam() == BackendKind::kEpoll ? "epoll" : "io_uring"};
    if (tls) {
      flags.insert(flags.end(), {"--tls_cert", cert_.cert_file, "--tls_key", cert_.key_file});
    }
    std::optional<HelloCores>& server = tls ? tls_ : plain_;
    server.emplace(PERCORE_HELLO_CORES, flags, kStartDeadline);
    if (server->port() == 0 && server->StderrSays("io_uring unavailable", milliseconds(2000))) {
      GTEST_SKIP() << "this machine cannot run the io_uring backend";
    }
    ASSERT_NE(server->port(), 0) << "hello_cores did not start: " << server->stderr_text();
  }
  void StartBoth() {
    ASSERT_NO_FATAL_FAILURE(Start(false));
    if (IsSkipped()) return;
    ASSERT_NO_FATAL_FAILURE(Start(true));
  }

  int Port(bool tls) const { return (tls ? tls_ : plain_)->port(); }
  // `path` on the TLS or the plain server, by its address: nghttp and h2load cannot be told
  // what localhost is, and it may be ::1 first. (Over TLS they send no SNI then.)
  std::string Url(bool tls, const std::string& path) const {
    return (tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(Port(tls)) + path;
  }

  // Runs `args` to its end, its output in a file of its own; killed (with its process group,
  // for `group`) if it still runs at the deadline.
  Ran Run(std::vector<std::string> args, bool group = false) {
    const fs::path log = dir_ / ("run-" + std::to_string(++runs_) + ".log");
    Ran ran;
    std::optional<int> status;
    {
      ChildProcess tool(std::move(args), {.log = log.string(), .own_group = group});
      if (tool.pid() > 0) status = tool.Wait(Clock::now() + kToolDeadline);
    }
    ran.output = ReadFile(log);
    if (status.has_value() && WIFEXITED(*status)) {
      ran.code = WEXITSTATUS(*status);
    } else {
      ran.output += status.has_value() ? "\n[killed by a signal]" : "\n[killed at the deadline]";
    }
    return ran;
  }

  // curl with `options` (--http2, --http2-prior-knowledge, --http1.1, ...) for `path`: over TLS
  // as https://localhost:PORT, localhost resolved to 127.0.0.1 and the certificate not checked.
  Fetched Curl(bool tls, const std::string& path, std::vector<std::string> options) {
    const fs::path body = dir_ / ("body-" + std::to_string(++runs_));
    std::vector<std::string> args = {kCurl, "-sS", "--noproxy",   "*",  "--max-time",
                                     "30",  "-o",  body.string(), "-w", kCurlWrites};
    if (tls) {
      const std::string port = std::to_string(Port(true));
      args.insert(args.end(), {"-k", "--resolve", "localhost:" + port + ":127.0.0.1"});
    }
    args.insert(args.end(), options.begin(), options.end());
    args.push_back(tls ? "https://localhost:" + std::to_string(Port(true)) + path
                       : Url(false, path));
    const Ran ran = Run(args);
    Fetched fetched;
    fetched.output = ran.output;
    const size_t says = ran.output.rfind("curl-says ");
    if (ran.code == 0 && says != std::string::npos) {
      std::stringstream in(ran.output.substr(says + sizeof("curl-says ") - 1));
      in >> fetched.version >> fetched.status >> fetched.size;
      fetched.body = ReadFile(body);
    }
    fs::remove(body);
    return fetched;
  }

  // GET /metrics over HTTP/1.1 (which begins no HTTP/2 stream).
  std::string Metrics(bool tls) {
    const Fetched metrics = Curl(tls, "/metrics", {"--http1.1"});
    EXPECT_EQ(metrics.status, 200) << metrics.output;
    return metrics.body;
  }

  // Headless Chromium printing the DOM of `url` once loaded, with a profile in the test's
  // directory.
  std::vector<std::string> ChromiumArgs(const std::string& url) {
    return {kChromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--user-data-dir=" + (dir_ / "chromium-profile").string(), "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--no-proxy-server",
            // The test's self-signed certificate, and localhost as 127.0.0.1 only.
            "--ignore-certificate-errors", "--host-resolver-rules=MAP localhost 127.0.0.1",
            "--dump-dom", url};
  }

  fs::path dir_;
  TlsCertificate cert_;
  int runs_ = 0;
  std::optional<HelloCores> plain_, tls_;
};

TEST_P(HelloCoresH2Test, CurlGetsH2ByAlpnOrPriorKnowledgeAndHttp11WhenItAsks) {
  if (!Installed(kCurl)) GTEST_SKIP() << "no " << kCurl << " (scripts/setup --bench installs it)";
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  if (IsSkipped()) return;
  const Fetched alpn = Curl(true, "/tls", {"--http2"});
  EXPECT_EQ(alpn.version, "2") << alpn.output;
  EXPECT_EQ(alpn.status, 200);
  EXPECT_NE(alpn.body.find("\"alpn\":\"h2\""), std::string::npos) << alpn.body;
  EXPECT_NE(alpn.body.find("\"sni\":\"localhost\""), std::string::npos) << alpn.body;

  const Fetched prior = Curl(false, "/", {"--http2-prior-knowledge"});
  EXPECT_EQ(prior.version, "2") << prior.output;
  EXPECT_EQ(prior.status, 200);
  EXPECT_EQ(prior.body, "Hello World!");

  const Fetched http11 = Curl(true, "/tls", {"--http1.1"});
  EXPECT_EQ(http11.version, "1.1") << http11.output;
  EXPECT_EQ(http11.status, 200);
  EXPECT_NE(http11.body.find("\"alpn\":\"http/1.1\""), std::string::npos) << http11.body;

  // --http2 on plain TCP offers "Upgrade: h2c" (which RFC 9113 dropped): answered in HTTP/1.1.
  const Fetched upgrade = Curl(false, "/", {"--http2"});
  EXPECT_EQ(upgrade.version, "1.1") << upgrade.output;
  EXPECT_EQ(upgrade.status, 200);
  EXPECT_EQ(upgrade.body, "Hello World!");
  EXPECT_TRUE(plain_->running() && tls_->running());
}

TEST_P(HelloCoresH2Test, NghttpFetchesSeveralUrlsOnOneConnection) {
  if (!Installed(kNghttp)) GTEST_SKIP() << "no " << kNghttp << " (Debian: nghttp2-client)";
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  if (IsSkipped()) return;
  const std::map<std::string, int> expected = {
      {"/", 200}, {"/json", 200}, {"/nope", 404}, {"/worker", 200}, {"/tls", 200}};
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "TLS" : "plain");
    std::vector<std::string> args = {kNghttp, "-n", "-s", "-t", "20"};
    for (const auto& [path, code] : expected) args.push_back(Url(tls, path));
    const Ran ran = Run(args);
    EXPECT_EQ(ran.code, 0) << Tail(ran.output);
    const std::map<std::string, NghttpRow> rows = ParseNghttp(ran.output);
    ASSERT_EQ(rows.size(), expected.size()) << Tail(ran.output);
    std::set<int> ids;
    for (const auto& [path, code] : expected) {
      ASSERT_TRUE(rows.contains(path)) << path << "\n" << Tail(ran.output);
      EXPECT_EQ(rows.at(path).code, code) << path;
      ids.insert(rows.at(path).id);
    }
    EXPECT_EQ(rows.at("/").size, 12) << "Hello World!";
    // Every connection of nghttp numbers its streams from the same first id: distinct ids are
    // streams of one connection.
    EXPECT_EQ(ids.size(), expected.size()) << Tail(ran.output);
  }
}

TEST_P(HelloCoresH2Test, H2loadHundredStreamsOnOneConnectionAllSucceed) {
  if (!Installed(kH2load)) GTEST_SKIP() << "no " << kH2load << " (Debian: nghttp2-client)";
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  if (IsSkipped()) return;
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "TLS" : "plain");
    const Ran ran = Run({kH2load, "-n", "2000", "-c", "1", "-m", "100", Url(tls, "/")});
    EXPECT_EQ(ran.code, 0) << Tail(ran.output);
    const std::optional<H2load> r = ParseH2load(ran.output);
    ASSERT_TRUE(r.has_value()) << "no summary from h2load:\n" << Tail(ran.output);
    EXPECT_EQ(r->protocol, tls ? "h2" : "h2c");
    EXPECT_EQ(r->total, 2000);
    EXPECT_EQ(r->done, 2000);
    EXPECT_EQ(r->succeeded, 2000) << Tail(ran.output);
    EXPECT_EQ(r->failed, 0);
    EXPECT_EQ(r->errored, 0);
    EXPECT_EQ(r->timeout, 0);
    EXPECT_EQ(r->s2xx, 2000);
    EXPECT_EQ(r->s3xx + r->s4xx + r->s5xx, 0);
  }
  EXPECT_TRUE(plain_->running() && tls_->running());
}

TEST_P(HelloCoresH2Test, MegabyteUploadEchoedAndTwentyMegabytesDownloaded) {
  if (!Installed(kCurl)) GTEST_SKIP() << "no " << kCurl << " (scripts/setup --bench installs it)";
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  if (IsSkipped()) return;
  std::string upload(1000000, '\0');
  std::mt19937 random(42);
  for (char& c : upload) c = static_cast<char>(random());
  const fs::path file = dir_ / "upload.bin";
  std::ofstream(file, std::ios::binary) << upload;
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "TLS" : "plain");
    const std::string h2 = tls ? "--http2" : "--http2-prior-knowledge";
    const Fetched echo = Curl(
        tls, "/echo",
        {h2, "--data-binary", "@" + file.string(), "-H", "Content-Type: application/octet-stream"});
    EXPECT_EQ(echo.version, "2") << echo.output;
    EXPECT_EQ(echo.status, 200);
    EXPECT_EQ(echo.size, upload.size());
    EXPECT_TRUE(echo.body == upload) << "echoed " << echo.body.size() << " bytes, not the same";

    const Fetched stream = Curl(tls, "/stream?bytes=20000000", {h2});
    EXPECT_EQ(stream.version, "2") << stream.output;
    EXPECT_EQ(stream.status, 200);
    EXPECT_EQ(stream.size, 20000000u);
    ASSERT_EQ(stream.body.size(), 20000000u);
    EXPECT_EQ(stream.body.find_first_not_of('x'), std::string::npos) << "all 'x'";
  }
}

TEST_P(HelloCoresH2Test, MetricsCountEveryStream) {
  if (!Installed(kCurl)) GTEST_SKIP() << "no " << kCurl << " (scripts/setup --bench installs it)";
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  if (IsSkipped()) return;
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "TLS" : "plain");
    const std::string h2 = tls ? "--http2" : "--http2-prior-knowledge";
    const long before = StreamsTotal(Metrics(tls), "begun");
    ASSERT_GE(before, 0) << "no percore_http2_streams_total{event=\"begun\"} in /metrics";
    for (int i = 0; i < 3; ++i) EXPECT_EQ(Curl(tls, "/", {h2}).version, "2");
    const std::string after = Metrics(tls);
    EXPECT_EQ(StreamsTotal(after, "begun"), before + 3) << after;
    EXPECT_EQ(StreamsTotal(after, "reset"), 0) << after;
    // Asked over HTTP/2, /metrics counts its own stream too.
    const Fetched own = Curl(tls, "/metrics", {h2});
    EXPECT_EQ(own.version, "2") << own.output;
    EXPECT_EQ(StreamsTotal(own.body, "begun"), before + 4) << own.body;
  }
}

TEST_P(HelloCoresH2Test, ChromiumGetsH2ByAlpn) {
  if (!Installed(kChromium)) GTEST_SKIP() << "no " << kChromium << " (scripts/setup installs it)";
  ASSERT_NO_FATAL_FAILURE(Start(true));
  if (IsSkipped()) return;
  const std::string url = "https://localhost:" + std::to_string(Port(true)) + "/tls";
  const Ran page = Run(ChromiumArgs(url), /*group=*/true);
  if (page.code != 0 || page.output.find("<pre") == std::string::npos) {
    // Its failure, or this machine's? The same browser on a page that needs no server.
    const Ran probe = Run(ChromiumArgs("data:text/html,<p>probe</p>"), /*group=*/true);
    if (probe.code != 0 || probe.output.find("<p>probe</p>") == std::string::npos) {
      GTEST_SKIP() << "chromium cannot run here:\n" << Tail(probe.output);
    }
  }
  EXPECT_EQ(page.code, 0) << Tail(page.output);
  // The JSON of /tls, shown by the browser in a <pre>.
  EXPECT_NE(page.output.find("\"alpn\":\"h2\""), std::string::npos) << Tail(page.output);
  EXPECT_NE(page.output.find("\"sni\":\"localhost\""), std::string::npos) << Tail(page.output);
  EXPECT_TRUE(tls_->running());
}

INSTANTIATE_TEST_SUITE_P(Backends, HelloCoresH2Test, testing::AllBackends(),
                         testing::BackendTestName);

}  // namespace
}  // namespace percore
