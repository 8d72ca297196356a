// One place that writes the engine's and the guard's log lines.
#ifndef PERCORE_SRC_LOG_LINE_H_
#define PERCORE_SRC_LOG_LINE_H_

#include <unistd.h>

#include <string>
#include <string_view>

#include "percore/options.h"

namespace percore {

// Hands `line` (no newline) to EngineOptions::log, or writes it to stderr with one write().
inline void LogLine(const EngineOptions& options, std::string_view line) {
  if (options.log) {
    options.log(line);
  } else {
    std::string text = std::string(line) + "\n";
    [[maybe_unused]] ssize_t n = write(STDERR_FILENO, text.data(), text.size());
  }
}

}  // namespace percore

#endif  // PERCORE_SRC_LOG_LINE_H_
