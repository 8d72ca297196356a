// Streamed request bodies (RouteOptions::stream_body) read by deferred answers, route body
// limits, and files sent without a copy (Response::SendFile), in-process on 127.0.0.1, once per
// backend (deferred_suite.h).
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "deferred_suite.h"
#include "gtest/gtest.h"
#include "support/backends.h"
#include "support/test_client.h"

namespace percore::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Reads exactly `n` bytes, or what came before the peer closed or `timeout` passed.
std::string ReadBytes(int fd, size_t n, milliseconds timeout) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  while (out.size() < n && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    char buf[256];
    const ssize_t got = read(fd, buf, std::min(sizeof(buf), n - out.size()));
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

// A body of `n` bytes that is not all alike, and what the upload routes answer for it.
std::string Body(size_t n) {
  std::string body(n, '\0');
  for (size_t i = 0; i < n; ++i) body[i] = static_cast<char>('a' + (i * 7) % 26);
  return body;
}

std::string CountOf(std::string_view body) {
  uint64_t sum = 0;
  for (char c : body) sum += static_cast<unsigned char>(c);
  return std::to_string(body.size()) + " " + std::to_string(sum);
}

std::string Post(std::string_view path, std::string_view body, std::string_view extra = "") {
  return "POST " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n" + std::string(extra) +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

// `body` in chunks of up to `piece` bytes.
std::string Chunked(std::string_view body, size_t piece) {
  std::string out;
  for (size_t i = 0; i < body.size(); i += piece) {
    const std::string_view part = body.substr(i, piece);
    char size[20];
    out.append(size,
               static_cast<size_t>(std::snprintf(size, sizeof(size), "%zx\r\n", part.size())));
    out.append(part);
    out.append("\r\n");
  }
  return out + "0\r\n\r\n";
}

TEST_P(DeferredTest, StreamedUploadReachesItsReaderWholeAndTheConnectionGoesOn) {
  Socket s = Connect();
  std::string buffer;
  const std::string body = Body(8 << 20);
  // Sent from another thread: the server reads while the client writes.
  std::thread writer([&] {
    SendAll(s.fd(), Post("/upload", body, "X-Token: ok\r\n"));
    SendAll(s.fd(),
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nX-Token: ok\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" +
                Chunked(body.substr(0, 3 << 20), 100000) + Get("/"));
  });
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, CountOf(body));
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, CountOf(body.substr(0, 3 << 20)));
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  writer.join();
  EXPECT_EQ(aborted_.load(), 0);
}

TEST_P(DeferredTest, PausedReaderGetsEveryByteInOrder) {
  Socket s = Connect();
  std::string buffer;
  const std::string body = Body(1 << 20);
  std::thread writer([&] { SendAll(s.fd(), Post("/upload-paced", body) + Get("/")); });
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, CountOf(body));
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  writer.join();
}

TEST_P(DeferredTest, ReaderThatComesLaterGetsWhatArrivedMeanwhileAndThe100ContinueWaitsForIt) {
  Socket s = Connect();
  std::string buffer;
  const std::string small = Body(1000);
  ASSERT_TRUE(SendAll(s.fd(), Post("/upload-later", small)));
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, CountOf(small));
  // Expect: 100-continue: nothing is sent until the reader asks for the body.
  const std::string body = Body(200000);
  const auto start = Clock::now();
  ASSERT_TRUE(SendAll(s.fd(),
                      "POST /upload-later HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                      "Content-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n"));
  const std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
  ASSERT_EQ(ReadBytes(s.fd(), interim.size(), kTimeout), interim);
  EXPECT_GE(Clock::now() - start, milliseconds(25));
  ASSERT_TRUE(SendAll(s.fd(), body));
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, CountOf(body));
}

