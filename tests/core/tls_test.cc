// TLS on the loop (core/src/tls_*.cc, loop_sessions.cc), through the loop harness: records go
// in as the kernel would deliver them (whole, or a byte at a time), records come out, and an
// in-memory OpenSSL client (support/tls_peer.h) is the other end.
#include <fcntl.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "connection_state.h"
#include "core/tls_suite.h"
#include "gtest/gtest.h"
#include "loop.h"
#include "percore/protocol.h"
#include "percore/stats.h"
#include "percore/testing/harness.h"
#include "support/tls_peer.h"
#include "tls_context.h"

namespace percore {
namespace {

using testing::EchoProtocol;
using testing::KeyType;
using testing::LoopHarness;
using testing::MakeCertificate;
using testing::Seen;
using testing::TlsPeer;
using testing::TlsPeerOptions;
using testing::TlsTest;

TEST_F(TlsTest, Tls13HandshakeThenEchoWithRecordsSplitAtEveryByte) {
  Start();
  Connection* c = harness_->Accept();
  TlsPeer peer({.server_name = "localhost", .alpn = {"h2", "http/1.1"}});
  Exchange(c, peer, /*bytewise=*/true);
  ASSERT_TRUE(peer.established()) << peer.error();
  EXPECT_EQ(peer.version(), "TLSv1.3");
  EXPECT_EQ(peer.alpn(), "http/1.1");
  peer.Write("hello over tls\n");
  Exchange(c, peer, /*bytewise=*/true);
  EXPECT_EQ(peer.TakePlaintext(), "hello over tls\n");
  ASSERT_EQ(seen_.infos.size(), 1u);  // one session, made after the handshake
  ASSERT_TRUE(seen_.infos[0].has_value());
  EXPECT_EQ(seen_.alpn[0], "http/1.1");
  EXPECT_EQ(seen_.server_name[0], "localhost");
  EXPECT_EQ(stats().tls_handshakes.load(), 1u);
}

TEST_F(TlsTest, Tls12IsServedWithAnIntermediateCipher) {
  Start();
  Connection* c = harness_->Accept();
  TlsPeer peer({.max_version = TLS1_2_VERSION});
  EXPECT_EQ(RoundTrip(c, peer, "one two\n"), "one two\n");
  EXPECT_EQ(peer.version(), "TLSv1.2");
  ASSERT_TRUE(seen_.infos[0].has_value());
  // The server's first choice that the client offers (OpenSSL's client prefers AES-256).
  EXPECT_EQ(seen_.infos[0]->cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
}

TEST_F(TlsTest, Tls11AndOlderAreRefusedWithAnAlert) {
  Start();
  for (int version : {TLS1_1_VERSION, TLS1_VERSION}) {
    Connection* c = harness_->Accept();
    // SECLEVEL=0: OpenSSL 3's client would not offer these versions at all otherwise.
    TlsPeer peer(
        {.min_version = version, .max_version = version, .ciphers = "DEFAULT:@SECLEVEL=0"});
    Exchange(c, peer);
    EXPECT_FALSE(peer.established());
    EXPECT_NE(peer.error().find("protocol version"), std::string::npos) << peer.error();
    EXPECT_TRUE(harness_->Closing(c));
  }
  EXPECT_TRUE(seen_.infos.empty());  // no session was made
  EXPECT_EQ(stats().tls_failures.load(), 2u);
}

TEST_F(TlsTest, GarbageInsteadOfAClientHelloClosesTheConnection) {
  Start();
  Connection* c = harness_->Accept();
  harness_->Feed(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  harness_->TakeOutput(c);  // an alert, if any
  EXPECT_TRUE(harness_->Closing(c));
  EXPECT_TRUE(seen_.infos.empty());
  EXPECT_EQ(stats().tls_failures.load(), 1u);
}

TEST_F(TlsTest, AClientThatNeverFinishesItsHandshakeIsClosedAtTheDeadline) {
  Start();
  Connection* silent = harness_->Accept();
  Connection* halfway = harness_->Accept();
  TlsPeer peer;
  harness_->Feed(halfway, peer.TakeOutput());  // a ClientHello, then nothing more
  harness_->TakeOutput(halfway);
  EXPECT_GT(StateOf(silent)->deadline_ms, 0);  // TlsOptions::handshake_timeout
  harness_->ExpireDeadline(silent);
  harness_->ExpireDeadline(halfway);
  EXPECT_TRUE(harness_->Closing(silent));
  EXPECT_TRUE(harness_->Closing(halfway));
  EXPECT_EQ(stats().tls_failures.load(), 2u);
  // The loop serves the next client as if nothing happened.
  Connection* c = harness_->Accept();
  TlsPeer next;
  EXPECT_EQ(RoundTrip(c, next, "still here\n"), "still here\n");
}

TEST_F(TlsTest, TheHandshakesAnswerWaitingToBeSentIsNotTakenForAStuckPeer) {
  // A burst of handshakes can keep the loop from sending the first one's answer until after a
  // tick: the send timeout must count from when that answer was queued, not from 0 (the bug
  // closed such connections at the tick; bench/conn_holder --tls saw it on a fresh server).
  EngineOptions options;
  options.tls.certificates = {*ec_};
  options.tick_interval = absl::Milliseconds(1);
  harness_ = std::make_unique<LoopHarness>(
      [this](Worker&) { return std::make_unique<EchoProtocol>(&seen_); }, options);
  Connection* c = harness_->Accept();
  TlsPeer peer;
  harness_->Feed(c, peer.TakeOutput());
  ASSERT_GT(c->pending_output(), 0u);  // the ServerHello and the rest, not yet sent
  EXPECT_FALSE(harness_->RunUntil([&] { return harness_->Closing(c); }, absl::Milliseconds(50)));
  peer.Receive(harness_->TakeOutput(c));
  EXPECT_EQ(RoundTrip(c, peer, "late"), "late");
}

TEST_F(TlsTest, AHandshakesAnswerAsksToGoBeforeTheNextConnectionIsServed) {
  // The backends send what a handshake step wrote before handling the next completion or
  // connection when the loop says so (Loop::TakeUrgent): a batch of ClientHellos answered only
  // at the end of the loop's turn kept each client waiting for every handshake of the batch.
  Start();
  Loop& loop = harness_->loop();
  loop.TakeUrgent();
  Connection* c = harness_->Accept();
  TlsPeer peer;
  harness_->Feed(c, peer.TakeOutput());  // the ClientHello
  EXPECT_TRUE(loop.TakeUrgent()) << "the ServerHello's flight waits for the loop's turn to end";
  EXPECT_FALSE(loop.TakeUrgent()) << "asked once";
  peer.Receive(harness_->TakeOutput(c));
  Exchange(c, peer);
  ASSERT_TRUE(peer.established());
  loop.TakeUrgent();  // the client's Finished: its tickets were urgent too
  peer.Write("plain echo\n");
  harness_->Feed(c, peer.TakeOutput());
  EXPECT_FALSE(loop.TakeUrgent()) << "an established connection's answers go in the loop's turn";
  peer.Receive(harness_->TakeOutput(c));
  EXPECT_EQ(peer.TakePlaintext(), "plain echo\n");
}

TEST_F(TlsTest, SniChoosesTheCertificateAndAnUnknownNameGetsTheFirst) {
  Start({*ec_, *other_});
  for (const auto& [name, expected] :
       std::vector<std::pair<std::string, std::string>>{{"a.other.test", "other.test"},
                                                        {"www.example.test", "localhost"},
                                                        {"unknown.test", "localhost"},
                                                        {"", "localhost"}}) {
    Connection* c = harness_->Accept();
    TlsPeer peer({.server_name = name});
    EXPECT_EQ(RoundTrip(c, peer, "x"), "x") << name;
    EXPECT_EQ(peer.peer_common_name(), expected) << name;
  }
  EXPECT_EQ(seen_.server_name[0], "a.other.test");
}

TEST_F(TlsTest, RsaAndEcdsaCertificatesForTheSameNamesAreChosenByTheClientsAlgorithms) {
  Start({*rsa_, *ec_});
  Connection* c = harness_->Accept();
  TlsPeer rsa_only({.server_name = "localhost", .sigalgs = "RSA-PSS+SHA256:RSA+SHA256"});
  EXPECT_EQ(RoundTrip(c, rsa_only, "r"), "r");
  EXPECT_EQ(rsa_only.peer_key_type(), "RSA");
  Connection* d = harness_->Accept();
  TlsPeer ec_only({.server_name = "localhost", .sigalgs = "ECDSA+SHA256"});
  EXPECT_EQ(RoundTrip(d, ec_only, "e"), "e");
  EXPECT_EQ(ec_only.peer_key_type(), "EC");
}

TEST_F(TlsTest, AlpnChoosesOursInOrderOfPreferenceOrNothing) {
  Start({}, {"h2", "http/1.1"});
  Connection* c = harness_->Accept();
  TlsPeer both({.alpn = {"http/1.1", "h2"}});
  EXPECT_EQ(RoundTrip(c, both, "a"), "a");
  EXPECT_EQ(both.alpn(), "h2");  // the server's preference
  Connection* d = harness_->Accept();
  TlsPeer foreign({.alpn = {"spdy/3"}});
  EXPECT_EQ(RoundTrip(d, foreign, "b"), "b");  // goes on without ALPN, as nginx does
  EXPECT_EQ(foreign.alpn(), "");
  EXPECT_EQ(seen_.alpn, (std::vector<std::string>{"h2", ""}));
}

TEST_F(TlsTest, ATicketResumesTheSessionWithoutAFullHandshake) {
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    Start();
    Connection* c = harness_->Accept();
    TlsPeer first({.max_version = version});
    EXPECT_EQ(RoundTrip(c, first, "1"), "1");
    SSL_SESSION* session = first.TakeSession();
    ASSERT_NE(session, nullptr) << "no ticket in " << version;
    Connection* d = harness_->Accept();
    TlsPeer second({.max_version = version, .session = session});
    EXPECT_EQ(RoundTrip(d, second, "2"), "2");
    SSL_SESSION_free(session);
    EXPECT_TRUE(second.resumed()) << version;
    ASSERT_TRUE(seen_.infos.back().has_value());
    EXPECT_TRUE(seen_.infos.back()->resumed);
    EXPECT_EQ(stats().tls_resumed.load(), 1u);
    seen_ = Seen{};
  }
}

TEST_F(TlsTest, ATicketFromAResumedSessionResumesTooAsBrowsersChainThem) {
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    Start();
    SSL_SESSION* session = nullptr;
    for (int i = 0; i < 4; ++i) {
      Connection* c = harness_->Accept();
      TlsPeer peer({.max_version = version, .session = session});
      EXPECT_EQ(RoundTrip(c, peer, "x"), "x");
      EXPECT_EQ(peer.resumed(), i > 0) << "connection " << i << " of TLS " << version;
      SSL_SESSION* offered = session;
      session = peer.TakeSession();  // the newest ticket, as a browser keeps it
      ASSERT_NE(session, nullptr);
      if (offered != nullptr) {
        // TLS 1.3 tickets are for one use (RFC 8446 C.4): a resumption must bring a new one.
        const unsigned char *old_ticket, *new_ticket;
        size_t old_length, new_length;
        SSL_SESSION_get0_ticket(offered, &old_ticket, &old_length);
        SSL_SESSION_get0_ticket(session, &new_ticket, &new_length);
        const bool renewed =
            std::string_view(reinterpret_cast<const char*>(old_ticket), old_length) !=
            std::string_view(reinterpret_cast<const char*>(new_ticket), new_length);
        if (version == TLS1_3_VERSION) {
          EXPECT_TRUE(renewed) << "connection " << i;
        }
        SSL_SESSION_free(offered);
      }
      // A client that drops its connection without a close_notify makes OpenSSL forget the
      // session (SSL_free marks it not resumable): say goodbye first, as browsers do.
      peer.Close();
    }
    SSL_SESSION_free(session);
  }
}

TEST_F(TlsTest, ThePeersCloseNotifyIsItsFinAndOurCloseSendsOne) {
  Start();
  Connection* c = harness_->Accept();
  TlsPeer peer;
  EXPECT_EQ(RoundTrip(c, peer, "x"), "x");
  peer.Close();
  Exchange(c, peer);
  EXPECT_EQ(seen_.peer_closed, 1);
  EXPECT_TRUE(harness_->Closing(c));
  EXPECT_TRUE(peer.peer_closed());  // ours came back

  Connection* d = harness_->Accept();
  TlsPeer other;
  EXPECT_EQ(RoundTrip(d, other, "bye\n"), "bye\n");  // the answer, then the close_notify
  EXPECT_TRUE(other.peer_closed());
}

TEST_F(TlsTest, LargeOutputAndFilesAreSealedInOrder) {
  Start();
  const std::string path = *dir_ + "/file.bin";
  std::string content;
  for (int i = 0; content.size() < 3 * 1024 * 1024 + 7; ++i) content += std::to_string(i) + ",";
  {
    FILE* f = std::fopen(path.c_str(), "w");
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
  }
  Connection* c = harness_->Accept();
  TlsPeer peer;
  const std::string big(1'500'000, 'b');
  const std::string echoed = RoundTrip(c, peer, big);
  EXPECT_EQ(echoed.size(), big.size());
  EXPECT_TRUE(echoed == big);
  const std::string file = RoundTrip(c, peer, "file:" + path + "\n");
  EXPECT_EQ(file.size(), content.size());
  EXPECT_TRUE(file == content);
  EXPECT_FALSE(harness_->Closing(c));
}

TEST_F(TlsTest, AFileShorterThanItsRangeFailsTheConnection) {
  Start();
  const std::string path = *dir_ + "/short.bin";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("short", f);
  std::fclose(f);
  Connection* c = harness_->Accept();
  TlsPeer peer;
  Exchange(c, peer);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  c->SendFile(fd, 0, 100);  // 95 bytes more than there are
  harness_->TakeOutput(c);
  EXPECT_TRUE(harness_->Closing(c));
}

TEST(TlsContextTest, ABadFileOrKeyIsAnErrorThatNamesIt) {
  std::string dir = ::testing::TempDir() + "/tls_context_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const TlsCertificate a = MakeCertificate(dir, "a", {"a.test"});
  const TlsCertificate b = MakeCertificate(dir, "b", {"b.test"});
  TlsOptions options;
  options.certificates = {{dir + "/missing.pem", a.key_file}};
  absl::StatusOr<std::unique_ptr<TlsSource>> missing = TlsSource::Create(options);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing.pem"), std::string::npos);
  options.certificates = {{a.cert_file, b.key_file}};
  absl::StatusOr<std::unique_ptr<TlsSource>> mismatch = TlsSource::Create(options);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("b.key"), std::string::npos)
      << mismatch.status().message();
  options.certificates = {a};
  options.ciphers = "NO-SUCH-CIPHER";
  EXPECT_FALSE(TlsSource::Create(options).ok());
  options.ciphers = std::string(kIntermediateCiphers);
  options.alpn = {""};
  EXPECT_FALSE(TlsSource::Create(options).ok());
}

TEST(TlsContextTest, AFailedReloadKeepsTheCurrentCertificates) {
  std::string dir = ::testing::TempDir() + "/tls_reload_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const TlsCertificate a = MakeCertificate(dir, "a", {"a.test"});
  TlsOptions options;
  options.certificates = {a};
  absl::StatusOr<std::unique_ptr<TlsSource>> source = TlsSource::Create(options);
  ASSERT_TRUE(source.ok()) << source.status();
  std::shared_ptr<const TlsContext> before = (*source)->Current();
  ASSERT_EQ(unlink(a.key_file.c_str()), 0);
  EXPECT_FALSE((*source)->Reload().ok());
  EXPECT_EQ((*source)->Current(), before);
  MakeCertificate(dir, "a", {"a.test"});  // new files in place
  EXPECT_TRUE((*source)->Reload().ok());
  EXPECT_NE((*source)->Current(), before);
}

}  // namespace
}  // namespace percore
