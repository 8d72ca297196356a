// WriteWithoutSigpipe: a write to a pipe whose reader is gone fails with EPIPE instead of ending
// the process, on a thread where SIGPIPE is not blocked, and leaves the thread's signals as
// they were (a SIGPIPE already pending stays pending).
#include "log_line.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "gtest/gtest.h"

namespace percore {
namespace {

bool SigpipePending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE) == 1;
}

TEST(WriteWithoutSigpipeTest, WriteToAPipeWithoutReaderFailsWithEpipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  // Unblocked and at its default action, SIGPIPE would end this test process here.
  errno = 0;
  EXPECT_EQ(WriteWithoutSigpipe(fds[1], "x", 1), -1);
  EXPECT_EQ(errno, EPIPE);
  EXPECT_FALSE(SigpipePending());
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  EXPECT_EQ(sigismember(&mask, SIGPIPE), 0) << "the thread's mask is restored";
  close(fds[1]);
}

TEST(WriteWithoutSigpipeTest, ASigpipeAlreadyPendingIsLeftToItsOwner) {
  sigset_t pipe_only, previous;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
  pthread_kill(pthread_self(), SIGPIPE);
  ASSERT_TRUE(SigpipePending());
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  EXPECT_EQ(WriteWithoutSigpipe(fds[1], "x", 1), -1);
  EXPECT_TRUE(SigpipePending());
  const timespec now{0, 0};
  EXPECT_EQ(sigtimedwait(&pipe_only, nullptr, &now), SIGPIPE);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  close(fds[1]);
}

TEST(WriteWithoutSigpipeTest, WritesWhatItIsGiven) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  EXPECT_EQ(WriteWithoutSigpipe(fds[1], "line\n", 5), 5);
  char buffer[8] = {};
  EXPECT_EQ(read(fds[0], buffer, sizeof(buffer)), 5);
  EXPECT_STREQ(buffer, "line\n");
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace percore
