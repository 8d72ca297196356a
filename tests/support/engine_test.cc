#include "support/engine_test.h"

#include <string_view>
#include <utility>

namespace percore::testing {

absl::StatusOr<std::unique_ptr<Engine>> ListenLocal(const http::App& app, BackendKind backend,
                                                    EngineOptions options) {
  options.address = "127.0.0.1";
  options.port = 0;
  if (options.threads == 0) options.threads = 2;
  options.backend = backend;
  return app.Listen(options);
}

bool IoUringUnavailable(const absl::Status& status) {
  return status.message().find("io_uring unavailable") != std::string_view::npos;
}

void EngineTest::Serve(const http::App& app, EngineOptions options) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = ListenLocal(app, GetParam(), options);
  if (!engine.ok() && IoUringUnavailable(engine.status())) {
    GTEST_SKIP() << "this machine cannot run the io_uring backend: " << engine.status();
  }
  ASSERT_TRUE(engine.ok()) << engine.status();
  engine_ = std::move(*engine);
  const absl::Status started = engine_->Start();
  ASSERT_TRUE(started.ok()) << started;
  port_ = engine_->port();
}

void EngineTest::TearDown() {
  if (engine_ == nullptr) return;
  engine_->Stop();
  engine_->Wait();
}

uint64_t EngineTest::Total(uint64_t WorkerCounters::*counter) const {
  uint64_t total = 0;
  for (size_t id = 0; id < engine_->stats().size(); ++id) total += engine_->stats().Read(id).*counter;
  return total;
}

}  // namespace percore::testing
