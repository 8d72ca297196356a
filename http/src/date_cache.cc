#include "date_cache.h"

#include <cstdio>

namespace percore::http {

void DateCache::Update(time_t now) {
  if (now == formatted_) return;
  tm parts;
  gmtime_r(&now, &parts);
  // IMF-fixdate (RFC 9110 5.6.7); strftime's %a/%b follow the locale, so spell them here.
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  snprintf(line_, sizeof(line_), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
           kDays[parts.tm_wday], parts.tm_mday, kMonths[parts.tm_mon], parts.tm_year + 1900,
           parts.tm_hour, parts.tm_min, parts.tm_sec);
  formatted_ = now;
}

}  // namespace percore::http
