// CUDA kernels of the pooling family: MaxPool (without Indices), AveragePool and
// LpPool (any strides, dilations, pads, auto_pad, ceil_mode), and the Global*
// pools. Windowed pools run one thread per output element (2-D windows use
// per-dim tap ranges instead of per-tap bounds checks); NHWC max/average pools
// with 16-byte aligned channel groups run one thread per 8 fp16/bf16 (or 4 fp32)
// channels of an output pixel with 16-byte loads and stores (max pools without dilation whose
// input rows fit 48 KB: one block an output row, the window's rows reduced per column first;
// KILN_POOL_ROWS=0 leaves that kernel out). Global pools reduce
// small planes with a warp each, large ones with a block, and NHWC inputs with
// a thread per channel group and pixel slice (average and max: float sums and
// unrolled 16-byte loads; Lp: double sums). Semantics follow pool.cc / global_pool.cc:
// NaNs are skipped by MaxPool unless the window holds nothing else;
// count_include_pad stops at the explicit padding; GlobalMaxPool propagates NaN.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/kernel_util.cuh"
#include "base/env.h"
#include "ops/layout.h"
#include "ops/norm/block_reduce.cuh"
#include "ops/pool/pool_internal.h"

namespace kiln::ops {
namespace {

constexpr int kMaxSpatial = cuda::kMaxRank - 2;

struct PoolGeom {
  int sp = 0;
  int kind = 0;  // pool::PoolKind
  bool count_include_pad = false;
  float p = 2.f;
  int64_t in[kMaxSpatial], out[kMaxSpatial], k[kMaxSpatial], s[kMaxSpatial], d[kMaxSpatial];
  int64_t pb[kMaxSpatial], pe[kMaxSpatial];
  int64_t in_count = 1, out_count = 1, k_count = 1;
};

// One window's running result, shared by the NCHW and NHWC kernels.
struct PoolAcc {
  float acc = 0.f, best = 0.f;
  bool found = false;
  int64_t valid = 0;

  __device__ __forceinline__ void add(const PoolGeom& g, float v) {
    ++valid;
    if (g.kind == static_cast<int>(pool::PoolKind::kMax)) {
      if (v != v) return;
      if (!found || v > best) {
        best = v;
        found = true;
      }
    } else if (g.kind == static_cast<int>(pool::PoolKind::kAverage)) {
      acc += v;
    } else {
      acc += powf(fabsf(v), g.p);
    }
  }

  /// `padded_taps`: window taps inside the explicit padding (count_include_pad's divisor).
  __device__ __forceinline__ float result(const PoolGeom& g, int64_t padded_taps) const {
    if (g.kind == static_cast<int>(pool::PoolKind::kMax))
      return found ? best : (valid ? __int_as_float(0x7fc00000) : -INFINITY);
    if (g.kind == static_cast<int>(pool::PoolKind::kAverage)) {
      const int64_t count = g.count_include_pad ? padded_taps : valid;
      return count > 0 ? acc / static_cast<float>(count) : 0.f;
    }
    return powf(acc, 1.f / g.p);
  }
};

template <typename T>
__global__ void pool_kernel(PoolGeom g, const T* x, T* y, int64_t total) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t plane = idx / g.out_count;
    int64_t rem = idx - plane * g.out_count;
    int64_t start[kMaxSpatial];
    int64_t padded_taps = 1;
    for (int d = g.sp - 1; d >= 0; --d) {
      const int64_t q = rem / g.out[d];
      const int64_t oc = rem - q * g.out[d];
      rem = q;
      start[d] = oc * g.s[d] - g.pb[d];
      const int64_t limit = g.in[d] + g.pe[d];
      const int64_t taps = start[d] >= limit ? 0 : min(g.k[d], (limit - 1 - start[d]) / g.d[d] + 1);
      padded_taps *= taps;
    }
    const T* xp = x + plane * g.in_count;
    PoolAcc a;
    for (int64_t kk = 0; kk < g.k_count; ++kk) {
      int64_t krem = kk, off = 0, stride = 1;
      bool inside = true;
      for (int d = g.sp - 1; d >= 0; --d) {
        const int64_t q = krem / g.k[d];
        const int64_t pos = start[d] + (krem - q * g.k[d]) * g.d[d];
        krem = q;
        inside = inside && pos >= 0 && pos < g.in[d];
        off += pos * stride;
        stride *= g.in[d];
      }
      if (inside) a.add(g, cuda::to_f(xp[off]));
    }
    y[idx] = cuda::from_f<T>(a.result(g, padded_taps));
  }
}

