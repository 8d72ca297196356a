#include "loop.h"
#include "percore/protocol.h"

namespace percore {

void Session::OnPeerClosed(Connection& conn) { conn.Close(); }

void Session::OnDrain(Connection& conn) { conn.Close(); }

void Connection::TakeOutput() { loop_->TakeOutput(this); }

void Connection::Close(bool linger) { loop_->RequestClose(this, linger); }

void Connection::Resume() { loop_->Resume(this); }

TimerId Worker::After(absl::Duration delay, std::function<void()> fn) {
  return loop_->AddTimer(delay, std::move(fn));
}

bool Worker::Cancel(TimerId timer) { return loop_->CancelTimer(timer); }

WatchId Worker::Watch(int fd, uint32_t events, std::function<void(uint32_t ready)> fn) {
  return loop_->AddWatch(fd, events, std::move(fn));
}

bool Worker::Unwatch(WatchId watch) { return loop_->RemoveWatch(watch); }

Worker& Connection::worker() const { return loop_->worker(); }

bool Connection::output_full() const {
  return pending_output() > loop_->options().max_pending_output;
}

}  // namespace percore
