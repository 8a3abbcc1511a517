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
};

/// Number of visible CUDA devices (0 when there is no GPU or driver).
int device_count();
/// Properties of device `index`.
Result<DeviceInfo> device_info(int index);
/// Why no device is usable ("" when one is).
std::string no_device_reason();
/// Y = a*X + Y on device `index` over host vectors (a smoke test of the toolchain).
Status saxpy_host(int index, float a, const float* x, float* y, size_t n);
/// Enqueues on `stream` a one-block kernel that first lets programmatically dependent
/// kernels launch (griddepcontrol.launch_dependents), then waits `delay_us`
/// microseconds and copies `bytes` from `src` to `dst` (device memory): a producer
/// that a kernel launched with launch_pdl (pdl.cuh) reads wrongly unless it waits.
Status late_copy(void* dst, const void* src, size_t bytes, int delay_us, void* stream);

}  // namespace kiln::cuda