// 2-D pooling over NHWC: one thread per output element, channels innermost so
// neighbouring threads read neighbouring channels.
template <typename T>
__global__ void pool_nhwc_kernel(PoolGeom g, int64_t channels, const T* x, T* y, int64_t total) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = idx % channels;
    int64_t rest = idx / channels;
    const int64_t ow = rest % g.out[1];
    rest /= g.out[1];
    const int64_t oh = rest % g.out[0];
    const int64_t n = rest / g.out[0];
    const int64_t h0 = oh * g.s[0] - g.pb[0], w0 = ow * g.s[1] - g.pb[1];
    const int64_t hlim = g.in[0] + g.pe[0], wlim = g.in[1] + g.pe[1];
    const int64_t th = h0 >= hlim ? 0 : min(g.k[0], (hlim - 1 - h0) / g.d[0] + 1);
    const int64_t tw = w0 >= wlim ? 0 : min(g.k[1], (wlim - 1 - w0) / g.d[1] + 1);
    const T* xp = x + n * g.in[0] * g.in[1] * channels + c;
    PoolAcc a;
    for (int64_t i = 0; i < g.k[0]; ++i) {
      const int64_t h = h0 + i * g.d[0];
      if (h < 0 || h >= g.in[0]) continue;
      for (int64_t j = 0; j < g.k[1]; ++j) {
        const int64_t w = w0 + j * g.d[1];
        if (w < 0 || w >= g.in[1]) continue;
        a.add(g, cuda::to_f(xp[(h * g.in[1] + w) * channels]));
      }
    }
    y[idx] = cuda::from_f<T>(a.result(g, th * tw));
  }
}

// Taps t in [lo, hi) of one window dim land inside [0, in); `padded` counts the
// taps before the end of the explicit padding (count_include_pad's divisor).
struct TapRange {
  int64_t lo, hi, padded;
};

__device__ __forceinline__ TapRange tap_range(int64_t start, int64_t k, int64_t d, int64_t in, int64_t pad_end) {
  TapRange r;
  r.lo = start >= 0 ? 0 : (-start + d - 1) / d;
  r.hi = start >= in ? 0 : min(k, (in - 1 - start) / d + 1);
  r.hi = max(r.hi, r.lo);
  r.padded = start >= in + pad_end ? 0 : min(k, (in + pad_end - 1 - start) / d + 1);
  return r;
}

// 2-D pooling over NCHW: one thread per output element; tap ranges replace the
// generic kernel's per-tap divisions and bounds checks (same taps, same order).
template <typename T, typename I>
__global__ void pool2d_kernel(PoolGeom g, const T* x, T* y, I total) {
  for (I idx = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<I>(gridDim.x) * blockDim.x) {
    const I ow = idx % static_cast<I>(g.out[1]);
    I rest = idx / static_cast<I>(g.out[1]);
    const I oh = rest % static_cast<I>(g.out[0]);
    const I plane = rest / static_cast<I>(g.out[0]);
    const int64_t h0 = static_cast<int64_t>(oh) * g.s[0] - g.pb[0], w0 = static_cast<int64_t>(ow) * g.s[1] - g.pb[1];
    const TapRange rh = tap_range(h0, g.k[0], g.d[0], g.in[0], g.pe[0]);
    const TapRange rw = tap_range(w0, g.k[1], g.d[1], g.in[1], g.pe[1]);
    const T* xp = x + static_cast<int64_t>(plane) * g.in_count;
    PoolAcc a;
    for (int64_t i = rh.lo; i < rh.hi; ++i) {
      const T* row = xp + (h0 + i * g.d[0]) * g.in[1] + w0;
      for (int64_t j = rw.lo; j < rw.hi; ++j) a.add(g, cuda::to_f(row[j * g.d[1]]));
    }
    y[idx] = cuda::from_f<T>(a.result(g, rh.padded * rw.padded));
  }
}

