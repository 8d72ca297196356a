// The one table of ready-made error responses for protocol errors.
#ifndef PERCORE_HTTP_SRC_ERRORS_H_
#define PERCORE_HTTP_SRC_ERRORS_H_

#include <string>
#include <string_view>

namespace percore::http {

// Appends the complete error response for `status` (400, 408, 413, 414, 417, 431, 500, 501,
// 505), with `date_line`, a plain-text body naming the status and "Connection: close".
void AppendErrorResponse(std::string& out, int status, std::string_view date_line);

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_ERRORS_H_
