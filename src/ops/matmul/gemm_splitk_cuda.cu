// The split-K GEMM of gemm_splitk.h. A CTA of 4 warps (2 x 2) computes a BM x 64 tile over
// its share of K (a variant with two such groups splitting each K block measured slower:
// bench/RESULTS.md, session 12): a 4-stage cp.async pipeline
// of BM x 64 A and 64 x 64 B tiles in shared memory (rows of 128 bytes, their 16-byte chunks XOR-swizzled by row so
// that ldmatrix reads are conflict-free), mma.sync m16n8k16 into fp32. The CTAs of a cluster (one per K share) then
// stage their partial tiles in shared memory, and each sums a slice of the tile across the cluster through distributed
// shared memory, applies bias, activation and residual and writes it: no workspace, no atomics, and the same summation
// order every run.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/mma.cuh"
#include "ops/matmul/bias_act.cuh"
#include "ops/matmul/gemm_splitk.h"

namespace kiln::ops::matmul::splitk {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 128;
constexpr int kStages = 4;

template <int BM>
struct Cfg {
  static constexpr int kWarpRows = BM / 2;        // 2 x 2 warps
  static constexpr int kMTiles = kWarpRows / 16;  // m16 tiles a warp
  static constexpr int kNTiles = kBN / 2 / 8;     // n8 tiles a warp (4)
  static constexpr int kAStage = BM * kBK;        // elements
  static constexpr int kBStage = kBK * kBN;
  static constexpr int kSmem = kStages * (kAStage + kBStage) * 2;  // bytes
  static constexpr int kCld = kBN + 8;                             // fp32 row stride of the staged tile
  static_assert(BM * kCld * 4 <= kSmem, "the partial tile reuses the pipeline's shared memory");
};

__device__ __forceinline__ void add4(float4& a, const float4 b) {
  a.x += b.x;
  a.y += b.y;
  a.z += b.z;
  a.w += b.w;
}

template <class T>
__device__ __forceinline__ float4 load4(const T* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const T* h = reinterpret_cast<const T*>(&raw);
  return make_float4(cuda::to_f(h[0]), cuda::to_f(h[1]), cuda::to_f(h[2]), cuda::to_f(h[3]));
}

template <class T, int BM>
__global__ void __launch_bounds__(kThreads)
    splitk_gemm_kernel(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ bias,
                       const T* __restrict__ residual, T* __restrict__ y, int m, int n, int k, int kps,
                       BiasActivation act) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();  // clusters and distributed shared memory need sm_90; the host offers this on cc >= 9 only
#else
  using C = Cfg<BM>;
  extern __shared__ __align__(128) unsigned char smem[];
  const unsigned sa = cuda::smem_addr(smem);  // A stages, then B stages (bytes)
  const unsigned sb = sa + kStages * C::kAStage * 2;
  cg::cluster_group cluster = cg::this_cluster();
  const int split = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int n0 = blockIdx.x * kBN, m0 = blockIdx.y * BM;
  const int kb0 = rank * kps;
  const int nkb = max(0, min((k + kBK - 1) / kBK, kb0 + kps) - kb0);

  // Loads: a pass of 256 threads covers 32 rows of 8 chunks; row r + 32 j keeps r's
  // swizzle, so each thread's shared offsets are one base plus j * 4 KB.
  const int lrow = tid >> 3, lch = tid & 7;
  const unsigned st_off = static_cast<unsigned>(lrow * 64 + ((lch ^ (lrow & 7)) << 3)) * 2;
  const T* a_src = a + static_cast<size_t>(m0 + lrow) * k + static_cast<size_t>(kb0) * kBK + lch * 8;
  const T* b_src = b + (static_cast<size_t>(kb0) * kBK + lrow) * n + n0 + lch * 8;
  constexpr int kPass = kThreads / 8;  // rows a pass loads
  const size_t a_step = static_cast<size_t>(kPass) * k, b_step = static_cast<size_t>(kPass) * n;
  unsigned a_rows_ok = 0;  // bit j: row lrow + kPass j is inside m
#pragma unroll
  for (int j = 0; j < (BM + kPass - 1) / kPass; ++j) a_rows_ok |= (m0 + lrow + kPass * j < m ? 1u : 0u) << j;
  const bool b_col_ok = n0 + lch * 8 < n;

