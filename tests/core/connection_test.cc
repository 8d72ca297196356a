// The loop's side of a connection, driven without a kernel: the lifecycle (close, linger, close
// without linger, failure), pausing at the output limit, and the output's parts (bytes, then
// file ranges, in order). The test plays the backend: it reports sends and the peer's FIN with
// the calls a backend makes (Loop::OnSent, OnReceiveEnded) and checks what the loop asks for
// (WantsRead, WantsSend).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <memory>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "connection_state.h"
#include "gtest/gtest.h"
#include "loop.h"
#include "percore/protocol.h"
#include "percore/testing/harness.h"

namespace percore {
namespace {

using percore::testing::LoopHarness;

// Echoes what it receives; "close" closes, "close-now" closes without lingering, "stop" takes
// nothing (the loop holds it until Resume()).
class Echo final : public Session {
 public:
  size_t OnData(Connection& conn, std::string_view bytes) override {
    if (bytes == "stop") return 0;
    conn.output().append(bytes);
    if (bytes == "close") conn.Close();
    if (bytes == "close-now") conn.Close(/*linger=*/false);
    return bytes.size();
  }
  void OnDeadline(Connection& conn) override { conn.Close(); }
};

class EchoProtocol final : public Protocol {
 public:
  std::unique_ptr<Session> NewSession(Connection&) override { return std::make_unique<Echo>(); }
};

EngineOptions SmallOutput() {
  EngineOptions options;
  options.max_pending_output = 16;
  return options;
}

class ConnectionTest : public ::testing::Test {
 protected:
  ConnectionTest()
      : harness_([](Worker&) { return std::make_unique<EchoProtocol>(); }, SmallOutput()) {}

  // Plays the backend's send of everything pending: prepares it and reports it taken.
  void SendAll(ConnectionState* c) {
    while (c->buffers != nullptr && c->pending_output() > 0) {
      c->buffers->Prepare();
      const size_t n = c->buffers->bytes().size();
      ASSERT_GT(n, 0u) << "only bytes here";
      loop().OnSent(c, static_cast<int>(n));
    }
  }
  Loop& loop() { return harness_.loop(); }
  ConnectionState* Accept() { return StateOf(harness_.Accept()); }

