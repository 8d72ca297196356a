// tls_fuzzer: TLS in front of the HTTP session. Two connections get the same bytes, one in a
// single read and the other in pieces whose sizes the input chooses, so records (and the
// handshake's messages) are cut at any byte; both must answer the same plaintext and end in the
// same state. One loop serves every input (ASan and UBSan watch memory).
//
// Input: a byte of options (bit 0: the rest is requests a client sends once its handshake is
// done, encrypted by an OpenSSL client; else raw bytes in place of a ClientHello; bit 1: the
// client stops at TLS 1.2), 4 bytes that seed the split sizes, then the bytes.
#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/ssl.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>

#include "alike.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"
#include "support/tls_peer.h"

namespace {

using percore::Connection;
using percore::testing::LoopHarness;
using percore::testing::TlsPeer;

LoopHarness& Harness() {
  static LoopHarness* harness = [] {
    static percore::http::App app;
    app.Get("/", [](const percore::http::Request&, percore::http::Response& res) {
      res.Send("Hello World!");
    });
    app.Post("/echo", [](const percore::http::Request& req, percore::http::Response& res) {
      res.Send(req.body());
    });
    char dir[] = "/tmp/tls_fuzzer_XXXXXX";
    if (mkdtemp(dir) == nullptr) std::abort();
    percore::EngineOptions options;
    options.tls.certificates = {percore::testing::MakeCertificate(dir, "fuzz", {"localhost"})};
    return new LoopHarness(*app.Factory(), options);
  }();
  return *harness;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  const uint8_t options = provider.ConsumeIntegral<uint8_t>();
  std::mt19937 sizes(provider.ConsumeIntegral<uint32_t>());
  const std::string bytes = provider.ConsumeRemainingBytesAsString();
  LoopHarness& harness = Harness();
  Connection* whole = harness.Accept();
  Connection* split = harness.Accept();
  if (whole == nullptr || split == nullptr) std::abort();

  if ((options & 1) == 0) {
    // Garbage, or a mangled ClientHello: the same verdict however it is cut.
    harness.Feed(whole, bytes);
    for (size_t at = 0; at < bytes.size();) {
      const size_t n = std::uniform_int_distribution<size_t>(1, 64)(sizes);
      harness.Feed(split, std::string(bytes.substr(at, n)));
      at += n;
    }
    harness.TakeOutput(whole);
    harness.TakeOutput(split);
    if (harness.Closing(whole) != harness.Closing(split)) {
      percore::testing::Mismatch("closing states", "", "");
    }
    harness.Release(whole);
    harness.Release(split);
    return 0;
  }

  const percore::testing::TlsPeerOptions client{.max_version =
                                                    (options & 2) != 0 ? TLS1_2_VERSION : 0};
  TlsPeer a(client), b(client);
  if (!percore::testing::Exchange(harness, whole, a) ||
      !percore::testing::Exchange(harness, split, b) || !a.established() || !b.established()) {
    std::abort();  // a client of our own must get through
  }
  a.Write(bytes);
  b.Write(bytes);
  harness.Feed(whole, a.TakeOutput());
  const std::string records = b.TakeOutput();
  for (size_t at = 0; at < records.size();) {
    const size_t n = std::uniform_int_distribution<size_t>(1, 64)(sizes);
    harness.Feed(split, std::string(records.substr(at, n)));
    harness.RunUntil([] { return true; }, absl::Seconds(1));
    at += n;
  }
  percore::testing::Exchange(harness, whole, a);
  percore::testing::Exchange(harness, split, b);
  const std::string answer_a = percore::testing::WithoutDates(a.TakePlaintext());
  const std::string answer_b = percore::testing::WithoutDates(b.TakePlaintext());
  if (answer_a != answer_b) percore::testing::Mismatch("answers", answer_a, answer_b);
  if (harness.Closing(whole) != harness.Closing(split)) {
    percore::testing::Mismatch("closing states", answer_a, answer_b);
  }
  harness.Release(whole);
  harness.Release(split);
  return 0;
}
