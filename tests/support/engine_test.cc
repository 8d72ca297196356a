#include "support/engine_test.h"

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

namespace percore::testing {

absl::StatusOr<std::unique_ptr<Engine>> ListenLocal(const http::App& app, BackendKind backend,
                                                    EngineOptions options) {
  options.address = "127.0.0.1";
  if (options.threads == 0) options.threads = 2;
  options.backend = backend;
  return app.Listen(options);
}

bool IoUringUnavailable(const absl::Status& status) {
  return status.message().find("io_uring unavailable") != std::string_view::npos;
}

void ServeLocal(const http::App& app, BackendKind backend, EngineOptions options, bool start,
                std::unique_ptr<Engine>* engine, int* port) {
  StopLocal(engine);
  absl::StatusOr<std::unique_ptr<Engine>> listening = ListenLocal(app, backend, std::move(options));
  if (!listening.ok() && IoUringUnavailable(listening.status())) {
    GTEST_SKIP() << "this machine cannot run the io_uring backend: " << listening.status();
  }
  ASSERT_TRUE(listening.ok()) << listening.status();
  *engine = std::move(*listening);
  *port = (*engine)->port();
  if (!start) return;
  const absl::Status started = (*engine)->Start();
  ASSERT_TRUE(started.ok()) << started;
}

void StopLocal(std::unique_ptr<Engine>* engine) {
  if (*engine == nullptr) return;
  (*engine)->Stop();
  (*engine)->Wait();
  engine->reset();
}

void EngineTest::Serve(const http::App& app, EngineOptions options, bool start) {
  ServeLocal(app, GetParam(), std::move(options), start, &engine_, &port_);
}

void EngineTest::TearDown() { StopLocal(&engine_); }

uint64_t EngineTest::Total(uint64_t WorkerCounters::*counter) const {
  uint64_t total = 0;
  for (size_t id = 0; id < engine_->stats().size(); ++id) {
    total += engine_->stats().Read(id).*counter;
  }
  return total;
}

Socket EngineClientTest::Connect() {
  Socket socket(ConnectLocal(port_));
  EXPECT_TRUE(socket.ok()) << "connect to port " << port_ << ": " << strerror(errno);
  return socket;
}

std::optional<HttpResponse> EngineClientTest::Fetch(const std::string& request) {
  return percore::testing::Fetch(port_, request);
}

}  // namespace percore::testing
