// The reused-buffer rule (percore/buffers.h) the loop's outputs and the HTTP state pool share.
#include "percore/buffers.h"

#include <string>

#include "gtest/gtest.h"

namespace percore {
namespace {

TEST(KeepSmallTest, ASmallBufferKeepsItsMemory) {
  std::string s(kMaxKeptCapacity, 'x');
  s.clear();
  const size_t capacity = s.capacity();
  EXPECT_EQ(KeepSmall(s), 0u);
  EXPECT_EQ(s.capacity(), capacity);
}

TEST(KeepSmallTest, ALargeBufferIsGivenBackAndCounted) {
  std::string s(kMaxKeptCapacity + 1, 'x');
  const size_t capacity = s.capacity();
  EXPECT_EQ(KeepSmall(s), capacity);
  EXPECT_TRUE(s.empty());
  EXPECT_LT(s.capacity(), 64u) << "back to the short-string buffer";
}

}  // namespace
}  // namespace percore
