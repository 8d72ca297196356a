// TLS state that outlives a connection, over real sockets on 127.0.0.1, once per backend: a
// session ticket issued by one loop resumes on the other, Engine::ReloadTls() under load loses
// no request and changes the certificate of new connections only, and a reload that fails keeps
// the certificate served. Every wait has a deadline.
#include <openssl/ssl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "integration/tls_suite.h"
#include "percore/http/app.h"
#include "support/test_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::Request;
using percore::http::Response;
using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::TlsSocket;
using percore::testing::WaitUntil;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout(10000);

class TlsReloadTest : public testing::TlsEngineTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(TlsEngineTest::SetUp());
    site_ = Certificate("site", {"old.test", "localhost"});
  }

  void ServeSite() {
    App app;
    AddInfoRoute(app);
    app.Get("/", [](const Request&, Response& res) { res.Send("ok"); });
    ASSERT_NO_FATAL_FAILURE(ServeTls(app, {site_}));
  }

  // Puts a certificate whose CN is `cn` (and still for "localhost") in place of the site's.
  void ReplaceSite(const std::string& cn) {
    const TlsCertificate next = Certificate("next", {cn, "localhost"});
    ASSERT_EQ(std::rename(next.cert_file.c_str(), site_.cert_file.c_str()), 0);
    ASSERT_EQ(std::rename(next.key_file.c_str(), site_.key_file.c_str()), 0);
  }

  // The CN of the certificate a new connection gets; empty if its handshake failed.
  std::string NewConnectionCn() {
    TlsSocket client(port_);
    if (!client.Handshake()) return "";
    return client.peer().peer_common_name();
  }

  TlsCertificate site_;
};

