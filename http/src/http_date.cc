// HTTP dates (RFC 9110 5.6.7): AppendHttpDate and ParseHttpDate of codec.h, on calendar
// arithmetic of their own.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "ascii.h"
#include "codec.h"

namespace percore::http {
namespace {

// ---- Calendar arithmetic (proleptic Gregorian, years 0..9999, which is all HTTP-date holds).

constexpr std::array<const char*, 7> kDayNames = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kLongDayNames = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
constexpr std::array<const char*, 12> kMonthNames = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr int kDaysBeforeMonth[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
constexpr int64_t kSecondsPerDay = 86400;

constexpr bool IsLeapYear(int64_t year) {
  return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

constexpr int DaysInMonth(int64_t year, int month) {
  constexpr int kLengths[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kLengths[month - 1];
}

// Days from 0000-01-01 to year-month-day (year >= 0, month 1..12). Year 0 is a leap year in
// the proleptic calendar, hence the "+ 1" for every year after it.
constexpr int64_t DaysFromYearZero(int64_t year, int month, int day) {
  const int64_t leap_years_before =
      year == 0 ? 0 : (year - 1) / 4 - (year - 1) / 100 + (year - 1) / 400 + 1;
  return 365 * year + leap_years_before + kDaysBeforeMonth[month - 1] +
         (month > 2 && IsLeapYear(year) ? 1 : 0) + day - 1;
}

constexpr int64_t kUnixEpochDays = DaysFromYearZero(1970, 1, 1);
static_assert(kUnixEpochDays == 719528);
constexpr int64_t kMinHttpDate = (DaysFromYearZero(0, 1, 1) - kUnixEpochDays) * kSecondsPerDay;
constexpr int64_t kMaxHttpDate =
    (DaysFromYearZero(9999, 12, 31) - kUnixEpochDays) * kSecondsPerDay + kSecondsPerDay - 1;
static_assert(kMaxHttpDate == 253402300799);

void AppendTwoDigits(int value, char* at) {
  at[0] = static_cast<char>('0' + value / 10);
  at[1] = static_cast<char>('0' + value % 10);
}

// Two ASCII digits at s[at], or -1.
int TwoDigits(std::string_view s, size_t at) {
  if (at + 2 > s.size() || !IsDigit(s[at]) || !IsDigit(s[at + 1])) return -1;
  return (s[at] - '0') * 10 + (s[at + 1] - '0');
}

// Month 1..12 from its three-letter name at s[at], or 0.
int MonthAt(std::string_view s, size_t at) {
  if (at + 3 > s.size()) return 0;
  const std::string_view name = s.substr(at, 3);
  for (size_t i = 0; i < kMonthNames.size(); ++i) {
    if (name == kMonthNames[i]) return static_cast<int>(i) + 1;
  }
  return 0;
}

bool IsShortDayName(std::string_view s) {
  return std::find(kDayNames.begin(), kDayNames.end(), s) != kDayNames.end();
}

// time-of-day = hour ":" minute ":" second (RFC 9110 5.6.7), "HH:MM:SS" at s[at].
bool TimeOfDayAt(std::string_view s, size_t at, int64_t* seconds) {
  if (at + 8 > s.size() || s[at + 2] != ':' || s[at + 5] != ':') return false;
  const int hour = TwoDigits(s, at);
  const int minute = TwoDigits(s, at + 3);
  const int second = TwoDigits(s, at + 6);
  // 60 is RFC 9110's leap second.
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60) {
    return false;
  }
  *seconds = hour * 3600 + minute * 60 + second;
  return true;
}

bool FourDigitYearAt(std::string_view s, size_t at, int64_t* year) {
  const int high = TwoDigits(s, at);
  const int low = TwoDigits(s, at + 2);
  if (high < 0 || low < 0) return false;
  *year = high * 100 + low;
  return true;
}

bool ComposeDate(int64_t year, int month, int day, int64_t time_of_day, int64_t* unix_seconds) {
  if (month < 1 || day < 1 || day > DaysInMonth(year, month)) return false;
  *unix_seconds =
      (DaysFromYearZero(year, month, day) - kUnixEpochDays) * kSecondsPerDay + time_of_day;
  return true;
}

}  // namespace

// ---- HTTP dates.

void AppendHttpDate(int64_t unix_seconds, std::string* out) {
  unix_seconds = std::clamp(unix_seconds, kMinHttpDate, kMaxHttpDate);
  // Floor division, so that times before 1970 land on the right day.
  int64_t days = unix_seconds / kSecondsPerDay;
  int64_t second_of_day = unix_seconds % kSecondsPerDay;
  if (second_of_day < 0) {
    second_of_day += kSecondsPerDay;
    --days;
  }
  // 1970-01-01 was a Thursday; days % 7 is in [-6, 6].
  const int weekday = static_cast<int>((days % 7 + 11) % 7);

  const int64_t day_number = days + kUnixEpochDays;  // since 0000-01-01, >= 0 after clamping
  int64_t year = day_number * 400 / 146097;          // 146097 days per 400 years; close enough
  while (year > 0 && DaysFromYearZero(year, 1, 1) > day_number) --year;
  while (DaysFromYearZero(year + 1, 1, 1) <= day_number) ++year;
  int month = 1;
  while (month < 12 && DaysFromYearZero(year, month + 1, 1) <= day_number) ++month;
  const int day = static_cast<int>(day_number - DaysFromYearZero(year, month, 1)) + 1;

  // "Sun, 06 Nov 1994 08:49:37 GMT"
  char text[29];
  std::copy_n(kDayNames[weekday], 3, text);
  text[3] = ',';
  text[4] = ' ';
  AppendTwoDigits(day, text + 5);
  text[7] = ' ';
  std::copy_n(kMonthNames[month - 1], 3, text + 8);
  text[11] = ' ';
  AppendTwoDigits(static_cast<int>(year / 100), text + 12);
  AppendTwoDigits(static_cast<int>(year % 100), text + 14);
  text[16] = ' ';
  AppendTwoDigits(static_cast<int>(second_of_day / 3600), text + 17);
  text[19] = ':';
  AppendTwoDigits(static_cast<int>(second_of_day / 60 % 60), text + 20);
  text[22] = ':';
  AppendTwoDigits(static_cast<int>(second_of_day % 60), text + 23);
  std::copy_n(" GMT", 4, text + 25);
  out->append(text, sizeof(text));
}

bool ParseHttpDate(std::string_view s, int64_t* unix_seconds) {
  s = TrimOws(s);
  int64_t year = 0;
  int64_t time_of_day = 0;
  int month = 0;
  int day = 0;
  if (s.size() == 29 && s[3] == ',') {
    // IMF-fixdate: day-name "," SP day SP month SP year SP time-of-day SP "GMT".
    if (!IsShortDayName(s.substr(0, 3)) || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s.substr(25) != " GMT") {
      return false;
    }
    day = TwoDigits(s, 5);
    month = MonthAt(s, 8);
    if (!FourDigitYearAt(s, 12, &year) || !TimeOfDayAt(s, 17, &time_of_day)) return false;
  } else if (s.size() == 24 && s[3] == ' ') {
    // asctime-date: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP year.
    if (!IsShortDayName(s.substr(0, 3)) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ') {
      return false;
    }
    month = MonthAt(s, 4);
    day = s[8] == ' ' ? (IsDigit(s[9]) ? s[9] - '0' : -1) : TwoDigits(s, 8);
    if (!TimeOfDayAt(s, 11, &time_of_day) || !FourDigitYearAt(s, 20, &year)) return false;
  } else {
    // rfc850-date: day-name-l "," SP day "-" month "-" 2DIGIT SP time-of-day SP "GMT".
    const size_t comma = s.find(',');
    if (comma == std::string_view::npos || std::find(kLongDayNames.begin(), kLongDayNames.end(),
                                                     s.substr(0, comma)) == kLongDayNames.end()) {
      return false;
    }
    const std::string_view rest = s.substr(comma + 1);  // " 06-Nov-94 08:49:37 GMT"
    if (rest.size() != 23 || rest[0] != ' ' || rest[3] != '-' || rest[7] != '-' ||
        rest[10] != ' ' || rest.substr(19) != " GMT") {
      return false;
    }
    day = TwoDigits(rest, 1);
    month = MonthAt(rest, 4);
    const int two_digit_year = TwoDigits(rest, 8);
    if (two_digit_year < 0 || !TimeOfDayAt(rest, 11, &time_of_day)) return false;
    year = two_digit_year < 70 ? 2000 + two_digit_year : 1900 + two_digit_year;
  }
  return ComposeDate(year, month, day, time_of_day, unix_seconds);
}

}  // namespace percore::http