  auto load_stage = [&](int stage, int it) {
    const int kbase = (kb0 + it) * kBK;
    const bool full_k = kbase + kBK <= k;
    const bool a_k_ok = full_k || kbase + lch * 8 < k;
    const T* pa = a_src + static_cast<size_t>(it) * kBK;
    const unsigned da = sa + stage * C::kAStage * 2 + st_off;
#pragma unroll
    for (int j = 0; j < (BM + kPass - 1) / kPass; ++j) {
      if (BM % kPass != 0 && lrow + kPass * j >= BM) break;  // 32-row tiles: half the threads
      const bool ok = a_k_ok && ((a_rows_ok >> j) & 1u);
      cuda::cp_async16(da + j * kPass * 128, ok ? pa + j * a_step : a, ok);
    }
    const T* pb = b_src + static_cast<size_t>(it) * kBK * n;
    const unsigned db = sb + stage * C::kBStage * 2 + st_off;
#pragma unroll
    for (int j = 0; j < kBK / kPass; ++j) {
      const bool ok = b_col_ok && (full_k || kbase + lrow + kPass * j < k);
      cuda::cp_async16(db + j * kPass * 128, ok ? pb + j * b_step : b, ok);
    }
  };

  // ldmatrix addresses: rows of an m16 (or k16) slab start at multiples of 8, so a
  // lane's swizzle is lane & 7 throughout; chunk c of the lane's row sits at (c ^ (lane & 7)) * 16.
  const int l7 = lane & 7, hi = lane >> 4;
  const unsigned a_row = static_cast<unsigned>((wm * C::kWarpRows + (lane & 15)) * 128);
  const unsigned b_row = static_cast<unsigned>((lane & 15) * 128);
  unsigned a_col[kBK / 16], b_col[C::kNTiles / 2];
#pragma unroll
  for (int kk = 0; kk < kBK / 16; ++kk) a_col[kk] = static_cast<unsigned>(((kk * 2 + hi) ^ l7) << 4);
#pragma unroll
  for (int np = 0; np < C::kNTiles / 2; ++np) b_col[np] = static_cast<unsigned>(((wn * 4 + np * 2 + hi) ^ l7) << 4);

