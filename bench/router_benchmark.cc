// percore::http::Router lookups: exact paths (hashed) and `:param` patterns (tried in order).
//
//   build/bench/router_benchmark
//
// items_per_second counts Route() calls.
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "percore/http/router.h"

namespace {

using percore::http::Request;
using percore::http::Response;
using percore::http::RouteParam;
using percore::http::Router;

// A router shaped like a small REST API: 20 exact paths and 10 patterns.
Router MakeRouter() {
  Router router;
  auto handler = [](const Request&, Response&) {};
  for (int i = 0; i < 20; ++i) router.Add("GET", "/static/page" + std::to_string(i), handler);
  router.Add("GET", "/", handler);
  router.Add("POST", "/", handler);
  static const char* const kPatterns[] = {
      "/users/:id",           "/users/:id/posts",  "/users/:id/posts/:post",     "/teams/:team",
      "/teams/:team/members", "/orders/:order",    "/orders/:order/items/:item", "/products/:sku",
      "/search/:term",        "/files/:name/meta",
  };
  for (const char* p : kPatterns) router.Add("GET", p, handler);
  return router;
}

void Lookup(benchmark::State& state, std::string_view method, std::string_view path) {
  const Router router = MakeRouter();
  std::vector<RouteParam> params;
  if (router.Route(method, path, &params).handler == nullptr) {
    state.SkipWithError("no route matched");
    return;
  }
  for (auto _ : state) {
    params.clear();
    Router::Result result = router.Route(method, path, &params);
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ExactRoot(benchmark::State& state) { Lookup(state, "GET", "/"); }
BENCHMARK(BM_ExactRoot);

void BM_ExactAmong22(benchmark::State& state) { Lookup(state, "GET", "/static/page17"); }
BENCHMARK(BM_ExactAmong22);

void BM_ParamFirstPattern(benchmark::State& state) { Lookup(state, "GET", "/users/42"); }
BENCHMARK(BM_ParamFirstPattern);

void BM_TwoParamsLatePattern(benchmark::State& state) {
  Lookup(state, "GET", "/orders/1234/items/56");
}
BENCHMARK(BM_TwoParamsLatePattern);

void BM_NotFound(benchmark::State& state) {
  const Router router = MakeRouter();
  std::vector<RouteParam> params;
  for (auto _ : state) {
    params.clear();
    Router::Result result = router.Route("GET", "/nowhere/at/all", &params);
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NotFound);

}  // namespace

BENCHMARK_MAIN();
