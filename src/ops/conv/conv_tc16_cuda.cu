// kiln's tensor-core conv over 16 input channels (conv_tc16_cuda.h).
#include "ops/conv/conv_tc16_cuda.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/mma.cuh"
#include "ops/conv/conv_act.cuh"

namespace kiln::ops::conv_tc16 {
namespace {

constexpr int kC = 16, kM = 64, kMaxK = 4, kMaxOw = 256, kMaxPoolOw = 128;
constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kRows = 2;           // output rows a step: each weight fragment feeds two mma
constexpr int kNt = kM / 8;        // n8 tiles of the output channels
constexpr int kPix = kM * 2;       // bytes of an output pixel (64 channels)
constexpr int kStage = 16 * kPix;  // a warp's staging tile: 16 pixels

struct Geom {
  int n, h, w, oh, ow, kh, kw;
  int tiles;                // 16-pixel tiles of an output row
  int wp;                   // pixels of a staged input row (tiles * 16 + 16 >= every pixel a tile reads)
  int pairs;                // row pairs of an image (the plain kernel)
  int items;                // work items
  int ph, pw, band, bands;  // the pooled kernel: pooled rows and columns; pooled rows a band, bands an image
};

// Shared memory: the weights as 64 rows of kh * kw * 32 bytes plus 16 (the pad puts
// ldmatrix's 8 row addresses in distinct banks); the bias as 64 floats; two input buffers of
// kRows + kh - 1 rows x 2 channel halves x wp pixels x 16 bytes (a half's pixels contiguous:
// ldmatrix's 8 rows are 128 consecutive bytes). Then the plain kernel's staging tile a warp, or
// the pooled kernel's two conv rows and the last conv row's horizontal maxima.
__host__ __device__ constexpr int w_stride(int kh, int kw) { return kh * kw * kC * 2 + 16; }
__host__ __device__ constexpr int in_bytes(const Geom& g) { return (kRows + g.kh - 1) * 2 * g.wp * 16; }
__host__ __device__ constexpr int head_bytes(const Geom& g) {
  return kM * (w_stride(g.kh, g.kw) + 4) + 2 * in_bytes(g);
}
__host__ __device__ constexpr int crow_bytes(const Geom& g) { return kRows * g.tiles * 16 * kPix; }
constexpr size_t smem_bytes(const Geom& g, bool pooled) {
  return size_t(head_bytes(g)) + (pooled ? size_t(crow_bytes(g)) + size_t(g.pw) * kPix : size_t(kWarps) * kStage);
}
// The geometry of n images of h x w input pixels under a kh x kw kernel (band and bands: the
// pooled launch's).
constexpr Geom geom_of(int n, int h, int w, int kh, int kw) {
  Geom g{};
  g.n = n, g.h = h, g.w = w, g.kh = kh, g.kw = kw;
  g.oh = h - kh + 1, g.ow = w - kw + 1;
  g.tiles = (g.ow + 15) / 16;
  g.wp = g.tiles * 16 + 16;
  g.pairs = (g.oh + kRows - 1) / kRows;
  g.items = n * g.pairs;
  g.ph = (g.oh - 1) / 2 + 1, g.pw = (g.ow - 1) / 2 + 1;
  return g;
}
// The most any problem takes (a 4x4 kernel; 256-pixel rows, 128 pooled): the opt-in, set once a kernel.
constexpr size_t kMaxSmem = smem_bytes(geom_of(1, kMaxK, kMaxOw + kMaxK - 1, kMaxK, kMaxK), false);
constexpr size_t kMaxPoolSmem = smem_bytes(geom_of(1, kMaxK, kMaxPoolOw + kMaxK - 1, kMaxK, kMaxK), true);

// The weights (cp.async, committed with the first input rows) and the bias (float) into shared memory.
template <class T>
__device__ __forceinline__ void load_weights(unsigned char* sw, float* sbias, const T* __restrict__ w,
                                             const T* __restrict__ bias, const Geom& g, int ws, int tid) {
  const int wchunks = g.kh * g.kw * 2;  // 16-byte chunks of a weight row
  for (int i = tid; i < kM * wchunks; i += kThreads) {
    const int o = i / wchunks, q = i - o * wchunks;
    cuda::cp_async16(sw + o * ws + q * 16, w + (static_cast<size_t>(o) * wchunks + q) * 8, true);
  }
  if (tid < kM) sbias[tid] = bias ? cuda::to_f(bias[tid]) : 0.f;
}

// Input rows iy0 .. iy0 + kRows + kh - 2 of image n into a buffer (cp.async; rows and pixels
// past the image as zeros).
template <class T>
__device__ __forceinline__ void load_rows(unsigned char* dst, const T* __restrict__ x, const Geom& g, int n, int iy0,
                                          int tid) {
  for (int r = 0; r < kRows + g.kh - 1; ++r) {
    const int iy = iy0 + r;
    const T* src_row = x + (static_cast<size_t>(n) * g.h + iy) * g.w * kC;
    for (int q = tid; q < g.wp * 2; q += kThreads) {  // (pixel, channel half) chunks
      const int px = q >> 1, half = q & 1;
      const bool ok = iy >= 0 && iy < g.h && px < g.w;
      cuda::cp_async16(dst + ((r * 2 + half) * g.wp + px) * 16, ok ? src_row + px * kC + half * 8 : x, ok);
    }
  }
}

// One warp's 16 output pixels (from px0) of both rows of a step: the accumulators start at the
// bias, then every (kernel row, kernel column) position is one k16 step (16 channels).
// ldmatrix roles (lane_roles). A (pixels x channels of one position): matrix lane / 8 is (pixels
// 0-7 | 8-15, channels 0-7 | 8-15) in the mma's a0..a3 order, in_lane holding the lane's pixel
// and half. B (weights, n x k rows): matrices (n-tile 2jj, k 0-7), (2jj, k 8-15), (2jj + 1,
// k 0-7), (2jj + 1, k 8-15), w_lane holding the lane's row and half.
template <class T, int KW>
__device__ __forceinline__ void conv_tile(float (&acc)[kRows][kNt][4], uint32_t in_lane, uint32_t w_lane,
                                          const float* sbias, const Geom& g, int ws, int px0, int tq) {
  const int kw = KW > 0 ? KW : g.kw;
  const uint32_t row_bytes = 2 * g.wp * 16;  // one staged input row (both halves)
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
}

// Lane-wise maximum of two 16-byte vectors of 8 fp16 / bf16 values (__hmax2: a NaN loses to a
// number, two NaNs give NaN: MaxPool's rule).
template <class T>
__device__ __forceinline__ uint4 vmax8(uint4 a, const uint4& b) {
  using P = std::conditional_t<std::is_same<T, __half>::value, __half2, __nv_bfloat162>;
  P* pa = reinterpret_cast<P*>(&a);
  const P* pb = reinterpret_cast<const P*>(&b);
#pragma unroll
  for (int i = 0; i < 4; ++i) pa[i] = __hmax2(pa[i], pb[i]);
  return a;
}

// A lane's shared-memory addresses for conv_tile: its input row offset (pixel and channel half,
// added to a buffer's address) and its weight row address.
struct Lanes {
  uint32_t in_off, w_lane;
  int tq, gr;  // the accumulators' column pair (lane % 4) and row (lane / 4)
};
__device__ __forceinline__ Lanes lane_roles(const Geom& g, const unsigned char* sw, int ws, int lane) {
  const int a_px = (lane & 7) + ((lane >> 3) & 1) * 8, a_half = lane >> 4;
  const int b_o = ((lane >> 4) << 3) + (lane & 7), b_half = (lane >> 3) & 1;
  return {static_cast<uint32_t>((a_half * g.wp + a_px) * 16), cuda::smem_addr(sw) + b_o * ws + b_half * 16, lane & 3,
          lane >> 2};
}

template <int ACT>
__device__ __forceinline__ float activate(const ActParams& act, float v) {
  if constexpr (ACT == static_cast<int>(Act::kRelu)) return fmaxf(v, 0.f);
  if constexpr (ACT < 0) return apply_act(act, v);
  return v;
}

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
  const int ws = w_stride(g.kh, g.kw), ib = in_bytes(g);
  unsigned char* sw = smem;
  float* sbias = reinterpret_cast<float*>(smem + kM * ws);
  unsigned char* sin = smem + kM * ws + kM * 4;
  unsigned char* stg = smem + head_bytes(g);
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  load_weights(sw, sbias, w, bias, g, ws, tid);
  int item = static_cast<int>(blockIdx.x);
  if (item < g.items) load_rows(sin, x, g, item / g.pairs, (item % g.pairs) * kRows, tid);
  cuda::cp_commit();

