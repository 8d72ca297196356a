// EngineOptions::proxy_protocol on the loop (core/src/loop_proxy.cc), through the loop harness:
// the PROXY header is taken off before the session (and before TLS) sees a byte, whole or cut
// across reads, and Connection::client() is its source address.
#include <openssl/ssl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "connection_state.h"
#include "gtest/gtest.h"
#include "loop.h"
#include "percore/options.h"
#include "percore/protocol.h"
#include "percore/testing/harness.h"
#include "proxy_header.h"
#include "support/tls_peer.h"

namespace percore {
namespace {

using testing::LoopHarness;
using testing::MakeCertificate;
using testing::TlsPeer;

// What the sessions saw: every byte, and the connection's client at the first of them.
struct Seen {
  std::string bytes;
  std::vector<PeerAddress> clients;
  int sessions = 0;
};

// Echoes, and records what it saw.
class Recorder final : public Session {
 public:
  explicit Recorder(Seen* seen) : seen_(seen) {}
  size_t OnData(Connection& c, std::string_view bytes) override {
    if (seen_->bytes.empty()) seen_->clients.push_back(c.client());
    seen_->bytes.append(bytes);
    c.output().append(bytes);
    return bytes.size();
  }
  void OnDeadline(Connection& c) override { c.Close(); }

 private:
  Seen* seen_;
};

class RecorderProtocol final : public Protocol {
 public:
  explicit RecorderProtocol(Seen* seen) : seen_(seen) {}
  std::unique_ptr<Session> NewSession(Connection&) override {
    ++seen_->sessions;
    return std::make_unique<Recorder>(seen_);
  }

 private:
  Seen* seen_;
};

// A PROXY v2 header (HAProxy's proxy-protocol.txt, 2.2): TCP over IPv4, from `src`:`src_port`,
// with a TLV after the addresses (HAProxy sends some: they are skipped).
std::string ProxyV2(const uint8_t (&src)[4], uint16_t src_port) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += '\x21';                      // version 2, PROXY
  h += '\x11';                      // AF_INET, STREAM
  h += std::string("\x00\x11", 2);  // 12 bytes of addresses and a 5-byte TLV follow
  h.append(reinterpret_cast<const char*>(src), 4);
  h.append("\x0a\x00\x00\x01", 4);  // to 10.0.0.1
  h += static_cast<char>(src_port >> 8);
  h += static_cast<char>(src_port & 0xff);
  h.append("\x01\xbb", 2);              // port 443
  h.append("\x01\x00\x02\x68\x32", 5);  // PP2_TYPE_ALPN "h2"
  return h;
}

// A PROXY v2 LOCAL header, as a proxy's health check sends it.
std::string ProxyV2Local() {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h.append("\x20\x00\x00\x00", 4);
  return h;
}

class LoopProxyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/loop_proxy_test_XXXXXX");
    ASSERT_NE(mkdtemp(dir_->data()), nullptr);
    cert_ = new TlsCertificate(MakeCertificate(*dir_, "ec", {"localhost"}));
  }

  void Start(bool tls = false) {
    EngineOptions options;
    options.proxy_protocol = true;
    if (tls) options.tls.certificates = {*cert_};
    harness_ = std::make_unique<LoopHarness>(
        [this](Worker&) { return std::make_unique<RecorderProtocol>(&seen_); }, options);
  }

  // The PROXY header, then the TLS handshake (the ClientHello in the header's read, or in one
  // of its own), then `plain` both ways: what comes back.
  std::string TlsRoundTrip(Connection* c, std::string_view header, bool same_read,
                           std::string_view plain) {
    TlsPeer peer;
    const std::string hello = peer.TakeOutput();
    EXPECT_FALSE(hello.empty());
    if (same_read) {
      harness_->Feed(c, std::string(header) + hello);
    } else {
      harness_->Feed(c, header);
      EXPECT_EQ(harness_->TakeOutput(c), "") << "nothing is answered to the header alone";
      harness_->Feed(c, hello);
    }
    peer.Receive(harness_->TakeOutput(c));
    Exchange(c, peer);
    EXPECT_TRUE(peer.established()) << peer.error();
    peer.Write(plain);
    Exchange(c, peer);
    return peer.TakePlaintext();
  }

  // Passes records both ways until neither side has more.
  void Exchange(Connection* c, TlsPeer& peer) {
    for (int round = 0; round < 20; ++round) {
      const std::string out = peer.TakeOutput();
      if (!out.empty()) harness_->Feed(c, out);
      const std::string back = harness_->TakeOutput(c);
      if (!back.empty()) peer.Receive(back);
      if (out.empty() && back.empty()) return;
    }
    ADD_FAILURE() << "the exchange did not settle";
  }

  static std::string* dir_;
  static TlsCertificate* cert_;
  Seen seen_;
  std::unique_ptr<LoopHarness> harness_;
};

std::string* LoopProxyTest::dir_ = nullptr;
TlsCertificate* LoopProxyTest::cert_ = nullptr;

TEST_F(LoopProxyTest, V2HeaderThenPlaintextReachesTheSessionFromTheHeadersSource) {
  Start();
  Connection* c = harness_->Accept();
  harness_->Feed(c, ProxyV2({192, 0, 2, 9}, 5555) + "hello");
  EXPECT_EQ(harness_->TakeOutput(c), "hello");
  EXPECT_EQ(seen_.bytes, "hello") << "the header is not the session's";
  ASSERT_EQ(seen_.clients.size(), 1u);
  EXPECT_EQ(seen_.clients[0].ip, "192.0.2.9");
  EXPECT_EQ(seen_.clients[0].port, 5555);
  EXPECT_EQ(c->client().ip, "192.0.2.9");
  EXPECT_EQ(c->peer().ip, "") << "a socketpair has no address: peer() is still the socket's";
  harness_->Feed(c, "again");
  EXPECT_EQ(harness_->TakeOutput(c), "again") << "later reads are the session's";
  EXPECT_EQ(c->client().port, 5555);
  harness_->Release(c);
}

