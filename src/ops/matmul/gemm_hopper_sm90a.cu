// kiln's Hopper GEMM (gemm_hopper.h). Its layouts (below) were written without a GPU and
// passed the GPU test on the first run; keep them in step with the test when changing tiles.
//
// CTA = 1 consumer warp group (threads 0-127) + 1 producer warp (128-159).
// Shared memory: kStages x (A tile 64 x 64, B tile 64 x BN), each written by TMA with
// 128-byte swizzle; full[s] / empty[s] mbarriers hand stages between the two roles.
//   A tile: 64 rows (m) of 64 k = 128 B, the canonical K-major SW128 layout:
//     descriptor start = tile, LBO unused (1), SBO = 1024 B (8 rows), +32 B a k16 step.
//   B tile: 64 rows (k) of 64 n = 128 B per TMA box (BN = 128: two boxes, 8 KB apart),
//     the MN-major SW128 layout: LBO = 8192 B (next 64 n), SBO = 1024 B (next 8 k),
//     +2048 B a k16 step; wgmma's B "transpose" bit set.
// Accumulators (m64nBN, fp32): warp w of the group holds rows 16w + lane/4 (+8), columns
// 8j + 2 (lane % 4) (+1) of every n8 block j, as d[4j .. 4j+3].
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backends/cuda/hopper.cuh"
#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/mma.cuh"
#include "ops/matmul/bias_act.cuh"
#include "ops/matmul/gemm_hopper.h"

namespace kiln::ops::matmul::hopper {
namespace {

using namespace cuda::hopper;

constexpr int kBM = 64, kBK = 64, kStages = 6;
constexpr int kConsumers = 128, kThreads = kConsumers + 32;

template <int BN>
struct Cfg {
  static constexpr int kABytes = kBM * kBK * 2;  // 8 KB
  static constexpr int kBBytes = kBK * BN * 2;   // 8 or 16 KB
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kSmem = 1024 + kStages * kStageBytes + 2 * kStages * 8;  // 1 KB for alignment
};

// BN = 128 runs as two n64 halves (their B descriptors 8 KB apart), so one instruction
// shape serves both tiles in this first version.
template <class T, int BN>
__global__ void __launch_bounds__(kThreads)
    hopper_gemm_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                       const T* __restrict__ bias, const T* __restrict__ residual, T* __restrict__ y, int m, int n,
                       int k, BiasActivation act) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Cfg<BN>;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t base = (cuda::smem_addr(smem_raw) + 1023u) & ~1023u;  // swizzle atoms on 1 KB
  const uint32_t bars = base + kStages * C::kStageBytes;
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (kStages + s); };
  auto tile_a = [&](int s) { return base + s * C::kStageBytes; };
  auto tile_b = [&](int s) { return base + s * C::kStageBytes + C::kABytes; };
  const int tid = threadIdx.x;
  const int n0 = blockIdx.x * BN, m0 = blockIdx.y * kBM;
  const int nk = (k + kBK - 1) / kBK;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(full(s), 1);
      mbar_init(empty(s), 1);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (tid >= kConsumers) {  // the producer warp: one thread issues every load
    if (tid == kConsumers) {
      for (int kb = 0; kb < nk; ++kb) {
        const int s = kb % kStages;
        mbar_wait(empty(s), ((kb / kStages) & 1) ^ 1);
        mbar_expect_tx(full(s), C::kStageBytes);
        tma_load_2d(tile_a(s), &map_a, full(s), kb * kBK, m0);
#pragma unroll
        for (int h = 0; h < BN / 64; ++h) tma_load_2d(tile_b(s) + h * 8192u, &map_b, full(s), n0 + h * 64, kb * kBK);
      }
    }
    return;
  }

  // The consumer warp group.
  float acc[BN / 64][32];
#pragma unroll
  for (int h = 0; h < BN / 64; ++h)
#pragma unroll
    for (int i = 0; i < 32; ++i) acc[h][i] = 0.f;
  for (int kb = 0; kb < nk; ++kb) {
    const int s = kb % kStages;
    mbar_wait(full(s), (kb / kStages) & 1);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      const uint64_t da = desc(tile_a(s) + kk * 32u, 16u, 1024u);
#pragma unroll
      for (int h = 0; h < BN / 64; ++h) {
        const uint64_t db = desc(tile_b(s) + h * 8192u + kk * 2048u, 8192u, 1024u);
        WgmmaN64<T, 1>::ss(acc[h], da, db, 1);  // B MN-major
      }
    }
    wgmma_commit();
    wgmma_wait<0>();
    if (tid == 0) mbar_arrive(empty(s));  // every MMA reading stage s is done
  }

  // Epilogue from the accumulators: bias, activation, residual, two columns at a time.
  const int warp = tid / 32, lane = tid % 32;
  const int r0 = m0 + warp * 16 + lane / 4;
#pragma unroll
  for (int h = 0; h < BN / 64; ++h)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int gn = n0 + h * 64 + j * 8 + 2 * (lane % 4);
      if (gn >= n) continue;
      float b0 = 0.f, b1 = 0.f;
      if (bias) b0 = cuda::to_f(bias[gn]), b1 = cuda::to_f(bias[gn + 1]);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int gm = r0 + 8 * e;
        if (gm >= m) continue;
        float v0 = bias_activate(acc[h][4 * j + 2 * e] + b0, act),
              v1 = bias_activate(acc[h][4 * j + 2 * e + 1] + b1, act);
        const size_t at = static_cast<size_t>(gm) * n + gn;
        if (residual) v0 += cuda::to_f(residual[at]), v1 += cuda::to_f(residual[at + 1]);
        *reinterpret_cast<unsigned*>(y + at) = cuda::pack2<T>(v0, v1);
      }
    }
#else
  __trap();  // built for sm_90a only (CMakeLists.txt)
#endif
}


template <class T, int BN>
cudaError_t launch_typed(const Problem& p, cudaStream_t stream) {
  CUtensorMap ma, mb;
  if (!encode_matrix_sw128(&ma, p.dtype, p.a, p.m, p.k, 64) || !encode_matrix_sw128(&mb, p.dtype, p.b, p.k, p.n, 64))
    return cudaErrorNotSupported;
  auto* kernel = hopper_gemm_kernel<T, BN>;
  const cudaError_t set = cuda::configure_smem<hopper_gemm_kernel<T, BN>>(Cfg<BN>::kSmem);
  if (set != cudaSuccess) return set;
  const dim3 grid(static_cast<unsigned>((p.n + BN - 1) / BN), static_cast<unsigned>((p.m + kBM - 1) / kBM));
  kernel<<<grid, kThreads, Cfg<BN>::kSmem, stream>>>(
      ma, mb, static_cast<const T*>(p.bias), static_cast<const T*>(p.residual), static_cast<T*>(p.y),
      static_cast<int>(p.m), static_cast<int>(p.n), static_cast<int>(p.k), p.act);
  return cudaGetLastError();
}

}  // namespace

int launch(const Problem& p, int bn, void* stream) {
  if (!hopper::takes(p) || !valid_bn(bn) || p.m > (int64_t{65535} * kBM))
    return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  cudaError_t e;
  if (p.dtype == DataType::kFloat16)
    e = bn == 64 ? launch_typed<__half, 64>(p, s) : launch_typed<__half, 128>(p, s);
  else
    e = bn == 64 ? launch_typed<__nv_bfloat16, 64>(p, s) : launch_typed<__nv_bfloat16, 128>(p, s);
  return static_cast<int>(e);
}

}  // namespace kiln::ops::matmul::hopper
