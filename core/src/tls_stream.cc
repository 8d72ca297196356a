#include "tls_stream.h"

#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "connection_state.h"
#include "loop.h"
#include "tls_context.h"

namespace percore {
namespace {

// The most plaintext one record carries.
constexpr size_t kRecordBytes = 16 * 1024;

// The controls OpenSSL's record layer gives a BIO that can take kernel TLS (OpenSSL 3.0's
// include/internal/bio.h: not in its public headers, which name only the two GET_ ones).
constexpr int kSetKtls = 72;            // BIO_CTRL_SET_KTLS: `number` is_tx, `pointer` the key
constexpr int kSetKtlsRecordType = 74;  // BIO_CTRL_SET_KTLS_TX_SEND_CTRL_MSG: the next write's
constexpr int kClearKtlsRecordType = 75;

// TLS 1.3 KeyUpdates a peer may send in a minute. Each one that asks for an answer costs two key
// derivations and a sealed record, some 20 us with OpenSSL 3.0, 40 times a record of data;
// OpenSSL refuses 33 in a row, but a byte of data between them resets its count. Clients
// re-key once in a long while, if ever: a storm is an attack on the loop, and ends the
// connection.
constexpr int kMaxKeyUpdates = 32;
constexpr int64_t kKeyUpdateWindowMs = 60 * 1000;

constexpr uint8_t kApplicationData = 23;
constexpr uint8_t kHandshake = 22;
constexpr uint8_t kKeyUpdate = 24;  // a TLS 1.3 handshake message

// The size of the kernel's TLS_TX argument for a cipher, 0 for one this code does not know.
// (OpenSSL passes its own struct, the kernel's union of these followed by a length: only the
// cipher's part goes to the kernel.)
size_t KernelKeySize(uint16_t cipher) {
  switch (cipher) {
    case TLS_CIPHER_AES_GCM_128:
      return sizeof(tls12_crypto_info_aes_gcm_128);
    case TLS_CIPHER_AES_GCM_256:
      return sizeof(tls12_crypto_info_aes_gcm_256);
    case TLS_CIPHER_CHACHA20_POLY1305:
      return sizeof(tls12_crypto_info_chacha20_poly1305);
    default:
      return 0;
  }
}

// Whether the kernel takes this version and cipher for TLS_TX. Once OpenSSL has handed its key
// over it seals nothing more itself, and the kernel only says at TLS_TX, after the handshake's
// records have gone: so each pair is tried once per process on a loopback pair of sockets with
// no data on them (a kernel with TLS but older than the pair: TLS 1.3 before 5.1, ChaCha20
// before 5.11), and a pair it refuses stays in user space.
bool KernelTakes(const tls_crypto_info& head, const void* key, size_t size) {
  static std::mutex mu;
  static std::map<std::pair<uint16_t, uint16_t>, bool> verdicts;
  std::lock_guard lock(mu);
  auto [it, fresh] = verdicts.try_emplace({head.version, head.cipher_type}, false);
  if (!fresh) return it->second;
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  auto* a = reinterpret_cast<sockaddr*>(&address);
  // A loopback connect() completes at once, against the listener's backlog.
  it->second = listener >= 0 && client >= 0 && bind(listener, a, length) == 0 &&
               listen(listener, 1) == 0 && getsockname(listener, a, &length) == 0 &&
               connect(client, a, length) == 0 &&
               setsockopt(client, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) == 0 &&
               setsockopt(client, SOL_TLS, TLS_TX, key, static_cast<socklen_t>(size)) == 0;
  if (client >= 0) close(client);
  if (listener >= 0) close(listener);
  return it->second;
}

}  // namespace

struct TlsStream::Kernel {
  ~Kernel() { OPENSSL_cleanse(key.data(), key.size()); }
  std::string key;      // TLS_TX's argument until it is installed
  std::string records;  // written by OpenSSL since it handed over its key: type, length, bytes
  uint8_t next_type = kApplicationData;  // of OpenSSL's next write
  bool installed = false;
  bool failed = false;  // OpenSSL re-keyed (a TLS 1.3 KeyUpdate): the kernel cannot follow
};

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
  SSL_set_msg_callback(ssl, &TlsStream::OnMessage);
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
  *written = length;
  if (Kernel* k = self->kernel_.get(); k != nullptr) {
    // Plaintext of a record for the kernel to seal. OpenSSL 3.0 changes its write key on a
    // KeyUpdate without telling the BIO, so the kernel's key would be the wrong one after it.
    if (k->next_type == kHandshake && length > 0 && static_cast<uint8_t>(data[0]) == kKeyUpdate)
      k->failed = true;
    for (size_t at = 0; at < length; at += kRecordBytes) {
      const size_t n = std::min(length - at, kRecordBytes);
      k->records.push_back(static_cast<char>(k->next_type));
      k->records.push_back(static_cast<char>(n >> 8));
      k->records.push_back(static_cast<char>(n & 0xff));
      k->records.append(data + at, n);
    }
    k->next_type = kApplicationData;
    return 1;
  }
  std::string* out = self->out_;
  if (out == nullptr) {
    ConnectionState* c = self->conn_;
    if (c->buffers == nullptr) c->loop->TakeBuffers(c);
    out = &c->buffers->wire;
  }
  out->append(data, length);
  return 1;
}