  const Lanes ln = lane_roles(g, sw, ws, lane);
  const int tq = ln.tq, gr = ln.gr;
  unsigned char* st = stg + warp * kStage;

  for (int it = 0; item < g.items; ++it, item += static_cast<int>(gridDim.x)) {
    const int next = item + static_cast<int>(gridDim.x);
    if (next < g.items) load_rows(sin + ((it + 1) & 1) * ib, x, g, next / g.pairs, (next % g.pairs) * kRows, tid);
    cuda::cp_commit();
    cuda::cp_wait<1>();  // this item's rows (and, the first time, the weights)
    __syncthreads();
    const int n = item / g.pairs, oy0 = (item - n * g.pairs) * kRows;
    const uint32_t in_lane = cuda::smem_addr(sin + (it & 1) * ib) + ln.in_off;
    for (int t = warp; t < g.tiles; t += kWarps) {
      const int px0 = t * 16;
      float acc[kRows][kNt][4];
      conv_tile<T, KW>(acc, in_lane, ln.w_lane, sbias, g, ws, px0, tq);
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
              const unsigned zv =
                  __ldg(reinterpret_cast<const unsigned*>(z + (row_px + px0 + p) * kM + 8 * j + 2 * tq));
              const T* zp = reinterpret_cast<const T*>(&zv);
              v0 += cuda::to_f(zp[0]);
              v1 += cuda::to_f(zp[1]);
            }
            *reinterpret_cast<unsigned*>(st + p * kPix + ((j ^ (p & 7)) << 4) + tq * 4) =
                cuda::pack2<T>(activate<ACT>(act, v0), activate<ACT>(act, v1));
          }
        }
        __syncwarp();
#pragma unroll
        for (int q = lane; q < 16 * 8; q += 32) {
          const int p = q >> 3, ch = q & 7;
          if (px0 + p < g.ow)
            *reinterpret_cast<uint4*>(y + (row_px + px0 + p) * kM + ch * 8) =
                *reinterpret_cast<const uint4*>(st + p * kPix + ((ch ^ (p & 7)) << 4));
        }
        __syncwarp();
      }
    }
    __syncthreads();  // every warp is done with this buffer before the next item refills it
  }
  cuda::cp_wait<0>();
}

