// CUDA kernels of Resize / Upsample: a thread per output element computes, per
// resized axis, the reference's source coordinate (in double, as resize_kernel.cc
// does) and then either gathers the nearest element (any dtype) or sums the
// linear / cubic taps of every resized axis (fp32/fp16/bf16, accumulated in
// double). The plan (sizes, scales, roi) comes from the host values of the
// scales/sizes/roi inputs through the reference's make_plan. Antialiasing is
// left to the CPU. Nearest resizes with integer up/down factors (the common 2x
// upsample) take fast kernels: 16-byte copies of the untouched trailing dims
// (NHWC: channels) or a load-and-widen along the last dim (NCHW: W).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backends/cuda/kernel_util.cuh"
#include "ops/common.h"
#include "ops/resize/resize_plan.h"

namespace kiln::ops {
namespace {

using cuda::kMaxRank;
using resize::CoordMode;
using resize::Mode;
using resize::NearestMode;

struct AxisParams {
  int64_t in = 0, out = 0, stride = 0;  ///< stride: the input's element stride
  double scale = 1, roi_start = 0, roi_end = 1;
  bool active = false;  ///< resized (for linear/cubic: and not an identity)
};

struct ResizeParams {
  int rank = 0;
  AxisParams ax[kMaxRank];
  CoordMode coord = CoordMode::kHalfPixel;
  NearestMode nearest = NearestMode::kRoundPreferFloor;
  bool cubic = false;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0;
};

/// Output coordinate o to a fractional input coordinate (resize_kernel.cc's source_coord).
__host__ __device__ double source_coord(const ResizeParams& p, const AxisParams& a, int64_t o) {
  double in = static_cast<double>(a.in), s = a.scale, x = static_cast<double>(o);
  double out_f = s * in;  // the unrounded output length, as the reference uses
  switch (p.coord) {
    case CoordMode::kAlignCorners:
      return out_f == 1.0 ? 0.0 : x * (in - 1) / (out_f - 1);
    case CoordMode::kAsymmetric:
      return x / s;
    case CoordMode::kTfCropAndResize: {
      double span = (a.roi_end - a.roi_start) * (in - 1);
      double v = out_f == 1.0 ? span / 2 : x * span / (out_f - 1);
      return v + a.roi_start * (in - 1);
    }
    case CoordMode::kPytorchHalfPixel:
      return out_f == 1.0 ? -0.5 : (x + 0.5) / s - 0.5;
    case CoordMode::kHalfPixel:
      return (x + 0.5) / s - 0.5;
    case CoordMode::kHalfPixelSymmetric: {
      double adjustment = static_cast<double>(a.out) / out_f;
      double offset = in / 2 * (1 - adjustment);
      return offset + (x + 0.5) / s - 0.5;
    }
    case CoordMode::kTfHalfPixelForNn:
      return (x + 0.5) / s;
  }
  return x;
}

__host__ __device__ __forceinline__ bool extrapolated(const ResizeParams& p, const AxisParams& a, double x) {
  return p.coord == CoordMode::kTfCropAndResize && (x < 0 || x > static_cast<double>(a.in - 1));
}

/// Keeps huge coordinates where integer conversion is defined (resize_kernel.cc's tame).
__host__ __device__ __forceinline__ double tame(double x, int64_t in, int64_t taps) {
  double lo = -static_cast<double>(taps + 2), hi = static_cast<double>(in + taps + 2);
  if (x != x) return lo;
  return fmin(fmax(x, lo), hi);
}

constexpr int64_t kExtrap = std::numeric_limits<int64_t>::min();

__host__ __device__ int64_t nearest_index(const ResizeParams& p, const AxisParams& a, int64_t o) {
  double x = source_coord(p, a, o);
  if (extrapolated(p, a, x)) return kExtrap;
  x = tame(x, a.in, 2);
  double f = floor(x), frac = x - f;
  if (frac == 0) return static_cast<int64_t>(f);
  switch (p.nearest) {
    case NearestMode::kRoundPreferFloor:
      return static_cast<int64_t>(frac <= 0.5 ? f : f + 1);
    case NearestMode::kRoundPreferCeil:
      return static_cast<int64_t>(frac < 0.5 ? f : f + 1);
    case NearestMode::kFloor:
      return static_cast<int64_t>(f);
    case NearestMode::kCeil:
      return static_cast<int64_t>(f + 1);
    case NearestMode::kSimple:
      return static_cast<int64_t>(a.scale < 1.0 ? ceil(x) : trunc(x));
  }
  return static_cast<int64_t>(f);
}

template <typename T>
__global__ void resize_nearest_kernel(const T* __restrict__ x, T* __restrict__ y, ResizeParams p, T extrap_v,
                                      int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = i, off = 0;
    int special = 0;  // 1: extrapolation value, 2: zero (outside with exclude_outside)
    for (int d = p.rank - 1; d >= 0; --d) {
      const AxisParams& a = p.ax[d];
      int64_t q = rest / a.out, o = rest - q * a.out;
      rest = q;
      int64_t s = a.active ? nearest_index(p, a, o) : o;
      if (s == kExtrap) {
        special = 1;
      } else if (p.exclude_outside && (s < 0 || s >= a.in)) {
        if (!special) special = 2;
      } else {
        s = s < 0 ? 0 : (s >= a.in ? a.in - 1 : s);
        off += s * a.stride;
      }
    }
    y[i] = special == 1 ? extrap_v : special == 2 ? T(0) : x[off];
  }
}

// ---------------------------------------------------------------- Fast nearest
// Nearest resizes whose per-axis index map is periodic: with o = q * k + r,
// source(o) = clamp(q * j + phase[r], 0, in - 1) (integer upsampling: j = 1,
// k = out / in; integer downsampling: k = 1, j = in / out; copied axes: k = j = 1,
// phase 0). The host fits the map and checks it against nearest_index (the
// reference's rule, run in the same double arithmetic) for every output index of
// the axis, so the fast kernels gather exactly the elements the reference does
// for every coordinate_transformation_mode / nearest_mode; anything that does not
// fit (non-integer scales, extrapolation, exclude_outside taps outside the input)
// takes resize_nearest_kernel.

constexpr int kMaxPeriod = 16;
constexpr int64_t kMaxCheckedOut = int64_t{1} << 18;  ///< longer axes are not fitted (host time)

struct FastAxis {
  int64_t out = 1, in = 1, stride = 0;  ///< stride: in the kernel's load units
  int32_t k = 1, j = 1;
  int32_t phase[kMaxPeriod] = {};
};

struct FastNearest {
  int rank = 0;  ///< leading axes that are indexed; the rest is a contiguous run
  FastAxis ax[kMaxRank];
};

/// Per-axis maps of a nearest resize, or false if some axis does not fit.
bool fit_fast_nearest(const ResizeParams& p, FastAxis (&maps)[kMaxRank]) {
  for (int d = 0; d < p.rank; ++d) {
    const AxisParams& a = p.ax[d];
    FastAxis& m = maps[d];
    m.out = a.out;
    m.in = a.in;
    if (!a.active) {
      if (a.out != a.in) return false;
      continue;
    }
    if (a.in <= 0 || a.out > kMaxCheckedOut) return false;
    if (a.out % a.in == 0 && a.out / a.in <= kMaxPeriod) {
      m.k = static_cast<int32_t>(a.out / a.in);
      m.j = 1;
    } else if (a.in % a.out == 0 && a.in / a.out <= INT32_MAX) {
      m.k = 1;
      m.j = static_cast<int32_t>(a.in / a.out);
    } else {
      return false;
    }
    for (int64_t o = 0; o < a.out; ++o) {
      const int64_t s = nearest_index(p, a, o);
      if (s == kExtrap || (p.exclude_outside && (s < 0 || s >= a.in))) return false;
      const int64_t q = o / m.k, r = o - q * m.k;
      if (o < m.k) {
        if (s < INT32_MIN || s > INT32_MAX) return false;
        m.phase[r] = static_cast<int32_t>(s);
      } else if (s != q * m.j + m.phase[r]) {
        return false;
      }
    }
  }
  return true;
}

bool is_copy_axis(const FastAxis& m) { return m.k == 1 && m.j == 1 && m.phase[0] == 0 && m.out == m.in; }

template <typename I>
__device__ __forceinline__ int64_t fast_source(const FastAxis& m, I o) {
  I q = o, r = 0;
  if (m.k != 1) {
    q = o / static_cast<I>(m.k);
    r = o - q * static_cast<I>(m.k);
  }
  int64_t s = static_cast<int64_t>(q) * m.j + m.phase[r];
  return s < 0 ? 0 : (s >= m.in ? m.in - 1 : s);
}

/// Input offset (in load units) of output row `row` over the indexed axes.
template <typename I>
__device__ __forceinline__ int64_t fast_row_offset(const FastNearest& f, I row) {
  int64_t off = 0;
  for (int d = f.rank - 1; d >= 0; --d) {
    const FastAxis& m = f.ax[d];
    const I q = row / static_cast<I>(m.out);
    off += fast_source(m, row - q * static_cast<I>(m.out)) * m.stride;
    row = q;
  }
  return off;
}

// The trailing copied axes form a contiguous run of `run` load units V (up to 16
// bytes) per output row: one thread per output unit (NHWC: 8 fp16 channels).
template <typename V, typename I>
__global__ void resize_nearest_run_kernel(const V* __restrict__ x, V* __restrict__ y,
                                          const __grid_constant__ FastNearest f, I run, I total) {
  for (I i = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<I>(gridDim.x) * blockDim.x) {
    const I row = i / run;
    y[i] = x[fast_row_offset(f, row) + (i - row * run)];
  }
}

// The last axis is upsampled by K with source(o) = o / K (NCHW 2x: W): a thread
// loads N input elements of a row and stores the K * N outputs they fill.
template <typename T, int N, int K, typename I>
__global__ void resize_nearest_expand_kernel(const T* __restrict__ x, T* __restrict__ y,
                                             const __grid_constant__ FastNearest f, I chunks, I total) {
  using VIn = cuda::Vec<T, N>;
  const int64_t out_row = static_cast<int64_t>(chunks) * N * K;
  for (I i = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<I>(gridDim.x) * blockDim.x) {
    const I row = i / chunks, c = i - row * chunks;
    const VIn v = *reinterpret_cast<const VIn*>(x + fast_row_offset(f, row) + static_cast<int64_t>(c) * N);
    T* yp = y + static_cast<int64_t>(row) * out_row + static_cast<int64_t>(c) * N * K;
#pragma unroll
    for (int q = 0; q < K; ++q) {
      VIn o;
#pragma unroll
      for (int l = 0; l < N; ++l) o.v[l] = v.v[(q * N + l) / K];
      *reinterpret_cast<VIn*>(yp + q * N) = o;
    }
  }
}

template <typename Launch>
void with_index_type(int64_t n, Launch&& launch) {
  if (n <= INT32_MAX)
    launch(static_cast<uint32_t>(0));
  else
    launch(static_cast<int64_t>(0));
}

bool aligned_to(const void* p, int64_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <typename T, int N, int K>
void launch_expand(const Tensor& x, Tensor& y, const FastNearest& f, int64_t chunks, int64_t total,
                   cudaStream_t stream) {
  with_index_type(total, [&](auto tag) {
    using I = decltype(tag);
    resize_nearest_expand_kernel<T, N, K, I><<<cuda::grid_for(total), cuda::kBlock, 0, stream>>>(
        static_cast<const T*>(x.data()), static_cast<T*>(y.data()), f, static_cast<I>(chunks), static_cast<I>(total));
  });
}

template <typename T, int N>
bool launch_expand_k(int k, const Tensor& x, Tensor& y, const FastNearest& f, int64_t chunks, int64_t total,
                     cudaStream_t stream) {
  switch (k) {
    case 2:
      launch_expand<T, N, 2>(x, y, f, chunks, total, stream);
      return true;
    case 3:
      launch_expand<T, N, 3>(x, y, f, chunks, total, stream);
      return true;
    case 4:
      launch_expand<T, N, 4>(x, y, f, chunks, total, stream);
      return true;
  }
  return false;
}

/// Tries the last-axis expansion (16- or 8-byte loads); false if it does not apply.
bool try_expand(const Tensor& x, Tensor& y, const FastAxis (&maps)[kMaxRank], int rank, cudaStream_t stream) {
  const FastAxis& last = maps[rank - 1];
  if (last.j != 1 || last.k < 2 || last.k > 4) return false;
  for (int r = 0; r < last.k; ++r)
    if (last.phase[r] != 0) return false;
  const int64_t es = static_cast<int64_t>(dtype_size(x.dtype()));
  if (es != 1 && es != 2 && es != 4) return false;
  int64_t vb = 0;
  for (int64_t b : {16, 8})
    if ((last.in * es) % b == 0 && aligned_to(x.data(), b) && aligned_to(y.data(), b) && b / es >= 2) {
      vb = b;
      break;
    }
  if (vb == 0) return false;
  FastNearest f;
  f.rank = rank - 1;
  int64_t stride = last.in;  // in elements
  for (int d = rank - 2; d >= 0; --d) {
    f.ax[d] = maps[d];
    f.ax[d].stride = stride;
    stride *= maps[d].in;
  }
  const int64_t n = vb / es, chunks = last.in / n, total = y.numel() / (n * last.k);
  const int k = last.k;
  if (es == 1)
    return vb == 16 ? launch_expand_k<uint8_t, 16>(k, x, y, f, chunks, total, stream)
                    : launch_expand_k<uint8_t, 8>(k, x, y, f, chunks, total, stream);
  if (es == 2)
    return vb == 16 ? launch_expand_k<uint16_t, 8>(k, x, y, f, chunks, total, stream)
                    : launch_expand_k<uint16_t, 4>(k, x, y, f, chunks, total, stream);
  return vb == 16 ? launch_expand_k<uint32_t, 4>(k, x, y, f, chunks, total, stream)
                  : launch_expand_k<uint32_t, 2>(k, x, y, f, chunks, total, stream);
}

template <typename V>
void launch_run(const Tensor& x, Tensor& y, const FastNearest& f, int64_t run, int64_t total, cudaStream_t stream) {
  with_index_type(total, [&](auto tag) {
    using I = decltype(tag);
    resize_nearest_run_kernel<V, I><<<cuda::grid_for(total), cuda::kBlock, 0, stream>>>(
        static_cast<const V*>(x.data()), static_cast<V*>(y.data()), f, static_cast<I>(run), static_cast<I>(total));
  });
}

/// Runs a fitted nearest resize; false if the maps do not fit (nothing launched).
bool try_fast_nearest(const ResizeParams& p, const Tensor& x, Tensor& y, cudaStream_t stream) {
  if (p.rank == 0) return false;
  FastAxis maps[kMaxRank];
  if (!fit_fast_nearest(p, maps)) return false;
  int lead = p.rank;  // axes [lead, rank) are copied unchanged
  while (lead > 0 && is_copy_axis(maps[lead - 1])) --lead;
  if (lead == p.rank && try_expand(x, y, maps, p.rank, stream)) return true;
  const int64_t es = static_cast<int64_t>(dtype_size(x.dtype()));
  int64_t run_elems = 1;
  for (int d = lead; d < p.rank; ++d) run_elems *= maps[d].in;
  const int64_t run_bytes = run_elems * es;
  int64_t vb = es;
  for (int64_t b : {16, 8, 4, 2})
    if (b > es && run_bytes % b == 0 && aligned_to(x.data(), b) && aligned_to(y.data(), b)) {
      vb = b;
      break;
    }
  FastNearest f;
  f.rank = lead;
  int64_t stride = run_bytes / vb;  // in vb-byte units
  for (int d = lead - 1; d >= 0; --d) {
    f.ax[d] = maps[d];
    f.ax[d].stride = stride;
    stride *= maps[d].in;
  }
  const int64_t run = run_bytes / vb, total = y.nbytes() / vb;
  switch (vb) {
    case 16:
      launch_run<uint4>(x, y, f, run, total, stream);
      break;
    case 8:
      launch_run<uint2>(x, y, f, run, total, stream);
      break;
    case 4:
      launch_run<uint32_t>(x, y, f, run, total, stream);
      break;
    case 2:
      launch_run<uint16_t>(x, y, f, run, total, stream);
      break;
    default:
      launch_run<uint8_t>(x, y, f, run, total, stream);
      break;
  }
  return true;
}

inline constexpr int kMaxTaps = 4;

/// resize_kernel.cc's saturate for floating outputs: clamp to the finite range, round once.
template <typename T>
__device__ __forceinline__ T saturate_float(double v) {
  double hi = std::is_same_v<T, float>    ? 3.4028234663852886e38
              : std::is_same_v<T, __half> ? 65504.0
                                          : 3.3895313892515355e38;
  if (v == v) v = fmin(fmax(v, -hi), hi);
  return cuda::from_f<T>(static_cast<float>(v));
}

template <typename T>
__global__ void resize_filter_kernel(const T* __restrict__ x, T* __restrict__ y, ResizeParams p, int taps,
                                     int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = i, base = 0;
    int m = 0;
    bool extrap = false;
    int64_t offs[kMaxRank][kMaxTaps];
    double ws[kMaxRank][kMaxTaps];
    for (int d = p.rank - 1; d >= 0; --d) {
      const AxisParams& a = p.ax[d];
      int64_t q = rest / a.out, o = rest - q * a.out;
      rest = q;
      if (!a.active) {
        base += o * a.stride;
        continue;
      }
      double xc = source_coord(p, a, o);
      if (extrapolated(p, a, xc)) extrap = true;
      xc = tame(xc, a.in, taps);
      // The left neighbour is preferred: an integral x sits at ratio 1 of the tap before it.
      double f = floor(xc);
      double b = xc == f ? f - 1 : f;
      double ratio = xc - b;
      int start = p.cubic ? -1 : 0;
      double kept = 0;
      for (int j = 0; j < taps; ++j) {
        double w;
        if (p.cubic) {
          double A = p.cubic_a, r1 = ratio + 1, r0 = 1 - ratio, r2 = r0 + 1;
          switch (j) {
            case 0:
              w = ((A * r1 - 5 * A) * r1 + 8 * A) * r1 - 4 * A;
              break;
            case 1:
              w = ((A + 2) * ratio - (A + 3)) * ratio * ratio + 1;
              break;
            case 2:
              w = ((A + 2) * r0 - (A + 3)) * r0 * r0 + 1;
              break;
            default:
              w = ((A * r2 - 5 * A) * r2 + 8 * A) * r2 - 4 * A;
              break;
          }
        } else {
          w = fmin(fmax(1.0 - fabs(static_cast<double>(start + j) - ratio), 0.0), 1.0);
        }
        auto idx = static_cast<int64_t>(b) + start + j;
        if (p.exclude_outside && (idx < 0 || idx >= a.in)) w = 0;
        kept += w;
        idx = idx < 0 ? 0 : (idx >= a.in ? a.in - 1 : idx);
        offs[m][j] = idx * a.stride;
        ws[m][j] = w;
      }
      if (p.exclude_outside) {
        if (kept == 0) kept = 1;
        for (int j = 0; j < taps; ++j) ws[m][j] /= kept;
      }
      ++m;
    }
    if (extrap) {
      y[i] = saturate_float<T>(p.extrapolation);
      continue;
    }
    // Sum over every combination of taps of the m resized axes (zero weights skipped,
    // as the reference skips them, so inf/NaN there do not leak in).
    int64_t combos = 1;
    for (int k = 0; k < m; ++k) combos *= taps;
    double acc = 0;
    for (int64_t c = 0; c < combos; ++c) {
      int64_t cc = c, off = base;
      double w = 1;
      for (int k = 0; k < m; ++k) {
        int j = static_cast<int>(cc % taps);
        cc /= taps;
        w *= ws[k][j];
        off += offs[k][j];
      }
      if (w != 0) acc += w * static_cast<double>(cuda::to_f(x[off]));
    }
    y[i] = saturate_float<T>(acc);
  }
}

struct Prepared {
  resize::Spec spec;
  resize::Plan plan;
};

Result<Prepared> prepare(const KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  Prepared r;
  KILN_ASSIGN_OR_RETURN(r.spec, resize::parse_spec(node));
  if (r.spec.antialias) return ctx.error("antialiasing is not supported on CUDA", ErrorCode::kUnsupported);
  resize::InputSlots slots = resize::input_slots(node);
  const Tensor* vals[3] = {nullptr, nullptr, nullptr};
  int slot_of[3] = {slots.roi, slots.scales, slots.sizes};
  for (int k = 0; k < 3; ++k) {
    int s = slot_of[k];
    if (s < 0 || !ctx.has_input(static_cast<size_t>(s)) || ctx.input(static_cast<size_t>(s)).numel() == 0) continue;
    // roi matters only to tf_crop_and_resize.
    if (k == 0 && r.spec.coord != CoordMode::kTfCropAndResize) continue;
    vals[k] = ctx.host_value(static_cast<size_t>(s));
    if (!vals[k])
      return ctx.error("scales, sizes and roi must be known when the engine is built", ErrorCode::kUnsupported);
  }
  KILN_ASSIGN_OR_RETURN(resize::PlanInputs pin, resize::read_plan_inputs(node, vals[0], vals[1], vals[2]));
  KILN_ASSIGN_OR_RETURN(r.plan, resize::make_plan(node, r.spec, ctx.input(0).dims(), pin));
  return r;
}

bool is_identity(const resize::AxisPlan& p, const resize::Spec& spec) {
  if (!p.resized) return true;
  bool roi_full = spec.coord != CoordMode::kTfCropAndResize ||
                  (std::fabs(p.roi_start) <= 1e-9 && std::fabs(p.roi_end - 1.0) <= 1e-9);
  return std::fabs(p.scale - 1.0) <= 1e-9 && p.out == p.in && roi_full;
}

/// The extrapolation value as one element of dtype t (resize_kernel.cc's saturate).
uint64_t extrapolation_bits(DataType t, double v) {
  Tensor e = Tensor::zeros(t, {});
  if (t == DataType::kBool) {
    e.set_from_double(0, v != 0 ? 1.0 : 0.0);
  } else if (t == DataType::kFloat64) {
    e.set_from_double(0, v);
  } else if (dtype_is_float(t)) {
    double hi = t == DataType::kFloat32   ? std::numeric_limits<float>::max()
                : t == DataType::kFloat16 ? 65504.0
                                          : 3.3895313892515355e38;
    if (!std::isnan(v)) v = std::clamp(v, -hi, hi);
    e.set_from_double(0, v);
  } else {
    if (std::isnan(v)) v = 0;
    v = std::nearbyint(v);
    double lo = t == DataType::kUInt8 || t == DataType::kUInt16 || t == DataType::kUInt32 || t == DataType::kUInt64
                    ? 0.0
                : t == DataType::kInt8  ? -128.0
                : t == DataType::kInt16 ? -32768.0
                : t == DataType::kInt32 ? -2147483648.0
                                        : -9.2233720368547758e18;
    double hi = t == DataType::kUInt8    ? 255.0
                : t == DataType::kInt8   ? 127.0
                : t == DataType::kUInt16 ? 65535.0
                : t == DataType::kInt16  ? 32767.0
                : t == DataType::kUInt32 ? 4294967295.0
                : t == DataType::kInt32  ? 2147483647.0
                                         : 9.2233720368547748e18;
    e.set_from_double(0, std::clamp(v, lo, hi));
  }
  uint64_t bits = 0;
  std::memcpy(&bits, e.data(), dtype_size(t));
  return bits;
}

Status resize_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(Prepared pr, prepare(ctx));
  const resize::Spec& spec = pr.spec;
  const resize::Plan& plan = pr.plan;
  size_t r = plan.dims.size();
  if (r > static_cast<size_t>(kMaxRank)) return ctx.error("rank > 8", ErrorCode::kUnsupported);
  for (size_t d = 0; d < r; ++d)
    if (plan.dims[d].out != y.dims()[d]) return ctx.error("output dims do not match the plan", ErrorCode::kInternal);
  int64_t total = y.numel();
  if (total == 0) return Status();
  ResizeParams p;
  p.rank = static_cast<int>(r);
  p.coord = spec.coord;
  p.nearest = spec.nearest;
  p.cubic = spec.mode == Mode::kCubic;
  p.cubic_a = spec.cubic_a;
  p.exclude_outside = spec.exclude_outside;
  p.extrapolation = spec.extrapolation;
  auto st = strides_of(x.dims());
  for (size_t d = 0; d < r; ++d) {
    const resize::AxisPlan& a = plan.dims[d];
    AxisParams& q = p.ax[d];
    q.in = a.in;
    q.out = a.out;
    q.stride = st[d];
    q.scale = a.scale;
    q.roi_start = a.roi_start;
    q.roi_end = a.roi_end;
    q.active = spec.mode == Mode::kNearest ? a.resized : !is_identity(a, spec);
    if (q.active && q.in == 0) return ctx.error("cannot resize an empty dim", ErrorCode::kInvalidArgument);
  }
  cudaStream_t stream = cuda::stream_of(ctx);
  if (spec.mode == Mode::kNearest) {
    if (try_fast_nearest(p, x, y, stream)) return cuda::launch_status(ctx, "resize_nearest_fast");
    uint64_t bits = extrapolation_bits(x.dtype(), spec.extrapolation);
    KILN_CUDA_DISPATCH_BYTES(x.dtype(), T, {
      T e;
      std::memcpy(&e, &bits, sizeof(T));
      resize_nearest_kernel<T>
          <<<cuda::grid_for(total), cuda::kBlock, 0, stream>>>(x.data_as<T>(), y.data_as<T>(), p, e, total);
    });
    return cuda::launch_status(ctx, "resize_nearest");
  }
  int taps = p.cubic ? 4 : 2;
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    resize_filter_kernel<T>
        <<<cuda::grid_for(total), cuda::kBlock, 0, stream>>>(x.data_as<T>(), y.data_as<T>(), p, taps, total);
  });
  return cuda::launch_status(ctx, "resize_filter");
}

bool resize_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  if (in.empty()) return false;
  if (in[0].shape && in[0].shape->size() > static_cast<size_t>(kMaxRank)) return false;
  auto spec = resize::parse_spec(n);
  if (!spec.ok() || spec->antialias) return false;
  DataType t = in[0].dtype;
  if (spec->mode == Mode::kNearest) {
    size_t s = dtype_size(t);
    return t != DataType::kString && (s == 1 || s == 2 || s == 4 || s == 8);
  }
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

}  // namespace

void register_resize_cuda_kernels(OpRegistry& r) {
  for (const char* op : {"Resize", "Upsample"})
    (void)r.add_cuda_kernel("", op, FastKernel{"cuda.resize", resize_cuda, resize_applies});
}

}  // namespace kiln::ops
