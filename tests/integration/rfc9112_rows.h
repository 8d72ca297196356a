// A row of rfc9112_test.cc's table (the request's bytes, the responses expected, the connection
// afterwards) and how a row's responses are read off the socket and checked: strictly, so that a
// malformed or extra response fails the row.
#ifndef PERCORE_TESTS_INTEGRATION_RFC9112_ROWS_H_
#define PERCORE_TESTS_INTEGRATION_RFC9112_ROWS_H_

#include <poll.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "support/test_client.h"

namespace percore::testing {

// What the connection is expected to be after the responses.
enum class After {
  kClosed,  // the server closed it: EOF right after the responses
  kOpen,    // still serving: a following GET / gets 200
};

// One expected response.
struct Reply {
  Reply(int status) : status(status) {}  // NOLINT: implicit, so a row can list plain statuses

  // The response has exactly this body.
  Reply Body(std::string b) const {
    Reply r = *this;
    r.body = std::move(b);
    return r;
  }
  // The response has this field (lower-case name); with this value unless `value` is empty.
  Reply Has(std::string name, std::string value = "") const {
    Reply r = *this;
    r.fields.emplace_back(std::move(name), std::move(value));
    return r;
  }
  // The response answers HEAD: no body, whatever its Content-Length says.
  Reply ToHead() const {
    Reply r = *this;
    r.head = true;
    return r;
  }

  int status;
  bool head = false;
  std::optional<std::string> body;
  std::vector<std::pair<std::string, std::string>> fields;
};

inline Reply Ok(std::string body) { return Reply(200).Body(std::move(body)); }

// One row of the table.
struct Row {
  std::string name;     // the test name: letters and digits
  std::string section;  // e.g. "RFC 9112 2.2"
  std::string request;  // sent at once on a fresh connection
  std::vector<Reply> replies;
  After after;
  // Sent once the first response is in (a body after "100 Continue"); usually nothing.
  std::string then = "";
};

// Names the row in test output instead of dumping its bytes.
inline void PrintTo(const Row& row, std::ostream* os) {
  *os << row.name << " (" << row.section << ")";
}

// The bytes, printable: CR, LF, HT and bytes outside ASCII escaped, long runs cut.
inline std::string Printable(std::string_view bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (out.size() > 300) {
      out += "...(" + std::to_string(bytes.size()) + " bytes)";
      break;
    }
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

inline std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Parses one response at the start of `data`, HTTP/1.1 and Content-Length framed (no body for
// HEAD, 1xx, 204, 304); sets `consumed`. nullopt while incomplete; `error` set if malformed.
inline std::optional<HttpResponse> ParseReply(std::string_view data, bool head, size_t* consumed,
                                              std::string* error) {
  const size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::nullopt;
  std::string_view rest = data.substr(0, end + 2);
  size_t eol = rest.find("\r\n");
  const std::string_view status_line = rest.substr(0, eol);
  if (status_line.size() < 12 || status_line.substr(0, 9) != "HTTP/1.1 ") {
    *error = "bad status line \"" + Printable(status_line) + "\"";
    return std::nullopt;
  }
  HttpResponse response;
  response.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  rest.remove_prefix(eol + 2);
  while (!rest.empty()) {
    eol = rest.find("\r\n");
    const std::string_view line = rest.substr(0, eol);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      *error = "bad field line \"" + Printable(line) + "\"";
      return std::nullopt;
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.remove_prefix(1);
    }
    const std::string name = Lower(line.substr(0, colon));
    if (response.headers.count(name) != 0) {
      *error = "field \"" + name + "\" twice";
      return std::nullopt;
    }
    response.headers.emplace(name, std::string(value));
    rest.remove_prefix(eol + 2);
  }
  if (!response.Header("transfer-encoding").empty()) {
    *error = "a Transfer-Encoding this client does not read";
    return std::nullopt;
  }
  size_t length = 0;
  const bool no_body =
      head || response.status / 100 == 1 || response.status == 204 || response.status == 304;
  if (!no_body) length = std::strtoul(response.Header("content-length").c_str(), nullptr, 10);
  if (data.size() < end + 4 + length) return std::nullopt;
  response.body = std::string(data.substr(end + 4, length));
  *consumed = end + 4 + length;
  return response;
}

// Reads one response into `buffer` and parses it; bytes after it stay in `buffer`. nullopt, with
// `error` saying why, on EOF, a receive error, a malformed response or the deadline.
inline std::optional<HttpResponse> ReadReply(int fd, std::string& buffer, bool head,
                                             std::chrono::steady_clock::time_point deadline,
                                             std::string* error) {
  while (true) {
    size_t consumed = 0;
    std::optional<HttpResponse> response = ParseReply(buffer, head, &consumed, error);
    if (response) {
      buffer.erase(0, consumed);
      return response;
    }
    if (!error->empty()) return std::nullopt;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      *error = "no response within the deadline";
      return std::nullopt;
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      *error = std::string("poll: ") + strerror(errno);
      return std::nullopt;
    }
    if (ready == 0) continue;  // the deadline check above ends it
    char chunk[65536];
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      *error = "EOF";
      return std::nullopt;
    }
    if (n < 0) {
      *error = std::string("recv: ") + strerror(errno);
      return std::nullopt;
    }
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

// Checks one response against `want`; `last` if it is the row's last response.
inline void ExpectReply(const HttpResponse& response, const Reply& want, bool last, After after) {
  EXPECT_EQ(response.status, want.status);
  if (want.body) {
    EXPECT_EQ(response.body, *want.body);
  }
  if (want.head) {
    EXPECT_EQ(response.body, "") << "a response to HEAD has no body";
  }
  for (const auto& [name, value] : want.fields) {
    EXPECT_EQ(response.headers.count(name), 1u) << "no " << name << " field";
    if (!value.empty()) {
      EXPECT_EQ(response.Header(name), value) << name;
    }
  }
  if (response.status >= 200) {
    EXPECT_FALSE(response.Header("date").empty()) << "no Date field (RFC 9110 6.6.1)";
  }
  const bool says_close = Lower(response.Header("connection")) == "close";
  if (after == After::kClosed && last) {
    EXPECT_TRUE(says_close) << "the last response before the close has no \"Connection: close\""
                               " (RFC 9112 9.6)";
  } else {
    EXPECT_FALSE(says_close) << "\"Connection: close\" on a connection kept open";
  }
}

}  // namespace percore::testing

#endif  // PERCORE_TESTS_INTEGRATION_RFC9112_ROWS_H_