// 2-D max / average pooling over NHWC, vectorized along C: a thread produces
// kLanes consecutive channels (16 bytes) of one output pixel. Needs
// C % kLanes == 0 and 16-byte aligned x and y. Max keeps PoolAcc's rule per
// channel (NaNs skipped unless the window holds nothing else; empty window -inf);
// average sums in fp32 like PoolAcc.
template <typename T, bool kMaxKind, typename I>
__global__ void pool_nhwc_vec_kernel(PoolGeom g, I groups, const T* __restrict__ x, T* __restrict__ y, I total) {
  constexpr int kLanes = 16 / sizeof(T);
  using V = cuda::Vec<T, kLanes>;
  const int64_t channels = static_cast<int64_t>(groups) * kLanes;
  for (I idx = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<I>(gridDim.x) * blockDim.x) {
    const I cg = idx % groups;
    I rest = idx / groups;
    const I ow = rest % static_cast<I>(g.out[1]);
    rest /= static_cast<I>(g.out[1]);
    const I oh = rest % static_cast<I>(g.out[0]);
    const I n = rest / static_cast<I>(g.out[0]);
    const int64_t h0 = static_cast<int64_t>(oh) * g.s[0] - g.pb[0], w0 = static_cast<int64_t>(ow) * g.s[1] - g.pb[1];
    const TapRange rh = tap_range(h0, g.k[0], g.d[0], g.in[0], g.pe[0]);
    const TapRange rw = tap_range(w0, g.k[1], g.d[1], g.in[1], g.pe[1]);
    const T* xp = x + static_cast<int64_t>(n) * g.in[0] * g.in[1] * channels + static_cast<int64_t>(cg) * kLanes;
    float acc[kLanes];
    bool seen[kLanes];  // max: a non-NaN value was seen
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      acc[l] = kMaxKind ? -INFINITY : 0.f;
      seen[l] = false;
    }
    for (int64_t i = rh.lo; i < rh.hi; ++i) {
      const T* row = xp + (h0 + i * g.d[0]) * g.in[1] * channels;
      for (int64_t j = rw.lo; j < rw.hi; ++j) {
        const V v = *reinterpret_cast<const V*>(row + (w0 + j * g.d[1]) * channels);
#pragma unroll
        for (int l = 0; l < kLanes; ++l) {
          const float f = cuda::to_f(v.v[l]);
          if (kMaxKind) {
            acc[l] = f > acc[l] ? f : acc[l];  // never picks NaN
            seen[l] = seen[l] || f == f;
          } else {
            acc[l] += f;
          }
        }
      }
    }
    const int64_t valid = (rh.hi - rh.lo) * (rw.hi - rw.lo);
    const int64_t count = g.count_include_pad ? rh.padded * rw.padded : valid;
    V out;
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      float r;
      if (kMaxKind)
        r = seen[l] ? acc[l] : (valid ? __int_as_float(0x7fc00000) : -INFINITY);
      else
        r = count > 0 ? acc[l] / static_cast<float>(count) : 0.f;
      out.v[l] = cuda::from_f<T>(r);
    }
    *reinterpret_cast<V*>(y + static_cast<int64_t>(idx) * kLanes) = out;
  }
}

// 2-D max pooling over NHWC without dilation, one block an output row (n, oh): the window's
// rows are reduced per input column first (each input vector read once a block), the column
// maxima kept in shared memory, then each output takes the maximum of its window's columns.
// fmaxf keeps PoolAcc's rule: a NaN loses to any number, only NaNs give NaN, an empty window
// -inf. (The per-output kernel above read each input vector 2.25 times at ResNet-50's 3x3/2
// stem pool: ~305 us at batch 256 against a ~180 us byte floor; session 22.)
template <typename T>
__global__ void max_pool_nhwc_rows_kernel(PoolGeom g, int groups, const T* __restrict__ x, T* __restrict__ y) {
  constexpr int kLanes = 16 / sizeof(T);
  using V = cuda::Vec<T, kLanes>;
  extern __shared__ __align__(16) unsigned char pool_smem[];
  V* cols = reinterpret_cast<V*>(pool_smem);
  const int oh = static_cast<int>(blockIdx.x % static_cast<unsigned>(g.out[0]));
  const int64_t n = blockIdx.x / static_cast<unsigned>(g.out[0]);
  const int w = static_cast<int>(g.in[1]), ow_count = static_cast<int>(g.out[1]);
  const int64_t c = static_cast<int64_t>(groups) * kLanes;
  const int h0 = oh * static_cast<int>(g.s[0]) - static_cast<int>(g.pb[0]);
  const int r0 = max(h0, 0), r1 = min(h0 + static_cast<int>(g.k[0]), static_cast<int>(g.in[0]));
  const T* xn = x + n * g.in[0] * w * c;
  for (int i = static_cast<int>(threadIdx.x); i < w * groups; i += static_cast<int>(blockDim.x)) {
    const int col = i / groups, cg = i - col * groups;
    float m[kLanes];
#pragma unroll
    for (int l = 0; l < kLanes; ++l) m[l] = r1 > r0 ? __int_as_float(0x7fc00000) : -INFINITY;
    for (int r = r0; r < r1; ++r) {
      const V v = *reinterpret_cast<const V*>(xn + (static_cast<int64_t>(r) * w + col) * c + cg * kLanes);
#pragma unroll
      for (int l = 0; l < kLanes; ++l) m[l] = fmaxf(m[l], cuda::to_f(v.v[l]));
    }
    V out;
#pragma unroll
    for (int l = 0; l < kLanes; ++l) out.v[l] = cuda::from_f<T>(m[l]);
    cols[i] = out;
  }
  __syncthreads();
  T* yrow = y + (n * g.out[0] + oh) * ow_count * c;
  for (int i = static_cast<int>(threadIdx.x); i < ow_count * groups; i += static_cast<int>(blockDim.x)) {
    const int ow = i / groups, cg = i - ow * groups;
    const int w0 = ow * static_cast<int>(g.s[1]) - static_cast<int>(g.pb[1]);
    const int c0 = max(w0, 0), c1 = min(w0 + static_cast<int>(g.k[1]), w);
    float m[kLanes];
#pragma unroll
    for (int l = 0; l < kLanes; ++l) m[l] = c1 > c0 ? __int_as_float(0x7fc00000) : -INFINITY;
    for (int col = c0; col < c1; ++col) {
      const V v = cols[col * groups + cg];
#pragma unroll
      for (int l = 0; l < kLanes; ++l) m[l] = fmaxf(m[l], cuda::to_f(v.v[l]));
    }
    V out;
#pragma unroll
    for (int l = 0; l < kLanes; ++l) out.v[l] = cuda::from_f<T>(m[l]);
    *reinterpret_cast<V*>(yrow + static_cast<int64_t>(i) * kLanes) = out;
  }
}

