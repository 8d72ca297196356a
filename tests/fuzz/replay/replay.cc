// replay: each file named on the command line (a session_fuzzer input: 4 bytes of split seed,
// then the bytes a client sends) fed as one read to a fresh connection of an echoing App, the
// deadline expired if the connection is still open, and one line printed per file:
//   name TAB input TAB answer TAB closing=0|1 (whether the input alone closed the connection)
// with the input and answer escaped (\r \n \t \\ \xHH) and every "Date: ...\r\n" line dropped
// from the answer, so that two builds' outputs can be compared line by line.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "percore/http/app.h"
#include "percore/testing/harness.h"

namespace {

using percore::http::App;
using percore::http::HttpOptions;
using percore::http::Request;
using percore::http::Response;

std::string Escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Drops every "Date: ...\r\n" line (at the start or after a CRLF).
std::string WithoutDate(std::string s) {
  for (size_t at = 0; (at = s.find("Date: ", at)) != std::string::npos;) {
    const size_t end = s.find("\r\n", at);
    if ((at == 0 || (at >= 2 && s.compare(at - 2, 2, "\r\n") == 0)) && end != std::string::npos) {
      s.erase(at, end + 2 - at);
    } else {
      at += 6;
    }
  }
  return s;
}

void Echo(const Request& req, Response& res) {
  std::string out = std::string(req.method()) + " " + std::string(req.target()) + " " +
                    std::to_string(req.version_minor()) + "\n";
  for (const auto& h : req.headers()) {
    out.append(h.name).append(": ").append(h.value).append("\n");
  }
  res.Send(out + "body:" + std::string(req.body()));
}

}  // namespace

int main(int argc, char** argv) {
  HttpOptions options;  // session_fuzzer's limits
  options.max_body_bytes = 64;
  options.max_target_bytes = 64;
  options.max_header_bytes = 256;
  options.max_discard_bytes = 64;
  App app(options);
  // Routes for the methods both parsers know, not for any method: llhttp refuses other tokens
  // (400) where percore's parser leaves them to the router (501 without a route), and an
  // All() route would make every fuzzed method token an answered request on one side only.
  for (const char* method : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"}) {
    app.Route(method, "/", Echo);
    app.Route(method, "/*", Echo);
  }
  auto factory = app.Factory();
  if (!factory.ok()) {
    std::fprintf(stderr, "replay: %s\n", std::string(factory.status().message()).c_str());
    return 1;
  }
  percore::testing::LoopHarness harness(*factory);
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "replay: cannot read %s\n", argv[i]);
      return 1;
    }
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string stream = data.size() > 4 ? data.substr(4) : std::string();
    percore::Connection* c = harness.Accept();
    if (c == nullptr) return 1;
    harness.Feed(c, stream);
    std::string answer = harness.TakeOutput(c);
    // The state the input left: after the deadline every connection is closed (an idle one too).
    const bool closing = harness.Closing(c);
    if (!closing) {
      harness.ExpireDeadline(c);
      answer += harness.TakeOutput(c);
    }
    std::printf("%s\t%s\t%s\tclosing=%d\n", argv[i], Escape(stream).c_str(),
                Escape(WithoutDate(answer)).c_str(), closing ? 1 : 0);
    harness.Release(c);
  }
  return 0;
}
