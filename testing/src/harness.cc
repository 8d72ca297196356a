#include "percore/testing/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "clock.h"
#include "connection_state.h"
#include "loop.h"
#include "tls_context.h"

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

struct LoopHarness::Impl {
  EngineOptions options;
  LoopControl control;
  LoopControl own_control;
  EngineStats stats{1};
  std::unique_ptr<TlsSource> tls;  // EngineOptions::tls, if it has certificates
  std::unique_ptr<Loop> loop;
  std::vector<int> peers;  // the client ends of TCP connections, closed with the harness

  // The backend's part: the loop's dirty list is only a request to look at a connection.
  void Forget() {
    for (ConnectionState* c : loop->dirty()) c->dirty = false;
    loop->dirty().clear();
  }
};

LoopHarness::LoopHarness(ProtocolFactory factory, EngineOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  Impl& i = *impl_;
  i.loop = std::make_unique<Loop>(0, 0, i.options, -1, -1, &i.control, &i.own_control,
                                  &i.stats.worker(0).instances[0], &i.stats);
  absl::Status status = absl::OkStatus();
  if (options.tls.enabled()) {
    absl::StatusOr<std::unique_ptr<TlsSource>> tls = TlsSource::Create(options.tls);
    status = tls.status();
    if (tls.ok()) i.tls = std::move(*tls);
    i.loop->UseTls(i.tls.get());
  }
  if (status.ok()) status = i.loop->Init(factory, std::make_unique<NullBackend>());
  if (!status.ok()) {
    std::fprintf(stderr, "LoopHarness: %s\n", status.ToString().c_str());
    std::abort();
  }
  i.loop->UpdateClock();
}

LoopHarness::~LoopHarness() {
  impl_->loop.reset();  // closes the server ends first
  for (int fd : impl_->peers) close(fd);
}

Loop& LoopHarness::loop() { return *impl_->loop; }

Connection* LoopHarness::Accept() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return nullptr;
  close(fds[1]);
  return impl_->loop->OnAccepted(fds[0]);
}

Connection* LoopHarness::AcceptTcp() {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int client = -1, server = -1;
  if (listener >= 0 && bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      listen(listener, 1) == 0 &&
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client >= 0 && connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      server = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    }
  }
  if (listener >= 0) close(listener);
  if (server < 0) {
    if (client >= 0) close(client);
    return nullptr;
  }
  // Nothing is ever sent on it: the client end stays open so the server end has a peer.
  impl_->peers.push_back(client);
  return impl_->loop->OnAccepted(server);
}

void LoopHarness::Feed(Connection* c, std::string_view bytes) {
  impl_->loop->OnReceived(StateOf(c), bytes);
  impl_->Forget();
}

void LoopHarness::FeedBytewise(Connection* c, std::string_view bytes) {
  for (char byte : bytes) {
    // A fresh copy each time, as a receive buffer would be: views into it must not survive.
    std::string one(1, byte);
    impl_->loop->OnReceived(StateOf(c), one);
  }
  impl_->Forget();
}

std::string LoopHarness::TakeOutput(Connection* c) {
  ConnectionState* s = StateOf(c);
  std::string out;
  // As a backend would: one part at a time, each completion reported to the loop.
  while (!s->releasing() && !s->send_inflight && s->pending_output() > 0) {
    IoBuffers& o = *s->buffers;
    if (!o.Prepare()) {
      s->send_inflight = true;
      impl_->loop->OnSent(s, -EIO);  // a file to seal for TLS is shorter than its range
      break;
    }
    size_t n = o.bytes().size();
    if (n != 0) {
      out.append(o.bytes());
    } else {
      const FileRange& file = o.file();
      std::string piece(std::min<uint64_t>(file.left, 1 << 20), '\0');
      const ssize_t got =
          pread(file.fd, piece.data(), piece.size(), static_cast<off_t>(file.offset));
      if (got <= 0) {
        s->send_inflight = true;
        impl_->loop->OnSent(s, -EIO);  // the file is shorter than its range
        break;
      }
      out.append(piece.data(), static_cast<size_t>(got));
      n = static_cast<size_t>(got);
    }
    s->send_inflight = true;
    impl_->loop->OnSent(s, static_cast<int>(n));
  }
  impl_->Forget();
  return out;
}

void LoopHarness::ExpireDeadline(Connection* c) {
  impl_->loop->ExpireDeadline(StateOf(c));
  impl_->Forget();
}

bool LoopHarness::RunUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const int64_t deadline = MonotonicUs() + absl::ToInt64Microseconds(timeout);
  Loop& loop = *impl_->loop;
  while (true) {
    loop.UpdateClock();
    loop.RunDue();
    impl_->Forget();
    if (done()) return true;
    const int64_t now = MonotonicUs();
    if (now >= deadline) return false;
    // Jobs posted from other threads are seen at the next pass: wait at most a millisecond.
    const int64_t wait = std::min<int64_t>({loop.WaitUs(), 1000, deadline - now});
    if (wait > 0) std::this_thread::sleep_for(std::chrono::microseconds(wait));
  }
}

void LoopHarness::Release(Connection* c) {
  impl_->Forget();  // not to be looked at once gone (a hand-over marks it, say)
  impl_->loop->Release(StateOf(c));
  impl_->Forget();
}

}  // namespace percore::testing
