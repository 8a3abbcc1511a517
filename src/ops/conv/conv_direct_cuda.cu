// Direct NHWC convolution for few input channels (conv_direct_cuda.h).
#include "ops/conv/conv_direct_cuda.h"

#include <algorithm>

#include "backends/cuda/kernel_util.cuh"
#include "ops/conv/conv_act.cuh"

namespace kiln::ops::conv_direct {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kMaxSharedFloats = 8192;  // weights 32 KiB + the output tile 16 KiB: no opt-in needed

struct Geom {
  int n, h, w, c, oh, ow, m, kh, kw, sh, sw, ph, pw, dh, dw;
};

// Output pixels per thread: 2, so each weight read from shared memory feeds both; 1 for
// small problems (YOLOv8n's stem at batch 1: 102k pixels), where more threads hide the
// input loads' latency better than the shared weight reads save.
constexpr int64_t kOnePixelBelow = 1 << 19;

// Loads input pixel (n, iy, ix)'s C channels as float, zeros outside the image (padding).
// NCHW: one plane per channel, 64-bit offsets (a batch of stems passes 2^31 elements);
// a warp's neighbouring pixels read neighbouring addresses of each plane.
template <typename T, int CMAX, bool NCHW>
__device__ __forceinline__ void load_pixel(const T* __restrict__ x, const Geom& g, uint32_t n, int iy, int ix,
                                           float (&xv)[CMAX]) {
  if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) {
#pragma unroll
    for (int c = 0; c < CMAX; ++c) xv[c] = 0.f;
    return;
  }
  if constexpr (NCHW) {
    const uint64_t plane = static_cast<uint64_t>(g.h) * g.w;
    const T* xp = x + static_cast<uint64_t>(n) * g.c * plane + static_cast<uint64_t>(iy) * g.w + ix;
#pragma unroll
    for (int c = 0; c < CMAX; ++c) xv[c] = c < g.c ? cuda::to_f(__ldg(xp + c * plane)) : 0.f;
    return;
  }
  const T* xp = x + ((n * g.h + iy) * static_cast<uint32_t>(g.w) + ix) * g.c;
  if constexpr (CMAX * sizeof(T) == 16) {
    if (g.c == CMAX) {  // one 16-byte load (fp32 C = 4, fp16/bf16 C = 8; x is 16-byte aligned)
      const cuda::Vec<T, CMAX> v = *reinterpret_cast<const cuda::Vec<T, CMAX>*>(xp);
#pragma unroll
      for (int c = 0; c < CMAX; ++c) xv[c] = cuda::to_f(v.v[c]);
      return;
    }
  }
#pragma unroll
  for (int c = 0; c < CMAX; ++c) xv[c] = c < g.c ? cuda::to_f(__ldg(xp + c)) : 0.f;
}

