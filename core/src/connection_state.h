// The loop's side of a connection: what the public Connection handle stands for.
//
// The loop owns one lifecycle state per connection and the flags of reading and sending that
// every backend shares; each backend derives its own struct from ConnectionState for the flags
// only it needs (IoUringConnection, EpollConnection: they fit in the base's tail padding, so an
// idle connection costs no more for them) and makes the connections of its loop
// (Backend::NewConnection). The output buffer prepares its own sends.
#ifndef PERCORE_SRC_CONNECTION_STATE_H_
#define PERCORE_SRC_CONNECTION_STATE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "percore/protocol.h"

namespace percore {

class Loop;
class TlsStream;
struct ProxyState;

// A range of a file to send (Connection::SendFile); the output owns `fd`.
struct FileRange {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t left = 0;
};

// A connection's buffers while it has something in them, both ways: the bytes and file ranges on
// their way out, in order, and the bytes read that wait for the session (unread()). Taken from
// the loop's pool when the session first writes or a read must wait, and given back once all is
// sent and taken, so an idle connection holds none (one pool, and one pointer per connection,
// rather than two).
//
// What goes out is one part at a time: bytes (`sending`, from `sent` on), then the file range
// that followed them. Prepare() takes the next part once the current one is done: the oldest
// queued one (bytes and the file SendFile() put after them), or else all of `pending`.
//
// On a TLS connection what goes out is ciphertext only: Prepare() seals the next parts (reading
// a file's range a slice at a time) into `wire`, behind the records OpenSSL put there itself,
// and sends that; file() is then never a range for the backend.
class IoBuffers {
 public:
  IoBuffers() = default;
  ~IoBuffers() { Clear(); }
  IoBuffers(const IoBuffers&) = delete;
  IoBuffers& operator=(const IoBuffers&) = delete;

  std::string pending;       // appended to by the session; never in flight
  int64_t progress_ms = 0;   // when a send last started or took bytes
  TlsStream* tls = nullptr;  // the connection's, if it speaks TLS (set by the loop)
  std::string wire;          // TLS: records sealed and not yet in flight

  // Bytes received while paused or held, for the session later. The session takes them a
  // piece at a time (one request behind each deferred answer): what it took is skipped, not
  // erased, so the rest is never copied again.
  std::string_view unread() const { return std::string_view(unread_).substr(unread_from_); }
  void KeepUnread(std::string_view bytes);
  // The session took the first `n` bytes of unread().
  void TakeUnread(size_t n);

  // Queues a file range after `pending`, which moves to the queue with it.
  void AddFile(int fd, uint64_t offset, uint64_t length);
  // Bytes and file bytes not yet taken by the kernel.
  size_t size() const {
    return pending.size() + sending_.size() - sent_ + file_.left + queued_ + wire.size();
  }
  // Takes the next part if the current one is done. Then the backend sends bytes() if there
  // are any, else file(). False if a file to seal for TLS ended before its range did: the
  // connection fails, as a short file fails a sendfile().
  bool Prepare();
  std::string_view bytes() const { return std::string_view(sending_).substr(sent_); }
  const FileRange& file() const { return file_; }
  // The kernel took `n` bytes of the current part. True when the part is done.
  bool Sent(size_t n);
  // Drops everything (closing the files) and keeps small buffers for reuse. Returns the
  // capacity of the large ones it freed.
  size_t Clear();

 private:
  struct Part {
    std::string bytes;
    FileRange file;
  };
  bool PrepareSealed();
  std::string unread_;
  size_t unread_from_ = 0;  // unread_ before it went to the session
  std::string sending_;
  size_t sent_ = 0;
  FileRange file_;  // after sending_
  std::deque<Part> queue_;
  size_t queued_ = 0;  // bytes and file bytes in queue_
};

// Where a connection is in its life. Reading and sending go on in every state before
// kReleasing (a closing connection still sends its output and discards what it reads).
enum class Lifecycle : uint8_t {
  kOpen,
  kClosing,      // Close(): once the output is sent, half-close and linger
  kClosingNow,   // Close(false): once the output is sent, release; nothing more is read
  kLingering,    // FIN sent: discarding input until the peer's FIN or EngineOptions::linger_timeout
  kReleasing,    // done or failed: in-flight operations are cancelled, then it is released
  kHandingOver,  // as kReleasing, but the socket goes to the loop's successor (Loop::TakeOrphans)
};

struct ConnectionState : Connection {
  ConnectionState() = default;
  ~ConnectionState() = default;  // not virtual: the backend's deleter destroys its own type

  bool closing() const { return life != Lifecycle::kOpen; }
  bool releasing() const { return life >= Lifecycle::kReleasing; }
  size_t pending_output() const { return buffers == nullptr ? 0 : buffers->size(); }

  Loop* loop = nullptr;
  std::unique_ptr<Session> session;
  IoBuffers* buffers = nullptr;     // owned by the loop's pool
  TlsStream* tls = nullptr;         // TLS connections only; owned (Loop::Release deletes it)
  ProxyState* proxy = nullptr;      // EngineOptions::proxy_protocol only; owned, as `tls`
  ConnectionState* prev = nullptr;  // the loop's list of live connections
  ConnectionState* next = nullptr;
  int64_t deadline_ms = 0;
  int fd = -1;
  Lifecycle life = Lifecycle::kOpen;
  bool dirty : 1 = false;            // queued for the backend this iteration
  bool send_inflight : 1 = false;    // io_uring: a send is submitted; epoll: awaiting EPOLLOUT
  bool paused : 1 = false;           // too much pending output: not reading
  bool held : 1 = false;             // the session took less than it was given: see Resume()
  bool resume_queued : 1 = false;    // on the loop's list of connections to hand their unread
  bool writable_wanted : 1 = false;  // NotifyWritable(): call Session::OnWritable when sent
  bool peer_eof : 1 = false;         // the peer's FIN was read
  bool eof_untold : 1 = false;       // ... before bytes still unread: the session learns it after
  bool handing_over : 1 = false;     // Connection::HandTo(): the successor is on the loop's list
  bool kernel_tls : 1 = false;       // TLS that the kernel seals: output goes out unsealed
};

inline ConnectionState* StateOf(Connection* c) { return static_cast<ConnectionState*>(c); }
inline const ConnectionState* StateOf(const Connection* c) {
  return static_cast<const ConnectionState*>(c);
}

}  // namespace percore

#endif  // PERCORE_SRC_CONNECTION_STATE_H_
