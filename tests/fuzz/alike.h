// What both fuzzers check: one byte stream fed to one connection in a single read and to another
// in pieces, after which both must have sent the same bytes, be in the same state, and answer
// their deadline alike. A difference aborts with a report (libFuzzer keeps the input).
#ifndef PERCORE_TESTS_FUZZ_ALIKE_H_
#define PERCORE_TESTS_FUZZ_ALIKE_H_

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "percore/testing/harness.h"

namespace percore::testing {

[[noreturn]] inline void Mismatch(const char* what, std::string_view whole,
                                  std::string_view split) {
  size_t at = 0;
  while (at < whole.size() && at < split.size() && whole[at] == split[at]) ++at;
  std::fprintf(stderr, "%s differ (%zu and %zu bytes) from byte %zu:\n--- whole:\n%.*s\n", what,
               whole.size(), split.size(), at, static_cast<int>(whole.size() - at),
               whole.data() + at);
  std::fprintf(stderr, "--- split:\n%.*s\n", static_cast<int>(split.size() - at),
               split.data() + at);
  std::abort();
}

// `answer` with each Date field's value blanked: the same answer made a second later differs
// only there (the loop's Date line changes as its clock passes a second).
inline std::string WithoutDates(std::string answer) {
  for (size_t at = answer.find("\r\nDate: "); at != std::string::npos;
       at = answer.find("\r\nDate: ", at + 2)) {
    const size_t end = std::min(answer.find("\r\n", at + 2), answer.size());
    for (size_t i = at + 8; i < end; ++i) answer[i] = '#';
  }
  return answer;
}

// Feeds `stream` to `split` in pieces of 1..`max_piece` bytes drawn from `sizes` (with `turn`, a
// turn of the loop after each: a session taking over, resumed reads), calls `fed`, then
// compares `split` with `whole`, which was fed the same bytes at once, and releases both.
inline void FeedSplitAndCompare(LoopHarness& harness, Connection* whole, Connection* split,
                                std::string_view stream, std::mt19937& sizes, size_t max_piece,
                                bool turn, const std::function<void()>& fed) {
  for (size_t at = 0; at < stream.size();) {
    const size_t n = std::uniform_int_distribution<size_t>(1, max_piece)(sizes);
    // A copy each time, as a receive buffer would be: no view may outlive its read.
    harness.Feed(split, std::string(stream.substr(at, n)));
    if (turn) harness.RunUntil([] { return true; }, absl::Seconds(1));
    at += n;
  }
  if (fed) fed();
  const std::string a = WithoutDates(harness.TakeOutput(whole));
  const std::string b = WithoutDates(harness.TakeOutput(split));
  if (a != b) Mismatch("answers", a, b);
  if (harness.Closing(whole) != harness.Closing(split)) Mismatch("closing states", a, b);
  // The deadline (HTTP: a 408 for a request that began, silence for an idle connection;
  // WebSocket: a ping).
  if (!harness.Closing(whole)) {
    harness.ExpireDeadline(whole);
    harness.ExpireDeadline(split);
    const std::string c = WithoutDates(harness.TakeOutput(whole));
    const std::string d = WithoutDates(harness.TakeOutput(split));
    if (c != d) Mismatch("answers to the deadline", c, d);
  }
  harness.Release(whole);
  harness.Release(split);
}

}  // namespace percore::testing

#endif  // PERCORE_TESTS_FUZZ_ALIKE_H_