// Shared memory the row kernel may take without an opt-in (its column maxima: W x C values).
constexpr int64_t kPoolRowsSmem = 48 * 1024;

/// Launches kernel<I> with 32-bit index math when `total` allows it.
template <typename Launch>
void with_index_type(int64_t total, Launch&& launch) {
  if (total <= INT32_MAX)
    launch(static_cast<uint32_t>(0));
  else
    launch(static_cast<int64_t>(0));
}

Status run_pool(KernelContext& ctx, pool::PoolKind kind) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() - 2 > kMaxSpatial) return ctx.error("too many spatial dims", ErrorCode::kUnsupported);
  const bool nhwc = is_nhwc(ctx.node());
  if (nhwc && x.rank() != 4) return ctx.error("NHWC pooling is 2-D only", ErrorCode::kUnsupported);
  auto s = pool::pool_setup(kind, ctx.attrs(), nhwc ? nhwc_to_nchw(x.dims()) : x.dims());
  if (!s.ok()) return ctx.error(s.status().message());
  const int64_t total = y.numel();
  if (total == 0) return Status();
  PoolGeom g;
  g.sp = static_cast<int>(s->attrs.spatial);
  g.kind = static_cast<int>(kind);
  g.count_include_pad = s->count_include_pad;
  g.p = static_cast<float>(s->p);
  for (int d = 0; d < g.sp; ++d) {
    g.in[d] = s->geo.in[d];
    g.out[d] = s->geo.out[d];
    g.k[d] = s->attrs.kernel[d];
    g.s[d] = s->attrs.strides[d];
    g.d[d] = s->attrs.dilations[d];
    g.pb[d] = s->geo.pad_begin[d];
    g.pe[d] = s->geo.pad_end[d];
  }
  g.in_count = s->in_count;
  g.out_count = s->out_count;
  g.k_count = s->k_count;
  cudaStream_t stream = cuda::stream_of(ctx);
  if (nhwc) {
    const int64_t channels = x.dim(3);
    const int64_t lanes = x.dtype() == DataType::kFloat32 ? 4 : 8;
    const bool vec = channels % lanes == 0 && cuda::aligned(x.data(), 16) && cuda::aligned(y.data(), 16);
    const int64_t row_smem = g.in[1] * channels * static_cast<int64_t>(dtype_size(x.dtype()));
    const int64_t blocks = g.out[0] * x.dim(0);
    static const bool rows_on = !env_is("KILN_POOL_ROWS", "0");  // an A/B switch
    if (rows_on && kind == pool::PoolKind::kMax && vec && g.d[0] == 1 && g.d[1] == 1 && row_smem <= kPoolRowsSmem &&
        blocks < INT32_MAX && g.in[0] * g.in[1] * channels < INT32_MAX) {
      const int groups = static_cast<int>(channels / lanes);
      const int threads = static_cast<int>(std::min<int64_t>(256, ((g.in[1] * groups + 31) / 32) * 32));
      KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
        max_pool_nhwc_rows_kernel<T><<<static_cast<unsigned>(blocks), threads, static_cast<size_t>(row_smem), stream>>>(
            g, groups, x.data_as<T>(), y.data_as<T>());
      });
      return cuda::launch_status(ctx, "max_pool_nhwc_rows");
    }
    if (kind != pool::PoolKind::kLp && vec) {
      const int64_t groups = channels / lanes, vec_total = total / lanes;
      KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
        with_index_type(vec_total, [&](auto tag) {
          using I = decltype(tag);
          if (kind == pool::PoolKind::kMax)
            pool_nhwc_vec_kernel<T, true, I><<<cuda::grid_for(vec_total), cuda::kBlock, 0, stream>>>(
                g, static_cast<I>(groups), x.data_as<T>(), y.data_as<T>(), static_cast<I>(vec_total));
          else
            pool_nhwc_vec_kernel<T, false, I><<<cuda::grid_for(vec_total), cuda::kBlock, 0, stream>>>(
                g, static_cast<I>(groups), x.data_as<T>(), y.data_as<T>(), static_cast<I>(vec_total));
        });
      });
      return cuda::launch_status(ctx, "pool_nhwc_vec");
    }
    KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
      pool_nhwc_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(g, x.dim(3), x.data_as<T>(),
                                                                                            y.data_as<T>(), total);
    });
    return cuda::launch_status(ctx, "pool_nhwc");
  }
  if (g.sp == 2) {
    KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
      with_index_type(total, [&](auto tag) {
        using I = decltype(tag);
        pool2d_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, stream>>>(g, x.data_as<T>(), y.data_as<T>(),
                                                                                static_cast<I>(total));
      });
    });
    return cuda::launch_status(ctx, "pool2d");
  }
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    pool_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, stream>>>(g, x.data_as<T>(), y.data_as<T>(), total);
  });
  return cuda::launch_status(ctx, "pool");
}

