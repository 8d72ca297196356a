// Blocking socket helpers for the integration suites: connect to 127.0.0.1, send, read one
// HTTP/1.1 response. Every read has a deadline, so a broken server fails a test instead of
// hanging it.
#ifndef PERCORE_TESTS_SUPPORT_TEST_CLIENT_H_
#define PERCORE_TESTS_SUPPORT_TEST_CLIENT_H_

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace percore::testing {

// One parsed response.
struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A TCP connection to 127.0.0.1:port; -1 on failure.
int ConnectLocal(int port);
// Writes all of `data`; false on error.
bool SendAll(int fd, std::string_view data);
// Reads one response (Content-Length framed). `buffer` carries bytes read past it to the next
// call. nullopt on EOF, error, malformed response or when `timeout` passes.
std::optional<HttpResponse> ReadResponse(int fd, std::string& buffer,
                                         std::chrono::milliseconds timeout =
                                             std::chrono::milliseconds(10000));
// Reads until the peer closes or `timeout` passes; returns what was read.
std::string ReadUntilClose(int fd, std::chrono::milliseconds timeout =
                                       std::chrono::milliseconds(10000));
// Parses one response at the start of `data`; sets `consumed`. nullopt if incomplete/malformed.
std::optional<HttpResponse> ParseResponse(std::string_view data, size_t* consumed);

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_TEST_CLIENT_H_
