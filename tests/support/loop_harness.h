// LoopHarness: one Loop with no kernel backend, for unit tests, micro-benchmarks and the fuzzer
// of a protocol. Bytes go in with Feed(), what the session wrote comes out of TakeOutput();
// nothing is sent or received. Depends on no test framework.
#ifndef PERCORE_TESTS_SUPPORT_LOOP_HARNESS_H_
#define PERCORE_TESTS_SUPPORT_LOOP_HARNESS_H_

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "loop.h"
#include "percore/options.h"
#include "percore/protocol.h"

namespace percore::testing {

class LoopHarness {
 public:
  explicit LoopHarness(ProtocolFactory factory, EngineOptions options = {});
  ~LoopHarness();

  // A new connection (one end of a socketpair; the loop owns it).
  Connection* Accept();
  // Hands `bytes` to the connection's session as one receive.
  void Feed(Connection* c, std::string_view bytes);
  // Hands `bytes` over one byte per receive.
  void FeedBytewise(Connection* c, std::string_view bytes);
  // Everything the session appended since the last call.
  std::string TakeOutput(Connection* c);
  // Whether the session closed (or failed) the connection.
  bool Closing(Connection* c) const { return c->closing(); }
  // Calls the session's OnDeadline, as the loop's timer would.
  void ExpireDeadline(Connection* c);
  // Closes and destroys the connection now (nothing is ever in flight here).
  void Release(Connection* c);
  Loop& loop() { return *loop_; }

 private:
  EngineOptions options_;
  LoopControl control_;
  LoopControl own_control_;
  EngineStats stats_{1};
  std::unique_ptr<Loop> loop_;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_LOOP_HARNESS_H_
