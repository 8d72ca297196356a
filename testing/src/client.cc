#include "percore/testing/client.h"

#include <algorithm>
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
  return Raw(Request(method, target, fields, body), method == "HEAD");
}

TestStream TestClient::Open(std::string_view method, std::string_view target, const Fields& fields,
                            std::string_view body) {
  return TestStream(*this, Request(method, target, fields, body), method == "HEAD");
}

std::string TestClient::Request(std::string_view method, std::string_view target,
                                const Fields& fields, std::string_view body) const {
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
  return request;
}

TestResponse TestClient::Raw(std::string_view bytes, bool head) {
  if (!Send(bytes)) {
    TestResponse r;
    r.error = "could not make a loopback connection";
    return r;
  }
  return Read(head);
}

bool TestClient::Send(std::string_view bytes) {
  // The stream's answer is still arriving on the connection: a request now would be answered
  // after it, and its bytes would be taken for the stream's.
  if (stream_ != nullptr) throw std::logic_error("TestClient: a TestStream is open on it");
  if (conn_ == nullptr) {
    conn_ = harness_->AcceptTcp();
    received_.clear();
    if (conn_ == nullptr) return false;
  }
  harness_->Feed(conn_, bytes);
  return true;
}

void TestClient::Disconnect() {
  harness_->Release(conn_);
  conn_ = nullptr;
  received_.clear();
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
  if (closed || !answer.has_value()) Disconnect();
  return r;
}

TestStream::TestStream(TestClient& client, std::string_view request, bool head_request)
    : client_(&client) {
  if (!client.Send(request)) {
    head_.error = "could not make a loopback connection";
    ended_ = true;
    return;
  }
  client.stream_ = this;
  auto done = [&] {
    Receive();
    return ParseHead(head_request) || closed_;
  };
  if (!done() && !client.harness_->RunUntil(done, client.options_.timeout)) {
    head_.error = "no answer within " + absl::FormatDuration(client.options_.timeout);
  } else if (head_.status == 0 && head_.error.empty()) {
    head_.error = "the server closed the connection without an answer";
  }
  if (head_.status == 0) {
    ended_ = true;
    client.Disconnect();
    client.stream_ = nullptr;
    return;
  }
  // A body that cannot be (HEAD, 204, 304) or is empty has ended already.
  if (framing_ == Framing::kNone || (framing_ == Framing::kLength && left_ == 0)) Finish();
}

TestStream::~TestStream() {
  if (!ended_) Close();
}

void TestStream::Receive() {
  client_->received_ += client_->harness_->TakeOutput(client_->conn_);
  closed_ = client_->harness_->Closing(client_->conn_);
}

bool TestStream::ParseHead(bool head_request) {
  std::string& in = client_->received_;
  while (true) {
    size_t consumed = 0;
    // As the answer to a HEAD request, ParseResponse stops at the end of the head.
    std::optional<TestResponse> head = ParseResponse(in, &consumed, /*head=*/true);
    if (!head.has_value()) return false;
    in.erase(0, consumed);
    if (head->status / 100 == 1 && head->error.empty()) continue;  // "100 Continue"
    head_ = std::move(*head);
    break;
  }
  if (head_request || head_.status == 204 || head_.status == 304 || head_.status == 0) {
    framing_ = Framing::kNone;
  } else if (Lower(head_.Header("transfer-encoding")) == "chunked") {
    framing_ = Framing::kChunked;
  } else if (const std::string length = head_.Header("content-length"); !length.empty()) {
    framing_ = Framing::kLength;
    if (!ParseSize(length, 10, &left_)) Fail("malformed Content-Length");
  } else {
    framing_ = Framing::kUntilClose;
  }
  return true;
}

std::string TestStream::Next() { return Next(client_->options_.timeout); }

std::string TestStream::Next(absl::Duration timeout) {
  std::string piece;
  if (ended_) return piece;
  auto done = [&] {
    Receive();
    Decode(&piece);
    return !piece.empty() || ended_;
  };
  if (!done()) client_->harness_->RunUntil(done, timeout);
  return piece;
}

void TestStream::Decode(std::string* piece) {
  std::string& in = client_->received_;
  while (!ended_) {
    if (framing_ == Framing::kNone || (framing_ == Framing::kLength && left_ == 0)) {
      Finish();
    } else if (framing_ == Framing::kUntilClose) {
      piece->append(in);
      in.clear();
      if (!closed_) return;
      Finish();
    } else if (framing_ == Framing::kLength || chunk_ == Chunk::kData) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size()));
      if (n == 0) break;
      piece->append(in, 0, n);
      in.erase(0, n);
      left_ -= n;
      if (framing_ == Framing::kChunked && left_ == 0) chunk_ = Chunk::kDataEnd;
    } else if (chunk_ == Chunk::kSize) {
      const size_t eol = in.find("\r\n");
      if (eol == std::string::npos) break;
      const std::string_view line = std::string_view(in).substr(0, eol);
      if (!ParseSize(line.substr(0, line.find(';')), 16, &left_)) return Fail("malformed chunk");
      in.erase(0, eol + 2);
      chunk_ = left_ == 0 ? Chunk::kTrailer : Chunk::kData;
    } else if (chunk_ == Chunk::kDataEnd) {
      if (in.size() < 2) break;
      if (!in.starts_with("\r\n")) return Fail("malformed chunk");
      in.erase(0, 2);
      chunk_ = Chunk::kSize;
    } else {  // the trailer section: empty, or fields and an empty line
      const size_t end = in.starts_with("\r\n") ? 0 : in.find("\r\n\r\n");
      if (end == std::string::npos) break;
      in.erase(0, end == 0 ? 2 : end + 4);
      Finish();
    }
  }
  if (!ended_ && closed_) Fail("the server closed the connection before the end of the body");
}

void TestStream::Fail(std::string why) {
  head_.error = std::move(why);
  Close();
}

void TestStream::Finish() {
  ended_ = true;
  head_.closed = closed_;
  client_->stream_ = nullptr;
  if (closed_) client_->Disconnect();
}

void TestStream::Close() {
  if (client_->stream_ != this) return;  // ended, or never opened
  ended_ = true;
  client_->stream_ = nullptr;
  client_->Disconnect();
}

}  // namespace percore::testing
