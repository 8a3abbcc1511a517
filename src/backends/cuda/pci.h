// The PCI address of a CUDA device, as NVML and nvidia-smi name it ("00000000:1B:00.0"):
// how tools outside the CUDA runtime (base/gpu_monitor.h) find the GPU an engine runs on.
// Kept out of device.h, which most CUDA code includes.
#pragma once

#include <string>

#include "kiln/status.h"

namespace kiln::cuda {

/// "DDDDDDDD:BB:DD.0" of CUDA device `index`; an error where there is none (or no CUDA).
Result<std::string> pci_bus_id(int index);

}  // namespace kiln::cuda
