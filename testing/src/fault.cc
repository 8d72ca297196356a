#include "percore/testing/fault.h"

#include <string>

namespace percore::testing {

// The loop looks at the request after each call into a session (Loop::AfterSession).
void CrashLoop(Worker& worker, std::string_view reason) {
  worker.crash_reason_ = std::string(reason);
  worker.crash_requested_ = true;
}

}  // namespace percore::testing
