// percore/testing/fault.h — fault injection: make a loop die the way a bug in its own code would.
//
//   app.Get("/crash", [](const Request& req, Response& res) {
//     percore::testing::CrashLoop(req.worker(), "crash requested by /crash");
//     res.Send("never sent");
//   });
//
// For tests of what an application does when a loop dies, and for demos of the supervisor.
#ifndef PERCORE_TESTING_FAULT_H_
#define PERCORE_TESTING_FAULT_H_

#include <string_view>

#include "percore/protocol.h"

namespace percore::testing {

// Once the current call into the session returns, an exception escapes the loop: the loop dies
// with `reason` before it sends what that call answered, its connections go (idle ones to the
// next instance), and the engine's supervisor logs "Worker <id> died (<reason>); restarting in
// ..." and starts a new instance. Owning-loop-only.
void CrashLoop(Worker& worker, std::string_view reason);

}  // namespace percore::testing

#endif  // PERCORE_TESTING_FAULT_H_