Status max_pool_cuda(KernelContext& ctx) { return run_pool(ctx, pool::PoolKind::kMax); }
Status avg_pool_cuda(KernelContext& ctx) { return run_pool(ctx, pool::PoolKind::kAverage); }
Status lp_pool_cuda(KernelContext& ctx) { return run_pool(ctx, pool::PoolKind::kLp); }

bool float_input(const std::vector<TensorType>& inputs) {
  if (inputs.empty()) return false;
  const DataType t = inputs[0].dtype;
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

bool applies_pool(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (!float_input(inputs)) return false;
  // MaxPool's Indices output stays with the reference.
  if (node.outputs.size() > 1 && node.outputs[1] != nullptr) return false;
  const auto& shape = inputs[0].shape;
  if (is_nhwc(node)) return shape && shape->size() == 4;
  return !shape || (shape->size() >= 3 && shape->size() - 2 <= static_cast<size_t>(kMaxSpatial));
}

// ---------------------------------------------------------------- Global pools

template <typename T>
__global__ void global_pool_kernel(int kind, float p, const T* x, T* y, int64_t count) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const T* xp = x + blockIdx.x * count;
  float r;
  if (kind == static_cast<int>(pool::PoolKind::kMax)) {
    float acc = -INFINITY;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      const float v = cuda::to_f(xp[i]);
      acc = (v != v || v > acc) ? v : acc;  // NaN sticks, as in the reference
    }
    r = cuda::block_reduce(acc, cuda::NanMaxOp(), fscratch);
  } else {
    // Sums in double, like the reference.
    const bool avg = kind == static_cast<int>(pool::PoolKind::kAverage);
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      const double v = cuda::to_f(xp[i]);
      acc += avg ? v : pow(fabs(v), static_cast<double>(p));
    }
    acc = cuda::block_reduce(acc, cuda::SumOp(), dscratch);
    r = static_cast<float>(avg ? acc / static_cast<double>(count) : pow(acc, 1.0 / p));
  }
  if (threadIdx.x == 0) y[blockIdx.x] = cuda::from_f<T>(r);
}

// Small planes (count <= kWarpPlaneMax): one warp per (N, C) plane, 8 planes per block.
constexpr int64_t kWarpPlaneMax = 2048;
constexpr int kWarpsPerBlock = 8;

