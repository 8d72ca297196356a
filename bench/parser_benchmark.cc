// Parse + route + respond on one connection through LoopHarness (a Loop with no kernel backend):
// what percore's own code costs per request, without the kernel's TCP work.
//
//   build/bench/parser_benchmark [--benchmark_min_time=0.5]
//
// items_per_second counts requests.
#include <string>

#include "benchmark/benchmark.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"

namespace {

using percore::Connection;
using percore::ProtocolFactory;
using percore::http::App;
using percore::http::Request;
using percore::http::Response;
using percore::testing::LoopHarness;

constexpr char kSmallGet[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

// `middlewares` no-op middlewares run before every route.
ProtocolFactory HelloFactory(int middlewares = 0) {
  App app;
  for (int i = 0; i < middlewares; ++i) {
    app.Use([](const Request&, Response&, const percore::http::Next& next) { next(); });
  }
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
  app.Get("/users/:id", [](const Request& req, Response& res) { res.Send(req.Param("id")); });
  return *app.Factory();
}

// A request with 20 header fields, like a browser's.
std::string TwentyHeaders() {
  std::string r = "GET /users/42?tab=profile HTTP/1.1\r\nHost: example.com\r\n";
  static const char* const kFields[] = {
      "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
      "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
      "Accept-Language: en-US,en;q=0.5",
      "Accept-Encoding: gzip, deflate, br",
      "Referer: https://example.com/users",
      "Connection: keep-alive",
      "Upgrade-Insecure-Requests: 1",
      "Sec-Fetch-Dest: document",
      "Sec-Fetch-Mode: navigate",
      "Sec-Fetch-Site: same-origin",
      "Sec-Fetch-User: ?1",
      "Cache-Control: max-age=0",
      "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; lang=en",
      "DNT: 1",
      "Pragma: no-cache",
      "X-Request-Id: 7f3c2a1e-5b6d-4c8e-9f0a-1b2c3d4e5f60",
      "X-Forwarded-For: 203.0.113.7",
      "X-Forwarded-Proto: https",
      "If-None-Match: \"5d8c72a5edda8\"",
  };
  for (const char* field : kFields) r.append(field).append("\r\n");
  return r + "\r\n";  // Host + 19 = 20 fields
}

// Feeds `bytes` (holding `requests` requests) once per iteration and discards the responses.
void Run(benchmark::State& state, const std::string& bytes, int requests, int middlewares = 0) {
  LoopHarness harness(HelloFactory(middlewares));
  Connection* c = harness.Accept();
  if (c == nullptr) {
    state.SkipWithError("socketpair failed");
    return;
  }
  harness.Feed(c, bytes);
  const std::string first = harness.TakeOutput(c);
  if (first.compare(0, 15, "HTTP/1.1 200 OK") != 0 || harness.Closing(c)) {
    state.SkipWithError(("unexpected response: " + first.substr(0, 40)).c_str());
    return;
  }
  for (auto _ : state) {
    harness.Feed(c, bytes);
    benchmark::DoNotOptimize(c->output().data());
    c->output().clear();
  }
  state.SetItemsProcessed(state.iterations() * requests);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}

void BM_SmallGet(benchmark::State& state) { Run(state, kSmallGet, 1); }
BENCHMARK(BM_SmallGet);

// The cost of a middleware chain: compare with BM_SmallGet.
void BM_SmallGetThreeMiddlewares(benchmark::State& state) { Run(state, kSmallGet, 1, 3); }
BENCHMARK(BM_SmallGetThreeMiddlewares);

void BM_Pipelined16(benchmark::State& state) {
  std::string batch;
  for (int i = 0; i < 16; ++i) batch += kSmallGet;
  Run(state, batch, 16);
}
BENCHMARK(BM_Pipelined16);

void BM_TwentyHeaders(benchmark::State& state) { Run(state, TwentyHeaders(), 1); }
BENCHMARK(BM_TwentyHeaders);

}  // namespace

BENCHMARK_MAIN();
