#include <cuda_runtime.h>

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
__global__ void late_copy_kernel(unsigned char* dst, const unsigned char* src, size_t bytes, long long delay_ns) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  auto now = [] {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
  };
  const unsigned long long start = now();
  while (static_cast<long long>(now() - start) < delay_ns) __nanosleep(1000);
  for (size_t i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = src[i];
}
}  // namespace

Status late_copy(void* dst, const void* src, size_t bytes, int delay_us, void* stream) {
  late_copy_kernel<<<1, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<unsigned char*>(dst), static_cast<const unsigned char*>(src), bytes, delay_us * 1000LL);
  return check(cudaGetLastError(), "late_copy launch");
}

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
