// GpuMonitor's summary of samples (random ones, against sums taken here), its one-line
// description, a clean refusal where NVML or the device is missing, and, on a machine with
// a GPU and its driver, real samples while the GPU works.
#include "base/gpu_monitor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>

#include "backends/cuda/api.h"
#include "backends/cuda/device.h"

namespace kiln {
namespace {

TEST(GpuMonitor, SummaryIsTheSamplesMeansExtremesAndShares) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> mhz(1200, 1980), w(100, 700), c(30, 85);
  std::vector<GpuSample> samples(257);
  double sum_mhz = 0, sum_w = 0, lo = 1e9, hi = -1e9;
  int capped = 0, thermal = 0;
  for (auto& s : samples) {
    s.sm_mhz = mhz(rng), s.watts = w(rng), s.celsius = c(rng);
    s.reasons = rng() & 0xff;
    sum_mhz += s.sm_mhz, sum_w += s.watts, lo = std::min(lo, s.celsius), hi = std::max(hi, s.celsius);
    capped += (s.reasons & 0x4) != 0;
    thermal += (s.reasons & 0x60) != 0;
  }
  const GpuState st = summarize_gpu_samples(samples, 700, 12.5);
  EXPECT_EQ(st.samples, 257);
  EXPECT_NEAR(st.sm_mhz_mean, sum_mhz / 257, 1e-9);
  EXPECT_NEAR(st.watts_mean, sum_w / 257, 1e-9);
  EXPECT_EQ(st.celsius_min, lo);
  EXPECT_EQ(st.celsius_max, hi);
  EXPECT_NEAR(st.power_capped_share, capped / 257.0, 1e-12);
  EXPECT_NEAR(st.thermal_share, thermal / 257.0, 1e-12);
  EXPECT_EQ(st.watts_limit, 700);
  EXPECT_EQ(st.energy_j, 12.5);
  EXPECT_GT(capped, 0);
  EXPECT_LT(capped, 257);
}

TEST(GpuMonitor, DescriptionNamesWhatWasSampled) {
  GpuState s = summarize_gpu_samples({{1450, 640, 58, 0x4}, {1470, 650, 66, 0x4}, {1460, 645, 62, 0}}, 700, 3.0);
  EXPECT_EQ(describe_gpu_state(s, 2),
            "1460 MHz, 645 of 700 W, 58-66 C, at the power limit 67% of the time, 1.50 J a run");
  EXPECT_EQ(describe_gpu_state(s, 0), "1460 MHz, 645 of 700 W, 58-66 C, at the power limit 67% of the time");
  s = summarize_gpu_samples({{1980, 150, 40, 0}}, -1, 0.004);
  EXPECT_EQ(describe_gpu_state(s, 1), "1980 MHz, 150 W, 40 C, 4.0 mJ a run");
  s = summarize_gpu_samples({{1980, 150, 40, 0x40}}, -1, -1);
  EXPECT_EQ(describe_gpu_state(s, 5), "1980 MHz, 150 W, 40 C, thermal slowdown 100% of the time");
  EXPECT_EQ(describe_gpu_state(summarize_gpu_samples({}, 700, 1), 1), "no samples");
}

TEST(GpuMonitor, UnknownDeviceIsRefusedWithAReason) {
  std::string why;
  auto m = GpuMonitor::open("0000ffff:ff:1f.0", &why);
  EXPECT_EQ(m, nullptr);
  EXPECT_FALSE(why.empty());
}

TEST(GpuMonitor, SamplesTheGpuWhileItWorks) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  auto dev = cuda::device_info(0);
  ASSERT_TRUE(dev.ok()) << dev.status().message();
  std::string why;
  auto m = GpuMonitor::open(dev->pci_bus_id, &why);
  if (!m) GTEST_SKIP() << "no NVML: " << why;
  m->start(20);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const GpuState s = m->stop();
  EXPECT_GE(s.samples, 5);
  EXPECT_GT(s.sm_mhz_mean, 0);
  EXPECT_GT(s.watts_mean, 0);
  EXPECT_GT(s.celsius_max, 0);
  EXPECT_GE(s.celsius_max, s.celsius_min);
  EXPECT_GT(s.watts_limit, 0);
  EXPECT_GE(s.energy_j, 0);
  EXPECT_EQ(m->stop().samples, 0);  // stopped: nothing more
}

}  // namespace
}  // namespace kiln
