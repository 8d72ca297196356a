#include "percore/testing/fault.h"

#include <string>

#include "loop.h"

namespace percore::testing {

void CrashLoop(Worker& worker, std::string_view reason) {
  worker.loop_->InjectCrash(std::string(reason));
}

}  // namespace percore::testing
