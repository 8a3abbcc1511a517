// Helpers for CUDA kernels in src/ops/<family>/*_cuda.cu: the stream, launch
// checks that name the node, dtype -> device type mapping and dispatch,
// float conversion, grid sizing and broadcast strides.
//
//   Status relu_cuda(ops::KernelContext& ctx) {
//     int64_t n = ctx.output(0).numel();
//     KILN_CUDA_DISPATCH_FLOAT(ctx.input(0).dtype(), T, {
//       relu_kernel<T><<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(...);
//     });
//     return launch_status(ctx, "relu");
//   }
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "backends/cuda/env.h"
#include "base/env.h"
#include "kiln/types.h"
#include "ops/op.h"

namespace kiln::cuda {

inline constexpr int kBlock = 256;
inline constexpr int kMaxRank = 8;

inline cudaStream_t stream_of(const ops::KernelContext& ctx) {
  return static_cast<cudaStream_t>(ctx.cuda_env()->stream);
}

/// Checks the launch(es) just made; the error names the node and the kernel.
inline Status launch_status(const ops::KernelContext& ctx, const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status();
  return ctx.error(std::string("CUDA kernel ") + kernel + " failed: " + cudaGetErrorString(e), ErrorCode::kInternal);
}

/// Opts `Kernel` into `smem` bytes of dynamic shared memory (needed above 48 KB) and, with
/// `max_carveout`, the largest shared-memory carveout (else the driver may fit fewer blocks
/// an SM than the shared memory allows: the Hopper attention kernel ran 68 instead of 43 us
/// a BERT bs128 layer) on the current device. Once per kernel and device: attributes are
/// per device, so a process serving two GPUs sets them on each. Cheap after the first call
/// and legal during stream capture; `smem` must be the same at every call for one kernel.
template <auto Kernel>
cudaError_t configure_smem(size_t smem, bool max_carveout = false) {
  static std::atomic<uint64_t> ready{0};  // a bit a device
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  const uint64_t bit = uint64_t{1} << (device & 63);
  if (ready.load(std::memory_order_acquire) & bit) return cudaSuccess;
  if (max_carveout)
    e = cudaFuncSetAttribute(Kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
  if (e == cudaSuccess && smem > 48 * 1024)
    e = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e == cudaSuccess) ready.fetch_or(bit, std::memory_order_acq_rel);
  return e;
}

/// True when the memory-bound kernels that follow a GEMM (the Hopper attention kernel, the
/// fast row norms) walk their grid last block first. A GEMM writes its output from the first
/// rows to the last, so its last-written rows are the ones still in L2 (50 MB on the H100,
/// against BERT-base bs128's 75 MB QKV product); reading those first turns part of the read
/// into L2 hits, and the rows written last are then the first ones the next GEMM reads.
/// BERT bs128 5.894 / 5.927 -> 5.853 / 5.860 GPU ms, ViT bs256 18.686 -> 18.551 (session
/// 19). `KILN_REVERSE_GRIDS=0` walks them first block first (for A/B).
inline bool reverse_grids() {
  static const bool v = !env_is("KILN_REVERSE_GRIDS", "0");
  return v;
}

/// SMs of CUDA device `device` (132 where the runtime cannot say), cached per device.
inline int sm_count(int device) {
  static std::atomic<int> cached[16] = {};
  if (device < 0 || device >= 16) return 132;
  int v = cached[device].load(std::memory_order_relaxed);
  if (v == 0) {
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || v <= 0) {
      (void)cudaGetLastError();
      v = 132;
    }
    cached[device].store(v, std::memory_order_relaxed);
  }
  return v;
}
/// SMs of the current device.
inline int sm_count() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 132;
  }
  return sm_count(dev);
}

/// Whether `p` is a multiple of `a` bytes.
inline bool aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

/// Grid size for `n` elements with kBlock threads (grid-stride loops cover the rest).
inline unsigned grid_for(int64_t n, int block = kBlock) {
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535 * 8) g = 65535 * 8;
  return static_cast<unsigned>(g);
}