// The conv followed by a 3x3 / 2 max pool with pads 1 (ResNet's stem), one kernel: the conv's
// rows never leave shared memory. Item i is band i % bands (g.band pooled rows) of image
// i / bands, taken in steps of two conv rows: step 0 the pair ending at conv row 2 py0 - 1 (the
// band's first window's top row; none when py0 = 0), step s the pair 2 py, 2 py + 1 for pooled
// row py = py0 + s - 1. After a step's conv (activation applied, rows in shared memory), each
// pooled column's window maxima of both rows are taken; pooled row py is the maximum of the
// previous step's last row (conv row 2 py - 1), row 2 py and row 2 py + 1 (where it exists).
// __hmax2 keeps MaxPool's NaN rule (a NaN loses to any number; only NaNs give NaN).
template <class T, int KW, int ACT>
__global__ void __launch_bounds__(kThreads, 2)
    tc16_conv_pool_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                          T* __restrict__ y, Geom g, ActParams act) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int ws = w_stride(g.kh, g.kw), ib = in_bytes(g);
  unsigned char* sw = smem;
  float* sbias = reinterpret_cast<float*>(smem + kM * ws);
  unsigned char* sin = smem + kM * ws + kM * 4;
  unsigned char* crow = smem + head_bytes(g);
  unsigned char* prev = crow + crow_bytes(g);
  const int row_px = g.tiles * 16;  // pixels of a conv row in crow
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  load_weights(sw, sbias, w, bias, g, ws, tid);

  const int steps = g.band + 1;
  // Task t of this CTA: step t % steps of item blockIdx.x + (t / steps) * gridDim.x.
  auto task = [&](int t, int& n, int& py0, int& step) {
    const int item = static_cast<int>(blockIdx.x) + (t / steps) * static_cast<int>(gridDim.x);
    if (item >= g.items) return false;
    n = item / g.bands;
    py0 = (item - n * g.bands) * g.band;
    step = t % steps;
    return true;
  };
  // The step's first conv row, and whether it has work.
  auto first_row = [&](int py0, int step, int& y0) {
    if (step == 0) {
      y0 = 2 * py0 - 2;
      return py0 > 0;
    }
    y0 = 2 * (py0 + step - 1);
    return py0 + step - 1 < g.ph;
  };
  int n, py0, step, y0;
  if (task(0, n, py0, step) && first_row(py0, step, y0)) load_rows(sin, x, g, n, y0, tid);
  cuda::cp_commit();

  const Lanes ln = lane_roles(g, sw, ws, lane);
  const int tq = ln.tq, gr = ln.gr;

  for (int t = 0; task(t, n, py0, step); ++t) {
    int n1, p1, s1, y1;
    if (task(t + 1, n1, p1, s1) && first_row(p1, s1, y1)) load_rows(sin + ((t + 1) & 1) * ib, x, g, n1, y1, tid);
    cuda::cp_commit();
    cuda::cp_wait<1>();
    __syncthreads();
    const bool live = first_row(py0, step, y0);  // the same for the whole CTA
    if (live) {
      const uint32_t in_lane = cuda::smem_addr(sin + (t & 1) * ib) + ln.in_off;
      for (int tt = warp; tt < g.tiles; tt += kWarps) {
        const int px0 = tt * 16;
        float acc[kRows][kNt][4];
        conv_tile<T, KW>(acc, in_lane, ln.w_lane, sbias, g, ws, px0, tq);
#pragma unroll
        for (int r = 0; r < kRows; ++r)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            const int p = px0 + gr + 8 * hh;
#pragma unroll
            for (int j = 0; j < kNt; ++j)
              *reinterpret_cast<unsigned*>(crow + (r * row_px + p) * kPix + ((j ^ (p & 7)) << 4) + tq * 4) =
                  cuda::pack2<T>(activate<ACT>(act, acc[r][j][2 * hh]), activate<ACT>(act, acc[r][j][2 * hh + 1]));
          }
      }
    }
    __syncthreads();
    if (live) {
      const int py = py0 + step - 1;
      const bool second = y0 + 1 < g.oh;  // conv row y0 + 1 exists
      for (int q = tid; q < g.pw * 8; q += kThreads) {
        const int px = q >> 3, ch = q & 7;
        const int c0 = max(2 * px - 1, 0), c1 = min(2 * px + 2, g.ow);  // c0 < c1
        auto at = [&](int r, int c) {
          return *reinterpret_cast<const uint4*>(crow + (r * row_px + c) * kPix + ((ch ^ (c & 7)) << 4));
        };
        uint4 h0 = at(0, c0), h1 = at(1, c0);
        for (int c = c0 + 1; c < c1; ++c) h0 = vmax8<T>(h0, at(0, c)), h1 = vmax8<T>(h1, at(1, c));
        uint4* pv = reinterpret_cast<uint4*>(prev + px * kPix + ch * 16);  // this thread's own chunk, step after step
        if (step > 0) {
          uint4 m = second ? vmax8<T>(h0, h1) : h0;
          if (py > 0) m = vmax8<T>(m, *pv);
          *reinterpret_cast<uint4*>(y + ((static_cast<size_t>(n) * g.ph + py) * g.pw + px) * kM + ch * 8) = m;
        }
        if (second) *pv = h1;
      }
    }
    __syncthreads();
  }
  cuda::cp_wait<0>();
}

