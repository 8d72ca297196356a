// "No heap allocation on the path of a small response": counts every operator new while
// requests go through the session, router, handler and response in steady state.
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
}  // namespace

void* operator new(size_t size) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace percore::http {
namespace {

// Feeds two pipelined requests 100 times after a warm-up; the allocations made meanwhile.
long AllocationsFor(const App& app) {
  testing::LoopHarness harness(*app.Factory());
  Connection* c = harness.Accept();
  const std::string batch =
      "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: test\r\n\r\n"
      "GET /users/42?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n"
      "Origin: https://a.example\r\n\r\n";
  for (int i = 0; i < 10; ++i) {  // warm-up: pools and scratch buffers reach their sizes
    harness.Feed(c, batch);
    c->output().clear();
  }
  counting = true;
  for (int i = 0; i < 100; ++i) {
    harness.Feed(c, batch);
    c->output().clear();
  }
  counting = false;
  EXPECT_FALSE(harness.Closing(c));
  return allocations.exchange(0);
}

void AddRoutes(App& app) {
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
  app.Get("/users/:id", [](const Request& req, Response& res) {
    res.Set("X-Id", req.Param("id")).Type("text/plain").Send("user");
  });
}

TEST(AllocationTest, SmallResponsesAllocateNothingInSteadyState) {
  App app;
  AddRoutes(app);
  EXPECT_EQ(AllocationsFor(app), 0);
}

TEST(AllocationTest, MiddlewareAndCompressionAllocateNothingForSmallResponses) {
  App app;
  app.Use([](const Request&, Response& res, const Next& next) {
    res.Set("X-Frame-Options", "DENY");
    next();
  });
  app.Use("/users", [](const Request&, Response&, const Next& next) { next(); });
  app.Use(Compress());
  app.Use(Cors());
  AddRoutes(app);
  EXPECT_EQ(AllocationsFor(app), 0);
}

// Router::Order::kAsAdded: a middleware after the routes routes the request a second time.
TEST(AllocationTest, MiddlewareAfterTheRoutesAllocatesNothing) {
  App app({}, Router::Order::kAsAdded);
  app.Use([](const Request&, Response&, const Next& next) { next(); });
  AddRoutes(app);
  app.Use([](const Request&, Response& res, const Next&) { res.Status(404).Send("no"); });
  EXPECT_EQ(AllocationsFor(app), 0);
}

TEST(AllocationTest, CounterSeesAnAllocation) {
  // The counter itself works: a string too long for the small-string buffer allocates.
  counting = true;
  std::string* s = new std::string(100, 'x');
  counting = false;
  EXPECT_GE(allocations.exchange(0), 1);
  delete s;
}

}  // namespace
}  // namespace percore::http
