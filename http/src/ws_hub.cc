#include "ws_hub.h"

#include <string>

#include "ws_frame.h"
#include "ws_session.h"

namespace percore::http::internal {
namespace {

// One published message, shared by the jobs of every loop.
struct Published {
  std::string topic;
  std::string frame;  // header and payload, as every subscriber receives it
  size_t payload = 0;
};

}  // namespace

std::shared_ptr<WsHub> NewWsHub() { return std::make_shared<WsHub>(); }

void WsHub::Attach(int id, WorkerRef worker, std::weak_ptr<WsTopics> topics) {
  std::lock_guard<std::mutex> lock(mu_);
  if (loops_.size() <= static_cast<size_t>(id)) loops_.resize(static_cast<size_t>(id) + 1);
  loops_[static_cast<size_t>(id)] = Loop{std::move(worker), std::move(topics)};
}

void WsHub::Publish(std::string_view topic, std::string_view message, WsOpcode opcode) {
  auto published = std::make_shared<Published>();
  published->topic = topic;
  char header[10];
  const size_t size =
      ws::WriteFrameHeader(header, static_cast<ws::Opcode>(opcode), true, false, message.size());
  published->frame.reserve(size + message.size());
  published->frame.append(header, size).append(message);
  published->payload = message.size();
  std::vector<Loop> loops;
  {
    std::lock_guard<std::mutex> lock(mu_);
    loops = loops_;
  }
  for (Loop& loop : loops) {
    if (loop.worker.OnWorkerThread()) {
      if (auto topics = loop.topics.lock()) {
        topics->Deliver(published->topic, published->frame, published->payload);
      }
      continue;
    }
    // A loop that has exited refuses the job: its subscribers went with it.
    loop.worker.Post([published, topics = std::move(loop.topics)] {
      if (auto live = topics.lock())
        live->Deliver(published->topic, published->frame, published->payload);
    });
  }
}

}  // namespace percore::http::internal
