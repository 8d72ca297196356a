// One connection's TLS: OpenSSL's record layer on the loop's buffers. Ciphertext comes from the
// loop's receives (Open) and goes out through the connection's output (IoBuffers::wire); the
// socket is never OpenSSL's to touch, so io_uring and epoll drive it as they drive plain TCP.
//
// Kernel TLS (TlsOptions::kernel_tls): when OpenSSL hands over its write key after the handshake,
// the key waits until everything OpenSSL sealed before it has reached the socket, then goes to
// the kernel (TLS_TX), and from then on the connection's output goes out as plaintext (files
// by sendfile/splice) for the kernel to seal. The records OpenSSL still writes itself (the
// handshake's last, tickets, alerts) are sent with their record type (TLS_SET_RECORD_TYPE).
// Receiving stays with OpenSSL.
#ifndef PERCORE_SRC_TLS_STREAM_H_
#define PERCORE_SRC_TLS_STREAM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "percore/tls.h"

typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace percore {

class TlsContext;
struct ConnectionState;

class TlsStream {
 public:
  // Null when OpenSSL cannot make the connection's SSL (out of memory).
  static std::unique_ptr<TlsStream> Create(std::shared_ptr<const TlsContext> context,
                                           ConnectionState* conn);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // What one Open() found besides plaintext.
  enum class Event {
    kNone,
    kEstablished,  // the handshake completed during this call (established() alone says so
                   // when the same call ends in kPeerClosed)
    kPeerClosed,   // the peer's close_notify: it sends nothing more
    kFailed,       // a bad record or handshake; an alert may wait in the output
  };
  // Takes `wire`, all of it (a record cut short waits inside OpenSSL for the rest), and appends
  // what it decrypts to `plain` from `*used` on, growing `plain` as needed and advancing `*used`.
  // Records OpenSSL answers with meanwhile (the handshake's, tickets, alerts) go to the output.
  Event Open(std::string_view wire, std::string& plain, size_t* used);
  // Encrypts `plain` into records appended to `out`.
  void Seal(std::string_view plain, std::string& out);
  // Appends a close_notify alert to the output, once; false if there is none to send (already
  // sent, or the connection failed), or if it went straight to the kernel (kernel TLS).
  bool SayGoodbye();
  // Kernel TLS: true while a key or records wait for SendToKernel().
  bool kernel_backlog() const;
  // Kernel TLS, once nothing of the connection's output is unsent or in flight: installs the
  // waiting key on the socket (the connection's output then goes out unsealed) and sends the
  // records OpenSSL wrote since. False if the kernel refused: the connection fails.
  bool SendToKernel();
  bool established() const { return established_; }
  // False once the connection failed or its close_notify was sent: Seal() seals nothing more.
  bool sealing() const { return !done_; }
  // After kFailed: OpenSSL's reason.
  const std::string& error() const { return error_; }
  TlsInfo info() const;

 private:
  TlsStream(std::shared_ptr<const TlsContext> context, ConnectionState* conn, SSL* ssl);
  static int Read(BIO* bio, char* data, size_t length, size_t* read);
  static int Write(BIO* bio, const char* data, size_t length, size_t* written);
  static long Control(BIO* bio, int command, long number, void* pointer);
  // OpenSSL's message callback: counts the peer's KeyUpdates (see Open).
  static void OnMessage(int write, int version, int type, const void* message, size_t length,
                        SSL* ssl, void* arg);
  bool TakeKernelKey(const void* crypto_info);

  struct Kernel;  // kernel TLS's state, made when OpenSSL hands over its key

  const std::shared_ptr<const TlsContext> context_;  // kept: a reload leaves this connection's
  ConnectionState* const conn_;
  SSL* const ssl_;
  std::string_view in_;         // Open()'s ciphertext not yet taken by OpenSSL
  std::string* out_ = nullptr;  // Seal()'s target; null: the connection's output
  std::string error_;
  std::unique_ptr<Kernel> kernel_;
  int64_t key_updates_since_ms_ = 0;  // when the count below started
  int key_updates_ = 0;               // the peer's KeyUpdates since then
  bool established_ = false;
  bool done_ = false;  // a close_notify sent, or the connection failed: nothing more to seal
};

}  // namespace percore

#endif  // PERCORE_SRC_TLS_STREAM_H_