// ---- element types
template <class T>
__device__ __forceinline__ float to_f(T x) { return static_cast<float>(x); }
template <>
__device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_f(float x) { return static_cast<T>(x); }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

/// Runs `body` with T bound to float, __half or __nv_bfloat16; other dtypes return an error.
#define KILN_CUDA_DISPATCH_FLOAT(dtype, T, ...)                                                      \
  switch (dtype) {                                                                                   \
    case ::kiln::DataType::kFloat32: { using T = float; __VA_ARGS__; break; }                       \
    case ::kiln::DataType::kFloat16: { using T = __half; __VA_ARGS__; break; }                      \
    case ::kiln::DataType::kBFloat16: { using T = __nv_bfloat16; __VA_ARGS__; break; }              \
    default: return ctx.error(std::string("no CUDA kernel for dtype ") + ::kiln::dtype_name(dtype), \
                              ::kiln::ErrorCode::kUnsupported);                                     \
  }

/// Same over float types plus int32, int64 (and, with _ALL, int8, uint8, bool).
#define KILN_CUDA_DISPATCH_NUMERIC(dtype, T, ...)                                                    \
  switch (dtype) {                                                                                   \
    case ::kiln::DataType::kFloat32: { using T = float; __VA_ARGS__; break; }                       \
    case ::kiln::DataType::kFloat16: { using T = __half; __VA_ARGS__; break; }                      \
    case ::kiln::DataType::kBFloat16: { using T = __nv_bfloat16; __VA_ARGS__; break; }              \
    case ::kiln::DataType::kInt32: { using T = int32_t; __VA_ARGS__; break; }                       \
    case ::kiln::DataType::kInt64: { using T = int64_t; __VA_ARGS__; break; }                       \
    default: return ctx.error(std::string("no CUDA kernel for dtype ") + ::kiln::dtype_name(dtype), \
                              ::kiln::ErrorCode::kUnsupported);                                     \
  }

/// Dispatch on element size only (data movement: copy, transpose, gather...).
#define KILN_CUDA_DISPATCH_BYTES(dtype, T, ...)                                                           \
  switch (::kiln::dtype_size(dtype)) {                                                                    \
    case 1: { using T = uint8_t; __VA_ARGS__; break; }                                                    \
    case 2: { using T = uint16_t; __VA_ARGS__; break; }                                                   \
    case 4: { using T = uint32_t; __VA_ARGS__; break; }                                                   \
    case 8: { using T = uint64_t; __VA_ARGS__; break; }                                                   \
    default: return ctx.error(std::string("no CUDA data-movement kernel for dtype ") +                    \
                              ::kiln::dtype_name(dtype), ::kiln::ErrorCode::kUnsupported);                \
  }

/// Dims and strides passed by value to kernels (rank <= kMaxRank).
struct Indexer {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t strides[kMaxRank] = {};  ///< element strides of the input, 0 on broadcast dims
};

/// Output dims with the input's strides aligned right (numpy broadcasting); false if rank > kMaxRank.
inline bool make_broadcast_indexer(const Dims& out, const Dims& in, Indexer& ix) {
  if (out.size() > static_cast<size_t>(kMaxRank)) return false;
  ix.rank = static_cast<int>(out.size());
  int64_t stride = 1;
  for (int i = ix.rank - 1; i >= 0; --i) {
    ix.dims[i] = out[static_cast<size_t>(i)];
    int j = i - (ix.rank - static_cast<int>(in.size()));
    int64_t d = j >= 0 ? in[static_cast<size_t>(j)] : 1;
    ix.strides[i] = d == 1 ? 0 : stride;
    stride *= d;
  }
  return true;
}

/// Input offset of output element `i`.
__device__ __forceinline__ int64_t offset_of(const Indexer& ix, int64_t i) {
  int64_t off = 0;
  for (int d = ix.rank - 1; d >= 0; --d) {
    int64_t q = i / ix.dims[d];
    off += (i - q * ix.dims[d]) * ix.strides[d];
    i = q;
  }
  return off;
}

/// N elements of T moved as one aligned load or store (16 bytes or fewer).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

}  // namespace kiln::cuda