TEST_P(DeferredTest, UploadRefusedBeforeItsBodyIsSent) {
  // A small body: answered at once, the body read past, and the connection goes on.
  Socket s = Connect();
  std::string buffer;
  ASSERT_TRUE(SendAll(s.fd(), Post("/upload", Body(5000)) + Get("/")));
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->Header("connection"), "");
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");

  // 100 MB announced with "Expect: 100-continue": the 401 comes without "100 Continue", says
  // it closes (more than max_discard_bytes would have to be read past), and the connection
  // ends; the client sends none of the body.
  Socket big = Connect();
  ASSERT_TRUE(SendAll(big.fd(),
                      "POST /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                      "Content-Length: 50000000\r\n\r\n"));
  ReadToEndResult end = ReadToEnd(big.fd(), kTimeout);
  EXPECT_EQ(end.end, StreamEnd::kClosed);
  size_t consumed = 0;
  r = percore::testing::ParseResponse(end.data, &consumed);
  ASSERT_TRUE(r.has_value()) << end.data;
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_EQ(end.data.find("100 Continue"), std::string::npos);

  // A small body announced with "Expect: 100-continue": the client may send it or not after
  // the 401, so the answer closes the connection either way.
  Socket expecting = Connect();
  ASSERT_TRUE(SendAll(expecting.fd(),
                      "POST /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                      "Content-Length: 10\r\n\r\n"));
  end = ReadToEnd(expecting.fd(), kTimeout);
  EXPECT_EQ(end.end, StreamEnd::kClosed);
  r = percore::testing::ParseResponse(end.data, &consumed);
  ASSERT_TRUE(r.has_value()) << end.data;
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->Header("connection"), "close");
}

TEST_P(DeferredTest, AnswerBeforeTheBodyEndsDiscardsTheRest) {
  Socket s = Connect();
  std::string buffer;
  const std::string body = Body(300000);
  std::thread writer([&] { SendAll(s.fd(), Post("/upload-enough", body) + Get("/")); });
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "enough");
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  writer.join();
}

TEST_P(DeferredTest, RouteBodyLimitsAnswer413) {
  // Buffered: refused on its Content-Length.
  std::optional<HttpResponse> r = percore::testing::Fetch(port_, Post("/small", "0123456789A"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  r = percore::testing::Fetch(port_, Post("/small", "0123456789"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "0123456789");
  // Streamed and chunked: refused when the limit is passed, and the reader is told.
  r = percore::testing::Fetch(port_,
                              "POST /small-streamed HTTP/1.1\r\nHost: localhost\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n" +
                                  Chunked(Body(30), 8));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(WaitUntil([this] { return aborted_.load() == 1; }, kTimeout));
  r = percore::testing::Fetch(port_,
                              "POST /small-streamed HTTP/1.1\r\nHost: localhost\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n" +
                                  Chunked(Body(10), 3));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "all of it");
}

std::string FileGet(std::string_view path, uint64_t offset, uint64_t length) {
  return Get(std::string(path) + "?offset=" + std::to_string(offset) +
             "&length=" + std::to_string(length));
}

TEST_P(DeferredTest, FileRangesGoOutWholeAndInOrderWithWhatFollows) {
  Socket s = Connect();
  std::string buffer;
  const uint64_t size = file_content_.size();
  // Pipelined: the whole file, a plain answer, a range from the middle answered later, a range
  // of nothing, and a plain answer again.
  ASSERT_TRUE(SendAll(s.fd(), FileGet("/file", 0, size) + Get("/") +
                                  FileGet("/file-later", 12345, 3 << 20) + FileGet("/file", 7, 0) +
                                  Get("/")));
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Header("content-type"), "application/octet-stream");
  EXPECT_TRUE(r->body == file_content_) << r->body.size();
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->body == file_content_.substr(12345, 3 << 20)) << r->body.size();
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->Header("content-length"), "0");
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  // HEAD: the length, no body, and the connection goes on.
  ASSERT_TRUE(
      SendAll(s.fd(), "HEAD /file?offset=0&length=1000 HTTP/1.1\r\nHost: x\r\n\r\n" + Get("/")));
  // The HEAD answer has Content-Length 1000 and no body: read up to the next answer by hand.
  std::string all = buffer;
  const auto deadline = Clock::now() + kTimeout;
  while (all.find("Hello World!") == std::string::npos && Clock::now() < deadline) {
    all += ReadBytes(s.fd(), 1, milliseconds(100));
  }
  EXPECT_NE(all.find("Content-Length: 1000\r\n"), std::string::npos) << all;
  EXPECT_NE(all.find("\r\n\r\nHTTP/1.1 200 OK\r\n"), std::string::npos) << all;
  EXPECT_NE(all.find("Hello World!"), std::string::npos) << all;
}

TEST_P(DeferredTest, FileShorterThanItsRangeFailsTheConnection) {
  Socket s = Connect();
  const uint64_t size = file_content_.size();
  ASSERT_TRUE(SendAll(s.fd(), FileGet("/file", size - 100, 1000) + Get("/")));
  ReadToEndResult end = ReadToEnd(s.fd(), kTimeout);
  EXPECT_NE(end.end, StreamEnd::kTimeout);
  // The head and the 100 bytes the file had, then the end: never the next answer.
  const size_t body = end.data.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  EXPECT_EQ(end.data.substr(body + 4), file_content_.substr(size - 100));
  EXPECT_EQ(end.data.find("Hello World!"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, DeferredTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore::testing
