// Session ticket keys every loop shares: a ticket one loop issued resumes on any other, and the
// key is replaced on a schedule so a stolen one opens only recent sessions.
#ifndef PERCORE_SRC_TLS_TICKETS_H_
#define PERCORE_SRC_TLS_TICKETS_H_

#include <cstdint>
#include <mutex>

#include "absl/time/time.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace percore {

class TicketKeys {
 public:
  // A key is replaced once it is `rotation` old; the one it replaced still opens tickets.
  explicit TicketKeys(absl::Duration rotation);
  // Makes `ctx` seal and open its tickets with these keys. (OpenSSL's own key is made per
  // SSL_CTX, so a reload would end every ticket, and is never replaced.)
  void Use(SSL_CTX* ctx);

  struct Key {
    uint8_t name[16];
    uint8_t aes[32];   // AES-256-CBC
    uint8_t hmac[32];  // HMAC-SHA256
    bool valid = false;
  };
  // The key to seal a ticket with, now (replaced first if it is due). Thread-safe.
  Key Current(absl::Time now);
  // The key named `name`, if it is the current or the previous one; `current` says which.
  // Thread-safe.
  bool Find(const uint8_t name[16], Key* key, bool* current);

 private:
  static Key NewKey();
  const absl::Duration rotation_;
  std::mutex mu_;
  Key current_;
  Key previous_{};
  absl::Time made_;
};

}  // namespace percore

#endif  // PERCORE_SRC_TLS_TICKETS_H_