template <typename T>
__global__ void global_pool_warp_kernel(int kind, float p, const T* x, T* y, int64_t planes, int64_t count) {
  const int64_t plane = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (plane >= planes) return;  // whole warps leave together: the shuffles below stay full-warp
  const T* xp = x + plane * count;
  float r;
  if (kind == static_cast<int>(pool::PoolKind::kMax)) {
    float acc = -INFINITY;
    for (int64_t i = lane; i < count; i += 32) {
      const float v = cuda::to_f(xp[i]);
      acc = (v != v || v > acc) ? v : acc;  // NaN sticks, as in the reference
    }
    r = cuda::warp_reduce(acc, cuda::NanMaxOp());
  } else {
    const bool avg = kind == static_cast<int>(pool::PoolKind::kAverage);
    double acc = 0.0;
    for (int64_t i = lane; i < count; i += 32) {
      const double v = cuda::to_f(xp[i]);
      acc += avg ? v : pow(fabs(v), static_cast<double>(p));
    }
    acc = cuda::warp_reduce(acc, cuda::SumOp());
    r = static_cast<float>(avg ? acc / static_cast<double>(count) : pow(acc, 1.0 / p));
  }
  if (lane == 0) y[plane] = cuda::from_f<T>(r);
}

// NHWC [N, H, W, C] -> [N, 1, 1, C] (the same bytes as NCHW [N, C, 1, 1]), average and max:
// block (bx, slices) of at most kGlobalBlock threads, x walking channel groups of kLanes
// channels (coalesced along C), y splitting the H*W pixels; each thread keeps kGlobalUnroll
// 16-byte loads in flight and the slices are combined through shared memory in slice order.
// Float accumulators: exact for max; for averages of up to a few thousand pixels an fp32 sum
// stays well inside the tests' tolerances. The double-accumulating kernel below (now Lp's)
// kept one load in flight a thread and ran two waves: at ResNet-50 bs256's head ([256, 7, 7,
// 2048] fp16, 51 MB: ~18 us at ~2.9 TB/s) 36.5 us against this one's 22.1 (ncu, bench/RESULTS.md
// session 24, run 3).
constexpr int kGlobalBlock = 256;
constexpr int kGlobalUnroll = 8;
constexpr int kGlobalMinBlocks = 4;  // blocks an SM (__launch_bounds__): the grid is sized to one wave of them

template <typename T, int kLanes, bool kMax>
__global__ void __launch_bounds__(kGlobalBlock, kGlobalMinBlocks)
    global_pool_nhwc_fast_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t groups, int64_t pixels) {
  using V = cuda::Vec<T, kLanes>;
  __shared__ float part[kLanes][kGlobalBlock];
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t n = blockIdx.y;
  const int slices = static_cast<int>(blockDim.y), s = static_cast<int>(threadIdx.y);
  const int64_t channels = groups * kLanes;
  float acc[kLanes];
#pragma unroll
  for (int l = 0; l < kLanes; ++l) acc[l] = kMax ? -INFINITY : 0.f;
  if (g < groups) {
    // Loads past the last pixel read as -inf (max) or +0 (sum), which change nothing. Vectors
    // are held as uint4 (a bf16 Vec array spilled under the 64-register bound).
    using R = std::conditional_t<sizeof(V) == 16, uint4, V>;
    V none_v;
#pragma unroll
    for (int l = 0; l < kLanes; ++l) none_v.v[l] = cuda::from_f<T>(kMax ? -INFINITY : 0.f);
    const R none = reinterpret_cast<const R&>(none_v);
    const T* xp = x + n * pixels * channels + g * kLanes;
    const int count = static_cast<int>(pixels), step = kGlobalUnroll * slices;
    for (int base = s; base < count; base += step) {
      const T* p = xp + static_cast<int64_t>(base) * channels;
      R r[kGlobalUnroll];
#pragma unroll
      for (int u = 0; u < kGlobalUnroll; ++u)
        r[u] = base + u * slices < count ? *reinterpret_cast<const R*>(p + static_cast<int64_t>(u * slices) * channels)
                                         : none;
#pragma unroll
      for (int u = 0; u < kGlobalUnroll; ++u)
#pragma unroll
        for (int l = 0; l < kLanes; ++l) {
          const float f = cuda::to_f(reinterpret_cast<const V&>(r[u]).v[l]);
          if (kMax)
            acc[l] = (f != f || f > acc[l]) ? f : acc[l];  // NaN sticks, as in the reference
          else
            acc[l] += f;
        }
    }
  }
  const int tid = s * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x);
  if (slices > 1) {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) part[l][tid] = acc[l];
    __syncthreads();
  }
  if (s != 0 || g >= groups) return;
  V out;
