// percore/testing/harness.h — one loop with no kernel backend, for unit tests, micro-benchmarks
// and fuzzers of a protocol. Bytes go in with Feed(), what the session wrote (files included)
// comes out of TakeOutput(); nothing is sent or received. Timers and jobs posted to the loop
// run in RunUntil(). With EngineOptions::tls, connections speak TLS: Feed() takes records and
// TakeOutput() gives them. Depends on no test framework. Owning-thread-only.
//
//   percore::testing::LoopHarness harness(*app.Factory());
//   percore::Connection* c = harness.Accept();
//   harness.Feed(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
//   std::string answer = harness.TakeOutput(c);
#ifndef PERCORE_TESTING_HARNESS_H_
#define PERCORE_TESTING_HARNESS_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "percore/options.h"
#include "percore/protocol.h"

namespace percore {
class Loop;
}

namespace percore::testing {

class LoopHarness {
 public:
  explicit LoopHarness(ProtocolFactory factory, EngineOptions options = {});
  ~LoopHarness();
  LoopHarness(const LoopHarness&) = delete;
  LoopHarness& operator=(const LoopHarness&) = delete;

  // A new connection: one end of a socketpair (no address), or of a TCP connection over
  // 127.0.0.1 (Request::peer() is 127.0.0.1 then). The loop owns it.
  Connection* Accept();
  Connection* AcceptTcp();
  // Hands `bytes` to the connection's session as one receive.
  void Feed(Connection* c, std::string_view bytes);
  // Hands `bytes` over one byte per receive.
  void FeedBytewise(Connection* c, std::string_view bytes);
  // Everything the session wrote since the last call, as the kernel would have sent it (file
  // ranges read in); the loop is told it was sent, so paused reads and OnWritable go on.
  std::string TakeOutput(Connection* c);
  // Whether the session closed (or failed) the connection.
  bool Closing(Connection* c) const { return c->closing(); }
  // Calls the session's OnDeadline, as the loop's timer would.
  void ExpireDeadline(Connection* c);
  // Runs the loop's timers, posted jobs and resumed connections until `done()` is true
  // (checked after each pass) or `timeout` passed; returns done().
  bool RunUntil(const std::function<bool()>& done, absl::Duration timeout);
  // Closes and destroys the connection now (nothing is ever in flight here).
  void Release(Connection* c);
  // The loop itself, for percore's own unit tests of it (needs its private header).
  Loop& loop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTING_HARNESS_H_
