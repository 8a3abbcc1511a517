// LtWorkspaces (api.h) on the GPU, with a memset and a copy standing in for a cuBLASLt call's
// counter memset and GEMM: captured, every call gets a region of its own, the memsets after the
// first are removed, and in every replay each "GEMM" still finds its region zeroed.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "backends/cuda/api.h"
#include "backends/cuda/device.h"

namespace kiln::cuda {
namespace {

// `calls` stand-in calls on `stream`, each after a memset into `other` (the kernel before it):
// call i zeroes 4 bytes of its workspace and copies them to out[i]. Returns the workspaces.
Result<std::vector<LtWorkspaces::Call>> enqueue_calls(LtWorkspaces& lt, void* stream, void* other, void* shared,
                                                      uint32_t* out, int calls) {
  std::vector<LtWorkspaces::Call> got;
  for (int i = 0; i < calls; ++i) {
    KILN_RETURN_IF_ERROR(memset_async(other, i, 256, stream));
    LtWorkspaces::Call c = lt.begin(stream, 100, shared);
    KILN_RETURN_IF_ERROR(memset_async(static_cast<char*>(c.workspace) + 8, 0, 4, stream));
    KILN_RETURN_IF_ERROR(
        copy_async(out + i, static_cast<char*>(c.workspace) + 8, 4, CopyKind::kDeviceToDevice, stream));
    KILN_RETURN_IF_ERROR(lt.end(c, stream));
    got.push_back(c);
  }
  return got;
}

TEST(LtWorkspaces, CapturedMemsetsFoldIntoOneAndEveryRegionIsZeroEachReplay) {
  if (device_count() == 0) GTEST_SKIP() << "no GPU: " << no_device_reason();
  ASSERT_TRUE(set_device(0).ok());
  constexpr int kCalls = 24, kFit = 20;  // regions of 256 bytes: the last 4 calls do not fit
  auto lt = LtWorkspaces::create(kFit * 256);
  ASSERT_TRUE(lt.ok()) << lt.status().to_string();
  void* stream = nullptr;
  ASSERT_TRUE(stream_create(&stream).ok());
  auto other = device_alloc(256, "other");
  auto shared = device_alloc(256, "shared");
  auto out = device_alloc(kCalls * 4, "out");
  ASSERT_TRUE(other.ok() && shared.ok() && out.ok());
  auto* o = static_cast<uint32_t*>(out->get());

  // Eagerly (no capture) every call gets the shared workspace.
  auto eager = enqueue_calls(**lt, stream, other->get(), shared->get(), o, 3);
  ASSERT_TRUE(eager.ok()) << eager.status().to_string();
  for (const auto& c : *eager) EXPECT_EQ(c.workspace, shared->get());
  ASSERT_TRUE(stream_synchronize(stream).ok());

  Graph g;
  std::vector<LtWorkspaces::Call> calls;
  {
    std::shared_lock<std::shared_mutex> capturing(capture_lock());
    ASSERT_TRUE(Graph::begin_capture(stream).ok());
    auto r = enqueue_calls(**lt, stream, other->get(), shared->get(), o, kCalls);
    Status e = g.end_capture(stream, lt->get());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_TRUE(e.ok()) << e.to_string();
    calls = *r;
  }
  // A call asking more than kMaxRegion (split-K partial sums) keeps the shared workspace.
  {
    std::shared_lock<std::shared_mutex> capturing(capture_lock());
    ASSERT_TRUE(Graph::begin_capture(stream).ok());
    ASSERT_TRUE(memset_async(other->get(), 0, 4, stream).ok());
    LtWorkspaces::Call big = (*lt)->begin(stream, LtWorkspaces::kMaxRegion + 1, shared->get());
    Graph unused;
    ASSERT_TRUE(unused.end_capture(stream, lt->get()).ok());
    EXPECT_FALSE(big.region);
    EXPECT_EQ(big.workspace, shared->get());
  }
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(calls[i].region, i < kFit) << i;
    if (i > 0 && i < kFit) {
      EXPECT_EQ(static_cast<char*>(calls[i].workspace) - static_cast<char*>(calls[i - 1].workspace), 256) << i;
    }
  }
  EXPECT_EQ((*lt)->removed(), static_cast<size_t>(kFit - 1));
  for (int rep = 0; rep < 10; ++rep) {
    // Dirty every workspace and the outputs; the replay must zero what each call reads.
    ASSERT_TRUE(memset_async(calls[0].workspace, 0xA5, kFit * 256, stream).ok());
    ASSERT_TRUE(memset_async(shared->get(), 0x5A, 256, stream).ok());
    ASSERT_TRUE(memset_async(o, 0x77, kCalls * 4, stream).ok());
    ASSERT_TRUE(g.launch(stream).ok());
    std::vector<uint32_t> got(kCalls);
    ASSERT_TRUE(copy_async(got.data(), o, kCalls * 4, CopyKind::kDeviceToHost, stream).ok());
    ASSERT_TRUE(stream_synchronize(stream).ok());
    for (int i = 0; i < kCalls; ++i) ASSERT_EQ(got[i], 0u) << "call " << i << ", replay " << rep;
  }
  stream_destroy(stream);
}

}  // namespace
}  // namespace kiln::cuda
