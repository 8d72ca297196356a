// The README's example, word for word below this comment (tests/docs/readme_test.cc checks
// it), built so that it is known to compile. Not clang-formatted: its comments are aligned.

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "percore/http/app.h"
#include "percore/http/health.h"

using namespace percore::http;

int main() {
  App app;
  app.Use(Compress());                                      // gzip when the client takes it
  // Every loop runs the same handlers, on its own thread, at the same time: what they share is
  // atomic or locked (or kept per loop, indexed by req.worker_id(): docs/guide.md).
  std::atomic<uint64_t> hits{0};
  app.Get("/hits", [&hits](const Request&, Response& res) {
    res.Send(std::to_string(++hits) + "\n");
  });
  app.Get("/users/:id(\\d+)", [](const Request& req, Response& res) {
    res.Json({{"id", req.Param("id")}, {"worker", req.worker_id()}});
  });
  app.Get("/later", [](const Request& req, Response& res) {  // the loop serves others meanwhile
    req.worker().After(absl::Milliseconds(50),
                       [later = res.Defer()]() mutable { later.Send("done\n"); });
  });
  MountHealthRoutes(app);                                   // /healthz, /readyz, /metrics
  percore::EngineOptions options;
  options.port = 3000;
  options.on_started = [](const percore::Engine& engine) {  // once every loop serves
    std::printf("Listening on port %d\n", engine.port());
    std::fflush(stdout);
  };
  return app.Run(options).ok() ? 0 : 1;  // one loop per CPU until SIGINT/SIGTERM, then drains
}