// CTAs an SM for `kernel` at `smem` bytes, times the SMs (1 a SM where the runtime cannot say).
template <auto Kernel>
int resident_ctas(size_t smem) {
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, Kernel, kThreads, smem) != cudaSuccess) {
    (void)cudaGetLastError();
    return 132;
  }
  return cuda::sm_count() * std::max(per_sm, 1);
}

template <class T, int KW, int ACT, bool Z>
cudaError_t launch_kernel(Geom g, const void* x, const void* w, const void* b, const void* z, void* y,
                          const ActParams& act, cudaStream_t s) {
  constexpr auto kernel = tc16_conv_kernel<T, KW, ACT, Z>;
  cudaError_t e = cuda::configure_smem<kernel>(kMaxSmem, true);
  if (e != cudaSuccess) return e;
  const size_t smem = smem_bytes(g, false);
  const int grid = std::min(g.items, resident_ctas<kernel>(smem));
  kernel<<<grid, kThreads, smem, s>>>(static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
                                      static_cast<const T*>(z), static_cast<T*>(y), g, act);
  return cudaGetLastError();
}

// Bands: about one item a resident CTA (ResNet-50 bs256: one image each, no halo rows; bs32:
// 8 bands of 7 pooled rows an image), each band at least 4 pooled rows.
template <class T, int KW, int ACT>
cudaError_t launch_pool_kernel(Geom g, const void* x, const void* w, const void* b, void* y, const ActParams& act,
                               cudaStream_t s) {
  constexpr auto kernel = tc16_conv_pool_kernel<T, KW, ACT>;
  cudaError_t e = cuda::configure_smem<kernel>(kMaxPoolSmem, true);
  if (e != cudaSuccess) return e;
  const size_t smem = smem_bytes(g, true);
  const int slots = resident_ctas<kernel>(smem);
  const int per_image = std::max(1, std::min((slots + g.n / 2) / g.n, (g.ph + 3) / 4));
  g.band = (g.ph + per_image - 1) / per_image;
  g.bands = (g.ph + g.band - 1) / g.band;
  g.items = g.n * g.bands;
  const int grid = std::min(g.items, slots);
  kernel<<<grid, kThreads, smem, s>>>(static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
                                      static_cast<T*>(y), g, act);
  return cudaGetLastError();
}