TEST_P(TlsReloadTest, ATicketFromOneLoopResumesOnTheOther) {
  ASSERT_NO_FATAL_FAILURE(ServeSite());
  if (IsSkipped()) return;
  TlsSocket first(port_);
  ASSERT_TRUE(first.Handshake()) << first.peer().error();
  std::optional<HttpResponse> info = first.Fetch(Get("/tls"));  // the ticket comes before it
  ASSERT_TRUE(info.has_value());
  const std::vector<std::string> issued = Fields(info->body);
  ASSERT_EQ(issued.size(), 6u) << info->body;
  EXPECT_EQ(issued[4], "0");
  // The ticket is kept as bytes, as a client stores it, and read back for each connection (an
  // SSL_SESSION once used to resume is changed by OpenSSL's client: no use for a second try).
  SSL_SESSION* taken = first.peer().TakeSession();
  ASSERT_NE(taken, nullptr) << "no session ticket came";
  std::string stored(static_cast<size_t>(i2d_SSL_SESSION(taken, nullptr)), '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(stored.data());
  i2d_SSL_SESSION(taken, &out);
  SSL_SESSION_free(taken);
  // The kernel spreads connections over the two loops by their address: a few tries land one
  // on the loop that did not issue the ticket.
  const std::string other = issued[5] == "0" ? "1" : "0";
  std::set<std::string> loops;
  int resumed = 0;
  for (int i = 0; i < 64 && loops.count(other) == 0; ++i) {
    const unsigned char* in = reinterpret_cast<const unsigned char*>(stored.data());
    SSL_SESSION* ticket = d2i_SSL_SESSION(nullptr, &in, static_cast<long>(stored.size()));
    ASSERT_NE(ticket, nullptr);
    TlsSocket again(port_, {.session = ticket});
    SSL_SESSION_free(ticket);  // the connection holds its own reference
    ASSERT_TRUE(again.Handshake()) << again.peer().error();
    EXPECT_TRUE(again.peer().resumed()) << "connection " << i;
    info = again.Fetch(Get("/tls"));
    ASSERT_TRUE(info.has_value());
    const std::vector<std::string> fields = Fields(info->body);
    ASSERT_EQ(fields.size(), 6u) << info->body;
    EXPECT_EQ(fields[4], "1") << "Request::tls() says resumed, connection " << i;
    resumed += fields[4] == "1";
    loops.insert(fields[5]);
  }
  EXPECT_EQ(loops.count(other), 1u) << "never reached the loop that did not issue the ticket";
  EXPECT_TRUE(WaitUntil(
      [&] { return Total(&WorkerCounters::tls_resumed) == static_cast<uint64_t>(resumed); },
      kTimeout));
}

TEST_P(TlsReloadTest, AReloadUnderLoadFailsNoRequestAndChangesOnlyNewConnections) {
  ASSERT_NO_FATAL_FAILURE(ServeSite());
  if (IsSkipped()) return;
  // New connections, one after another, each with a GET: none may fail across the reload.
  std::atomic<bool> stop{false};
  std::atomic<int> requests{0}, failures{0}, new_cn{0};
  std::mutex mu;
  std::string first_failure;
  std::thread load;
  struct Joined {  // the thread ends with the test, an early ASSERT's return included
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joined() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } joined{stop, load};
  load = std::thread([&] {
    while (!stop.load()) {
      TlsSocket client(port_);
      const bool shook = client.Handshake();
      std::optional<HttpResponse> got;
      if (shook) got = client.Fetch(Get("/"));
      if (!got.has_value() || got->status != 200 || got->body != "ok") {
        std::lock_guard<std::mutex> lock(mu);
        if (failures++ == 0) {
          first_failure = shook ? "no answer" : "handshake: " + client.peer().error();
        }
        continue;
      }
      ++requests;
      if (client.peer().peer_common_name() == "new.test") ++new_cn;
    }
  });
  EXPECT_TRUE(WaitUntil([&] { return requests.load() >= 10; }, kTimeout));
  TlsSocket kept(port_);  // a keep-alive connection from before the reload
  ASSERT_TRUE(kept.Handshake()) << kept.peer().error();
  std::optional<HttpResponse> before = kept.Fetch(Get("/"));
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(kept.peer().peer_common_name(), "old.test");

  ASSERT_NO_FATAL_FAILURE(ReplaceSite("new.test"));
  const absl::Status reloaded = engine_->ReloadTls();
  EXPECT_TRUE(reloaded.ok()) << reloaded;
  EXPECT_EQ(NewConnectionCn(), "new.test") << "a handshake after ReloadTls() returned";
  const int at_reload = requests.load();
  EXPECT_TRUE(
      WaitUntil([&] { return new_cn.load() >= 10 && requests >= at_reload + 10; }, kTimeout));
  stop = true;
  load.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_GE(requests.load(), 20);

  std::optional<HttpResponse> after = kept.Fetch(Get("/"));
  ASSERT_TRUE(after.has_value()) << "the connection from before the reload";
  EXPECT_EQ(after->body, "ok");
  EXPECT_EQ(kept.peer().peer_common_name(), "old.test");
  EXPECT_EQ(Total(&WorkerCounters::tls_failures), 0u);
}

TEST_P(TlsReloadTest, AReloadWithAMissingKeyFailsAndTheOldCertificateStays) {
  ASSERT_NO_FATAL_FAILURE(ServeSite());
  if (IsSkipped()) return;
  ASSERT_EQ(NewConnectionCn(), "old.test");
  ASSERT_NO_FATAL_FAILURE(ReplaceSite("new.test"));
  ASSERT_EQ(unlink(site_.key_file.c_str()), 0);
  const absl::Status reloaded = engine_->ReloadTls();
  EXPECT_FALSE(reloaded.ok());
  EXPECT_NE(reloaded.message().find(site_.key_file), std::string::npos) << reloaded;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(NewConnectionCn(), "old.test") << i;
  TlsSocket client(port_);
  ASSERT_TRUE(client.Handshake()) << client.peer().error();
  std::optional<HttpResponse> got = client.Fetch(Get("/"));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->body, "ok");
}

INSTANTIATE_TEST_SUITE_P(Backends, TlsReloadTest, testing::AllBackends(), testing::BackendTestName);

}  // namespace
}  // namespace percore