#pragma unroll
  for (int l = 0; l < kLanes; ++l) {
    float a = acc[l];
    for (int k = 1; k < slices; ++k) {
      const float b = part[l][tid + k * static_cast<int>(blockDim.x)];
      a = kMax ? ((b != b || b > a) ? b : a) : a + b;
    }
    out.v[l] = cuda::from_f<T>(kMax ? a : a / static_cast<float>(pixels));
  }
  *reinterpret_cast<V*>(y + n * channels + g * kLanes) = out;
}

// Lp over NHWC (double sums, like the reference). Block (32, kSlices): x walks channel groups
// of kLanes channels, y strides over the H*W pixels; the slices are combined through shared
// memory.
constexpr int kSlices = 8;

template <typename T, int kLanes>
__global__ void global_pool_nhwc_kernel(int kind, float p, const T* __restrict__ x, T* __restrict__ y, int64_t groups,
                                        int64_t pixels) {
  using V = cuda::Vec<T, kLanes>;
  __shared__ double part[kSlices][32][kLanes];
  const int64_t g = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t n = blockIdx.y;
  const int64_t channels = groups * kLanes;
  const bool is_max = kind == static_cast<int>(pool::PoolKind::kMax);
  const bool avg = kind == static_cast<int>(pool::PoolKind::kAverage);
  double acc[kLanes];
#pragma unroll
  for (int l = 0; l < kLanes; ++l) acc[l] = is_max ? -INFINITY : 0.0;
  if (g < groups) {
    const T* xp = x + n * pixels * channels + g * kLanes;
    for (int64_t px = threadIdx.y; px < pixels; px += kSlices) {
      const V v = *reinterpret_cast<const V*>(xp + px * channels);
#pragma unroll
      for (int l = 0; l < kLanes; ++l) {
        const double f = cuda::to_f(v.v[l]);
        if (is_max)
          acc[l] = (f != f || f > acc[l]) ? f : acc[l];  // NaN sticks, as in the reference
        else
          acc[l] += avg ? f : pow(fabs(f), static_cast<double>(p));
      }
    }
  }
#pragma unroll
  for (int l = 0; l < kLanes; ++l) part[threadIdx.y][threadIdx.x][l] = acc[l];
  __syncthreads();
  if (threadIdx.y != 0 || g >= groups) return;
  V out;
#pragma unroll
  for (int l = 0; l < kLanes; ++l) {
    double a = part[0][threadIdx.x][l];
    for (int s = 1; s < kSlices; ++s) {
      const double b = part[s][threadIdx.x][l];
      a = is_max ? ((b != b || b > a) ? b : a) : a + b;
    }
    if (avg)
      a = a / static_cast<double>(pixels);
    else if (!is_max)
      a = pow(a, 1.0 / p);
    out.v[l] = cuda::from_f<T>(static_cast<float>(a));
  }
  *reinterpret_cast<V*>(y + n * channels + g * kLanes) = out;
}

