#include <cuda_runtime.h>

#include <cstdio>

#include "backends/cuda/device.h"

namespace kiln::cuda {

namespace {
Status check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status();
  ErrorCode code = e == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kInternal;
  return Status(code, std::string(what) + ": " + cudaGetErrorString(e));
}

__global__ void saxpy_kernel(float a, const float* x, float* y, size_t n) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

std::string no_device_reason() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("CUDA reports: ") + cudaGetErrorString(e);
  if (n == 0) return "no CUDA device is visible";
  return "";
}

Result<DeviceInfo> device_info(int index) {
  cudaDeviceProp p{};
  KILN_RETURN_IF_ERROR(check(cudaGetDeviceProperties(&p, index), "cudaGetDeviceProperties"));
  DeviceInfo d;
  d.index = index;
  d.name = p.name;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.total_memory = p.totalGlobalMem;
  char id[32];
  std::snprintf(id, sizeof id, "%08x:%02x:%02x.0", static_cast<unsigned>(p.pciDomainID),
                static_cast<unsigned>(p.pciBusID), static_cast<unsigned>(p.pciDeviceID));
  d.pci_bus_id = id;
  return d;
}

Status saxpy_host(int index, float a, const float* x, float* y, size_t n) {
  KILN_RETURN_IF_ERROR(check(cudaSetDevice(index), "cudaSetDevice"));
  float *dx = nullptr, *dy = nullptr;
  KILN_RETURN_IF_ERROR(check(cudaMalloc(&dx, n * sizeof(float)), "cudaMalloc"));
  Status s = check(cudaMalloc(&dy, n * sizeof(float)), "cudaMalloc");
  if (s.ok()) s = check(cudaMemcpy(dx, x, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  if (s.ok()) s = check(cudaMemcpy(dy, y, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  if (s.ok()) {
    saxpy_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(a, dx, dy, n);
    s = check(cudaGetLastError(), "saxpy launch");
  }
  if (s.ok()) s = check(cudaMemcpy(y, dy, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  cudaFree(dx);
  cudaFree(dy);
  return s;
}

}  // namespace kiln::cuda
