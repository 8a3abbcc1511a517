// What a GPU's clock, power and temperature did while kiln ran on it, through NVML (the
// driver's management library, loaded at run time: kiln neither links it nor needs it).
//
// Big batches run at the GPU's power limit, where the SM clock falls until the power fits
// and a hotter GPU clocks lower still (H100, ViT-B/16 bs256: 16.98 ms at 58 C, 17.50 at
// 66 C, the same engine; bench/RESULTS.md, session 29). `kiln bench` samples the GPU while
// it times, prints the summary beside the times and puts it in its JSON, so a throughput
// figure comes with the conditions it was measured under.
//
//   auto m = GpuMonitor::open(bus_id);   // null where NVML or the device is not there
//   m->start();  ... timed runs ...  GpuState s = m->stop();
//   describe_gpu_state(s, runs)          // "1459 MHz, 645 of 700 W, 58-74 C, at the power limit 96% ..."
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace kiln {

/// One sample: SM clock (MHz), board power (W), GPU temperature (C) and NVML's clock
/// event reasons (bit 0x4: the software power cap; 0x20 / 0x40: thermal slowdown).
struct GpuSample {
  double sm_mhz = 0, watts = 0, celsius = 0;
  uint64_t reasons = 0;
};

inline constexpr uint64_t kReasonPowerCap = 0x4;
inline constexpr uint64_t kReasonThermal = 0x20 | 0x40;

/// The samples of one monitored span, summarized. Fields are -1 where unknown.
struct GpuState {
  int samples = 0;
  double sm_mhz_mean = -1, watts_mean = -1, watts_limit = -1;
  double celsius_min = -1, celsius_max = -1;
  double power_capped_share = -1, thermal_share = -1;  ///< shares of the samples, 0..1
  double energy_j = -1;                                ///< the driver's energy counter over the span
};

/// Means, extremes and shares of `samples`; `watts_limit` and `energy_j` pass through.
GpuState summarize_gpu_samples(const std::vector<GpuSample>& samples, double watts_limit, double energy_j);

/// One line, e.g. "1459 MHz, 645 of 700 W, 58-74 C, at the power limit 96% of the time,
/// 11.2 J a run"; `runs` divides the energy (0: the energy is left out). "no samples" when
/// there were none.
std::string describe_gpu_state(const GpuState& s, long runs);

class GpuMonitor {
 public:
  /// The GPU at PCI address `bus_id` (cuda::DeviceInfo::pci_bus_id); null, with the reason in *why,
  /// where NVML cannot be loaded or does not know the device.
  static std::unique_ptr<GpuMonitor> open(const std::string& bus_id, std::string* why);
  ~GpuMonitor();
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  /// Samples every `interval_ms` on a thread of its own until stop().
  void start(int interval_ms = 100);
  GpuState stop();

 private:
  struct Nvml;
  explicit GpuMonitor(std::unique_ptr<Nvml> nvml);
  bool sample(GpuSample& s) const;
  std::unique_ptr<Nvml> nvml_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::vector<GpuSample> samples_;
  double energy0_j_ = -1;
};

}  // namespace kiln
