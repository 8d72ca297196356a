// percore/signals.h — signals taken with sigtimedwait rather than delivered.
//
//   const percore::BlockedSignals signals({SIGINT, SIGTERM, SIGHUP});
//   std::thread worker(...);       // inherits the mask: never interrupted by SIGTERM
//   int taken = signals.Wait(absl::Seconds(1));  // SIGTERM, ... or -1
//
// Blocked in the calling thread for the object's lifetime, and in every thread it starts
// meanwhile, which inherits the mask: a SIGTERM stays pending until it is taken instead of
// interrupting a loop's system call or, by default, ending the process. Engine::Run() and the
// guard each hold one; an application that starts threads of its own before Engine::Run()
// holds one too, so those threads leave the signals to the engine.
#ifndef PERCORE_SIGNALS_H_
#define PERCORE_SIGNALS_H_

#include <pthread.h>
#include <signal.h>

#include <initializer_list>

#include "absl/time/time.h"

namespace percore {

class BlockedSignals {
 public:
  explicit BlockedSignals(std::initializer_list<int> signals) {
    sigemptyset(&set_);
    for (int signal : signals) sigaddset(&set_, signal);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
  }
  // Takes what is still pending first: unblocked, it would act at once (by default: end the
  // process) although nobody is left to handle it.
  ~BlockedSignals() {
    while (Wait(absl::ZeroDuration()) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  BlockedSignals(const BlockedSignals&) = delete;
  BlockedSignals& operator=(const BlockedSignals&) = delete;

  // The next of the signals within `timeout`: its number, or -1.
  int Wait(absl::Duration timeout) const {
    const timespec wait = absl::ToTimespec(timeout);
    return sigtimedwait(&set_, nullptr, &wait);
  }
  // The mask the thread had before.
  const sigset_t& previous() const { return previous_; }

 private:
  sigset_t set_;
  sigset_t previous_;
};

}  // namespace percore

#endif  // PERCORE_SIGNALS_H_
