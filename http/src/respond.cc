// The end of a request's header section or body: the handler's request and response, the
// middleware chain and the route, the error answers, the request log.
#include <cstdio>
#include <exception>
#include <string_view>

#include "codec.h"
#include "errors.h"
#include "percore/stats.h"
#include "request_builder.h"
#include "response_writer.h"
#include "session.h"

namespace percore::http {

using namespace std::string_view_literals;

// The path of a request target: up to '?', and in absolute form ("http://host/x?q", RFC 9112
// 3.2.2, sent to proxies and accepted by servers) from the slash after the authority.
std::string_view PathOf(std::string_view target, size_t question) {
  std::string_view path = target.substr(0, question);
  if (!path.empty() && path.front() != '/') {
    if (size_t scheme = path.find("://"); scheme != std::string_view::npos) {
      size_t slash = path.find('/', scheme + 3);
      path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
    }
  }
  return path;
}

namespace {

// What the end of the middleware chain needs.
struct RouteCall {
  HttpProtocol* protocol;
  const Router::Result* route;
  const Request* req;
  Response* res;
};

}  // namespace

void HttpSession::FillHeaders(const MessageState& st) {
  std::vector<HeaderField>& headers = protocol_.headers_;
  headers.clear();
  for (const RequestParser::Field& field : st.parser.fields()) {
    headers.push_back(HeaderField{View(st.base, field.name), View(st.base, field.value)});
  }
}

// Inlined into HttpSession::Respond, GET /'s path; an HTTP/2 stream calls Dispatch.
[[gnu::always_inline]] inline void HttpProtocol::DispatchInline(const Request& req, Response& res,
                                                                const ResponseCore& core,
                                                                const Router::Result& route) {
  // A failure stays with its request: the error hook's answer (or a 500 and a line on
  // stderr), and the connection goes on.
  RouteCall call{this, &route, &req, &res};
  try {
    if (!RequestBuilder::ValidEncoding(req)) {
      SendError(req, res, Error{400, "invalid percent-encoding in the path or the query", {}});
    } else {
      config_->router.Run(req, res, &HttpProtocol::RunRoute, &call);
      if (!core.sent_ && !core.deferred_) {
        SendError(
            req, res,
            Error{
                500, "no middleware or handler answered (Send) or kept the response (Defer)", {}});
      }
    }
  } catch (...) {
    HandleException(req, res, std::current_exception());
  }
}

void HttpProtocol::Dispatch(const Request& req, Response& res, const ResponseCore& core,
                            const Router::Result& route) {
  DispatchInline(req, res, core, route);
}

void HttpSession::Respond(MessageState& st, const char* base) {
  HttpProtocol& h = protocol_;
  Connection& conn = *st.conn;
  const RequestParser& parser = st.parser;
  answered_ = true;
  FillHeaders(st);
  const std::string_view method = View(base, parser.method());
  // While draining, every response closes its connection.
  const bool upgrade = parser.upgrade();
  st.peer_closes = !parser.keep_alive() && !upgrade;
  const bool close = st.peer_closes || upgrade || h.worker_.draining();
  Request req;
  RequestBuilder::Fill(req, method, View(base, parser.target()), parser.question(), h.headers_,
                       st.body_copied ? std::string_view(st.body) : View(base, st.body_view),
                       parser.minor_version(), !close, h.worker_, conn, *this);
  const bool head = method == "HEAD";
  // Behind an answer still to come, the answer waits in a slot of its own.
  Slot* slot = NextSlot(st);
  std::string& out = slot == nullptr ? conn.output() : slot->bytes;
  const bool http10 = parser.minor_version() == 0;
  ResponseCore core(&out, &h.fields_, h.date_.line(), head, close, http10, !close && http10);
  core.stream_ = this;
  core.conn_ = &conn;
  core.slot_ = slot;
  core.body_unread_ = st.body_streamed;
  h.finish_.fns.clear();
  h.finish_.status = -1;
  core.finish_ = slot == nullptr ? &h.finish_ : &slot->finish;
  core.request_ = &req;  // for the preconditions of its answer
  Response res = ResponseWriter::Make(core);
  Router::Result route;
  if (st.routed) {
    route = st.route;
    // Routed with no parameters, maybe reads ago: params_ may hold another request's.
    if (!st.body_streamed) h.params_.clear();
  } else {
    h.params_.clear();
    const bool asterisk = req.target() == "*";  // OPTIONS * (the parser allows no other)
    if (!asterisk) route = h.config_->router.Route(method, req.path(), &h.params_);
  }
  RequestBuilder::SetParams(req, h.params_);
  // For the supervisor's stall log: what this loop is doing if it never comes back.
  // Method, SP and target are the request line's first bytes (one SP: the parser's rule).
  h.worker_.stats().SetActivity(View(base, Span{0, parser.target().end()}));
  st.handling = slot;
  h.DispatchInline(req, res, core, route);
  st.handling = nullptr;
  // What the handler decided, read from its core (the handle's accessors are calls).
  // Answered later (or, if the handle is dropped, with a 500 then).
  if (core.deferred_) {
    if (Pending() != nullptr && h.config_->options.log_requests) {
      Pending()->log_line = std::string(method) + " " + std::string(req.path());
    }
    // The answers ahead of it went while it was made: what it wrote meanwhile goes out.
    if (slot != nullptr && AtHead(*slot)) Advance(conn);
    h.deferring_.reset();  // an answer nobody holds any more is given now: a 500
    return;
  }
  if (slot != nullptr) {
    slot->done = true;
    slot->status = core.status_;
    slot->close = core.close_;
    if (h.config_->options.log_requests) {
      slot->log_line = std::string(method) + " " + std::string(req.path());
    }
    if (AtHead(*slot)) Advance(conn);  // the answers ahead of it went while it was made
    return;
  }
  h.CountResponse(core.status_);
  if (h.config_->options.log_requests) h.LogResponse(method, req.path(), core.status_);
  if (core.close_) conn.Close();
  if (!h.finish_.fns.empty()) h.finish_.Run(core.status_);
}

void HttpProtocol::RunRoute(void* context) {
  const RouteCall& d = *static_cast<RouteCall*>(context);
  HttpProtocol& h = *d.protocol;
  const Request& req = *d.req;
  Response& res = *d.res;
  if (d.route->handler != nullptr) {
    (*d.route->handler)(req, res);
  } else if (d.route->path_known || req.target() == "*") {
    h.allow_.clear();
    h.config_->router.AppendAllowed(req.path(), &h.allow_);
    res.Set("Allow", h.allow_);
    if (req.method() == "OPTIONS") {
      res.Status(204).Send("");
    } else {
      h.SendError(req, res, Error{405, "Method Not Allowed", {}});
    }
  } else {
    h.SendError(req, res, Error{404, "Not Found", {}});
  }
}

void HttpProtocol::HandleException(const Request& req, Response& res, std::exception_ptr e) {
  Error error{500, {}, e};
  std::string what;
  try {
    std::rethrow_exception(e);
  } catch (const HttpError& http) {
    if (http.status() >= 400 && http.status() <= 599) error.status = http.status();
    what = http.what();
  } catch (const std::exception& ex) {
    what = ex.what();
  } catch (...) {
    what = "an exception that is not a std::exception";
  }
  error.message = what;
  if (res.sent() || res.deferred()) {
    LogFailure(req.method(), req.path(), "threw after answering: " + what);
    return;
  }
  if (error.status >= 500) ResponseWriter::Clear(res);  // nothing half-made goes out
  SendError(req, res, error);
}

void HttpProtocol::SendError(const Request& req, Response& res, const Error& error) {
  HttpProtocol& h = *this;
  if (h.config_->on_error) {
    // The hook's answer has the error's status unless it sets another: not the 200 of a 404,
    // nor a 201 the handler set before it threw.
    res.Status(error.status);
    try {
      (*h.config_->on_error)(req, res, error);
    } catch (const std::exception& e) {
      h.LogFailure(req.method(), req.path(), std::string("the error hook threw: ") + e.what());
    } catch (...) {
      h.LogFailure(req.method(), req.path(), "the error hook threw");
    }
    if (res.sent() || res.deferred()) return;
  }
  // The default answer (also for what the hook left alone): the status and its reason as
  // text, and a line on stderr for a server error.
  if (error.status >= 500) {
    h.LogFailure(req.method(), req.path(),
                 std::string(error.message) + "; answered " + std::to_string(error.status));
  }
  res.Status(error.status).Type("text/plain; charset=utf-8");
  std::string body(ReasonPhrase(error.status));
  body.push_back('\n');
  res.Send(body);
}

void HttpProtocol::LogResponse(std::string_view method, std::string_view path, int status) {
  HttpProtocol& h = *this;
  h.log_.append("Request handled by worker "sv);
  AppendDecimal(h.log_, static_cast<size_t>(h.worker_.id()));
  h.log_.append(": "sv);
  h.log_.append(method);
  if (!path.empty()) {
    h.log_.push_back(' ');
    h.log_.append(path);
  }
  h.log_.push_back(' ');
  AppendDecimal(h.log_, static_cast<size_t>(status));
  h.log_.push_back('\n');
  if (h.log_.size() > 64 * 1024) h.FlushLog();
}

void HttpSession::SendOwnError(Connection& conn, int status, Slot* slot) {
  HttpProtocol& h = protocol_;
  MessageState& st = *state_;
  // The header section's bytes are all here (the receive buffer during a parse, else `held`);
  // the fields are those complete so far (all of them, past the header section).
  FillHeaders(st);
  const std::string_view method = View(st.base, st.parser.method());
  const int minor = st.parser.minor_version();
  const bool http10 = minor == 0;
  Request req;
  RequestBuilder::Fill(req, method, View(st.base, st.parser.target()), st.parser.question(),
                       h.headers_, {}, minor, /*keep_alive=*/false, h.worker_, conn, *this);
  ResponseCore core(slot != nullptr ? &slot->bytes : &conn.output(), &h.fields_, h.date_.line(),
                    method == "HEAD", /*close=*/true, http10, /*http10_keep_alive=*/false);
  core.conn_ = &conn;  // no stream_: the answer cannot be deferred (Defer() throws)
  core.slot_ = slot;
  h.finish_.fns.clear();
  h.finish_.status = -1;
  core.finish_ = &h.finish_;
  Response res = ResponseWriter::Make(core);
  h.SendError(req, res, Error{status, ReasonPhrase(status), {}});
  if (slot != nullptr) {
    slot->status = res.status();  // counted when it goes out
  } else {
    h.CountResponse(res.status());
  }
  if (h.config_->options.log_requests) h.LogResponse(method, req.path(), res.status());
  if (!h.finish_.fns.empty()) h.finish_.Run(res.status());
}

void HttpProtocol::CountResponse(int status) {
  LoopStats::Add(worker_.stats().responses[status / 100 - 1], 1);
}

}  // namespace percore::http