// A block computes chunks of kThreads * kPixels consecutive output pixels (grid-stride
// over chunks) for channels [m0, m0 + MB), m0 = blockIdx.y * MB; thread t takes pixels
// t, t + kThreads, ... of a chunk, so a warp reads neighbouring input pixels. Shared
// memory holds the group's weights as float, [kh][kw][c][MB], read as float4 that every
// thread of a warp shares (a broadcast), then the chunk's outputs, which the block writes
// back as consecutive 16-byte vectors (one pixel's MB outputs are only 32-64 bytes:
// written per thread, every store instruction would fill half sectors). CMAX bounds C;
// NCHW reads the input as planes (load_pixel).
template <typename T, int CMAX, int MB, bool NCHW, int kPixels>
__global__ void __launch_bounds__(kThreads)
    direct_conv_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                       const T* __restrict__ z, T* __restrict__ y, Geom g, ActParams act) {
  extern __shared__ float4 ws4[];
  float* ws = reinterpret_cast<float*>(ws4);
  const int m0 = blockIdx.y * MB;
  const int taps = g.kh * g.kw;
  const int wfloats = taps * g.c * MB;  // a multiple of 8 floats: the tile after it stays 16-byte aligned
  T* tile = reinterpret_cast<T*>(ws + wfloats);
  for (int i = threadIdx.x; i < wfloats; i += blockDim.x) {
    const int mm = i % MB, rest = i / MB;  // rest = tap * C + c
    const int c = rest % g.c, tap = rest / g.c;
    ws[i] = cuda::to_f(w[(static_cast<uint32_t>(m0 + mm) * taps + tap) * g.c + c]);
  }
  __syncthreads();
  constexpr int kChunk = kThreads * kPixels;
  constexpr int V = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte vector
  using P = cuda::Vec<T, V>;
  const uint32_t pixels = static_cast<uint32_t>(g.n) * g.oh * g.ow;
  for (uint32_t base = blockIdx.x * kChunk; base < pixels; base += gridDim.x * kChunk) {
    uint32_t n[kPixels];
    int oy[kPixels], ox[kPixels];
#pragma unroll
    for (int j = 0; j < kPixels; ++j) {
      const uint32_t p = min(base + threadIdx.x + j * kThreads, pixels - 1);  // tail: recomputed, not written
      ox[j] = static_cast<int>(p % g.ow);
      const uint32_t t = p / g.ow;
      oy[j] = static_cast<int>(t % g.oh);
      n[j] = t / g.oh;
    }
    float acc[kPixels][MB];
#pragma unroll
    for (int j = 0; j < kPixels; ++j)
#pragma unroll
      for (int k = 0; k < MB; ++k) acc[j][k] = 0.f;
    for (int ky = 0; ky < g.kh; ++ky)
      for (int kx = 0; kx < g.kw; ++kx) {
        float xv[kPixels][CMAX];
#pragma unroll
        for (int j = 0; j < kPixels; ++j)
          load_pixel<T, CMAX, NCHW>(x, g, n[j], oy[j] * g.sh - g.ph + ky * g.dh, ox[j] * g.sw - g.pw + kx * g.dw,
                                    xv[j]);
        const float4* wr = ws4 + (ky * g.kw + kx) * g.c * (MB / 4);
#pragma unroll
        for (int c = 0; c < CMAX; ++c) {
          if (c >= g.c) break;
#pragma unroll
          for (int k4 = 0; k4 < MB / 4; ++k4) {
            const float4 wv = wr[c * (MB / 4) + k4];
#pragma unroll
            for (int j = 0; j < kPixels; ++j) {
              acc[j][4 * k4 + 0] = fmaf(xv[j][c], wv.x, acc[j][4 * k4 + 0]);
              acc[j][4 * k4 + 1] = fmaf(xv[j][c], wv.y, acc[j][4 * k4 + 1]);
              acc[j][4 * k4 + 2] = fmaf(xv[j][c], wv.z, acc[j][4 * k4 + 2]);
              acc[j][4 * k4 + 3] = fmaf(xv[j][c], wv.w, acc[j][4 * k4 + 3]);
            }
          }
        }
      }
#pragma unroll
    for (int j = 0; j < kPixels; ++j) {
      const int r = threadIdx.x + j * kThreads;
      const uint32_t p = base + r;
      if (p >= pixels) break;
#pragma unroll
      for (int k0 = 0; k0 < MB; k0 += V) {
        P out;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          float v = acc[j][k0 + k];
          if (bias) v += cuda::to_f(bias[m0 + k0 + k]);
          if (z) v += cuda::to_f(z[static_cast<uint64_t>(p) * g.m + m0 + k0 + k]);
          out.v[k] = cuda::from_f<T>(apply_act(act, v));
        }
        *reinterpret_cast<P*>(tile + r * MB + k0) = out;
      }
    }
    __syncthreads();
    const uint32_t rows = min(static_cast<uint32_t>(kChunk), pixels - base);
    constexpr int kPerRow = MB / V;
    for (uint32_t v = threadIdx.x; v < rows * kPerRow; v += kThreads) {
      const uint32_t r = v / kPerRow, q = v % kPerRow;
      *reinterpret_cast<P*>(y + static_cast<uint64_t>(base + r) * g.m + m0 + q * V) =
          *reinterpret_cast<const P*>(tile + r * MB + q * V);
    }
    __syncthreads();
  }
}

template <typename T, int CMAX, int MB, bool NCHW, int kPixels>
void launch_pix(cudaStream_t s, const Geom& g, const T* x, const T* w, const T* b, const T* z, T* y,
                const ActParams& act) {
  const size_t smem = static_cast<size_t>(g.kh) * g.kw * g.c * MB * sizeof(float) +
                      static_cast<size_t>(kThreads) * kPixels * MB * sizeof(T);
  static const int wave = [] {
    int dev = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, direct_conv_kernel<T, CMAX, MB, NCHW, kPixels>, kThreads,
                                                      0) != cudaSuccess) {
      (void)cudaGetLastError();
      return 132 * 8;
    }
    return std::max(sms, 1) * std::max(per_sm, 1);
  }();
  const int64_t pixels = static_cast<int64_t>(g.n) * g.oh * g.ow;
  // One resident wave per channel group at most: the weights load once per block.
  const int64_t per_block = int64_t{kThreads} * kPixels;  // pixels per chunk
  const int64_t blocks = std::min<int64_t>((pixels + per_block - 1) / per_block, std::max(1, wave / (g.m / MB)));
  dim3 grid(static_cast<unsigned>(std::max<int64_t>(blocks, 1)), static_cast<unsigned>(g.m / MB));
  direct_conv_kernel<T, CMAX, MB, NCHW, kPixels><<<grid, kThreads, smem, s>>>(x, w, b, z, y, g, act);
}

