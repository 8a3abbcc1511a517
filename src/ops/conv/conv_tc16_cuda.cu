// kiln's tensor-core conv over 16 input channels (conv_tc16_cuda.h).
#include "ops/conv/conv_tc16_cuda.h"

#include <algorithm>
#include <cstdint>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/mma.cuh"
#include "ops/conv/conv_act.cuh"

namespace kiln::ops::conv_tc16 {
namespace {

constexpr int kC = 16, kM = 64, kMaxK = 4, kMaxOw = 256;
constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kRows = 2;       // output rows a work item: each weight fragment feeds two mma
constexpr int kNt = kM / 8;    // n8 tiles of the output channels
constexpr int kStage = 16 * kM * 2;  // a warp's staging tile: 16 pixels x 64 channels

struct Geom {
  int n, h, w, oh, ow, kh, kw;
  int tiles;  // 16-pixel tiles of an output row
  int wp;     // pixels of a staged input row (tiles * 16 + 16 >= every pixel a tile reads)
  int pairs;  // row pairs of an image
  int items;  // (image, row pair) work items
};

// Shared memory: the weights as 64 rows of kh * kw * 32 bytes plus 16 (the pad puts
// ldmatrix's 8 row addresses in distinct banks); the bias as 64 floats; two input buffers of kRows + kh - 1 rows x
// 2 channel halves x wp pixels x 16 bytes (a half's pixels contiguous: ldmatrix's 8 rows are
// 128 consecutive bytes); a staging tile a warp.
__host__ __device__ inline int w_stride(int kh, int kw) { return kh * kw * kC * 2 + 16; }
__host__ __device__ inline int in_bytes(const Geom& g) { return (kRows + g.kh - 1) * 2 * g.wp * 16; }
inline size_t smem_bytes(const Geom& g) {
  return size_t(kM) * (w_stride(g.kh, g.kw) + 4) + 2 * size_t(in_bytes(g)) + size_t(kWarps) * kStage;
}
// The most any problem takes (kh = kw = 4, 256-pixel rows): the opt-in, set once a kernel.
constexpr size_t kMaxSmem = size_t(kM) * (kMaxK * kMaxK * kC * 2 + 16 + 4) +
                            2 * size_t(kRows + kMaxK - 1) * 2 * (kMaxOw + 16) * 16 + size_t(kWarps) * kStage;

// Persistent: CTA b takes work items b, b + gridDim.x, ...; item i is rows 2 (i % pairs) and
// + 1 of image i / pairs. The next item's input rows load (cp.async) while this one computes.
// KW: the kernel's width (the inner loop unrolled, addresses hoisted); 0 reads g.kw. ACT: the
// activation when it is Act::kNone or kRelu (no per-element switch); -1 reads act. Z: whether
// z may be given (without it the epilogue has no residual code: ptxas predicated the residual's
// address arithmetic instead of branching around it).
// (Session 22, ncu at ResNet-50 bs256's stem: the first version, runtime loops, the bias
// added and the activation switched per element, issued 257M warp instructions in 0.71 ms
// with the tensor pipe 24% busy.)
template <class T, int KW, int ACT, bool Z>
__global__ void __launch_bounds__(kThreads, 2)
    tc16_conv_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                     const T* __restrict__ z, T* __restrict__ y, Geom g, ActParams act) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int kw = KW > 0 ? KW : g.kw;
  const int ws = w_stride(g.kh, kw), ib = in_bytes(g);
  unsigned char* sw = smem;
  float* sbias = reinterpret_cast<float*>(smem + kM * ws);
  unsigned char* sin = smem + kM * ws + kM * 4;
  unsigned char* stg = sin + 2 * ib;
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;

  const int wchunks = g.kh * kw * 2;  // 16-byte chunks of a weight row
  for (int i = tid; i < kM * wchunks; i += kThreads) {
    const int o = i / wchunks, q = i - o * wchunks;
    cuda::cp_async16(sw + o * ws + q * 16, w + (static_cast<size_t>(o) * wchunks + q) * 8, true);
  }
  if (tid < kM) sbias[tid] = bias ? cuda::to_f(bias[tid]) : 0.f;
  const int rows_in = kRows + g.kh - 1;
  auto load_item = [&](int item, int buf) {
    const int n = item / g.pairs, iy0 = (item - n * g.pairs) * kRows;
    unsigned char* dst = sin + buf * ib;
    for (int r = 0; r < rows_in; ++r) {
      const int iy = iy0 + r;
      const T* src_row = x + (static_cast<size_t>(n) * g.h + iy) * g.w * kC;
      for (int q = tid; q < g.wp * 2; q += kThreads) {  // (pixel, channel half) chunks
        const int px = q >> 1, half = q & 1;
        const bool ok = iy < g.h && px < g.w;
        cuda::cp_async16(dst + ((r * 2 + half) * g.wp + px) * 16, ok ? src_row + px * kC + half * 8 : x, ok);
      }
    }
  };
  int item = static_cast<int>(blockIdx.x);
  if (item < g.items) load_item(item, 0);
  cuda::cp_commit();

