#include "percore/testing/client.h"

#include <cstdlib>
#include <stdexcept>

namespace percore::testing {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

bool ParseSize(std::string_view digits, int base, uint64_t* out) {
  if (digits.empty() || digits.size() > 16) return false;
  char* end = nullptr;
  const std::string copy(digits);
  *out = std::strtoull(copy.c_str(), &end, base);
  return end == copy.c_str() + copy.size();
}

}  // namespace

std::string TestResponse::Header(std::string_view name) const {
  auto it = headers.find(Lower(name));
  return it == headers.end() ? std::string() : it->second;
}

std::vector<std::string> TestResponse::Headers(std::string_view name) const {
  std::vector<std::string> values;
  auto [first, last] = headers.equal_range(Lower(name));
  for (auto it = first; it != last; ++it) values.push_back(it->second);
  return values;
}

std::optional<TestResponse> ParseResponse(std::string_view data, size_t* consumed, bool head,
                                          bool closed) {
  const size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::nullopt;
  std::string_view rest = data.substr(0, end + 2);
  const size_t line_end = rest.find("\r\n");
  const std::string_view status_line = rest.substr(0, line_end);
  TestResponse r;
  uint64_t status = 0;
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.") || status_line[8] != ' ' ||
      !ParseSize(status_line.substr(9, 3), 10, &status)) {
    r.error = "malformed status line: " + std::string(status_line);
    *consumed = data.size();
    return r;
  }
  r.status = static_cast<int>(status);
  rest.remove_prefix(line_end + 2);
  while (!rest.empty()) {
    const size_t eol = rest.find("\r\n");
    const std::string_view line = rest.substr(0, eol);
    const size_t colon = line.find(':');
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    r.headers.emplace(Lower(line.substr(0, colon)), std::string(value));
    rest.remove_prefix(eol + 2);
  }
  size_t at = end + 4;
  const bool no_body = head || r.status / 100 == 1 || r.status == 204 || r.status == 304;
  if (no_body) {
    *consumed = at;
    return r;
  }
  if (Lower(r.Header("transfer-encoding")) == "chunked") {
    while (true) {
      const size_t eol = data.find("\r\n", at);
      if (eol == std::string_view::npos) return std::nullopt;
      uint64_t size = 0;
      const std::string_view size_text = data.substr(at, eol - at);
      if (!ParseSize(size_text.substr(0, size_text.find(';')), 16, &size)) {
        r.error = "malformed chunk size";
        *consumed = data.size();
        return r;
      }
      if (size == 0) {
        const size_t trailer_end = data.find("\r\n\r\n", eol);
        if (trailer_end == std::string_view::npos) {
          if (data.substr(eol).starts_with("\r\n\r\n")) break;
          return std::nullopt;
        }
        at = trailer_end + 4;
        break;
      }
      if (data.size() < eol + 2 + size + 2) return std::nullopt;
      r.body.append(data.substr(eol + 2, size));
      at = eol + 2 + size + 2;
    }
    *consumed = at;
    return r;
  }
  const std::string length_text = r.Header("content-length");
  if (length_text.empty()) {  // ends with the connection
    if (!closed) return std::nullopt;
    r.body = std::string(data.substr(at));
    *consumed = data.size();
    return r;
  }
  uint64_t length = 0;
  if (!ParseSize(length_text, 10, &length)) {
    r.error = "malformed Content-Length";
    *consumed = data.size();
    return r;
  }
  if (data.size() - at < length) return std::nullopt;
  r.body = std::string(data.substr(at, length));
  *consumed = at + length;
  return r;
}

TestClient::TestClient(const http::App& app) : TestClient(app, Options{}) {}

TestClient::TestClient(const http::App& app, Options options) : options_(std::move(options)) {
  absl::StatusOr<ProtocolFactory> factory = app.Factory();
  if (!factory.ok()) throw std::invalid_argument(std::string(factory.status().message()));
  harness_ = std::make_unique<LoopHarness>(std::move(*factory));
}

TestClient::~TestClient() = default;

TestResponse TestClient::Get(std::string_view target, const Fields& fields) {
  return Fetch("GET", target, fields);
}

TestResponse TestClient::Fetch(std::string_view method, std::string_view target,
                               const Fields& fields, std::string_view body) {
  std::string request;
  request.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  bool host = false, length = false;
  for (const auto& [name, value] : fields) {
    const std::string lower = Lower(name);
    host |= lower == "host";
    length |= lower == "content-length" || lower == "transfer-encoding";
    request.append(name).append(": ").append(value).append("\r\n");
  }
  if (!host) request.append("Host: ").append(options_.host).append("\r\n");
  if (!length && (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH")) {
    request.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  request.append("\r\n").append(body);
  return Raw(request, method == "HEAD");
}

TestResponse TestClient::Raw(std::string_view bytes, bool head) {
  if (conn_ == nullptr) {
    conn_ = harness_->AcceptTcp();
    received_.clear();
    if (conn_ == nullptr) {
      TestResponse r;
      r.error = "could not make a loopback connection";
      return r;
    }
  }
  harness_->Feed(conn_, bytes);
  return Read(head);
}

TestResponse TestClient::Read(bool head) {
  std::optional<TestResponse> answer;
  bool closed = false;
  auto done = [&] {
    received_ += harness_->TakeOutput(conn_);
    closed = harness_->Closing(conn_);
    while (true) {
      size_t consumed = 0;
      answer = ParseResponse(received_, &consumed, head, closed);
      if (!answer.has_value()) break;
      received_.erase(0, consumed);
      if (answer->status / 100 != 1) break;  // "100 Continue" comes before the answer
      answer.reset();
    }
    return answer.has_value() || closed;
  };
  if (!done()) harness_->RunUntil(done, options_.timeout);
  TestResponse r;
  if (answer.has_value()) {
    r = std::move(*answer);
  } else {
    r.error = closed ? "the server closed the connection without an answer"
                     : "no answer within " + absl::FormatDuration(options_.timeout);
  }
  r.closed = closed;
  if (closed || !answer.has_value()) {
    harness_->Release(conn_);
    conn_ = nullptr;
  }
  return r;
}

}  // namespace percore::testing