  float acc[C::kMTiles][C::kNTiles][4] = {};
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nkb) load_stage(s, s);
    cuda::cp_commit();
  }
  for (int it = 0; it < nkb; ++it) {
    cuda::cp_wait<kStages - 2>();
    __syncthreads();
    const int next = it + kStages - 1;
    if (next < nkb) load_stage(next % kStages, next);
    cuda::cp_commit();
    const unsigned ta = sa + (it % kStages) * C::kAStage * 2 + a_row;
    const unsigned tb = sb + (it % kStages) * C::kBStage * 2 + b_row;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      unsigned af[C::kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt) cuda::ldsm_x4(af[mt], ta + mt * 16 * 128 + a_col[kk]);
      unsigned bf[C::kNTiles][2];
#pragma unroll
      for (int np = 0; np < C::kNTiles / 2; ++np) {
        unsigned r[4];
        cuda::ldsm_x4_t(r, tb + kk * 16 * 128 + b_col[np]);
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt) cuda::mma16816<T>(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
    }
  }
  cuda::cp_wait<0>();
  const int g = lane >> 2, c2 = (lane & 3) * 2;
  if (split == 1) {
    // The whole K in this CTA: the epilogue straight from the accumulators, two columns at a time.
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt) {
        const int gn = n0 + wn * 32 + nt * 8 + c2;
        if (gn >= n) continue;
        float2 bv = make_float2(0.f, 0.f);
        if (bias) bv = make_float2(cuda::to_f(bias[gn]), cuda::to_f(bias[gn + 1]));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int gm = m0 + wm * C::kWarpRows + mt * 16 + g + h * 8;
          if (gm >= m) continue;
          float v0 = bias_activate(acc[mt][nt][2 * h] + bv.x, act),
                v1 = bias_activate(acc[mt][nt][2 * h + 1] + bv.y, act);
          const size_t at = static_cast<size_t>(gm) * n + gn;
          if (residual) {
            v0 += cuda::to_f(residual[at]);
            v1 += cuda::to_f(residual[at + 1]);
          }
          *reinterpret_cast<unsigned*>(y + at) = cuda::pack2<T>(v0, v1);
        }
      }
    return;
  }

  // Stage the partial tile (fp32) where the pipeline was, for the cluster.
  __syncthreads();
  float* sc = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        *reinterpret_cast<float2*>(sc + (wm * C::kWarpRows + mt * 16 + g + 8 * h) * C::kCld + wn * 32 + nt * 8 + c2) =
            make_float2(acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]);
  cluster.sync();  // every CTA's partial tile is staged

  // Each CTA of the cluster sums and writes every split-th group of 4 columns.
  constexpr int kQuads = BM * kBN / 4;
  for (int q = rank * kThreads + tid; q < kQuads; q += split * kThreads) {
    const int row = q / (kBN / 4), col = (q % (kBN / 4)) * 4;
    const int gm = m0 + row, gn = n0 + col;
    if (gm >= m || gn >= n) continue;  // n % 8 == 0: a quad is all in or all out
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int r = 0; r < split; ++r)
      add4(v, *reinterpret_cast<const float4*>(cluster.map_shared_rank(sc + row * C::kCld + col, r)));
    if (bias) add4(v, load4(bias + gn));
    v.x = bias_activate(v.x, act);
    v.y = bias_activate(v.y, act);
    v.z = bias_activate(v.z, act);
    v.w = bias_activate(v.w, act);
    const size_t at = static_cast<size_t>(gm) * n + gn;
    if (residual) add4(v, load4(residual + at));
    *reinterpret_cast<uint2*>(y + at) = make_uint2(cuda::pack2<T>(v.x, v.y), cuda::pack2<T>(v.z, v.w));
  }
  cluster.sync();  // no CTA leaves while another still reads its shared memory
#endif
}

template <class T, int BM>
cudaError_t launch_typed(const Problem& p, const Launch& l, cudaStream_t stream) {
  auto* kernel = splitk_gemm_kernel<T, BM>;
  const cudaError_t e = cuda::configure_smem<splitk_gemm_kernel<T, BM>>(Cfg<BM>::kSmem);
  if (e != cudaSuccess) return e;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim =
      dim3(static_cast<unsigned>(l.n_tiles), static_cast<unsigned>(l.m_tiles), static_cast<unsigned>(l.split));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = Cfg<BM>::kSmem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 1;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = static_cast<unsigned>(l.split);
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<const T*>(p.a), static_cast<const T*>(p.b),
                            static_cast<const T*>(p.bias), static_cast<const T*>(p.residual), static_cast<T*>(p.y),
                            static_cast<int>(p.m), static_cast<int>(p.n), static_cast<int>(p.k),
                            static_cast<int>(l.kps), p.act);
}

template <class T>
cudaError_t launch_dtype(const Problem& p, const Launch& l, cudaStream_t stream) {
  switch (l.bm) {
    case 32:
      return launch_typed<T, 32>(p, l, stream);
    case 64:
      return launch_typed<T, 64>(p, l, stream);
    case 128:
      return launch_typed<T, 128>(p, l, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

int launch(const Problem& p, int64_t id, int device, void* stream) {
  if (!is_tactic(id) || !takes(p) || p.m > INT32_MAX || p.n > INT32_MAX || p.k > INT32_MAX || tactic_waves(id) < 1)
    return static_cast<int>(cudaErrorInvalidValue);
  const Launch l = plan(p, id, cuda::sm_count(device));
  if (l.n_tiles > INT32_MAX || l.m_tiles > 65535) return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  const cudaError_t e =
      p.dtype == DataType::kFloat16 ? launch_dtype<__half>(p, l, s) : launch_dtype<__nv_bfloat16>(p, l, s);
  return static_cast<int>(e);
}

}  // namespace kiln::ops::matmul::splitk
