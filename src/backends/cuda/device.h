// CUDA device queries. Only kiln_cuda and its tests include this.
#pragma once

#include <string>

#include "kiln/status.h"

namespace kiln::cuda {

struct DeviceInfo {
  int index = -1;
  std::string name;
  int cc_major = 0;
  int cc_minor = 0;
  size_t total_memory = 0;
  /// PCI address as NVML and nvidia-smi name it ("00000000:1B:00.0"): how tools outside the
  /// CUDA runtime (base/gpu_monitor.h) find this GPU.
  std::string pci_bus_id;
};

/// Number of visible CUDA devices (0 when there is no GPU or driver).
int device_count();
/// Properties of device `index`.
Result<DeviceInfo> device_info(int index);
/// Why no device is usable ("" when one is).
std::string no_device_reason();
/// Y = a*X + Y on device `index` over host vectors (a smoke test of the toolchain).
Status saxpy_host(int index, float a, const float* x, float* y, size_t n);

}  // namespace kiln::cuda