TEST_F(LoopProxyTest, V1HeaderCutAcrossReadsByteByByte) {
  Start();
  Connection* c = harness_->Accept();
  harness_->FeedBytewise(c, "PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\nab");
  EXPECT_FALSE(harness_->Closing(c));
  EXPECT_EQ(harness_->TakeOutput(c), "ab");
  EXPECT_EQ(seen_.bytes, "ab");
  EXPECT_EQ(c->client().ip, "2001:db8::7");
  EXPECT_EQ(c->client().port, 40000);
  EXPECT_TRUE(StateOf(c)->proxy->held.empty()) << "the bytes of the header are not kept";
  harness_->Release(c);
}

TEST_F(LoopProxyTest, HeaderCutInTwoWithTheRestAfterIt) {
  Start();
  Connection* c = harness_->AcceptTcp();
  const std::string header = ProxyV2({198, 51, 100, 4}, 4000);
  harness_->Feed(c, header.substr(0, 13));
  EXPECT_EQ(seen_.bytes, "");
  harness_->Feed(c, header.substr(13) + "rest");
  EXPECT_EQ(harness_->TakeOutput(c), "rest");
  EXPECT_EQ(c->client().ip, "198.51.100.4");
  EXPECT_EQ(c->peer().ip, "127.0.0.1");
  harness_->Release(c);
}

TEST_F(LoopProxyTest, LocalHeaderLeavesThePeer) {
  Start();
  Connection* c = harness_->AcceptTcp();
  harness_->Feed(c, ProxyV2Local());
  harness_->Feed(c, "ping");
  EXPECT_EQ(harness_->TakeOutput(c), "ping");
  ASSERT_EQ(seen_.clients.size(), 1u);
  EXPECT_EQ(seen_.clients[0].ip, "127.0.0.1");
  EXPECT_EQ(seen_.clients[0].port, c->peer().port);
  harness_->Release(c);
}

TEST_F(LoopProxyTest, BadHeaderClosesUnanswered) {
  Start();
  for (std::string_view bad :
       {std::string_view("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string_view("PROXY TCP4 192.0.2.9 10.0.0.1 05555 80\r\n"),  // a leading zero
        std::string_view("\r\n\r\n\0\r\nQUIT\n\x31\x11", 14)}) {         // version 3
    Connection* c = harness_->Accept();
    harness_->Feed(c, bad);
    EXPECT_TRUE(harness_->Closing(c)) << bad;
    EXPECT_EQ(harness_->TakeOutput(c), "");
    harness_->Feed(c, "more");
    harness_->Release(c);
  }
  EXPECT_EQ(seen_.bytes, "") << "nothing reached a session";
}

TEST_F(LoopProxyTest, HeaderWithoutProxyProtocolIsTheSessions) {
  harness_ = std::make_unique<LoopHarness>(
      [this](Worker&) { return std::make_unique<RecorderProtocol>(&seen_); });
  Connection* c = harness_->Accept();
  EXPECT_EQ(StateOf(c)->proxy, nullptr) << "no state while the option is off";
  harness_->Feed(c, "PROXY UNKNOWN\r\n");
  EXPECT_EQ(seen_.bytes, "PROXY UNKNOWN\r\n");
  harness_->Release(c);
}

TEST_F(LoopProxyTest, V2HeaderAndClientHelloInOneRead) {
  Start(/*tls=*/true);
  Connection* c = harness_->AcceptTcp();
  EXPECT_EQ(TlsRoundTrip(c, ProxyV2({192, 0, 2, 9}, 5555), /*same_read=*/true, "hi"), "hi");
  EXPECT_EQ(seen_.sessions, 1);
  ASSERT_EQ(seen_.clients.size(), 1u);
  EXPECT_EQ(seen_.clients[0].ip, "192.0.2.9");
  EXPECT_EQ(seen_.clients[0].port, 5555);
  EXPECT_TRUE(c->tls().has_value());
  harness_->Release(c);
}

TEST_F(LoopProxyTest, V2HeaderAndClientHelloInSeparateReads) {
  Start(/*tls=*/true);
  Connection* c = harness_->AcceptTcp();
  EXPECT_EQ(TlsRoundTrip(c, ProxyV2({192, 0, 2, 10}, 6000), /*same_read=*/false, "hi"), "hi");
  ASSERT_EQ(seen_.clients.size(), 1u);
  EXPECT_EQ(seen_.clients[0].ip, "192.0.2.10");
  EXPECT_EQ(c->client().port, 6000);
  harness_->Release(c);
}

TEST_F(LoopProxyTest, ClientHelloWithoutTheHeaderCloses) {
  Start(/*tls=*/true);
  Connection* c = harness_->Accept();
  TlsPeer peer;
  harness_->Feed(c, peer.TakeOutput());
  EXPECT_TRUE(harness_->Closing(c));
  EXPECT_EQ(harness_->TakeOutput(c), "") << "not even an alert: the header was missing";
  EXPECT_EQ(seen_.sessions, 0);
  harness_->Release(c);
}

}  // namespace
}  // namespace percore
