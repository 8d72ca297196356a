#include "loop.h"
#include "percore/protocol.h"

namespace percore {

void Session::OnPeerClosed(Connection& conn) { conn.Close(); }

void Session::OnDrain(Connection& conn) { conn.Close(); }

void Connection::TakeOutput() { loop_->TakeOutput(this); }

void Connection::Close(bool linger) { loop_->RequestClose(this, linger); }

Worker& Connection::worker() const { return loop_->worker(); }

bool Connection::output_full() const {
  return pending_output() > loop_->options().max_pending_output;
}

}  // namespace percore
