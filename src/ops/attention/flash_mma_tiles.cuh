// Device building blocks of the register-resident flash attention kernel
// (flash_mma_cuda.cu): the tensor-core primitives of backends/cuda/mma.cuh, bf16 hi/lo
// splitting for split fp32, the softmax's exponential and mask helpers, and the tile
// loaders (load_rows' general view addressing, RowStream's one pointer a row stream).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/mma.cuh"
#include "ops/attention/attention_cuda.cuh"

namespace kiln::ops::attn {

using cuda::cp_async16;
using cuda::cp_commit;
using cuda::cp_wait;
using cuda::ldsm_x4;
using cuda::ldsm_x4_t;
using cuda::mma16816;
using cuda::pack2;
using cuda::smem_addr;

// The tensor-core element type of operand type T: fp32 runs as split bf16.
template <class T>
struct ComputeOf {
  using type = T;
};
template <>
struct ComputeOf<float> {
  using type = __nv_bfloat16;
};
template <class T>
constexpr bool kSplit = std::is_same<T, float>::value;

// x0, x1 as bf16 pairs hi = bf16(x), lo = bf16(x - hi) (lo = the lower column).
__device__ __forceinline__ void split2(float x0, float x1, unsigned& hi, unsigned& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 back = __bfloat1622float2(h);
  const __nv_bfloat162 l = __floats2bfloat162_rn(x0 - back.x, x1 - back.y);
  hi = *reinterpret_cast<const unsigned*>(&h);
  lo = *reinterpret_cast<const unsigned*>(&l);
}

// 2^x (MUFU.EX2; -inf gives 0). Scores are kept in log2 units: the softmax scale times
// log2(e) is one multiplier, so each probability costs one FFMA and one EX2.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
constexpr float kLog2e = 1.4426950408889634f;

// The softmax's exponential: 16-bit kernels keep scores in log2 units (2^x); split fp32
// keeps natural units and __expf, whose rounding its 1e-3 accuracy was measured with (in
// log2 units ViT-B/16 FP32 bs32 measured 1.01e-3 against 8.9e-4).
template <bool SPLIT>
__device__ __forceinline__ float softmax_exp(float x) {
  if constexpr (SPLIT) {
    return __expf(x);
  } else {
    return ex2(x);
  }
}

// The additive mask at keys kc and kc + 1 of one mask row (0 past Sk): one 2-element load
// when the keys are contiguous and the row 2-element aligned (kc is even).
template <class T>
__device__ __forceinline__ void load_mask_pair(const T* __restrict__ row, long long kc, long long sk, long long stride,
                                               bool pairs, float (&m)[2]) {
  if (pairs && kc + 1 < sk) {
    if constexpr (kSplit<T>) {
      const float2 v = __ldg(reinterpret_cast<const float2*>(row + kc));
      m[0] = v.x;
      m[1] = v.y;
    } else {
      const unsigned u = __ldg(reinterpret_cast<const unsigned*>(row + kc));
      const T* v = reinterpret_cast<const T*>(&u);
      m[0] = cuda::to_f(v[0]);
      m[1] = cuda::to_f(v[1]);
    }
    return;
  }
  m[0] = kc < sk ? cuda::to_f(row[kc * stride]) : 0.f;
  m[1] = kc + 1 < sk ? cuda::to_f(row[(kc + 1) * stride]) : 0.f;
}

// x as a finite float when x is an overflowed product of finite factors.
__device__ __forceinline__ float keep_finite(float x, float factor) {
  return isinf(x) && !isinf(factor) ? copysignf(3.402823466e38f, x) : x;
}

// A mask value as the start of a score accumulator: as is where Q came scaled (split fp32),
// else divided by the scale the scores get afterwards; a finite mask stays finite (a
// dtype's lowest value over a small scale would overflow to -inf and turn a fully masked
// row, which softmax spreads evenly, into an empty one).
// (fp16 masks are below 65504 and the 16-bit launch takes scale >= 2^-100: no overflow.)
template <class T>
__device__ __forceinline__ float mask_start(float m, float inv_scale) {
  if constexpr (kSplit<T>) {
    return m;
  } else if constexpr (std::is_same<T, __half>::value) {
    return m * inv_scale;
  } else {
    return keep_finite(m * inv_scale, m);
  }
}

// Stores y0, y1 at p[0], p[1] (p 2-element aligned).
template <class T>
__device__ __forceinline__ void store2(T* p, float y0, float y1) {
  if constexpr (kSplit<T>) {
    *reinterpret_cast<float2*>(p) = make_float2(y0, y1);
  } else {
    *reinterpret_cast<unsigned*>(p) = pack2<T>(y0, y1);
  }
}

// As load_rows (below), for fp32 rows split into bf16 hi and lo tiles (synchronous loads).
// Values are multiplied by `scale` first (Q by the softmax scale).
template <int D, int NW>
__device__ __forceinline__ void load_rows_split(__nv_bfloat16* hi, __nv_bfloat16* lo, const float* __restrict__ src,
                                                long long base, const AxisMap& ax, long long r0, long long rmax,
                                                int rows, int tid, float scale) {
  constexpr int LD = D + 8, CH = D / 8;
#pragma unroll 2
  for (int i = tid; i < rows * CH; i += NW * 32) {
    const int r = i / CH, c = (i % CH) * 8;
    const long long gi = r0 + r;
    uint4 h = make_uint4(0, 0, 0, 0), l = make_uint4(0, 0, 0, 0);
    if (gi < rmax) {
      const float4* p = reinterpret_cast<const float4*>(src + base + axo(ax, gi) + c);
      const float4 a = __ldg(p), b = __ldg(p + 1);
      split2(a.x * scale, a.y * scale, h.x, l.x);
      split2(a.z * scale, a.w * scale, h.y, l.y);
      split2(b.x * scale, b.y * scale, h.z, l.z);
      split2(b.z * scale, b.w * scale, h.w, l.w);
    }
    *reinterpret_cast<uint4*>(hi + r * LD + c) = h;
    *reinterpret_cast<uint4*>(lo + r * LD + c) = l;
  }
}

// Rows [r0, r0 + rows) of fp32 rows as they are (16-byte chunks, rows >= rmax zero)
// into dst[rows][D], asynchronously.
template <int D, int NW>
__device__ __forceinline__ void load_rows_raw(float* dst, const float* __restrict__ src, long long base,
                                              const AxisMap& ax, long long r0, long long rmax, int rows, int tid) {
  constexpr int CH = D / 4;
#pragma unroll 4
  for (int i = tid; i < rows * CH; i += NW * 32) {
    const int r = i / CH, c = (i % CH) * 4;
    const long long gi = r0 + r;
    const bool ok = gi < rmax;
    cp_async16(dst + r * D + c, src + base + (ok ? axo(ax, gi) : 0) + c, ok);
  }
}

// A raw fp32 tile raw[rows][D] (shared) split into bf16 hi and lo tiles (rows of D + 8),
// multiplied by `scale` first when SCALED (Q).
template <int D, int NW, bool SCALED = false>
__device__ __forceinline__ void split_rows(__nv_bfloat16* hi, __nv_bfloat16* lo, const float* raw, int rows, int tid,
                                           float scale = 1.f) {
  constexpr int LD = D + 8, CH = D / 4;
#pragma unroll 4
  for (int i = tid; i < rows * CH; i += NW * 32) {
    const int r = i / CH, c = (i % CH) * 4;
    float4 a = *reinterpret_cast<const float4*>(raw + r * D + c);
    if constexpr (SCALED) a = make_float4(a.x * scale, a.y * scale, a.z * scale, a.w * scale);
    uint2 h, l;
    split2(a.x, a.y, h.x, l.x);
    split2(a.z, a.w, h.y, l.y);
    *reinterpret_cast<uint2*>(hi + r * LD + c) = h;
    *reinterpret_cast<uint2*>(lo + r * LD + c) = l;
  }
}

// Rows [r0, r0 + rows) of one operand (16-byte chunks, rows >= rmax zero) into dst.
template <class T, int D, int NW>
__device__ __forceinline__ void load_rows(T* dst, const T* __restrict__ src, long long base, const AxisMap& ax,
                                          long long r0, long long rmax, int rows, int tid) {
  constexpr int LD = D + 8, CH = D / 8;
#pragma unroll
  for (int i = tid; i < rows * CH; i += NW * 32) {
    const int r = i / CH, c = (i % CH) * 8;
    const long long gi = r0 + r;
    const bool ok = gi < rmax;
    cp_async16(dst + r * LD + c, src + base + (ok ? axo(ax, gi) : 0) + c, ok);
  }
}

// One thread's 16-byte chunks of [rows][D] tiles of an operand whose sequence axis is
// a single stride s (no Reshape merged it from two axes; the kernel's LIN): chunk
// tid % CH of rows tid / CH + j * RSTEP, as one pointer advanced by s, where load_rows
// spends ~25 integer instructions a chunk on axo's 64-bit arithmetic (ncu, BERT-base
// FP16 bs128: over a third of the kernel's instructions).
template <class T, int D, int NT>
struct RowStream {
  static constexpr int CH = D / 8, RSTEP = NT / CH;
  const T* p;  // this thread's chunk of sequence row tid / CH
  long long s;
  __device__ __forceinline__ RowStream(const T* base, long long stride, int tid)
      : p(base + (tid / CH) * stride + (tid % CH) * 8), s(stride) {
    static_assert(RSTEP > 0, "a row step per block");
  }
  // Rows [r0, r0 + ROWS) into dst[ROWS][D + 8] (rows >= rmax zero).
  template <int ROWS>
  __device__ __forceinline__ void load(T* dst, long long r0, long long rmax, int tid) const {
    static_assert(ROWS % RSTEP == 0, "whole row steps");
    const T* src = p + r0 * s;
    const long long step = RSTEP * s;
    T* d = dst + (tid / CH) * (D + 8) + (tid % CH) * 8;
    // Rows this thread may still load, as an int (one compare a chunk, not two).
    const long long left64 = rmax - r0 - tid / CH;
    const int left = left64 > ROWS ? ROWS : static_cast<int>(left64 < 0 ? 0 : left64);
#pragma unroll
    for (int j = 0; j < ROWS / RSTEP; ++j) {
      const bool ok = j * RSTEP < left;
      cp_async16(d + j * RSTEP * (D + 8), ok ? src : p, ok);
      src += step;  // one 64-bit add a chunk, not a multiply
    }
  }
};

}  // namespace kiln::ops::attn
