// The one check of EngineOptions, for Engine::Create() and RunGuarded() (which binds the
// listeners before any engine exists): an error names the bad field.
#ifndef PERCORE_SRC_VALIDATE_H_
#define PERCORE_SRC_VALIDATE_H_

#include <vector>

#include "absl/status/status.h"
#include "percore/options.h"

namespace percore {

// `allowed`: the CPUs of the process's affinity mask, sorted (AllowedCpus()).
absl::Status ValidateOptions(const EngineOptions& options, const std::vector<int>& allowed);

}  // namespace percore

#endif  // PERCORE_SRC_VALIDATE_H_
