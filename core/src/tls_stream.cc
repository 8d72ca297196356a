#include "tls_stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <utility>

#include "connection_state.h"
#include "loop.h"
#include "tls_context.h"

namespace percore {
namespace {

// The most plaintext one record carries.
constexpr size_t kRecordBytes = 16 * 1024;

}  // namespace

std::unique_ptr<TlsStream> TlsStream::Create(std::shared_ptr<const TlsContext> context,
                                             ConnectionState* conn) {
  // A BIO of percore's own between OpenSSL and the loop: reads take from the bytes the loop
  // received, writes append to the connection's output; neither ever blocks. (Memory BIOs would
  // copy every byte once more and keep their buffers at their largest.)
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "percore");
    BIO_meth_set_read_ex(m, &TlsStream::Read);
    BIO_meth_set_write_ex(m, &TlsStream::Write);
    BIO_meth_set_ctrl(m, &TlsStream::Control);
    return m;
  }();
  SSL* ssl = context->NewSsl();
  BIO* bio = ssl == nullptr ? nullptr : BIO_new(method);
  if (bio == nullptr) {
    SSL_free(ssl);
    ERR_clear_error();
    return nullptr;
  }
  std::unique_ptr<TlsStream> stream(new TlsStream(std::move(context), conn, ssl));
  BIO_set_data(bio, stream.get());
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);  // the SSL owns it, both ways
  return stream;
}

TlsStream::TlsStream(std::shared_ptr<const TlsContext> context, ConnectionState* conn, SSL* ssl)
    : context_(std::move(context)), conn_(conn), ssl_(ssl) {}

TlsStream::~TlsStream() { SSL_free(ssl_); }

int TlsStream::Read(BIO* bio, char* data, size_t length, size_t* read) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (self->in_.empty()) {
    BIO_set_retry_read(bio);  // OpenSSL's WANT_READ: the rest comes with a later receive
    return 0;
  }
  const size_t n = std::min(length, self->in_.size());
  std::copy_n(self->in_.data(), n, data);
  self->in_.remove_prefix(n);
  *read = n;
  return 1;
}

int TlsStream::Write(BIO* bio, const char* data, size_t length, size_t* written) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  std::string* out = self->out_;
  if (out == nullptr) {
    ConnectionState* c = self->conn_;
    if (c->buffers == nullptr) c->loop->TakeBuffers(c);
    out = &c->buffers->wire;
  }
  out->append(data, length);
  *written = length;
  return 1;
}

long TlsStream::Control(BIO* bio, int command, long number, void* pointer) {
  // OpenSSL flushes after each flight; everything is already in the output.
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

TlsStream::Event TlsStream::Open(std::string_view wire, std::string& plain, size_t* used) {
  in_ = wire;
  Event event = Event::kNone;
  for (;;) {
    // `plain` keeps its size at its capacity (the caller tracks what is used), so growing it
    // zero-fills only new bytes, not every record's room.
    if (plain.size() < *used + kRecordBytes) plain.resize(*used + kRecordBytes);
    size_t got = 0;
    if (SSL_read_ex(ssl_, plain.data() + *used, kRecordBytes, &got) == 1) {
      *used += got;
      // All taken and nothing buffered: another call would only say WANT_READ.
      if (in_.empty() && SSL_has_pending(ssl_) == 0) break;
      continue;
    }
    const int error = SSL_get_error(ssl_, 0);
    if (error == SSL_ERROR_WANT_READ) break;  // all of `wire` taken
    if (error == SSL_ERROR_ZERO_RETURN) {
      event = Event::kPeerClosed;
    } else {
      error_ = TakeOpensslError(error == SSL_ERROR_SYSCALL ? "the peer broke the protocol"
                                                           : "unknown error");
      done_ = true;
      event = Event::kFailed;
    }
    break;
  }
  in_ = {};
  if (!established_ && event != Event::kFailed && SSL_is_init_finished(ssl_)) {
    established_ = true;
    if (event == Event::kNone) event = Event::kEstablished;
  }
  return event;
}

void TlsStream::Seal(std::string_view plain, std::string& out) {
  if (done_ || plain.empty()) return;
  out_ = &out;
  size_t written = 0;
  // Our BIO takes every byte, so OpenSSL writes all of `plain`, a record per 16 KiB.
  if (SSL_write_ex(ssl_, plain.data(), plain.size(), &written) != 1) {
    error_ = TakeOpensslError("cannot encrypt");
    done_ = true;
  }
  out_ = nullptr;
}

bool TlsStream::SayGoodbye() {
  if (done_ || !established_) return false;
  done_ = true;
  SSL_shutdown(ssl_);  // writes the alert; the peer's answer is not waited for
  ERR_clear_error();
  return true;
}

TlsInfo TlsStream::info() const {
  TlsInfo info;
  info.version = SSL_get_version(ssl_);
  info.cipher = SSL_get_cipher_name(ssl_);
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  if (name != nullptr) info.server_name = name;
  const unsigned char* alpn = nullptr;
  unsigned int alpn_length = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_length);
  if (alpn != nullptr)
    info.alpn = std::string_view(reinterpret_cast<const char*>(alpn), alpn_length);
  info.resumed = SSL_session_reused(ssl_) == 1;
  return info;
}

}  // namespace percore
