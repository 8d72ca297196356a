#include "support/tls_socket.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

namespace percore::testing {

using std::chrono::milliseconds;

TlsSocket::TlsSocket(int port, const TlsPeerOptions& options)
    : socket_(ConnectLocal(port)), peer_(options) {
  if (socket_.ok() && !SetNonBlocking(socket_.fd())) socket_.Reset();
}

bool TlsSocket::Step(Clock::time_point deadline) {
  out_ += peer_.TakeOutput();
  if (closed_ || !socket_.ok()) return false;
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd p{socket_.fd(), static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
  const int ready = poll(&p, 1, static_cast<int>(left));
  if (ready < 0) return errno == EINTR;
  if (ready == 0) return false;
  if (!out_.empty() && (p.revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
    const ssize_t n = send(socket_.fd(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      closed_ = true;  // what the server sent before (an alert) is still read below
    }
  }
  if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
    thread_local std::vector<char> chunk(256 * 1024);
    const ssize_t n = recv(socket_.fd(), chunk.data(), chunk.size(), 0);
    if (n > 0) {
      peer_.Receive(std::string_view(chunk.data(), static_cast<size_t>(n)));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      closed_ = true;
    }
  }
  return !closed_;
}

bool TlsSocket::Handshake(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    out_ += peer_.TakeOutput();
    if (peer_.failed()) return false;
    if (peer_.established() && out_.empty()) return true;
    if (!Step(deadline)) return false;
  }
}

bool TlsSocket::Send(std::string_view plain, milliseconds timeout) {
  if (!plain.empty()) peer_.Write(plain);
  const auto deadline = Clock::now() + timeout;
  while (true) {
    out_ += peer_.TakeOutput();
    if (peer_.failed()) return false;
    if (out_.empty()) return true;
    if (!Step(deadline)) return false;
  }
}

size_t TlsSocket::ResponseEnd(bool head) {
  const size_t head_end = buffer_.find("\r\n\r\n");
  if (head_end == std::string::npos) return 0;
  const size_t body = head_end + 4;
  size_t consumed = 0;
  const std::optional<HttpResponse> fields =
      ParseResponse(std::string_view(buffer_).substr(0, body), &consumed, /*head=*/true);
  if (!fields.has_value() || fields->status == 0) return buffer_.size();  // malformed: say so
  const int status = fields->status;
  if (head || status / 100 == 1 || status == 204 || status == 304) return body;
  if (fields->Header("transfer-encoding") == "chunked") {
    size_t at = scan_ == 0 ? body : scan_;
    while (true) {
      scan_ = at;
      const size_t eol = buffer_.find("\r\n", at);
      if (eol == std::string::npos) return 0;
      char* end = nullptr;
      const unsigned long long size = std::strtoull(buffer_.c_str() + at, &end, 16);
      if (end == buffer_.c_str() + at) return buffer_.size();  // malformed: ParseResponse says
      if (size == 0) {
        if (buffer_.compare(eol, 4, "\r\n\r\n") == 0) return eol + 4;
        const size_t trailers = buffer_.find("\r\n\r\n", eol);
        return trailers == std::string::npos ? 0 : trailers + 4;
      }
      if (buffer_.size() < eol + 2 + size + 2) return 0;
      at = eol + 2 + size + 2;
    }
  }
  const std::string length = fields->Header("content-length");
  if (length.empty()) return closed() ? buffer_.size() : 0;  // ends with the connection
  const uint64_t size = std::strtoull(length.c_str(), nullptr, 10);
  return buffer_.size() - body >= size ? body + size : 0;
}

std::optional<HttpResponse> TlsSocket::ReadResponse(milliseconds timeout, bool head) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    buffer_ += peer_.TakePlaintext();
    if (const size_t end = ResponseEnd(head); end != 0) {
      size_t consumed = 0;
      std::optional<HttpResponse> response =
          ParseResponse(std::string_view(buffer_).substr(0, end), &consumed, head, closed());
      if (response.has_value()) {
        buffer_.erase(0, consumed);
        scan_ = 0;
        response->closed = closed() && buffer_.empty();
        return response;
      }
    }
    if (closed() || peer_.failed()) return std::nullopt;
    if (!Step(deadline) && !closed_) return std::nullopt;
  }
}

std::optional<HttpResponse> TlsSocket::Fetch(std::string_view request, milliseconds timeout) {
  if (!Send(request, timeout)) return std::nullopt;
  return ReadResponse(timeout);
}

std::optional<std::string> TlsSocket::ReadAtLeast(size_t n, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    buffer_ += peer_.TakePlaintext();
    if (buffer_.size() >= n) {
      std::string taken;
      taken.swap(buffer_);
      scan_ = 0;
      return taken;
    }
    if (closed() || peer_.failed()) return std::nullopt;
    if (!Step(deadline) && !closed_) return std::nullopt;
  }
}

bool TlsSocket::WaitClosed(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    buffer_ += peer_.TakePlaintext();
    if (closed() || peer_.failed()) return true;
    if (!Step(deadline) && !closed_) return false;
  }
}

}  // namespace percore::testing
