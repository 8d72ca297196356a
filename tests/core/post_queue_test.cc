// The queue other threads post jobs through (WorkerRef::Post): every job taken once and in each
// poster's order, one wake of the loop per batch, nothing taken after Close().
#include "post_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace percore {
namespace {

TEST(PostQueueTest, JobsFromManyThreadsAreEachTakenOnceInTheirPostersOrder) {
  PostQueue queue(-1);
  constexpr int kThreads = 4, kJobs = 2000;
  std::vector<std::vector<int>> seen(kThreads);
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&queue, &seen, t] {
      for (int i = 0; i < kJobs; ++i) {
        absl::AnyInvocable<void()> job = [&seen, t, i] { seen[t].push_back(i); };
        ASSERT_TRUE(queue.Push(job));
      }
    });
  }
  // The owner takes batches while the posters post, as a loop does each iteration.
  size_t taken = 0;
  std::vector<absl::AnyInvocable<void()>> batch;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (taken < kThreads * kJobs && std::chrono::steady_clock::now() < deadline) {
    if (!queue.HasJobs()) {
      std::this_thread::yield();
      continue;
    }
    queue.TakeAll(&batch);
    for (auto& job : batch) job();
    taken += batch.size();
    batch.clear();
  }
  for (std::thread& poster : posters) poster.join();
  ASSERT_EQ(taken, static_cast<size_t>(kThreads * kJobs));
  EXPECT_FALSE(queue.HasJobs());
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kJobs)) << "poster " << t;
    for (int i = 0; i < kJobs; ++i) ASSERT_EQ(seen[t][i], i) << "poster " << t;
  }
}

TEST(PostQueueTest, TheFirstJobOfABatchWakesTheLoopOnce) {
  const int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(wake, 0);
  PostQueue queue(wake);
  auto wakes = [wake] {
    uint64_t count = 0;
    return read(wake, &count, sizeof(count)) == sizeof(count) ? count : 0;
  };
  for (int i = 0; i < 3; ++i) {
    absl::AnyInvocable<void()> job = [] {};
    ASSERT_TRUE(queue.Push(job));
  }
  EXPECT_EQ(wakes(), 1u);
  std::vector<absl::AnyInvocable<void()>> batch;
  queue.TakeAll(&batch);
  EXPECT_EQ(batch.size(), 3u);
  absl::AnyInvocable<void()> next = [] {};
  ASSERT_TRUE(queue.Push(next));
  EXPECT_EQ(wakes(), 1u) << "a new batch wakes again";
  close(wake);
}

TEST(PostQueueTest, CloseReturnsWhatWillNeverRunAndRefusesTheRest) {
  PostQueue queue(-1);
  int ran = 0;
  absl::AnyInvocable<void()> first = [&ran] { ++ran; };
  ASSERT_TRUE(queue.Push(first));
  std::vector<absl::AnyInvocable<void()>> left = queue.Close();
  EXPECT_EQ(left.size(), 1u);
  EXPECT_FALSE(queue.HasJobs());
  absl::AnyInvocable<void()> late = [&ran] { ++ran; };
  EXPECT_FALSE(queue.Push(late));
  ASSERT_TRUE(late) << "a refused job stays with its caller, to be destroyed there";
  std::vector<absl::AnyInvocable<void()>> batch;
  queue.TakeAll(&batch);
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(ran, 0);
}

}  // namespace
}  // namespace percore