template <typename T, int CMAX, int MB, bool NCHW>
void launch(cudaStream_t s, const Geom& g, const T* x, const T* w, const T* b, const T* z, T* y, const ActParams& act) {
  if (static_cast<int64_t>(g.n) * g.oh * g.ow < kOnePixelBelow)
    launch_pix<T, CMAX, MB, NCHW, 1>(s, g, x, w, b, z, y, act);
  else
    launch_pix<T, CMAX, MB, NCHW, 2>(s, g, x, w, b, z, y, act);
}

}  // namespace

bool applies(const Problem& p) {
  if (p.c < 1 || p.c > (p.nchw_input ? 4 : 8) || p.m < 8 || p.m > 64 || p.m % 8 != 0) return false;
  if (p.kh < 1 || p.kw < 1 || p.sh < 1 || p.sw < 1 || p.dh < 1 || p.dw < 1 || p.ph < 0 || p.pw < 0) return false;
  const int64_t mb = p.m % 16 == 0 ? 16 : 8;
  if (p.kh * p.kw * p.c * mb > kMaxSharedFloats) return false;
  if (p.n < 1 || p.oh < 1 || p.ow < 1 || p.h < 1 || p.w < 1 || p.n * p.oh * p.ow >= INT32_MAX) return false;
  if (p.nchw_input) return p.h * p.w < INT32_MAX;  // 64-bit addressing (load_pixel)
  return p.n * p.h * p.w * p.c < INT32_MAX;
}

Status run(KernelContext& ctx, const Problem& p, DataType dtype, const void* x, const void* w, const void* b,
           const void* z, void* y, int act_kind, float a, float b_param) {
  if (!applies(p)) return ctx.error("the direct conv does not take this problem", ErrorCode::kUnsupported);
  for (const void* ptr : {static_cast<const void*>(y), z, x})
    if (ptr && reinterpret_cast<uintptr_t>(ptr) % 16 != 0)
      return ctx.error("direct conv: a tensor is not 16-byte aligned", ErrorCode::kUnsupported);
  const Geom g{static_cast<int>(p.n),  static_cast<int>(p.h),  static_cast<int>(p.w),  static_cast<int>(p.c),
               static_cast<int>(p.oh), static_cast<int>(p.ow), static_cast<int>(p.m),  static_cast<int>(p.kh),
               static_cast<int>(p.kw), static_cast<int>(p.sh), static_cast<int>(p.sw), static_cast<int>(p.ph),
               static_cast<int>(p.pw), static_cast<int>(p.dh), static_cast<int>(p.dw)};
  ActParams act;
  act.kind = static_cast<Act>(act_kind);
  act.a = a;
  act.b = b_param;
  const cudaStream_t s = cuda::stream_of(ctx);
  const bool wide = p.m % 16 == 0, small_c = p.c <= 4;
  KILN_CUDA_DISPATCH_FLOAT(dtype, T, {
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const T* bp = static_cast<const T*>(b);
    const T* zp = static_cast<const T*>(z);
    T* yp = static_cast<T*>(y);
    if (p.nchw_input && wide)
      launch<T, 4, 16, true>(s, g, xp, wp, bp, zp, yp, act);
    else if (p.nchw_input)
      launch<T, 4, 8, true>(s, g, xp, wp, bp, zp, yp, act);
    else if (small_c && wide)
      launch<T, 4, 16, false>(s, g, xp, wp, bp, zp, yp, act);
    else if (small_c)
      launch<T, 4, 8, false>(s, g, xp, wp, bp, zp, yp, act);
    else if (wide)
      launch<T, 8, 16, false>(s, g, xp, wp, bp, zp, yp, act);
    else
      launch<T, 8, 8, false>(s, g, xp, wp, bp, zp, yp, act);
  });
  return cuda::launch_status(ctx, "direct_conv");
}

}  // namespace kiln::ops::conv_direct