long TlsStream::Control(BIO* bio, int command, long number, void* pointer) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  switch (command) {
    case BIO_CTRL_FLUSH:  // after each flight; everything is already in the output
      return 1;
    case kSetKtls:
      return number != 0 && self->TakeKernelKey(pointer) ? 1 : 0;
    case BIO_CTRL_GET_KTLS_SEND:
      return self->kernel_ != nullptr ? 1 : 0;
    case kSetKtlsRecordType:
      if (self->kernel_ != nullptr) self->kernel_->next_type = static_cast<uint8_t>(number);
      return 1;
    case kClearKtlsRecordType:
      if (self->kernel_ != nullptr) self->kernel_->next_type = kApplicationData;
      return 1;
    default:
      return 0;
  }
}

void TlsStream::OnMessage(int write, int version, int type, const void* message, size_t length,
                          SSL* ssl, void* arg) {
  if (write != 0 || type != SSL3_RT_HANDSHAKE || length == 0 ||
      *static_cast<const uint8_t*>(message) != kKeyUpdate) {
    return;
  }
  auto* self = static_cast<TlsStream*>(BIO_get_data(SSL_get_rbio(ssl)));
  const int64_t now = self->conn_->loop->worker().now_ms();
  if (now - self->key_updates_since_ms_ >= kKeyUpdateWindowMs) {
    self->key_updates_since_ms_ = now;
    self->key_updates_ = 0;
  }
  ++self->key_updates_;
}

bool TlsStream::TakeKernelKey(const void* crypto_info) {
  // Only sending goes to the kernel (`number` 0, the receiving key, was refused by the caller):
  // received records would need a recvmsg() per record for their types, which io_uring's
  // receives do not give.
  tls_crypto_info head;
  std::memcpy(&head, crypto_info, sizeof(head));
  const size_t size = KernelKeySize(head.cipher_type);
  // The kernel's TLS layer goes on the socket now and passes bytes through untouched until the
  // key is installed. It fails where the kernel has no TLS (no `tls` in
  // /proc/sys/net/ipv4/tcp_available_ulp, and the module not loadable): OpenSSL then goes on
  // sealing in user space, as it does when this returns false.
  if (size == 0 || !KernelTakes(head, crypto_info, size) ||
      setsockopt(conn_->fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) != 0) {
    return false;
  }
  kernel_ = std::make_unique<Kernel>();
  kernel_->key.assign(static_cast<const char*>(crypto_info), size);
  return true;
}

bool TlsStream::kernel_backlog() const {
  return kernel_ != nullptr && (!kernel_->installed || !kernel_->records.empty());
}

bool TlsStream::SendToKernel() {
  Kernel& k = *kernel_;
  if (k.failed) return false;
  if (!k.installed) {
    // Everything OpenSSL sealed with its own key is in the socket; what follows, the kernel
    // seals, numbering its records from where OpenSSL's sequence stopped (in the key).
    if (setsockopt(conn_->fd, SOL_TLS, TLS_TX, k.key.data(), k.key.size()) != 0) return false;
    OPENSSL_cleanse(k.key.data(), k.key.size());
    k.key = std::string();
    k.installed = true;
    conn_->kernel_tls = true;
    if (conn_->buffers != nullptr) conn_->buffers->tls = nullptr;  // output goes out unsealed
  }
  size_t at = 0;
  while (at < k.records.size()) {
    const auto type = static_cast<uint8_t>(k.records[at]);
    const size_t length =
        static_cast<uint8_t>(k.records[at + 1]) << 8 | static_cast<uint8_t>(k.records[at + 2]);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(type))] = {};
    iovec iov{k.records.data() + at + 3, length};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_TLS;
    header->cmsg_type = TLS_SET_RECORD_TYPE;
    header->cmsg_len = CMSG_LEN(sizeof(type));
    std::memcpy(CMSG_DATA(header), &type, sizeof(type));
    // A record goes whole or not at all. One the kernel cannot take at once fails the
    // connection rather than wait: the output after it must not overtake it (TLS 1.2's
    // Finished), and records go when nothing of ours is in the socket's way, so this is a
    // socket buffer full of the kernel's own.
    if (sendmsg(conn_->fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL) != static_cast<ssize_t>(length))
      return false;
    at += 3 + length;
  }
  k.records.clear();
  return true;
}

TlsStream::Event TlsStream::Open(std::string_view wire, std::string& plain, size_t* used) {
  in_ = wire;
  Event event = Event::kNone;
  for (;;) {
    // `plain` keeps its size at its capacity (the caller tracks what is used), so growing it
    // zero-fills only new bytes, not every record's room.
    if (plain.size() < *used + kRecordBytes) plain.resize(*used + kRecordBytes);
    size_t got = 0;
    const int read = SSL_read_ex(ssl_, plain.data() + *used, kRecordBytes, &got);
    // A read takes at most 32 KeyUpdates in a row (OpenSSL's limit) before it returns.
    if (key_updates_ > kMaxKeyUpdates) {
      error_ = "too many KeyUpdates";
      done_ = true;
      event = Event::kFailed;
      break;
    }
    if (read == 1) {
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
  const bool say = !done_ && established_;
  if (say) {
    done_ = true;
    SSL_shutdown(ssl_);  // writes the alert; the peer's answer is not waited for
    ERR_clear_error();
  }
  if (kernel_ == nullptr) return say;
  // Kernel TLS: the alert, and any record still waiting (a failed read's alert), go now; the
  // caller has nothing in flight. One the kernel cannot take at once is left out.
  SendToKernel();
  return false;
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
  info.kernel = kernel_ != nullptr && kernel_->installed;
  return info;
}

}  // namespace percore