  const int tq = lane & 3, gr = lane >> 2;
  // ldmatrix roles. A (pixels x channels of one kernel position): matrix lane / 8 is
  // (pixels 0-7 | 8-15, channels 0-7 | 8-15) in the mma's a0..a3 order. B (weights, n x k
  // rows): matrices (n-tile 2jj, k 0-7), (2jj, k 8-15), (2jj + 1, k 0-7), (2jj + 1, k 8-15).
  const int a_px = (lane & 7) + ((lane >> 3) & 1) * 8, a_half = lane >> 4;
  const int b_o = ((lane >> 4) << 3) + (lane & 7), b_half = (lane >> 3) & 1;
  const uint32_t w_lane = cuda::smem_addr(sw) + b_o * ws + b_half * 16;
  const uint32_t row_bytes = 2 * g.wp * 16;  // one staged input row (both halves)
  unsigned char* st = stg + warp * kStage;

  for (int it = 0; item < g.items; ++it, item += static_cast<int>(gridDim.x)) {
    const int next = item + static_cast<int>(gridDim.x);
    if (next < g.items) load_item(next, (it + 1) & 1);
    cuda::cp_commit();
    cuda::cp_wait<1>();  // this item's rows (and, the first time, the weights)
    __syncthreads();
    const int n = item / g.pairs, oy0 = (item - n * g.pairs) * kRows;
    const uint32_t in_lane = cuda::smem_addr(sin + (it & 1) * ib) + (a_half * g.wp + a_px) * 16;
    for (int t = warp; t < g.tiles; t += kWarps) {
      const int px0 = t * 16;
      // The bias starts the accumulators.
      float acc[kRows][kNt][4];
#pragma unroll
      for (int j = 0; j < kNt; ++j) {
        const float2 bj = *reinterpret_cast<const float2*>(sbias + 8 * j + 2 * tq);
#pragma unroll
        for (int r = 0; r < kRows; ++r) acc[r][j][0] = acc[r][j][2] = bj.x, acc[r][j][1] = acc[r][j][3] = bj.y;
      }
      for (int a = 0; a < g.kh; ++a) {
        const uint32_t arow = in_lane + a * row_bytes + px0 * 16, brow = w_lane + a * kw * 32;
#pragma unroll
        for (int s = 0; s < (KW > 0 ? KW : kMaxK); ++s) {
          if (KW == 0 && s >= kw) break;
          unsigned bf[kNt / 2][4];
#pragma unroll
          for (int jj = 0; jj < kNt / 2; ++jj) cuda::ldsm_x4(bf[jj], brow + jj * 16 * ws + s * 32);
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            unsigned af[4];
            cuda::ldsm_x4(af, arow + r * row_bytes + s * 16);
#pragma unroll
            for (int j = 0; j < kNt; ++j)
              cuda::mma16816<T>(acc[r][j], af, bf[j / 2][(j & 1) * 2], bf[j / 2][(j & 1) * 2 + 1]);
          }
        }
      }
      // Epilogue: thread holds pixels gr and gr + 8, channels 8j + 2tq (+1). Staged at 16-byte
      // chunk j ^ (pixel % 8) of the pixel's 128-byte row: conflict-free both ways.
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int oy = oy0 + r;
        if (oy >= g.oh) break;  // the same for every warp of the CTA
        const size_t row_px = (static_cast<size_t>(n) * g.oh + oy) * g.ow;
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int p = gr + 8 * hh;
          const bool zlive = Z && z && px0 + p < g.ow;
#pragma unroll
          for (int j = 0; j < kNt; ++j) {
            float v0 = acc[r][j][2 * hh], v1 = acc[r][j][2 * hh + 1];
            if (zlive) {
              const unsigned zv = __ldg(reinterpret_cast<const unsigned*>(z + (row_px + px0 + p) * kM + 8 * j + 2 * tq));
              const T* zp = reinterpret_cast<const T*>(&zv);
              v0 += cuda::to_f(zp[0]);
              v1 += cuda::to_f(zp[1]);
            }
            if constexpr (ACT == static_cast<int>(Act::kRelu)) {
              v0 = fmaxf(v0, 0.f), v1 = fmaxf(v1, 0.f);
            } else if constexpr (ACT < 0) {
              v0 = apply_act(act, v0), v1 = apply_act(act, v1);
            }
            *reinterpret_cast<unsigned*>(st + p * 128 + ((j ^ (p & 7)) << 4) + tq * 4) = cuda::pack2<T>(v0, v1);
          }
        }
        __syncwarp();
#pragma unroll
        for (int q = lane; q < 16 * 8; q += 32) {
          const int p = q >> 3, ch = q & 7;
          if (px0 + p < g.ow)
            *reinterpret_cast<uint4*>(y + (row_px + px0 + p) * kM + ch * 8) =
                *reinterpret_cast<const uint4*>(st + p * 128 + ((ch ^ (p & 7)) << 4));
        }
        __syncwarp();
      }
    }
    __syncthreads();  // every warp is done with this buffer before the next item refills it
  }
  cuda::cp_wait<0>();
}

