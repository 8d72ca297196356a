// Publish/subscribe across loops (App::Publish). Subscriptions live with their loop (WsTopics);
// the hub, shared by an App and every loop serving it, knows each loop's topics and how to
// reach its thread. A message is framed once, and that one copy is shared by every loop: each
// gets a job (WorkerRef::Post) that hands it to its own subscribers, so a loop's subscribers
// receive one publisher's messages in the order they were published (a loop's jobs run in the
// order they were posted). On the publisher's own loop, the message goes out at once.
#ifndef PERCORE_HTTP_SRC_WS_HUB_H_
#define PERCORE_HTTP_SRC_WS_HUB_H_

#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "percore/http/websocket.h"
#include "percore/protocol.h"

namespace percore::http {

class WsTopics;

namespace internal {

class WsHub {
 public:
  // Loop `id` (a restarted loop takes its predecessor's place) delivers with `topics`, on its
  // thread. Thread-safe.
  void Attach(int id, WorkerRef worker, std::weak_ptr<WsTopics> topics);
  // Thread-safe.
  void Publish(std::string_view topic, std::string_view message, WsOpcode opcode);

 private:
  struct Loop {
    WorkerRef worker;
    std::weak_ptr<WsTopics> topics;
  };
  std::mutex mu_;
  std::vector<Loop> loops_;  // by loop id
};

}  // namespace internal
}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_WS_HUB_H_