  LoopHarness harness_;
};

TEST_F(ConnectionTest, CloseSendsTheOutputThenLingersUntilThePeersFin) {
  ConnectionState* c = Accept();
  loop().OnReceived(c, "close");
  EXPECT_EQ(c->life, Lifecycle::kClosing);
  EXPECT_TRUE(Loop::WantsSend(c));
  EXPECT_EQ(Loop::SendFlags(c) & MSG_MORE, MSG_MORE) << "the last output goes with MSG_MORE";
  SendAll(c);
  EXPECT_EQ(c->life, Lifecycle::kLingering) << "half-closed once the output is out";
  EXPECT_NE(c->deadline_ms, 0) << "the linger is timed";
  EXPECT_TRUE(Loop::WantsRead(c)) << "reads on, to discard until the peer's FIN";
  loop().OnReceived(c, "ignored");  // discarded: nothing answers it
  EXPECT_EQ(c->pending_output(), 0u);
  loop().OnReceiveEnded(c, 0);
  EXPECT_EQ(c->life, Lifecycle::kReleasing);
  EXPECT_FALSE(Loop::WantsRead(c));
  EXPECT_FALSE(Loop::WantsSend(c));
}

TEST_F(ConnectionTest, LingerEndsAtItsDeadline) {
  ConnectionState* c = Accept();
  loop().OnReceived(c, "close");
  SendAll(c);
  ASSERT_EQ(c->life, Lifecycle::kLingering);
  loop().ExpireDeadline(c);
  EXPECT_EQ(c->life, Lifecycle::kReleasing);
}

TEST_F(ConnectionTest, CloseWithoutLingerReleasesOnceSentAndReadsNothingMore) {
  ConnectionState* c = Accept();
  loop().OnReceived(c, "close-now");
  EXPECT_EQ(c->life, Lifecycle::kClosingNow);
  EXPECT_FALSE(Loop::WantsRead(c));
  SendAll(c);
  EXPECT_EQ(c->life, Lifecycle::kReleasing);
}

TEST_F(ConnectionTest, CloseWithoutLingerAfterCloseDropsTheLinger) {
  ConnectionState* c = Accept();
  loop().OnReceived(c, "close");
  SendAll(c);
  ASSERT_EQ(c->life, Lifecycle::kLingering);
  c->Close(/*linger=*/false);
  EXPECT_EQ(c->life, Lifecycle::kReleasing);
}

TEST_F(ConnectionTest, PeersFinBeforeTheOutputIsSentReleasesAfterIt) {
  ConnectionState* c = Accept();
  loop().OnReceived(c, "abc");
  loop().OnReceiveEnded(c, 0);  // the session's default OnPeerClosed closes
  EXPECT_EQ(c->life, Lifecycle::kClosing);
  EXPECT_TRUE(c->peer_eof);
  SendAll(c);
  EXPECT_EQ(c->life, Lifecycle::kReleasing) << "no linger: the peer's FIN is in";
}

TEST_F(ConnectionTest, FailedSendAbortsAndDropsTheOutput) {
  ConnectionState* c = Accept();
  loop().OnReceived(c, "abc");
  c->buffers->Prepare();
  loop().OnSent(c, -ECONNRESET);
  EXPECT_EQ(c->life, Lifecycle::kReleasing);
  EXPECT_FALSE(Loop::WantsSend(c));
}

TEST_F(ConnectionTest, OutputPastTheLimitPausesReadingUntilSent) {
  ConnectionState* c = Accept();
  loop().OnReceived(c, std::string(20, 'x'));  // over max_pending_output (16)
  EXPECT_TRUE(c->output_full());
  EXPECT_TRUE(c->paused);
  EXPECT_FALSE(Loop::WantsRead(c));
  // What arrives meanwhile (io_uring's multishot receive before its cancel) waits, unparsed.
  loop().OnReceived(c, "later");
  EXPECT_EQ(c->buffers->unread(), "later");
  SendAll(c);
  EXPECT_FALSE(c->paused);
  EXPECT_TRUE(c->resume_queued) << "the rest goes to the session on the next iteration";
}

TEST_F(ConnectionTest, BytesBetweenTheLastSendAndTheResumeWaitForIt) {
  // The output is sent and given back to the pool, the resume is queued for the next
  // iteration, and bytes come first (epoll reads right after it writes): they wait for the
  // resume, in order, in a fresh output (a null one crashed the loop).
  ConnectionState* c = Accept();
  loop().OnReceived(c, std::string(20, 'x'));
  ASSERT_TRUE(c->paused);
  SendAll(c);
  ASSERT_TRUE(c->resume_queued);
  ASSERT_EQ(c->buffers, nullptr) << "given back once sent";
  loop().OnReceived(c, "after");
  ASSERT_NE(c->buffers, nullptr);
  EXPECT_EQ(c->buffers->unread(), "after");
  EXPECT_EQ(c->pending_output(), 0u) << "not echoed before the resume";
}

TEST_F(ConnectionTest, TheFinIsToldAfterTheBytesReceivedBeforeIt) {
  // A client pipelines past the output limit and half-closes: what it sent before its FIN is
  // still answered, and only then does the session learn of the FIN (Echo closes on it).
  ConnectionState* c = Accept();
  loop().OnReceived(c, std::string(20, 'x'));
  ASSERT_TRUE(c->paused);
  loop().OnReceived(c, "later");
  loop().OnReceiveEnded(c, 0);
  EXPECT_FALSE(c->closing()) << "told too early: the bytes before the FIN would be dropped";
  SendAll(c);
  ASSERT_TRUE(harness_.RunUntil([&] { return c->closing(); }, absl::Seconds(5)));
  EXPECT_EQ(c->buffers->pending, "later") << "echoed before the close";
}

TEST_F(ConnectionTest, UnreadBytesAreTakenAPieceAtATimeWithoutCopies) {
  IoBuffers output;
  output.KeepUnread("one|two|three");
  const char* first = output.unread().data();
  output.TakeUnread(4);
  EXPECT_EQ(output.unread(), "two|three");
  EXPECT_EQ(output.unread().data(), first + 4) << "skipped, not moved";
  output.TakeUnread(4);
  output.KeepUnread("|four");  // most of it was taken: the rest moves to the front once
  EXPECT_EQ(output.unread(), "three|four");
  output.TakeUnread(output.unread().size());
  EXPECT_TRUE(output.unread().empty());
}

TEST_F(ConnectionTest, SessionThatTakesNothingIsHeldUntilResume) {
  ConnectionState* c = Accept();
  loop().OnReceived(c, "stop");
  EXPECT_TRUE(c->held);
  EXPECT_FALSE(Loop::WantsRead(c));
  EXPECT_EQ(c->buffers->unread(), "stop");
  c->Resume();
  EXPECT_FALSE(c->held);
  EXPECT_TRUE(c->resume_queued);
}

// A file of `content`, opened for reading; the caller owns the descriptor.
int FileOf(std::string_view content) {
  char path[] = "/tmp/percore-connection-test-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return -1;
  unlink(path);
  if (write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// Plays a backend on an IoBuffers alone: what it would send, part by part, in order.
std::string Drain(IoBuffers& o) {
  std::string sent;
  while (o.size() > 0) {
    o.Prepare();
    if (!o.bytes().empty()) {
      // Two sends for each part of bytes: a partial send must leave the rest for the next.
      const std::string_view bytes = o.bytes();
      const size_t first = (bytes.size() + 1) / 2;
      sent.append(bytes.substr(0, first));
      o.Sent(first);
      if (first < bytes.size()) {
        sent.append(o.bytes());
        o.Sent(o.bytes().size());
      }
    } else {
      const FileRange& file = o.file();
      std::string piece(file.left, '\0');
      EXPECT_EQ(pread(file.fd, piece.data(), piece.size(), static_cast<off_t>(file.offset)),
                static_cast<ssize_t>(piece.size()));
      sent.append(piece);
      o.Sent(piece.size());
    }
  }
  return sent;
}

// The send timeout (Loop::Tick): output that makes no progress for send_timeout, a peer that
// reads nothing, fails the connection.
TEST(SendTimeoutTest, OutputStuckPastTheSendTimeoutAbortsTheConnection) {
  EngineOptions options;
  options.send_timeout = absl::Milliseconds(30);
  options.tick_interval = absl::Milliseconds(5);
  LoopHarness harness([](Worker&) { return std::make_unique<EchoProtocol>(); }, options);
  ConnectionState* c = StateOf(harness.Accept());
  harness.loop().OnReceived(c, "abc");
  ASSERT_GT(c->pending_output(), 0u);
  EXPECT_FALSE(c->releasing());
  EXPECT_TRUE(harness.RunUntil([&] { return c->releasing(); }, absl::Seconds(10)))
      << "never timed out";
  EXPECT_FALSE(Loop::WantsSend(c)) << "the output is dropped";
}

TEST(OutputTest, BytesAndFileRangesGoOutInTheOrderTheyWereQueued) {
  IoBuffers o;
  o.pending = "head1 ";
  o.AddFile(FileOf("0123456789"), 2, 5);  // "23456"
  o.pending = " head2 ";
  o.AddFile(FileOf("abcdef"), 0, 6);
  o.pending.append(" tail");
  EXPECT_EQ(o.size(), 6u + 5 + 7 + 6 + 5);
  EXPECT_EQ(Drain(o), "head1 23456 head2 abcdef tail");
  EXPECT_EQ(o.size(), 0u);
}

TEST(OutputTest, BytesAppendedWhileAPartIsInFlightFollowIt) {
  IoBuffers o;
  o.pending = "first";
  o.Prepare();
  EXPECT_EQ(o.bytes(), "first");
  o.pending = "second";  // the session writes while the send is in flight
  o.Sent(3);
  o.Prepare();  // the current part is not done: it goes on
  EXPECT_EQ(o.bytes(), "st");
  o.Sent(2);
  EXPECT_EQ(Drain(o), "second");
}

TEST(OutputTest, ClearClosesTheFilesNotSent) {
  IoBuffers o;
  const int fd = FileOf("xyz");
  ASSERT_GE(fd, 0);
  o.AddFile(fd, 0, 3);
  o.Clear();
  EXPECT_EQ(o.size(), 0u);
  EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "the output owned the descriptor and closed it";
}

// Connection::HandTo: "switch" hands the connection to a session that answers in upper case
// and records what the loop tells it, as HTTP/1.1 hands a connection to WebSocket after a 101.
struct HandOverLog {
  std::string events;
  int switches_destroyed = 0;
};

class Upper final : public Session {
 public:
  explicit Upper(HandOverLog* log) : log_(log) {}
  size_t OnData(Connection& conn, std::string_view bytes) override {
    for (char ch : bytes) conn.output().push_back(static_cast<char>(std::toupper(ch)));
    return bytes.size();
  }
  void OnDeadline(Connection& conn) override { log_->events += "deadline;"; }
  void OnPeerClosed(Connection& conn) override {
    log_->events += "fin;";
    conn.Close();
  }
  void OnDrain(Connection& conn) override { log_->events += "drain;"; }
  void OnTakeOver(Connection& conn) override { log_->events += "takeover;"; }

 private:
  HandOverLog* log_;
};

class Switch final : public Session {
 public:
  explicit Switch(HandOverLog* log) : log_(log) {}
  ~Switch() override { ++log_->switches_destroyed; }
  size_t OnData(Connection& conn, std::string_view bytes) override {
    if (!bytes.starts_with("switch")) return bytes.size();
    conn.output().append("ok ");
    conn.SetDeadline(conn.worker().now_ms() + 1);
    conn.HandTo(std::make_unique<Upper>(log_));
    conn.SetDeadline(conn.worker().now_ms() + 1);  // too late: the successor sets its own
    return 6;
  }
  void OnDeadline(Connection& conn) override { conn.Close(); }
  void OnPeerClosed(Connection& conn) override { log_->events += "switch-fin;"; }

 private:
  HandOverLog* log_;
};

class HandOverTest : public ::testing::Test {
 protected:
  HandOverTest()
      : harness_([this](Worker&) {
          class P final : public Protocol {
           public:
            explicit P(HandOverLog* log) : log_(log) {}
            std::unique_ptr<Session> NewSession(Connection&) override {
              return std::make_unique<Switch>(log_);
            }
            HandOverLog* log_;
          };
          return std::make_unique<P>(&log_);
        }) {}
  HandOverLog log_;
  LoopHarness harness_;
};

TEST_F(HandOverTest, TheSuccessorTakesOverRightAfterTheReadAndGetsTheBytesLeft) {
  Connection* c = harness_.Accept();
  harness_.Feed(c, "switch and");
  // Off the stack once the read is done, and in place before the answer is sent.
  EXPECT_EQ(log_.switches_destroyed, 1);
  EXPECT_EQ(log_.events, "takeover;");
  EXPECT_EQ(StateOf(c)->deadline_ms, 0) << "the old session's deadline is not the successor's";
  ASSERT_TRUE(
      harness_.RunUntil([&] { return StateOf(c)->pending_output() == 7; }, absl::Seconds(5)));
  EXPECT_EQ(harness_.TakeOutput(c), "ok  AND");
  harness_.Feed(c, " more");
  EXPECT_EQ(harness_.TakeOutput(c), " MORE");
}

TEST_F(HandOverTest, HandedOverOutsideAReadTheBytesReadMeanwhileWaitForTheSuccessor) {
  Connection* c = harness_.Accept();
  c->HandTo(std::make_unique<Upper>(&log_));  // as from a timer or a posted job
  harness_.Feed(c, "early");
  EXPECT_EQ(log_.switches_destroyed, 0) << "replaced while it may still be on the stack";
  EXPECT_EQ(StateOf(c)->pending_output(), 0u) << "the bytes went to the session being replaced";
  ASSERT_TRUE(harness_.RunUntil([&] { return log_.switches_destroyed == 1; }, absl::Seconds(5)));
  ASSERT_TRUE(
      harness_.RunUntil([&] { return StateOf(c)->pending_output() == 5; }, absl::Seconds(5)));
  EXPECT_EQ(harness_.TakeOutput(c), "EARLY");
}

TEST_F(HandOverTest, AFinReadBeforeTheSuccessorTakesOverIsToldToIt) {
  Connection* c = harness_.Accept();
  c->HandTo(std::make_unique<Upper>(&log_));
  harness_.loop().OnReceiveEnded(StateOf(c), 0);
  EXPECT_EQ(log_.events, "") << "the FIN went to the session being replaced";
  ASSERT_TRUE(harness_.RunUntil([&] { return c->closing(); }, absl::Seconds(5)));
  EXPECT_EQ(log_.events, "takeover;fin;");
}

TEST_F(HandOverTest, ADrainBegunBeforeTheSuccessorTakesOverIsToldToIt) {
  Connection* c = harness_.Accept();
  c->HandTo(std::make_unique<Upper>(&log_));
  harness_.loop().BeginDrain();
  ASSERT_TRUE(harness_.RunUntil([&] { return log_.switches_destroyed == 1; }, absl::Seconds(5)));
  EXPECT_EQ(log_.events, "takeover;drain;");
  EXPECT_FALSE(c->closing()) << "the successor decides when to close";
}

TEST_F(HandOverTest, AConnectionReleasedBeforeTheSwitchDropsTheSuccessor) {
  Connection* c = harness_.Accept();
  c->HandTo(std::make_unique<Upper>(&log_));
  harness_.Release(c);
  EXPECT_EQ(log_.switches_destroyed, 1);
  ASSERT_TRUE(harness_.RunUntil([] { return true; }, absl::Seconds(5)));
  EXPECT_EQ(log_.events, "") << "the successor was told of a connection that is gone";
}

}  // namespace
}  // namespace percore
