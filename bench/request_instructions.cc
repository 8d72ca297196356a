// request_instructions: a fixed number of `GET /` through one connection of a LoopHarness (a
// loop with no kernel backend), optionally behind N no-op middlewares. Run under callgrind by
// scripts/instructions, which subtracts two runs of different lengths: the instructions one
// request costs in percore's own code, repeatably, whatever the machine's load.
//
//   build/bench/request_instructions MIDDLEWARES REQUESTS
#include <cstdio>
#include <cstdlib>
#include <string>

#include "percore/http/app.h"
#include "percore/testing/harness.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: request_instructions MIDDLEWARES REQUESTS\n");
    return 2;
  }
  const int middlewares = std::atoi(argv[1]);
  const int requests = std::atoi(argv[2]);
  percore::http::App app;
  for (int i = 0; i < middlewares; ++i) {
    app.Use([](const percore::http::Request&, percore::http::Response&,
               const percore::http::Next& next) { next(); });
  }
  app.Get("/", [](const percore::http::Request&, percore::http::Response& res) {
    res.Send("Hello World!");
  });
  percore::testing::LoopHarness harness(*app.Factory());
  percore::Connection* c = harness.Accept();
  const std::string get = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
  size_t bytes = 0;
  for (int i = 0; i < requests; ++i) {
    harness.Feed(c, get);
    bytes += c->output().size();
    c->output().clear();
  }
  std::printf("%zu bytes answered\n", bytes);
  return bytes == 0 ? 1 : 0;
}
