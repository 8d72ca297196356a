// An answer's place in its connection's queue (Slot), and the state of an answer given after its
// handler returned (PendingResponse, Response::Defer): owned by the handle, pointed to by its
// stream (the session and the request's slot) while the answer is due. Either end lets go of the
// other: the stream when the answer is complete or the connection goes (the handle then does
// nothing), the handle when it is dropped (the stream answers 500).
#ifndef PERCORE_HTTP_SRC_PENDING_H_
#define PERCORE_HTTP_SRC_PENDING_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "gzip.h"
#include "http_stream.h"
#include "percore/protocol.h"
#include "response_core.h"

namespace percore::http {

// The Response::OnFinish callbacks of one request.
struct FinishHooks {
  std::vector<absl::AnyInvocable<void(int)>> fns;
  int status = -1;  // once finished: the status, or 0 if the connection went first
  // Runs them once, with `status`; a callback added afterwards runs at once.
  void Run(int finished_status);
  void Add(absl::AnyInvocable<void(int)> fn);
};

struct PendingResponse;

// What a deferred answer that will never be given leaves to run: taken out of it first, so that
// running it (which may drop the last handle to the answer) touches nothing of the answer.
struct Abandoned {
  FinishHooks finish;
  absl::AnyInvocable<void()> aborted;
  absl::AnyInvocable<void(Response&)> writable;
  absl::AnyInvocable<void(Response&)> closing;
  absl::AnyInvocable<void(Response&, std::string_view, bool)> body;
  std::shared_ptr<PendingResponse> keep;
  // OnFinish's callbacks with 0, then OnAborted's; the rest is dropped with this.
  void Run();
};

// One request's place in its connection's queue of answers, from the moment an answer ahead of
// it is still to come (a deferred one): its handler runs at once and writes here, and what it
// wrote goes out when every answer ahead of it has. The head of the queue writes straight to
// the connection's output; so does every request while the queue is empty (no slot at all).
struct Slot {
  Slot() = default;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot();

  PendingResponse* pending = nullptr;  // its deferred answer, until that is complete
  std::string bytes;                   // what it wrote while a slot ahead of it was unanswered
  int fd = -1;                         // a file range after `bytes` (SendFile), owned here
  uint64_t offset = 0;
  uint64_t length = 0;
  FinishHooks finish;
  std::string log_line;  // "<method> <path>" for the request log
  int status = 0;
  bool done = false;   // complete: written out once it reaches the head
  bool close = false;  // the connection closes after it
};

struct PendingResponse : std::enable_shared_from_this<PendingResponse> {
  explicit PendingResponse(const ResponseCore& r) : response(r) {
    response.fields_ = &fields;
    response.finish_ = &finish;
  }
  // Dropped unanswered: the stream answers 500 (HttpStream::Dropped).
  ~PendingResponse() {
    if (stream != nullptr) stream->Dropped(*this);
  }
  // Detaches the answer from its stream and slot for good (aborted), its callbacks taken out.
  Abandoned Abandon();
  // Whether the answer has a body at all (not for HEAD, 204, 304).
  bool HasBody() const {
    return !response.head_ && response.status_ != 204 && response.status_ != 304;
  }
  // The first Response::Write(), once the stream has pointed the answer at its output: the
  // head is written. gzip is a stage of the body: with Compress(), a streamed body of a type
  // worth it goes through a deflater of its own, and its length is no longer known ahead.
  // Without a body, the pieces are not sent (`length` 0).
  ResponseCore::Head StartStream();
  // Lets go of itself once none of the three callbacks waits: a reader that ends without an
  // answer leaves the answer to its handles, and to a 500 when none is left. The caller holds a
  // handle meanwhile, so that this never ends the answer under it.
  void UnkeepIfIdle() {
    if (!on_body && !on_writable && !on_closing) keep.reset();
  }
  PendingResponse(const PendingResponse&) = delete;
  PendingResponse& operator=(const PendingResponse&) = delete;

  HttpStream* stream = nullptr;  // null once answered or the connection went
  Connection* conn = nullptr;    // valid while `stream` is set
  Slot* slot = nullptr;          // its place in the queue: valid while `stream` is set
  ResponseCore response;         // writes its fields to `fields`; its output is set at Send
  std::string fields;
  FinishHooks finish;
  std::string log_line;  // "<method> <path>" for the request log
  absl::AnyInvocable<void()> on_aborted;
  absl::AnyInvocable<void(Response&)> on_closing;  // run by HttpSession::OnDrain
  absl::AnyInvocable<void(Response&)> on_writable;
  absl::AnyInvocable<void(Response&, std::string_view chunk, bool last)> on_body;
  // Itself, while one of the three waits: they act on the answer through the handle they are
  // given, so no handle of the user's need outlive the handler. Let go of (a cycle no more)
  // once none waits, or by FinishPending and Abandon; then the last handle ends it.
  std::shared_ptr<PendingResponse> keep;
  bool body_paused = false;  // Response::PauseBody()
  WorkerRef worker;
  std::optional<uint64_t> length;  // Response::Length()
  uint64_t written = 0;            // body bytes streamed so far
  bool streaming = false;          // the head went out with the first Write()
  bool chunked = false;
  bool aborted = false;              // the connection went before the answer was complete
  std::unique_ptr<GzipStream> gzip;  // Compress(): the streamed body's deflater
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_PENDING_H_
