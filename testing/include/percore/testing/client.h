// percore/testing/client.h — an App's answers without sockets, for unit tests.
//
//   percore::http::App app = MakeMyApp();
//   percore::testing::TestClient client(app);
//   percore::testing::TestResponse r = client.Get("/users/7");
//   EXPECT_EQ(r.status, 200);
//   EXPECT_EQ(r.Header("content-type"), "application/json");
//   r = client.Fetch("POST", "/users", {{"Content-Type", "application/json"}}, R"({"name":"a"})");
//
// A streamed or long-lived answer (Response::Write, an event stream) is read piece by
// piece as the server writes it, and may be left early as a browser would:
//
//   percore::testing::TestStream events = client.Open("GET", "/events");
//   EXPECT_EQ(events.head().status, 200);
//   EXPECT_EQ(events.Next(), "data: 1\n\n");  // runs the loop until a piece comes
//   EXPECT_EQ(events.Next(), "data: 2\n\n");
//   events.Close();  // the client goes: the server's OnAborted runs
//
// The request goes through the same parser, middleware, router and response writer as on a
// real connection, on one loop run by the calling thread: deferred answers, timers and jobs
// posted from other threads work (the client runs the loop until the answer is complete).
// Depends on no test framework. Owning-thread-only.
#ifndef PERCORE_TESTING_CLIENT_H_
#define PERCORE_TESTING_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"

namespace percore::testing {

// One parsed HTTP/1.1 response.
struct TestResponse {
  int status = 0;                                   // 0: no complete answer (see `error`)
  std::multimap<std::string, std::string> headers;  // names lower-cased, in order per name
  std::string body;                                 // de-chunked
  bool closed = false;                              // the server closed the connection after it
  std::string error;                                // why there is no answer
  // The first field named `name` (any case); empty if absent.
  std::string Header(std::string_view name) const;
  // Every field named `name` (Set-Cookie), in order.
  std::vector<std::string> Headers(std::string_view name) const;
};

// Parses one response at the start of `data`: nullopt until it is complete (a body that ends
// with the connection is complete only with `closed`). `head`: the answer to a HEAD request
// (no body whatever Content-Length says). *consumed is its length.
std::optional<TestResponse> ParseResponse(std::string_view data, size_t* consumed,
                                          bool head = false, bool closed = false);

using Fields = std::vector<std::pair<std::string, std::string>>;

class TestClient;

// An answer read as it arrives (TestClient::Open): the head first, then the body a piece at a
// time. Uses its client's connection, which takes no other request until the body has ended
// or the stream is closed; must not outlive the client. Owning-thread-only.
class TestStream {
 public:
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  // Close(), unless the body has ended.
  ~TestStream();

  // The status and header fields (`body` stays empty); status 0 and `error` set if no head came
  // within the client's timeout, `error` also when the body could not be read to its end.
  // `closed` once the body has ended: the server closed the connection after it.
  const TestResponse& head() const { return head_; }
  // The body bytes that arrived since the last call, de-chunked (writes the server made between
  // two calls come together): runs the loop until some come, the body ends or `timeout`
  // passes (the client's Options::timeout if not given). Empty if none came: see ended().
  std::string Next();
  std::string Next(absl::Duration timeout);
  // Whether the body is complete (last chunk, Content-Length reached, or, without either, the
  // server closed the connection), or cannot be (head().error says why, or Close() was called).
  bool ended() const { return ended_; }
  // Leaves before the end: the connection is closed and destroyed at once, so the server sees
  // its client go (a deferred answer's OnAborted runs, its Write() returns false). The client's
  // next request opens a new connection.
  void Close();

 private:
  friend class TestClient;
  TestStream(TestClient& client, std::string_view request, bool head_request);
  // Takes what the server wrote into the client's buffer.
  void Receive();
  // Parses the head out of the buffer; whether it is complete.
  bool ParseHead(bool head_request);
  // Moves the body bytes in the buffer to `piece`, as far as they go.
  void Decode(std::string* piece);
  void Fail(std::string why);
  // The body ended: the connection goes back to the client (or, closed, is released).
  void Finish();

  enum class Framing { kNone, kLength, kChunked, kUntilClose };
  enum class Chunk { kSize, kData, kDataEnd, kTrailer };
  TestClient* client_;
  TestResponse head_;
  Framing framing_ = Framing::kNone;
  Chunk chunk_ = Chunk::kSize;
  uint64_t left_ = 0;  // of the Content-Length, or of the current chunk
  bool closed_ = false;
  bool ended_ = false;
};

// A client of one App on one keep-alive connection (a new one once the server closed it).
class TestClient {
 public:
  struct Options {
    // How long a request may wait for its answer (deferred ones).
    absl::Duration timeout = absl::Seconds(10);
    // A Host field is added to requests that have none.
    std::string host = "test";
  };
  // Serves a copy of `app`'s routes and options as they are now (routes added later are not
  // seen). Throws std::invalid_argument if the App's options are invalid.
  explicit TestClient(const http::App& app);
  TestClient(const http::App& app, Options options);
  ~TestClient();

  TestResponse Get(std::string_view target, const Fields& fields = {});
  // Sends `method target HTTP/1.1`, the fields (and Content-Length for a body) and the body.
  TestResponse Fetch(std::string_view method, std::string_view target, const Fields& fields = {},
                     std::string_view body = {});
  // Sends `bytes` as they are (one read) and returns the first answer; for requests the
  // helpers above cannot write (malformed ones, pipelining).
  TestResponse Raw(std::string_view bytes, bool head = false);
  // Sends the request as Fetch() does and returns once the answer's head has arrived (or the
  // timeout passed), for its body to be read with TestStream::Next(). Throws std::logic_error,
  // as every request does, while another stream of this client is open.
  TestStream Open(std::string_view method, std::string_view target, const Fields& fields = {},
                  std::string_view body = {});
  // The loop, to run timers and posted jobs between requests.
  LoopHarness& harness() { return *harness_; }

 private:
  friend class TestStream;
  std::string Request(std::string_view method, std::string_view target, const Fields& fields,
                      std::string_view body) const;
  // Throws std::logic_error while a stream is open; then connects if needed and hands `bytes`
  // to the server. False if no connection could be made.
  bool Send(std::string_view bytes);
  TestResponse Read(bool head);
  // The connection went: the next request makes a new one.
  void Disconnect();

  Options options_;
  std::unique_ptr<LoopHarness> harness_;
  Connection* conn_ = nullptr;
  std::string received_;          // bytes of answers not returned yet
  TestStream* stream_ = nullptr;  // the stream reading the connection, if one is
};

}  // namespace percore::testing

#endif  // PERCORE_TESTING_CLIENT_H_
