// session_fuzzer: one byte stream through the HTTP session, fed to one connection in a single
// read and to another in pieces whose sizes the input chooses; both must get the same answers
// byte for byte, end in the same state, and react alike to their deadline. One loop serves
// every input, as a real loop serves many connections, so state one input leaves behind in
// the loop meets the next (ASan and UBSan watch memory on the way).
//
// Input: 4 bytes that seed the split sizes, then the bytes the client sends.
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "alike.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"

namespace {

using percore::Connection;
using percore::http::App;
using percore::http::HttpOptions;
using percore::http::Request;
using percore::http::Response;
using percore::testing::LoopHarness;

// A directory with a file and a subdirectory for Static(), made once per fuzzing process and
// removed when it exits (libFuzzer ends with exit()).
std::string static_root;

std::string StaticRoot() {
  char dir[] = "/tmp/percore-fuzz-static-XXXXXX";
  if (mkdtemp(dir) == nullptr) std::abort();
  static_root = dir;
  const std::string& root = static_root;
  std::atexit([] {
    std::remove((static_root + "/a.txt").c_str());
    std::remove((static_root + "/sub").c_str());
    std::remove(static_root.c_str());
  });
  std::FILE* f = std::fopen((root + "/a.txt").c_str(), "w");
  if (f == nullptr) std::abort();
  std::fputs("static file contents, long enough to be compressed\n", f);
  std::fclose(f);
  mkdir((root + "/sub").c_str(), 0755);
  return root;
}

// Answers kept for later: GET /k keeps its answer, GET /f answers every kept one, the last
// kept first, so only the connection's queue of slots puts them back in request order. What a
// connection left kept is dropped (each a 500) before the other connection is fed.
std::vector<percore::http::Response>& Kept() {
  static auto* kept = new std::vector<percore::http::Response>;
  return *kept;
}

LoopHarness& Harness() {
  // Small limits, so that short inputs reach them.
  static LoopHarness* harness = [] {
    HttpOptions options;
    options.max_body_bytes = 64;
    options.max_target_bytes = 64;
    options.max_header_bytes = 256;
    options.max_discard_bytes = 64;
    options.max_queued_responses = 4;
    options.max_queued_response_bytes = 512;
    App app(options);
    // The application layer around the routes: middleware, errors, decoding, files.
    app.Use(percore::http::Compress({.min_bytes = 16, .level = 1}));
    app.Use(percore::http::Cors({.origins = {"https://a.example"}}));
    app.Use("/s", percore::http::Static(StaticRoot()));
    app.OnError([](const Request& req, Response& res, const percore::http::Error& e) {
      if (e.status == 404) res.Status(404).Json({{"path", req.path()}});
    });
    app.Get("/q", [](const Request& req, Response& res) {
      std::string out(req.Query("a"));
      for (std::string_view v : req.QueryAll("b")) out.append(",").append(v);
      res.Cookie("c", "1").Vary("Cookie").Send(out + " " + std::string(req.Cookie("s")));
    });
    app.Get("/w/*", [](const Request& req, Response& res) { res.Send(req.Param("*")); });
    app.Get("/d/:n(\\d+)/:o?", [](const Request& req, Response& res) {
      res.Send(std::string(req.Param("n")) + std::string(req.Param("o")));
    });
    app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
    app.Get("/k", [](const Request&, Response& res) { Kept().push_back(res.Defer()); });
    app.Get("/f", [](const Request&, Response& res) {
      std::vector<percore::http::Response> kept;
      kept.swap(Kept());
      for (auto it = kept.rbegin(); it != kept.rend(); ++it) it->Send("kept");
      res.Send("flushed");
    });
    app.All("/echo", [](const Request& req, Response& res) { res.Send(req.body()); });
    app.Get("/users/:id", [](const Request& req, Response& res) {
      res.Send(std::string(req.Param("id")) + " " + std::string(req.Header("x-a")));
    });
    app.Get("/close", [](const Request&, Response& res) { res.Set("Connection", "close"); });
    app.Get("/throw", [](const Request&, Response&) { throw 1; });
    // Streamed bodies: a reader that answers with the size at the end, and an answer before
    // the body (the rest discarded, or the connection closed past max_discard_bytes).
    percore::http::RouteOptions streamed;
    streamed.stream_body = true;
    streamed.max_body_bytes = 100;
    app.Post(
        "/up",
        [](const Request&, Response& res) {
          auto size = std::make_shared<size_t>(0);
          res.Defer().OnBody([size](Response& later, std::string_view chunk, bool last) {
            *size += chunk.size();
            if (last) later.Send(std::to_string(*size));
          });
        },
        streamed);
    app.Post(
        "/refuse", [](const Request&, Response& res) { res.Status(401).Send("no"); }, streamed);
    return new LoopHarness(*app.Factory());
  }();
  return *harness;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  std::mt19937 sizes(provider.ConsumeIntegral<uint32_t>());
  const std::string stream = provider.ConsumeRemainingBytesAsString();
  LoopHarness& harness = Harness();
  Connection* whole = harness.Accept();
  Connection* split = harness.Accept();
  if (whole == nullptr || split == nullptr) std::abort();

  harness.Feed(whole, stream);
  Kept().clear();
  percore::testing::FeedSplitAndCompare(harness, whole, split, stream, sizes, 32,
                                        /*turn=*/false, [] { Kept().clear(); });
  return 0;
}
