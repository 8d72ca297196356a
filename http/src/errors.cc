#include "errors.h"

#include <array>

#include "response_core.h"
#include "response_writer.h"

namespace percore::http {
namespace {

constexpr std::array<int, 9> kStatuses = {400, 408, 413, 414, 417, 431, 500, 501, 505};

struct ReadyMade {
  std::string status_line;  // "HTTP/1.1 400 Bad Request\r\n"
  std::string rest;         // the fields after Date, the blank line and the body
};

// Written once, by the writer every answer goes through, with no Date line: it goes after the
// status line, fresh each time.
std::array<ReadyMade, kStatuses.size()> BuildTable() {
  std::array<ReadyMade, kStatuses.size()> table;
  for (size_t i = 0; i < kStatuses.size(); ++i) {
    const int status = kStatuses[i];
    std::string body(ReasonPhrase(status));
    body.push_back('\n');
    std::string answer;
    std::string fields;
    ResponseCore core(&answer, &fields, /*date_line=*/"", /*head=*/false, /*close=*/true,
                      /*http10=*/false, /*http10_keep_alive=*/false);
    core.Status(status);
    core.Send(body);
    const size_t status_line = answer.find("\r\n") + 2;
    table[i].status_line = answer.substr(0, status_line);
    table[i].rest = answer.substr(status_line);
  }
  return table;
}

}  // namespace

void AppendErrorResponse(std::string& out, int status, std::string_view date_line) {
  static const std::array<ReadyMade, kStatuses.size()> table = BuildTable();
  size_t i = 0;
  while (i + 1 < kStatuses.size() && kStatuses[i] != status) ++i;
  if (kStatuses[i] != status) i = 0;  // an unlisted status is a caller bug: answer 400
  out.append(table[i].status_line);
  out.append(date_line);
  out.append(table[i].rest);
}

}  // namespace percore::http
