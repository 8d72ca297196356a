#include "support/loop_harness.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace percore::testing {
namespace {

class NullBackend final : public Backend {
 public:
  int Iterate(int64_t) override { return 0; }
  void StopAccepting() override {}
  void CancelLoopOperations() override {}
  bool Idle() const override { return true; }
  bool Accepting() const override { return false; }
  ConnectionState* NewConnection() override { return new ConnectionState; }
  ConnectionDeleter connection_deleter() const override {
    return [](ConnectionState* c) { delete c; };
  }
  void Adopted(ConnectionState*) override {}
  bool AddWatch(Watch*) override { return false; }
  void RemoveWatch(Watch*) override {}
};

}  // namespace

LoopHarness::LoopHarness(ProtocolFactory factory, EngineOptions options) : options_(options) {
  loop_ = std::make_unique<Loop>(0, 0, options_, -1, -1, &control_, &own_control_,
                                 &stats_.worker(0).lanes[0], &stats_);
  absl::Status status = loop_->Init(factory, std::make_unique<NullBackend>());
  if (!status.ok()) {
    std::fprintf(stderr, "LoopHarness: %s\n", status.ToString().c_str());
    std::abort();
  }
}

LoopHarness::~LoopHarness() = default;

Connection* LoopHarness::Accept() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return nullptr;
  close(fds[1]);
  return loop_->OnAccepted(fds[0]);
}

void LoopHarness::Feed(Connection* c, std::string_view bytes) {
  loop_->OnReceived(StateOf(c), bytes);
}

void LoopHarness::FeedBytewise(Connection* c, std::string_view bytes) {
  for (char byte : bytes) {
    // A fresh copy each time, as a receive buffer would be: views into it must not survive.
    std::string one(1, byte);
    loop_->OnReceived(StateOf(c), one);
  }
}

std::string LoopHarness::TakeOutput(Connection* c) {
  std::string out = c->output();
  c->output().clear();
  return out;
}

void LoopHarness::ExpireDeadline(Connection* c) { loop_->ExpireDeadline(StateOf(c)); }

void LoopHarness::Release(Connection* c) { loop_->Release(StateOf(c)); }

}  // namespace percore::testing
