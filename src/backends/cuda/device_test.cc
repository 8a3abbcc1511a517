#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "backends/cuda/device.h"

namespace kiln::cuda {

TEST(CudaDevice, SaxpyMatchesHost) {
  if (device_count() == 0) GTEST_SKIP() << "no GPU: " << no_device_reason();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> x(1000), y(1000), ref(1000);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = u(rng);
    y[i] = u(rng);
    ref[i] = 1.5f * x[i] + y[i];
  }
  ASSERT_TRUE(saxpy_host(0, 1.5f, x.data(), y.data(), x.size()).ok());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-5f);
}

TEST(CudaDevice, InfoNamesComputeCapability) {
  if (device_count() == 0) GTEST_SKIP() << "no GPU: " << no_device_reason();
  auto info = device_info(0);
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  EXPECT_GE(info->cc_major, 5);
  EXPECT_FALSE(info->name.empty());
}

}  // namespace kiln::cuda
