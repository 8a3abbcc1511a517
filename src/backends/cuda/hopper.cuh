// Hopper (sm_90a) building blocks shared by kiln's TMA + wgmma kernels
// (ops/matmul/gemm_hopper_sm90a.cu, ops/attention/flash_wgmma_sm90a.cu): mbarriers, TMA
// tensor loads, wgmma shared-memory descriptors and fences, and the host's tensor-map
// encoder. Include from *_sm90a.cu files only (compiled for sm_90a; CMakeLists.txt).
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kiln/types.h"

namespace kiln::cuda::hopper {

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count));
}
// Makes the barriers' initialization visible to the async proxy (TMA) and the other threads.
__device__ __forceinline__ void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// One box of a 2D / 4D tensor map into shared memory at dst, completing on bar (coordinates
// innermost first, in elements; out-of-range rows arrive as zeros).
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1, int c2,
                                            int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], "
      "[%2];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// One box of shared memory at src (laid out as the map's swizzle has it) to a 2D tensor map at
// (c0, c1), in this thread's current bulk group; rows past the tensor's end are not written.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, uint32_t src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(src), "r"(c0), "r"(c1)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's bulk groups still read their shared memory (.read) or
// are still in flight at all.
template <int N>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
}
template <int N>
__device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;" ::"n"(N) : "memory");
}
// Orders this thread's ordinary shared-memory writes before later async-proxy reads of them
// (TMA stores, wgmma operands); a barrier then makes them every thread's.
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// Shared-memory matrix descriptor: start, leading / stride byte offsets, 128-byte swizzle.
__device__ __forceinline__ uint64_t desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr >> 4) & 0x3FFF);
  d |= static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16;
  d |= static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32;
  d |= static_cast<uint64_t>(1) << 62;  // 128B swizzle
  return d;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// d (=, += when acc) A (K-major, desc a) x B (desc b: K-major, or MN-major when TRANS_B),
// m64 n64 k16, fp32 accumulators (warp w of the group: rows 16w + lane/4 (+8), columns
// 8j + 2 (lane % 4) (+1) as d[4j .. 4j+3]).
template <class T, int TRANS_B>
struct WgmmaN64;
#define KILN_WGMMA_N64(TYPE)                                                                                          \
  __device__ __forceinline__ static void ss(float(&d)[32], uint64_t a, uint64_t b, int acc) {                         \
    asm volatile(                                                                                                     \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                                  \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                                   \
        " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
        "%23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, %35;\n}\n"                               \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),      \
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),     \
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                   \
        : "l"(a), "l"(b), "r"(acc), "n"(TRANS_B));                                                                    \
  }
template <int TRANS_B>
struct WgmmaN64<__half, TRANS_B> {
  KILN_WGMMA_N64("f16")
};
template <int TRANS_B>
struct WgmmaN64<__nv_bfloat16, TRANS_B> {
  KILN_WGMMA_N64("bf16")
};
#undef KILN_WGMMA_N64

// The same at n32: d[16], columns 8j + 2 (lane % 4) (+1) as d[4j .. 4j+3], j < 4.
template <class T, int TRANS_B>
struct WgmmaN32;
#define KILN_WGMMA_N32(TYPE)                                                                                          \
  __device__ __forceinline__ static void ss(float(&d)[16], uint64_t a, uint64_t b, int acc) {                         \
    asm volatile(                                                                                                     \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                                                  \
        "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE                                                   \
        " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, %19;\n}\n"    \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])                    \
        : "l"(a), "l"(b), "r"(acc), "n"(TRANS_B));                                                                    \
  }
template <int TRANS_B>
struct WgmmaN32<__half, TRANS_B> {
  KILN_WGMMA_N32("f16")
};
template <int TRANS_B>
struct WgmmaN32<__nv_bfloat16, TRANS_B> {
  KILN_WGMMA_N32("bf16")
};
#undef KILN_WGMMA_N32
#endif

/// Whether the current device runs sm_90a code (compute capability 9.0): what every
/// *_sm90a.cu kernel's host side checks before offering or launching it. The answer is
/// kept per device (eager launches ask on every call; two attribute queries each otherwise).
inline bool current_device_is_sm90() {
  constexpr int kDevices = 64;
  static std::atomic<int8_t> known[kDevices] = {};  // 0 not asked yet, 1 no, 2 yes
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (dev >= 0 && dev < kDevices) {
    const int8_t k = known[dev].load(std::memory_order_relaxed);
    if (k != 0) return k == 2;
  }
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;  // not remembered: a failed query may succeed later
  }
  const bool yes = major == 9 && minor == 0;
  if (dev >= 0 && dev < kDevices) known[dev].store(yes ? 2 : 1, std::memory_order_relaxed);
  return yes;
}

/// cuTensorMapEncodeTiled from the driver (null where the driver has none).
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    cudaGetLastError();
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

/// A 16-bit (fp16 / bf16) tensor map of `rank` dims, innermost first (`strides`: bytes of dims
/// 1 .. rank - 1), boxes of `box` elements, element strides 1, 128-byte swizzle, zeros out of
/// range; false where the driver has no encoder or rejects the map.
inline bool encode_sw128(CUtensorMap* map, DataType t, const void* data, int rank, const cuuint64_t* dims,
                         const cuuint64_t* strides, const cuuint32_t* box,
                         CUtensorMapL2promotion promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_128B) {
  auto fn = tensor_map_encoder();
  if (!fn) return false;
  const cuuint32_t elem[5] = {1, 1, 1, 1, 1};
  const CUtensorMapDataType dt =
      t == DataType::kFloat16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return fn(map, dt, static_cast<cuuint32_t>(rank), const_cast<void*>(data), dims, strides, box, elem,
            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, promotion,
            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/// A row-major [rows, cols] 16-bit matrix in boxes of 64 columns x `box_rows` rows (encode_sw128).
inline bool encode_matrix_sw128(CUtensorMap* map, DataType t, const void* data, int64_t rows, int64_t cols,
                                int box_rows, CUtensorMapL2promotion promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_128B) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(cols) * 2};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(box_rows)};
  return encode_sw128(map, t, data, 2, dims, strides, box, promotion);
}

}  // namespace kiln::cuda::hopper
