// Hostile clients against TLS on the loop, through the loop harness (core/tls_suite.h): records
// that arrive together which a polite client sends apart, a connection that fails with a large
// file queued, and a storm of TLS 1.3 KeyUpdate requests.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/tls_suite.h"
#include "gtest/gtest.h"
#include "support/tls_peer.h"

namespace percore {
namespace {

using testing::TlsPeer;
using testing::TlsTest;

TEST_F(TlsTest, AFinishedARequestAndACloseNotifyInOneReceiveReachTheSession) {
  // A client that sends one request and says goodbye: on a busy loop its Finished, the
  // request and the close_notify come in one read. The handshake is done all the same (the
  // bug left the handshake's session in place, which dropped the request).
  Start();
  Connection* c = harness_->Accept();
  TlsPeer peer;
  harness_->Feed(c, peer.TakeOutput());   // the ClientHello
  peer.Receive(harness_->TakeOutput(c));  // the server's flight: the client is done
  ASSERT_TRUE(peer.established()) << peer.error();
  peer.Write("last words\n");
  peer.Close();
  harness_->Feed(c, peer.TakeOutput());  // Finished, the request, close_notify at once
  peer.Receive(harness_->TakeOutput(c));
  EXPECT_EQ(peer.TakePlaintext(), "last words\n");
  EXPECT_EQ(seen_.infos.size(), 1u) << "no session was made";
  EXPECT_EQ(seen_.peer_closed, 1);
  EXPECT_EQ(stats().tls_handshakes.load(), 1u);
  EXPECT_TRUE(harness_->Closing(c));
}

// Bytes this process has read with read() and pread() (/proc/self/io).
uint64_t BytesRead() {
  FILE* f = std::fopen("/proc/self/io", "r");
  unsigned long long rchar = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "rchar: %llu", &rchar) != 1) rchar = 0;
    std::fclose(f);
  }
  return rchar;
}

TEST_F(TlsTest, AConnectionThatFailsDropsTheFileItWasToSendUnread) {
  // A bad record read while a large file waits to be sealed (io_uring delivers what came
  // before a pause took effect) fails the connection: the rest of the file is dropped. The bug
  // read it all, a slice at a time with nothing sealed, in one call: gigabytes read in the
  // loop's turn, every other connection of the loop waiting.
  Start();
  const std::string path = *dir_ + "/sparse.bin";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, off_t{1} << 30), 0);  // 1 GiB of holes: no disk, only reads
  close(fd);
  Connection* c = harness_->Accept();
  TlsPeer peer;
  Exchange(c, peer);
  peer.Write("file:" + path + "\n");
  harness_->Feed(c, peer.TakeOutput());
  ASSERT_GT(c->pending_output(), uint64_t{1} << 29);  // queued, nothing sealed yet
  harness_->Feed(c, std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, 'x'));
  EXPECT_TRUE(harness_->Closing(c));
  const uint64_t before = BytesRead();
  harness_->TakeOutput(c);  // the alert
  EXPECT_LT(BytesRead() - before, uint64_t{64} << 20) << "the failed connection's file was read";
  EXPECT_EQ(c->pending_output(), 0u);
  std::remove(path.c_str());
}

TEST_F(TlsTest, AStormOfKeyUpdateRequestsEndsTheConnection) {
  // Each KeyUpdate a client asks to be answered costs the loop two key derivations and a
  // sealed answer, some 20 us with OpenSSL 3.0: 40 times a record of data. OpenSSL refuses 33
  // in a row, but a byte of data between them resets its count, so a megabyte of them held
  // the loop for most of a second (io_uring hands a loop up to its whole buffer ring of one
  // connection's bytes at once: seconds). A client may re-key now and then; a storm ends it.
  Start();
  Connection* c = harness_->Accept();
  TlsPeer peer;
  Exchange(c, peer);
  ASSERT_TRUE(peer.established()) << peer.error();
  for (int i = 0; i < 4; ++i) peer.RequestKeyUpdate();
  peer.Write("still here\n");
  Exchange(c, peer);
  EXPECT_EQ(peer.TakePlaintext(), "still here\n") << "a few KeyUpdates are answered";
  ASSERT_FALSE(harness_->Closing(c));
  std::string storm;
  for (int i = 1; i <= 3100 && !peer.failed(); ++i) {
    peer.RequestKeyUpdate();
    if (i % 31 == 0) peer.Write("x");  // data, so OpenSSL's count of KeyUpdates in a row resets
    storm += peer.TakeOutput();
  }
  ASSERT_FALSE(peer.failed()) << peer.error();
  harness_->Feed(c, storm);
  const std::string answers = harness_->TakeOutput(c);
  EXPECT_TRUE(harness_->Closing(c)) << "3100 KeyUpdates were answered";
  EXPECT_LT(answers.size(), storm.size() / 10) << "most of the storm was answered";
}

TEST_F(TlsTest, AnAbandonedHandshakeCountsForTheLoopsTrimAsACompletedOneDoes) {
  // A handshake's scratch (tens of KiB of OpenSSL's) is counted as freed for the loop's trim
  // (Loop::Tick) when the handshake completes. The bug counted nothing for one abandoned or
  // timed out: after 1500 clients sent half a ClientHello and timed out, 70 MB stayed resident
  // until some later handshake completed.
  Start();
  const size_t before = harness_->loop().freed_bytes();
  Connection* c = harness_->Accept();
  TlsPeer peer;
  const std::string hello = peer.TakeOutput();
  harness_->Feed(c, hello.substr(0, hello.size() / 2));
  harness_->Release(c);
  EXPECT_GE(harness_->loop().freed_bytes() - before, size_t{32} * 1024);
}

}  // namespace
}  // namespace percore
