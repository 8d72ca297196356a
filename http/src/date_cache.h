// The Date header line, formatted at most once per second per loop.
#ifndef PERCORE_HTTP_SRC_DATE_CACHE_H_
#define PERCORE_HTTP_SRC_DATE_CACHE_H_

#include <ctime>
#include <string_view>

namespace percore::http {

class DateCache {
 public:
  DateCache() { Update(time(nullptr)); }
  // Reformats if `now` is another second than the one formatted.
  void Update(time_t now);
  // "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n".
  std::string_view line() const { return std::string_view(line_, kLineLength); }

  static constexpr size_t kLineLength = 37;

 private:
  time_t formatted_ = -1;
  char line_[64] = {};  // room for any year snprintf might print
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_DATE_CACHE_H_
