#include "percore/ip_address.h"

#include <arpa/inet.h>

#include <cstring>

namespace percore {
namespace {

// ::ffff:a.b.c.d becomes a.b.c.d (RFC 4291 2.5.5.2); see IpAddress.
void UnmapV4(IpAddress* address) {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (address->v4 || std::memcmp(address->bytes, kMappedPrefix, sizeof(kMappedPrefix)) != 0) {
    return;
  }
  std::memmove(address->bytes, address->bytes + 12, 4);
  std::memset(address->bytes + 4, 0, 12);
  address->v4 = true;
}

}  // namespace

bool ParseIp(std::string_view text, IpAddress* out) {
  // inet_pton wants a NUL-terminated string and would stop at an embedded NUL, accepting
  // "1.2.3.4\0junk", so those are refused first.
  char buffer[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof(buffer) || text.find('\0') != std::string_view::npos) {
    return false;
  }
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  const bool v6 = text.find(':') != std::string_view::npos;
  uint8_t bytes[16];
  if (inet_pton(v6 ? AF_INET6 : AF_INET, buffer, bytes) != 1) return false;
  *out = IpFromBytes(bytes, v6);
  return true;
}

std::string FormatIp(const IpAddress& address) {
  char buffer[INET6_ADDRSTRLEN];
  if (inet_ntop(address.v4 ? AF_INET : AF_INET6, address.bytes, buffer, sizeof(buffer)) ==
      nullptr) {
    return std::string();  // cannot happen with this buffer size
  }
  return std::string(buffer);
}

IpAddress IpFromBytes(const uint8_t* bytes, bool v6) {
  IpAddress address;
  std::memcpy(address.bytes, bytes, v6 ? 16 : 4);
  address.v4 = !v6;
  UnmapV4(&address);
  return address;
}

bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace percore