Status run_global(KernelContext& ctx, pool::PoolKind kind) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() < 3) return ctx.error("X must have rank >= 3");
  const bool nhwc = is_nhwc(ctx.node());
  if (nhwc && x.rank() != 4) return ctx.error("NHWC global pooling is 2-D only", ErrorCode::kUnsupported);
  const int64_t channels = nhwc ? x.dim(3) : x.dim(1);
  const int64_t planes = x.dim(0) * channels;
  if (planes == 0) return Status();
  const int64_t count = x.numel() / planes;
  const int64_t p = ctx.attrs().get_int("p", 2);
  if (kind == pool::PoolKind::kLp && p < 1) return ctx.error("p must be >= 1");
  cudaStream_t stream = cuda::stream_of(ctx);
  if (nhwc) {
    if (x.dim(0) > 65535) return ctx.error("batch too large", ErrorCode::kUnsupported);
    const int64_t lanes = x.dtype() == DataType::kFloat32 ? 4 : 8;
    const bool vec = channels % lanes == 0 && cuda::aligned(x.data(), 16) && cuda::aligned(y.data(), 16);
    const int64_t groups = vec ? channels / lanes : channels;
    if (kind != pool::PoolKind::kLp && count < (int64_t{1} << 30)) {  // 32-bit pixel indices
      // Pixel slices until the grid fills one wave of kGlobalMinBlocks blocks an SM, each slice
      // keeping at least kGlobalUnroll pixels (ResNet-50 bs256's head: 2 slices, 512 blocks).
      const int64_t wave = int64_t{cuda::sm_count()} * kGlobalMinBlocks * kGlobalBlock;
      int slices = 1;
      while (slices < kGlobalBlock && x.dim(0) * groups * slices * 2 <= wave && count >= kGlobalUnroll * slices * 2)
        slices *= 2;
      int bx = 1;
      while (bx < groups && bx * slices < kGlobalBlock) bx *= 2;
      const dim3 grid(static_cast<unsigned>((groups + bx - 1) / bx), static_cast<unsigned>(x.dim(0)));
      const dim3 block(static_cast<unsigned>(bx), static_cast<unsigned>(slices));
      const bool is_max = kind == pool::PoolKind::kMax;
      KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
        constexpr int kVec = static_cast<int>(16 / sizeof(T));
        if (vec && is_max)
          global_pool_nhwc_fast_kernel<T, kVec, true>
              <<<grid, block, 0, stream>>>(x.data_as<T>(), y.data_as<T>(), groups, count);
        else if (vec)
          global_pool_nhwc_fast_kernel<T, kVec, false>
              <<<grid, block, 0, stream>>>(x.data_as<T>(), y.data_as<T>(), groups, count);
        else if (is_max)
          global_pool_nhwc_fast_kernel<T, 1, true>
              <<<grid, block, 0, stream>>>(x.data_as<T>(), y.data_as<T>(), groups, count);
        else
          global_pool_nhwc_fast_kernel<T, 1, false>
              <<<grid, block, 0, stream>>>(x.data_as<T>(), y.data_as<T>(), groups, count);
      });
      return cuda::launch_status(ctx, "global_pool_nhwc_fast");
    }
    const dim3 grid(static_cast<unsigned>((groups + 31) / 32), static_cast<unsigned>(x.dim(0)));
    const dim3 block(32, kSlices);
    KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
      if (vec)
        global_pool_nhwc_kernel<T, 16 / sizeof(T)><<<grid, block, 0, stream>>>(
            static_cast<int>(kind), static_cast<float>(p), x.data_as<T>(), y.data_as<T>(), groups, count);
      else
        global_pool_nhwc_kernel<T, 1><<<grid, block, 0, stream>>>(static_cast<int>(kind), static_cast<float>(p),
                                                                  x.data_as<T>(), y.data_as<T>(), groups, count);
    });
    return cuda::launch_status(ctx, "global_pool_nhwc");
  }
  if (count <= kWarpPlaneMax) {
    const int64_t blocks = (planes + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > INT32_MAX) return ctx.error("too many planes", ErrorCode::kUnsupported);
    KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
      global_pool_warp_kernel<T><<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, stream>>>(
          static_cast<int>(kind), static_cast<float>(p), x.data_as<T>(), y.data_as<T>(), planes, count);
    });
    return cuda::launch_status(ctx, "global_pool_warp");
  }
  if (planes > INT32_MAX) return ctx.error("too many planes", ErrorCode::kUnsupported);
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    global_pool_kernel<T><<<static_cast<unsigned>(planes), 256, 0, stream>>>(
        static_cast<int>(kind), static_cast<float>(p), x.data_as<T>(), y.data_as<T>(), count);
  });
  return cuda::launch_status(ctx, "global_pool");
}

Status global_avg_cuda(KernelContext& ctx) { return run_global(ctx, pool::PoolKind::kAverage); }
Status global_max_cuda(KernelContext& ctx) { return run_global(ctx, pool::PoolKind::kMax); }
Status global_lp_cuda(KernelContext& ctx) { return run_global(ctx, pool::PoolKind::kLp); }

bool applies_global(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (!float_input(inputs)) return false;
  return !is_nhwc(node) || (inputs[0].shape && inputs[0].shape->size() == 4);
}

}  // namespace

void register_pool_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "MaxPool", FastKernel{"cuda.pool", max_pool_cuda, applies_pool});
  (void)r.add_cuda_kernel("", "AveragePool", FastKernel{"cuda.pool", avg_pool_cuda, applies_pool});
  (void)r.add_cuda_kernel("", "LpPool", FastKernel{"cuda.pool", lp_pool_cuda, applies_pool});
  (void)r.add_cuda_kernel("", "GlobalAveragePool", FastKernel{"cuda.global_pool", global_avg_cuda, applies_global});
  (void)r.add_cuda_kernel("", "GlobalMaxPool", FastKernel{"cuda.global_pool", global_max_cuda, applies_global});
  (void)r.add_cuda_kernel("", "GlobalLpPool", FastKernel{"cuda.global_pool", global_lp_cuda, applies_global});
}

}  // namespace kiln::ops