// The 4-wide kernels (the space-to-depth stems of 7x7 convs) with ReLU or no activation and
// no residual get their own builds; everything else the generic one.
template <class T>
cudaError_t launch(const Geom& g, bool pooled, const void* x, const void* w, const void* b, const void* z, void* y,
                   const ActParams& act, cudaStream_t s) {
  constexpr int kRelu = static_cast<int>(Act::kRelu), kNone = static_cast<int>(Act::kNone);
  if (pooled) {
    if (g.kw == 4 && act.kind == Act::kRelu) return launch_pool_kernel<T, 4, kRelu>(g, x, w, b, y, act, s);
    if (g.kw == 4 && act.kind == Act::kNone) return launch_pool_kernel<T, 4, kNone>(g, x, w, b, y, act, s);
    return launch_pool_kernel<T, 0, -1>(g, x, w, b, y, act, s);
  }
  if (g.kw == 4 && !z && act.kind == Act::kRelu) return launch_kernel<T, 4, kRelu, false>(g, x, w, b, z, y, act, s);
  if (g.kw == 4 && !z && act.kind == Act::kNone) return launch_kernel<T, 4, kNone, false>(g, x, w, b, z, y, act, s);
  return launch_kernel<T, 0, -1, true>(g, x, w, b, z, y, act, s);
}

