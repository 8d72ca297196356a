// Response's side of conditional requests (RFC 9110 13): a 2xx answer to GET or HEAD with an
// ETag or Last-Modified set becomes a 304 or a 412 when the request's preconditions say so.
#include <ctime>
#include <memory>
#include <string>

#include "ascii.h"
#include "codec.h"
#include "gzip_file.h"
#include "percore/http/request.h"
#include "response_core.h"

namespace percore::http {
namespace {

ConditionalFields ConditionsOf(const Request& req) {
  return {req.Header("if-match"), req.Header("if-unmodified-since"), req.Header("if-none-match"),
          req.Header("if-modified-since")};
}

}  // namespace

struct ResponseCore::KeptConditions {
  std::string if_match, if_unmodified_since, if_none_match, if_modified_since;
};

Precondition ResponseCore::CheckPreconditions() const {
  if (!validators_ || status_ < 200 || status_ > 299) return Precondition::kPass;  // 13.2.1
  ConditionalFields conditions;
  if (request_ != nullptr) {
    // Other methods have acted by now: their preconditions were the handler's to check first.
    if (!head_ && request_->method() != "GET") return Precondition::kPass;
    conditions = ConditionsOf(*request_);
  } else if (kept_conditions_ != nullptr) {
    const KeptConditions& kept = *kept_conditions_;
    conditions = {kept.if_match, kept.if_unmodified_since, kept.if_none_match,
                  kept.if_modified_since};
  } else {
    return Precondition::kPass;
  }
  const auto value_of = [this](std::string_view name) {
    const size_t line = FindField(name);
    if (line == std::string::npos) return std::string_view();
    const size_t value = line + name.size() + 1;  // after the ':'
    return TrimOws(std::string_view(*fields_).substr(value, fields_->find("\r\n", line) - value));
  };
  int64_t modified = 0;
  const std::string_view last_modified = value_of("last-modified");
  const bool dated = !last_modified.empty() && ParseHttpDate(last_modified, &modified);
  return EvaluatePreconditions(conditions, value_of("etag"), dated ? &modified : nullptr,
                               time(nullptr));
}

bool ResponseCore::AnswerPreconditions(uint64_t length, bool file) {
  if (!validators_ || status_ < 200 || status_ > 299) return false;  // RFC 9110 13.2.1
  const Precondition outcome = CheckPreconditions();
  // Looked at once: Static asks before its Range, and its SendFile must not ask again.
  request_ = nullptr;
  kept_conditions_.reset();
  switch (outcome) {
    case Precondition::kPass:
      return false;
    case Precondition::kNotModified:
      Status(304);
      // The ETag and Vary the 200 would have (RFC 9110 15.4.5).
      if (compress_ != nullptr && (!file || length <= kMaxGzipFile)) Negotiate(length);
      Send("");
      return true;
    case Precondition::kFailed:
      // The fields set so far stay, as they do for a 4xx a handler throws.
      Status(412);
      Type("text/plain; charset=utf-8");
      Send("Precondition Failed\n");
      return true;
  }
  return false;
}

void ResponseCore::KeepConditions() {
  if (request_ == nullptr || (!head_ && request_->method() != "GET")) return;
  const ConditionalFields c = ConditionsOf(*request_);
  if (!c.if_match.empty() || !c.if_unmodified_since.empty() || !c.if_none_match.empty() ||
      !c.if_modified_since.empty()) {
    kept_conditions_ = std::make_shared<const KeptConditions>(
        KeptConditions{std::string(c.if_match), std::string(c.if_unmodified_since),
                       std::string(c.if_none_match), std::string(c.if_modified_since)});
  }
}

}  // namespace percore::http