template <class T, int KW, int ACT, bool Z>
cudaError_t launch_kernel(const Geom& g, const void* x, const void* w, const void* b, const void* z, void* y,
                          const ActParams& act, cudaStream_t s) {
  constexpr auto kernel = tc16_conv_kernel<T, KW, ACT, Z>;
  cudaError_t e = cuda::configure_smem<kernel>(kMaxSmem, true);
  if (e != cudaSuccess) return e;
  const size_t smem = smem_bytes(g);
  int dev = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem) != cudaSuccess) {
    (void)cudaGetLastError();
    sms = 132, per_sm = 1;
  }
  const int grid = std::min(g.items, std::max(sms, 1) * std::max(per_sm, 1));
  kernel<<<grid, kThreads, smem, s>>>(static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
                                      static_cast<const T*>(z), static_cast<T*>(y), g, act);
  return cudaGetLastError();
}

// The 4-wide kernels (the space-to-depth stems of 7x7 convs) with ReLU or no activation and
// no residual get their own builds; everything else the generic one.
template <class T>
cudaError_t launch(const Geom& g, const void* x, const void* w, const void* b, const void* z, void* y,
                   const ActParams& act, cudaStream_t s) {
  if (g.kw == 4 && !z && act.kind == Act::kRelu)
    return launch_kernel<T, 4, static_cast<int>(Act::kRelu), false>(g, x, w, b, z, y, act, s);
  if (g.kw == 4 && !z && act.kind == Act::kNone)
    return launch_kernel<T, 4, static_cast<int>(Act::kNone), false>(g, x, w, b, z, y, act, s);
  return launch_kernel<T, 0, -1, true>(g, x, w, b, z, y, act, s);
}

bool aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

bool applies(const Problem& p) {
  if (p.c != kC || p.m != kM || p.kh < 1 || p.kh > kMaxK || p.kw < 1 || p.kw > kMaxK) return false;
  if (p.sh != 1 || p.sw != 1 || p.dh != 1 || p.dw != 1 || p.ph != 0 || p.pw != 0) return false;
  if (p.n < 1 || p.oh < 1 || p.ow < 1 || p.ow > kMaxOw || p.oh != p.h - p.kh + 1 || p.ow != p.w - p.kw + 1)
    return false;
  return p.n * ((p.oh + kRows - 1) / kRows) < (int64_t{1} << 30) && p.h < (int64_t{1} << 20);
}

Status run(KernelContext& ctx, const Problem& p, DataType dtype, const void* x, const void* w, const void* b,
           const void* z, void* y, int act_kind, float a, float b_param) {
  if (!applies(p)) return ctx.error("the 16-channel tensor-core conv does not take this problem", ErrorCode::kUnsupported);
  if (dtype != DataType::kFloat16 && dtype != DataType::kBFloat16)
    return ctx.error("the 16-channel tensor-core conv runs fp16 and bf16 only", ErrorCode::kUnsupported);
  if (!aligned(x, 16) || !aligned(w, 16) || !aligned(y, 16) || (z && !aligned(z, 4)) || (b && !aligned(b, 4)))
    return ctx.error("16-channel tensor-core conv: a tensor is not aligned", ErrorCode::kUnsupported);
  Geom g{};
  g.n = static_cast<int>(p.n), g.h = static_cast<int>(p.h), g.w = static_cast<int>(p.w);
  g.oh = static_cast<int>(p.oh), g.ow = static_cast<int>(p.ow), g.kh = static_cast<int>(p.kh);
  g.kw = static_cast<int>(p.kw);
  g.tiles = (g.ow + 15) / 16;
  g.wp = g.tiles * 16 + 16;
  g.pairs = (g.oh + kRows - 1) / kRows;
  g.items = g.n * g.pairs;
  const ActParams act{static_cast<Act>(act_kind), a, b_param};
  const cudaStream_t s = cuda::stream_of(ctx);
  const cudaError_t e = dtype == DataType::kFloat16 ? launch<__half>(g, x, w, b, z, y, act, s)
                                                    : launch<__nv_bfloat16>(g, x, w, b, z, y, act, s);
  if (e != cudaSuccess)
    return ctx.error(std::string("tc16_conv: ") + cudaGetErrorString(e), ErrorCode::kInternal);
  return Status();
}

}  // namespace kiln::ops::conv_tc16