Status run_any(KernelContext& ctx, const Problem& p, bool pooled, DataType dtype, const void* x, const void* w,
               const void* b, const void* z, void* y, int act_kind, float a, float b_param) {
  if (!(pooled ? conv_tc16::applies_pooled(p) : conv_tc16::applies(p)))
    return ctx.error(std::string("the 16-channel tensor-core conv") + (pooled ? " with a fused max pool" : "") +
                         " does not take this problem",
                     ErrorCode::kUnsupported);
  if (dtype != DataType::kFloat16 && dtype != DataType::kBFloat16)
    return ctx.error("the 16-channel tensor-core conv runs fp16 and bf16 only", ErrorCode::kUnsupported);
  if (!cuda::aligned(x, 16) || !cuda::aligned(w, 16) || !cuda::aligned(y, 16) || (z && !cuda::aligned(z, 4)) ||
      (b && !cuda::aligned(b, 4)))
    return ctx.error("16-channel tensor-core conv: a tensor is not aligned", ErrorCode::kUnsupported);
  // applies() checked oh = h - kh + 1 and ow = w - kw + 1.
  const Geom g = geom_of(static_cast<int>(p.n), static_cast<int>(p.h), static_cast<int>(p.w), static_cast<int>(p.kh),
                         static_cast<int>(p.kw));
  const ActParams act{static_cast<Act>(act_kind), a, b_param};
  const cudaStream_t s = cuda::stream_of(ctx);
  const cudaError_t e = dtype == DataType::kFloat16 ? launch<__half>(g, pooled, x, w, b, z, y, act, s)
                                                    : launch<__nv_bfloat16>(g, pooled, x, w, b, z, y, act, s);
  if (e != cudaSuccess) return ctx.error(std::string("tc16_conv: ") + cudaGetErrorString(e), ErrorCode::kInternal);
  return Status();
}

}  // namespace

bool applies(const Problem& p) {
  if (p.nchw_input || p.c != kC || p.m != kM || p.kh < 1 || p.kh > kMaxK || p.kw < 1 || p.kw > kMaxK) return false;
  if (p.sh != 1 || p.sw != 1 || p.dh != 1 || p.dw != 1 || p.ph != 0 || p.pw != 0) return false;
  if (p.n < 1 || p.oh < 1 || p.ow < 1 || p.ow > kMaxOw || p.oh != p.h - p.kh + 1 || p.ow != p.w - p.kw + 1)
    return false;
  return p.n * ((p.oh + kRows - 1) / kRows) < (int64_t{1} << 30) && p.h < (int64_t{1} << 20);
}

bool applies_pooled(const Problem& p) { return conv_tc16::applies(p) && p.ow <= kMaxPoolOw; }

Status run(KernelContext& ctx, const Problem& p, DataType dtype, const void* x, const void* w, const void* b,
           const void* z, void* y, int act_kind, float a, float b_param) {
  return run_any(ctx, p, false, dtype, x, w, b, z, y, act_kind, a, b_param);
}

Status run_pooled(KernelContext& ctx, const Problem& p, DataType dtype, const void* x, const void* w, const void* b,
                  void* y, int act_kind, float a, float b_param) {
  return run_any(ctx, p, true, dtype, x, w, b, nullptr, y, act_kind, a, b_param);
}

}  // namespace kiln::ops::conv_tc16
