// Building responses with the Response API from an App handler, driven through LoopHarness:
// the cost of Status/Type/Set/Send and of the body size, on top of a minimal request.
//
//   build/bench/response_benchmark
//
// items_per_second counts responses.
#include <string>

#include "benchmark/benchmark.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"

namespace {

using percore::Connection;
using percore::http::App;
using percore::http::Request;
using percore::http::Response;
using percore::testing::LoopHarness;

std::string Get(std::string_view path) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}

App MakeApp() {
  App app;
  app.Get("/text", [](const Request&, Response& res) { res.Send("Hello World!"); });
  app.Get("/json", [](const Request&, Response& res) {
    res.Status(201)
        .Type("application/json")
        .Set("Location", "/items/7")
        .Set("Cache-Control", "no-store")
        .Send("{\"id\":7,\"name\":\"seven\"}");
  });
  app.Get("/worker", [](const Request& req, Response& res) {
    res.Send("Hello World from worker " + std::to_string(req.worker_id()) + " (cpu " +
             std::to_string(req.cpu()) + ")");
  });
  static const std::string k4KiB(4096, 'x');
  app.Get("/4k", [](const Request&, Response& res) { res.Send(k4KiB); });
  app.Get("/empty", [](const Request&, Response& res) { res.Status(204); });
  return app;
}

void Respond(benchmark::State& state, std::string_view path) {
  LoopHarness harness(*MakeApp().Factory());
  Connection* c = harness.Accept();
  if (c == nullptr) {
    state.SkipWithError("socketpair failed");
    return;
  }
  const std::string request = Get(path);
  harness.Feed(c, request);
  const std::string first = harness.TakeOutput(c);
  if (first.compare(0, 10, "HTTP/1.1 2") != 0 || harness.Closing(c)) {
    state.SkipWithError(("unexpected response: " + first.substr(0, 40)).c_str());
    return;
  }
  state.counters["response_bytes"] = static_cast<double>(first.size());
  for (auto _ : state) {
    harness.Feed(c, request);
    benchmark::DoNotOptimize(c->output().data());
    c->output().clear();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_TextSend(benchmark::State& state) { Respond(state, "/text"); }
BENCHMARK(BM_TextSend);

void BM_JsonStatusTypeHeaders(benchmark::State& state) { Respond(state, "/json"); }
BENCHMARK(BM_JsonStatusTypeHeaders);

void BM_WorkerIdBody(benchmark::State& state) { Respond(state, "/worker"); }
BENCHMARK(BM_WorkerIdBody);

void BM_Body4KiB(benchmark::State& state) { Respond(state, "/4k"); }
BENCHMARK(BM_Body4KiB);

void BM_NoSend204(benchmark::State& state) { Respond(state, "/empty"); }
BENCHMARK(BM_NoSend204);

}  // namespace

BENCHMARK_MAIN();
