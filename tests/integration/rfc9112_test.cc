// RFC 9112 / RFC 9110 conformance, as seen from outside: the engine in-process on 127.0.0.1 with
// two loops (once per backend, io_uring skipped where this machine cannot run it), the test
// thread a client on real sockets.
//
// The table below is the project's list of the MUSTs and SHOULDs of RFC 9112 (HTTP/1.1) and of
// RFC 9110 sections 5-9 (fields, message abstraction, routing, representation data, methods)
// that a server can be tested on from outside: bytes in on a fresh connection, responses and the
// connection's fate out. Each row names its section; a requirement without a row is one that
// cannot be seen from outside (what a proxy or a client must do, what a handler decides).
// Each row: the exact bytes sent, the status of each response expected (several when requests
// are pipelined, or a 100 before the final one), and the connection afterwards: closed by the
// server (EOF right after the responses, nothing more sent), or open and serving (a following
// "GET / HTTP/1.1" with "Host: a" on it gets 200 and "Hello World!"). Every row also checks
// what RFC 9110 and 9112 ask of every response: a status line "HTTP/1.1" whatever the request's
// minor version (RFC 9110 6.2, RFC 9112 2.3), a Date field in every final response (RFC 9110
// 6.6.1), "Connection: close" in the last response of a connection the server closes and in no
// response of one it keeps (RFC 9112 9.6), no body in a response to HEAD, nor in 1xx and 204
// (RFC 9110 9.3.2, 15.2, 15.3.5).
//
// Where the RFC leaves a choice, percore decided:
// - Leading empty lines (CRLF) before a request-line are ignored (RFC 9112 2.2 SHOULD).
// - A bare LF is not accepted as a line terminator in the request-line or header section
//   (RFC 9112 2.2 MAY accept it): 400. A bare CR is invalid (MUST reject or replace by SP):
//   400. "\r\n\r" followed by anything but LF is not the end of a header section or trailer
//   section but a bare CR: 400 and close (it is a request-smuggling vector: a server reading it
//   as the end would answer the bytes after it as a second request).
// - Whitespace before the first field line (RFC 9112 2.2: reject, or ignore each such line):
//   rejected, 400. obs-fold (RFC 9112 5.2: reject, or replace by SP): rejected, 400.
// - Whitespace between a field name and its colon (RFC 9112 5.1 MUST 400), an empty field name
//   (not a token, RFC 9110 5.1): 400.
// - Content-Length with Transfer-Encoding (RFC 9112 6.1: MAY reject, MUST close after): 400 and
//   close. Two different Content-Lengths, or one that is not 1*DIGIT (RFC 9112 6.3 item 5
//   MUST): 400 and close.
// - Transfer-Encoding without chunked as its final coding (RFC 9112 6.3 item 4 MUST 400), chunked
//   applied twice (RFC 9112 7 MUST NOT): 400 and close. A coding before a final chunked that
//   percore does not implement ("gzip, chunked", RFC 9112 6.1 SHOULD 501): 501 and close.
//   Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1: faulty framing, MUST close): 400 and close.
// - Any byte but CRLF after a chunk's data, a chunk size not 1*HEXDIG: 400 and close. A body
//   over HttpOptions::max_body_bytes (1 MiB here): 413 at once, from Content-Length alone, and
//   close (RFC 9110 15.5.14).
// - Host (RFC 9112 3.2 MUST 400): missing in HTTP/1.1, twice, or not uri-host [":" port]: 400
//   and close. HTTP/1.0 needs none.
// - Request-target: a fragment, a byte over 0x7f or any other byte that is not visible ASCII
//   (not in RFC 9112 3.2's grammar): 400. "*" is only for OPTIONS (RFC 9112 3.2.4); "OPTIONS *"
//   is answered 204 with Allow. The absolute-form is accepted and routed by its path (RFC 9112
//   3.2.2 MUST accept). A target over HttpOptions::max_target_bytes (8 KiB): 414 and close
//   (RFC 9112 3 SHOULD). A header section over max_header_bytes (16 KiB): 431 and close.
// - CONNECT (RFC 9110 9.3.6): percore is an origin server, not a proxy: 501 and close.
// - Method: a token RFC 9110 does not define (nor PATCH) that no route names gets 501 and close
//   (RFC 9110 9.1 SHOULD); a route for it, or for any method, makes it known. Methods are
//   case-sensitive (RFC 9110 9.1): "get" is an unknown method, 501. A method that is not a
//   token: 400.
// - Versions (RFC 9110 6.2, RFC 9112 2.3): a major version other than 1 ("HTTP/2.0",
//   "HTTP/3.0") gets 505 and close (the HTTP/2 connection preface starts HTTP/2: h2_test.cc);
//   a malformed HTTP-version ("HTTP/1.x", "HTTP/11") is a bad request-line, 400.
// - "Expect: 100-continue" with a body (RFC 9110 10.1.1): "100 Continue" once the header section
//   is in, then the final response.
// - Upgrade (RFC 9110 7.8): a route that is not a WebSocket endpoint (App::Ws, rfc6455_test.cc)
//   switches to no other protocol: it answers (200), and the connection closes after it, unread
//   bytes after the request unanswered.
// - A path no route has: 404; a method no route of that path has: 405 with Allow (RFC 9110
//   15.5.6 MUST). Both keep the connection.
// - Keep-alive (RFC 9112 9.3): HTTP/1.1 persists unless "Connection: close"; HTTP/1.0 closes
//   unless "Connection: keep-alive". After "Connection: close", further pipelined requests are
//   not answered (RFC 9112 9.6 MUST NOT process).
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/options.h"
#include "rfc9112_rows.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore::testing {
namespace {

using http::App;
using http::HttpOptions;
using http::Request;
using http::Response;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kReadTimeout(10000);

const std::string kHostA = "Host: a\r\n";
const std::string kFollowUp = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const std::string kHello = "Hello World!";

std::string Post(std::string_view fields, std::string_view body) {
  return "POST /echo HTTP/1.1\r\nHost: a\r\n" + std::string(fields) + "\r\n" + std::string(body);
}

std::string Chunked(std::string_view body) { return Post("Transfer-Encoding: chunked\r\n", body); }

Row Case(std::string name, std::string section, std::string request, std::vector<Reply> replies,
         After after, std::string then = "") {
  return Row{.name = std::move(name),
             .section = std::move(section),
             .request = std::move(request),
             .replies = std::move(replies),
             .after = after,
             .then = std::move(then)};
}

std::vector<Row> Rows() {
  using enum After;
  const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
  return {
      // RFC 9112 2-3, RFC 9110 9.3: requests that are answered.
      Case("GetOriginForm", "RFC 9112 3.2.1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", {Ok(kHello)},
           kOpen),
      Case("GetRouteWithParam", "RFC 9112 3.2.1", "GET /users/7 HTTP/1.1\r\nHost: a\r\n\r\n",
           {Ok("user 7")}, kOpen),
      Case("GetWithQuery", "RFC 9112 3.2.1", "GET /users/7?x=1&y HTTP/1.1\r\nHost: a\r\n\r\n",
           {Ok("user 7")}, kOpen),
      Case("GetAbsoluteFormRoutedByPath", "RFC 9112 3.2.2",
           "GET http://a/users/7 HTTP/1.1\r\nHost: a\r\n\r\n", {Ok("user 7")}, kOpen),
      Case("HeadHasGetHeadersAndNoBody", "RFC 9110 9.3.2", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
           {Reply(200).ToHead().Has("content-length", "12")}, kOpen),
      Case("GetWithContentLengthBodyIsRead", "RFC 9112 6.3",
           "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", {Ok(kHello)}, kOpen),
      Case("HeadWithContentLengthBodyIsRead", "RFC 9112 6.3",
           "HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
           {Reply(200).ToHead().Has("content-length", "12")}, kOpen),
      Case("PostContentLength", "RFC 9112 6.2", Post("Content-Length: 5\r\n", "hello"),
           {Ok("hello")}, kOpen),
      Case("PostContentLengthZero", "RFC 9112 6.2", Post("Content-Length: 0\r\n", ""), {Ok("")},
           kOpen),
      Case("PostWithoutLengthHasNoBody", "RFC 9112 6.3", Post("", ""), {Ok("")}, kOpen),
      Case("HostWithPort", "RFC 9112 3.2", "GET / HTTP/1.1\r\nHost: a:8080\r\n\r\n", {Ok(kHello)},
           kOpen),
      Case("FieldNameCaseInsensitive", "RFC 9110 5.1", "GET / HTTP/1.1\r\nhOST: a\r\n\r\n",
           {Ok(kHello)}, kOpen),
      Case("FieldValueOwsExcluded", "RFC 9112 5.1", "GET / HTTP/1.1\r\nHost:  \ta \t\r\n\r\n",
           {Ok(kHello)}, kOpen),
      Case("LeadingEmptyLineIgnored", "RFC 9112 2.2", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
           {Ok(kHello)}, kOpen),
      Case("LeadingEmptyLinesIgnored", "RFC 9112 2.2",
           "\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", {Ok(kHello)}, kOpen),
      Case("EmptyLineBetweenPipelinedRequestsIgnored", "RFC 9112 2.2",
           "GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /users/1 HTTP/1.1\r\nHost: a\r\n\r\n",
           {Ok(kHello), Ok("user 1")}, kOpen),

      // RFC 9112 7: chunked transfer coding.
      Case("Chunked", "RFC 9112 7.1", Chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
           {Ok("hello world")}, kOpen),
      Case("ChunkSizeUpperCaseHex", "RFC 9112 7.1", Chunked("A\r\n0123456789\r\n0\r\n\r\n"),
           {Ok("0123456789")}, kOpen),
      Case("ChunkedCodingNameCaseInsensitive", "RFC 9112 7",
           Post("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), {Ok("hello")}, kOpen),
      Case("ChunkExtensionsIgnored", "RFC 9112 7.1.1",
           Chunked("5;name=value\r\nhello\r\n6;flag;x=\"q s\"\r\n world\r\n0;last\r\n\r\n"),
           {Ok("hello world")}, kOpen),
      Case("ChunkedTrailerFields", "RFC 9112 7.1.2",
           Chunked("5\r\nhello\r\n0\r\nX-Checksum: 1\r\nX-Other: two\r\n\r\n"), {Ok("hello")},
           kOpen),
      Case("ChunkedExtensionsAndTrailer", "RFC 9112 7.1.1",
           Chunked("5;ext=1\r\nhello\r\n0;end\r\nX-Trailer: v\r\n\r\n"), {Ok("hello")}, kOpen),

      // RFC 9112 9: connection management.
      Case("PipelinedAnsweredInOrder", "RFC 9112 9.3.2",
           "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + Post("Content-Length: 5\r\n", "hello") +
               "GET /users/3 HTTP/1.1\r\nHost: a\r\n\r\n",
           {Ok(kHello), Ok("hello"), Ok("user 3")}, kOpen),
      Case("PipelinedHeadHasNoBody", "RFC 9110 9.3.2",
           "GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /users/4 HTTP/1.1\r\nHost: a\r\n\r\n",
           {Ok(kHello), Reply(200).ToHead(), Ok("user 4")}, kOpen),
      Case("PipelinedChunkedThenGet", "RFC 9112 9.3.2",
           Chunked("3\r\nabc\r\n0\r\n\r\n") + "GET /users/5 HTTP/1.1\r\nHost: a\r\n\r\n",
           {Ok("abc"), Ok("user 5")}, kOpen),
      Case("Http11PersistsByDefault", "RFC 9112 9.3", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
           {Ok(kHello)}, kOpen),
      Case("Http10ClosesByDefault", "RFC 9112 9.3", "GET / HTTP/1.0\r\n\r\n", {Ok(kHello)},
           kClosed),
      Case("Http10WithHostClosesByDefault", "RFC 9112 9.3", "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
           {Ok(kHello)}, kClosed),
      Case("Http10KeepAlive", "RFC 9112 9.3", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
           {Ok(kHello).Has("connection", "keep-alive")}, kOpen),
      Case("ConnectionCloseClosesAfterResponse", "RFC 9112 9.6",
           "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", {Ok(kHello)}, kClosed),
      Case("NothingAnsweredAfterConnectionClose", "RFC 9112 9.6",
           "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + smuggled, {Ok(kHello)},
           kClosed),

      // RFC 9110 10.1.1: Expect.
      Case("Expect100ContinueBeforeBody", "RFC 9110 10.1.1",
           "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
           {100, Ok("abc")}, kOpen, "abc"),
      Case("Expect100ContinueWithBodySentAlready", "RFC 9110 10.1.1",
           "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
           {100, Ok("abc")}, kOpen),

      // RFC 9110 7.8: Upgrade is not taken up.
      Case("UpgradeAnsweredByRouteThenClosed", "RFC 9110 7.8",
           "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n" +
               smuggled,
           {Ok(kHello)}, kClosed),

      // RFC 9110 15.5.5, 15.5.6: routing.
      Case("UnknownPath404", "RFC 9110 15.5.5", "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n", {404},
           kOpen),
      Case("WrongMethod405WithAllow", "RFC 9110 15.5.6", "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n",
           {Reply(405).Has("allow")}, kOpen),
      Case("OptionsAsterisk", "RFC 9112 3.2.4", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
           {Reply(204).Has("allow")}, kOpen),

      // RFC 9112 3.2: Host.
      Case("MissingHost", "RFC 9112 3.2", "GET / HTTP/1.1\r\n\r\n", {400}, kClosed),
      Case("Http10WithoutHost", "RFC 9112 3.2", "GET /users/9 HTTP/1.0\r\n\r\n", {Ok("user 9")},
           kClosed),
      Case("TwoHostFields", "RFC 9112 3.2", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", {400},
           kClosed),
      Case("HostWithSpace", "RFC 9112 3.2", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", {400}, kClosed),
      Case("HostWithSlash", "RFC 9112 3.2", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", {400}, kClosed),
      Case("HostList", "RFC 9112 3.2", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", {400}, kClosed),
      Case("HostWithUserinfo", "RFC 9112 3.2", "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n", {400},
           kClosed),
      Case("HostWithBadPort", "RFC 9112 3.2", "GET / HTTP/1.1\r\nHost: a:xx\r\n\r\n", {400},
           kClosed),

      // RFC 9112 2.2, 5, RFC 9110 5.1: the header section's syntax.
      Case("WhitespaceBeforeColon", "RFC 9112 5.1", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", {400},
           kClosed),
      Case("WhitespaceBeforeColonOtherField", "RFC 9112 5.1",
           "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", {400}, kClosed),
      Case("EmptyFieldName", "RFC 9110 5.1", "GET / HTTP/1.1\r\nHost: a\r\n: y\r\n\r\n", {400},
           kClosed),
      Case("ObsFoldSpace", "RFC 9112 5.2", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
           {400}, kClosed),
      Case("ObsFoldTab", "RFC 9112 5.2", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n",
           {400}, kClosed),
      Case("ObsFoldTransferEncoding", "RFC 9112 5.2",
           Post("Transfer-Encoding:\r\n chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), {400}, kClosed),
      Case("WhitespaceBeforeFirstField", "RFC 9112 2.2",
           "GET / HTTP/1.1\r\n X-A: b\r\nHost: a\r\n\r\n", {400}, kClosed),
      Case("WhitespaceBeforeFirstFieldHost", "RFC 9112 2.2", "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
           {400}, kClosed),
      Case("BareLfAfterRequestLine", "RFC 9112 2.2", "GET / HTTP/1.1\nHost: a\r\n\r\n", {400},
           kClosed),
      Case("BareLfBetweenFields", "RFC 9112 2.2", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n",
           {400}, kClosed),
      Case("BareLfEndingSection", "RFC 9112 2.2", "GET / HTTP/1.1\r\nHost: a\r\n\n", {400},
           kClosed),
      Case("BareLfsEndingSection", "RFC 9112 2.2", "GET / HTTP/1.1\r\nHost: a\n\n", {400}, kClosed),
      Case("BareCrInFieldValue", "RFC 9112 2.2", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
           {400}, kClosed),
      Case("BareCrInConnectionValue", "RFC 9112 2.2",
           "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\rX\r\n\r\n", {400}, kClosed),
      Case("CrNotFollowedByLfEndingSection", "RFC 9112 2.2",
           "GET / HTTP/1.1\r\nHost: a\r\n\rX" + smuggled, {400}, kClosed),
      Case("HeaderSectionTooLarge",
           "RFC 9110 5.4",  // 431: RFC 6585 5
           "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(17000, 'b') + "\r\n\r\n", {431},
           kClosed),

      // RFC 9112 6: message body length.
      Case("ContentLengthAndTransferEncoding", "RFC 9112 6.1",
           Post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), {400},
           kClosed),
      Case("TransferEncodingAndContentLength", "RFC 9112 6.1",
           Post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), {400},
           kClosed),
      Case("TwoDifferentContentLengths", "RFC 9112 6.3",
           Post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), {400}, kClosed),
      Case("NonNumericContentLength", "RFC 9112 6.3", Post("Content-Length: abc\r\n", "abc"), {400},
           kClosed),
      Case("NegativeContentLength", "RFC 9112 6.3", Post("Content-Length: -1\r\n", "a"), {400},
           kClosed),
      Case("BodyOverLimit", "RFC 9110 15.5.14", Post("Content-Length: 2000000\r\n", ""), {413},
           kClosed),

      // RFC 9112 6.1, 6.3, 7: Transfer-Encoding.
      Case("TransferEncodingGzipOnly", "RFC 9112 6.3", Post("Transfer-Encoding: gzip\r\n", "abc"),
           {400}, kClosed),
      Case("TransferEncodingChunkedNotLast", "RFC 9112 6.3",
           Post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), {400}, kClosed),
      Case("TransferEncodingChunkedTwice", "RFC 9112 7",
           Post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), {400}, kClosed),
      Case("TwoTransferEncodingFieldsChunked", "RFC 9112 7",
           Post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), {400},
           kClosed),
      Case("TransferEncodingUnimplementedCoding", "RFC 9112 6.1",
           Post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), {501}, kClosed),
      Case("TransferEncodingInHttp10", "RFC 9112 6.1",
           "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
           {400}, kClosed),

      // RFC 9112 7.1: chunked syntax.
      Case("BytesAfterChunkData", "RFC 9112 7.1", Chunked("3\r\nabcXY0\r\n\r\n"), {400}, kClosed),
      Case("InvalidChunkSize", "RFC 9112 7.1", Chunked("zz\r\nhello\r\n0\r\n\r\n"), {400}, kClosed),
      Case("CrNotFollowedByLfEndingTrailer", "RFC 9112 7.1",
           Chunked("5\r\nhello\r\n0\r\n\rX" + smuggled), {400}, kClosed),

      // RFC 9112 3, 3.2: request-line and request-target.
      Case("TargetWithFragment", "RFC 9112 3.2", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", {400},
           kClosed),
      Case("TargetWithByteOver0x7f", "RFC 9112 3.2", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
           {400}, kClosed),
      Case("AsteriskFormForGet", "RFC 9112 3.2.4", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", {400},
           kClosed),
      Case("TargetTooLong", "RFC 9112 3",
           "GET /" + std::string(9000, 't') + " HTTP/1.1\r\nHost: a\r\n\r\n", {414}, kClosed),
      Case("Connect501", "RFC 9110 9.3.6", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", {501},
           kClosed),
      Case("UnknownMethod", "RFC 9110 9.1", "BREW / HTTP/1.1\r\nHost: a\r\n\r\n", {501}, kClosed),
      Case("LowerCaseMethod", "RFC 9110 9.1", "get / HTTP/1.1\r\nHost: a\r\n\r\n", {501}, kClosed),
      Case("MethodNotAToken", "RFC 9110 9.1", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", {400}, kClosed),

      // RFC 9112 2.3, RFC 9110 6.2: HTTP-version.
      Case("Http20", "RFC 9112 2.3", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", {505}, kClosed),
      Case("Http30", "RFC 9112 2.3", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", {505}, kClosed),
      Case("MalformedVersionLetter", "RFC 9112 2.3", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", {400},
           kClosed),
      Case("MalformedVersionNoDot", "RFC 9112 2.3", "GET / HTTP/11\r\nHost: a\r\n\r\n", {400},
           kClosed),
  };
}

App MakeApp(HttpOptions http) {
  App app(http);
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
  app.Get("/users/:id", [](const Request& req, Response& res) {
    res.Send("user " + std::string(req.Param("id")));
  });
  app.Post("/echo", [](const Request& req, Response& res) {
    std::string_view type = req.Header("content-type");
    res.Type(type.empty() ? "application/octet-stream" : type).Send(req.body());
  });
  return app;
}

// Each row once per backend.
class Rfc9112Test : public ::testing::TestWithParam<std::tuple<BackendKind, Row>> {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(percore::testing::ServeLocal(MakeApp(HttpOptions()), backend(), {},
                                                         /*start=*/true, &engine_, &port_));
  }
  void TearDown() override { percore::testing::StopLocal(&engine_); }

  BackendKind backend() const { return std::get<0>(GetParam()); }
  const Row& row() const { return std::get<1>(GetParam()); }

  std::unique_ptr<Engine> engine_;
  int port_ = 0;
};

TEST_P(Rfc9112Test, Row) {
  const Row& r = row();
  SCOPED_TRACE(r.section + ": \"" + Printable(r.request) + "\"");
  Socket socket(ConnectLocal(port_));
  ASSERT_TRUE(socket.ok()) << "connect to port " << port_ << ": " << strerror(errno);
  // Where the server answers before reading everything and closes, a send may fail; what was
  // answered is what counts then.
  const bool sent = SendAll(socket.fd(), r.request);
  if (r.after == After::kOpen) {
    ASSERT_TRUE(sent) << strerror(errno);
  }

  std::string buffer;
  const auto deadline = Clock::now() + kReadTimeout;
  for (size_t i = 0; i < r.replies.size(); ++i) {
    SCOPED_TRACE("response " + std::to_string(i));
    std::string error;
    std::optional<HttpResponse> response =
        ReadReply(socket.fd(), buffer, r.replies[i].head, deadline, &error);
    ASSERT_TRUE(response.has_value()) << "expected status " << r.replies[i].status << ", got "
                                      << error << " after \"" << Printable(buffer) << "\"";
    ExpectReply(*response, r.replies[i], i + 1 == r.replies.size(), r.after);
    if (i == 0 && !r.then.empty()) {
      ASSERT_TRUE(SendAll(socket.fd(), r.then)) << strerror(errno);
    }
  }

  if (r.after == After::kClosed) {
    percore::testing::ReadToEndResult rest = ReadToEnd(socket.fd(), kReadTimeout);
    EXPECT_EQ(rest.end, StreamEnd::kClosed)
        << (rest.end == StreamEnd::kReset ? "reset by the server instead of a FIN"
                                          : "the server kept the connection open");
    EXPECT_EQ(Printable(buffer + rest.data), "") << "bytes after the expected responses";
    return;
  }
  EXPECT_EQ(Printable(buffer), "") << "bytes after the expected responses";
  ASSERT_TRUE(SendAll(socket.fd(), kFollowUp)) << strerror(errno);
  std::string error;
  std::optional<HttpResponse> follow_up =
      ReadReply(socket.fd(), buffer, false, Clock::now() + kReadTimeout, &error);
  ASSERT_TRUE(follow_up.has_value()) << "the follow-up GET / was not answered: " << error;
  EXPECT_EQ(follow_up->status, 200) << "the follow-up GET /";
  EXPECT_EQ(follow_up->body, kHello) << "the follow-up GET /";
  EXPECT_EQ(Printable(buffer), "") << "bytes after the follow-up's response";
}

std::string RowTestName(const ::testing::TestParamInfo<Rfc9112Test::ParamType>& info) {
  return std::get<1>(info.param).name +
         (std::get<0>(info.param) == BackendKind::kEpoll ? "_Epoll" : "_IoUring");
}

INSTANTIATE_TEST_SUITE_P(Backends, Rfc9112Test,
                         ::testing::Combine(percore::testing::AllBackends(),
                                            ::testing::ValuesIn(Rows())),
                         RowTestName);

}  // namespace
}  // namespace percore::testing
