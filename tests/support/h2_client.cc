#include "support/h2_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace percore::testing {

std::string H2Response::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return {};
}

namespace {

H2Client& Self(void* user_data) { return *static_cast<H2Client*>(user_data); }

nghttp2_nv Nv(const std::string& name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

struct H2Client::Callbacks {
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                      void* user_data) {
    H2Response& r = Self(user_data).responses_[frame->hd.stream_id];
    std::string n(reinterpret_cast<const char*>(name), name_length);
    std::string v(reinterpret_cast<const char*>(value), value_length);
    if (n == ":status") {
      r.status = std::atoi(v.c_str());
    } else {
      r.headers.emplace_back(std::move(n), std::move(v));
    }
    return 0;
  }
  static int OnData(nghttp2_session*, uint8_t, int32_t stream, const uint8_t* data, size_t length,
                    void* user_data) {
    Self(user_data).responses_[stream].body.append(reinterpret_cast<const char*>(data), length);
    return 0;
  }
  static int OnClose(nghttp2_session*, int32_t stream, uint32_t error_code, void* user_data) {
    H2Response& r = Self(user_data).responses_[stream];
    r.closed = true;
    r.error_code = error_code;
    return 0;
  }
  static int OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    H2Client& self = Self(user_data);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      self.goaway_error_ = frame->goaway.error_code;
      self.goaway_last_stream_ = frame->goaway.last_stream_id;
    } else if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
      ++self.pongs_;
    }
    return 0;
  }
  static ssize_t ReadBody(nghttp2_session*, int32_t stream, uint8_t* buf, size_t length,
                          uint32_t* flags, nghttp2_data_source*, void* user_data) {
    H2Client& self = Self(user_data);
    const std::string& body = self.bodies_[stream];
    size_t& sent = self.body_sent_[stream];
    const size_t n = std::min(length, body.size() - sent);
    std::memcpy(buf, body.data() + sent, n);
    sent += n;
    if (sent == body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

H2Client::H2Client(int port, H2ClientOptions options) : socket_(ConnectLocal(port)) {
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Callbacks::OnData);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Callbacks::OnClose);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Callbacks::OnFrame);
  nghttp2_option* option;
  nghttp2_option_new(&option);
  nghttp2_option_set_no_auto_window_update(option, options.auto_window_update ? 0 : 1);
  nghttp2_session_client_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options.initial_window},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
}

H2Client::~H2Client() { nghttp2_session_del(session_); }

int32_t H2Client::Submit(std::string_view method, std::string_view path, const Fields& fields,
                         std::optional<std::string> body) {
  const std::string m(method), p(path), scheme = "http", authority = "localhost";
  const std::string k_method = ":method", k_path = ":path", k_scheme = ":scheme",
                    k_authority = ":authority";
  std::vector<nghttp2_nv> nv = {Nv(k_method, m), Nv(k_scheme, scheme), Nv(k_authority, authority),
                                Nv(k_path, p)};
  for (const auto& [name, value] : fields) nv.push_back(Nv(name, value));
  nghttp2_data_provider provider{};
  provider.read_callback = &Callbacks::ReadBody;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(),
                                            body.has_value() ? &provider : nullptr, nullptr);
  if (id > 0 && body.has_value()) bodies_[id] = std::move(*body);
  if (id > 0) responses_[id];
  return id;
}

void H2Client::Reset(int32_t stream, uint32_t error_code) {
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, error_code);
}

void H2Client::Ping() { nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr); }

void H2Client::Consume(int32_t stream, size_t bytes) {
  nghttp2_session_consume(session_, stream, bytes);
}

bool H2Client::SendRaw(std::string_view bytes, std::chrono::milliseconds timeout) {
  // What nghttp2 has queued goes first: the raw bytes follow a frame, never cut into one.
  const uint8_t* data;
  for (ssize_t n; (n = nghttp2_session_mem_send(session_, &data)) > 0;) {
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  out_.append(bytes);
  return Until([this] { return out_.empty(); }, timeout);
}

bool H2Client::Step(Clock::time_point deadline) {
  if (closed_ || !socket_.ok()) return false;
  const uint8_t* data;
  for (ssize_t n; (n = nghttp2_session_mem_send(session_, &data)) > 0;) {
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  pollfd p{socket_.fd(), static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return false;
  const int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
  if (ready < 0 && errno != EINTR) return false;
  if (ready <= 0) return true;
  if ((p.revents & POLLOUT) != 0) {
    const ssize_t n = send(socket_.fd(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) out_.erase(0, static_cast<size_t>(n));
    if (n < 0 && errno != EAGAIN && errno != EINTR) closed_ = true;
  }
  if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    char buf[65536];
    const ssize_t n = recv(socket_.fd(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(buf),
                               static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      closed_ = true;
    }
  }
  return !closed_;
}

bool H2Client::Until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (!done()) {
    if (!Step(deadline)) return done();
  }
  return true;
}

std::optional<H2Response> H2Client::Wait(int32_t stream, std::chrono::milliseconds timeout) {
  if (stream <= 0) return std::nullopt;
  if (!Until([&] { return responses_[stream].closed; }, timeout)) return std::nullopt;
  return responses_[stream];
}

std::optional<H2Response> H2Client::Fetch(std::string_view method, std::string_view path,
                                          const Fields& fields, std::optional<std::string> body) {
  return Wait(Submit(method, path, fields, std::move(body)));
}

}  // namespace percore::testing
