// Device pieces of the reduce family's CUDA kernels: the accumulator state of
// each Reduce* kind (with the reference's NaN and empty-reduction rules), warp
// merges, and the SM count used to size split reductions.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "backends/cuda/kernel_util.cuh"
#include "ops/reduce/reduce_internal.h"

namespace kiln::ops::reduce_cuda {

using cuda::Indexer;
using cuda::kBlock;
using cuda::kMaxRank;
using cuda::offset_of;
using reduce_detail::ReduceKind;

inline constexpr int kColRows = 8;

/// A: float for floating inputs, int64_t for integers. `b` is the running sum of
/// LogSumExp (with `a` its running max); other kinds use `a` alone.
template <typename A>
struct State {
  A a;
  A b;
};

template <typename T, typename A>
__device__ __forceinline__ A widen(T v) {
  if constexpr (std::is_same_v<A, float>)
    return cuda::to_f(v);
  else
    return static_cast<A>(v);
}

template <typename A>
__device__ __forceinline__ bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>)
    return v != v;
  else
    return false;
}

template <typename T, typename A>
__device__ __forceinline__ State<A> init_state(ReduceKind k) {
  State<A> s{A(0), A(0)};
  if constexpr (std::is_same_v<A, float>) {
    if (k == ReduceKind::kMax || k == ReduceKind::kLogSumExp) s.a = -INFINITY;
    if (k == ReduceKind::kMin) s.a = INFINITY;
  } else {
    if (k == ReduceKind::kMax) s.a = static_cast<A>(std::numeric_limits<T>::lowest());
    if (k == ReduceKind::kMin) s.a = static_cast<A>(std::numeric_limits<T>::max());
  }
  if (k == ReduceKind::kProd) s.a = A(1);
  return s;
}

/// a + b and a * b, wrapping for integers.
template <typename A>
__device__ __forceinline__ A wrap_add(A a, A b) {
  if constexpr (std::is_integral_v<A>)
    return static_cast<A>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
  else
    return a + b;
}
template <typename A>
__device__ __forceinline__ A wrap_mul(A a, A b) {
  if constexpr (std::is_integral_v<A>)
    return static_cast<A>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
  else
    return a * b;
}

/// NaN wins (the reference keeps the first NaN it meets).
template <typename A>
__device__ __forceinline__ A pick(A best, A v, bool is_max) {
  if (is_nan(best)) return best;
  if (is_nan(v) || (is_max ? v > best : v < best)) return v;
  return best;
}

template <typename A>
__device__ __forceinline__ void add_value(State<A>& s, A v, ReduceKind k) {
  switch (k) {
    case ReduceKind::kMax:
      s.a = pick(s.a, v, true);
      return;
    case ReduceKind::kMin:
      s.a = pick(s.a, v, false);
      return;
    case ReduceKind::kProd:
      s.a = wrap_mul(s.a, v);
      return;
    case ReduceKind::kL1:
      s.a = wrap_add(s.a, v < A(0) ? A(0) - v : v);
      return;
    case ReduceKind::kL2:
    case ReduceKind::kSumSquare:
      s.a = wrap_add(s.a, wrap_mul(v, v));
      return;
    case ReduceKind::kLogSumExp:
      if constexpr (std::is_same_v<A, float>) {
        // Online log-sum-exp: a is the max so far, b the sum of exp(x - a).
        if (v == -INFINITY) return;
        if (v > s.a) {
          s.b = s.b * expf(s.a - v) + 1.f;
          s.a = v;
        } else {
          s.b += expf(v - s.a);
        }
      }
      return;
    default:
      s.a = wrap_add(s.a, v);
      return;
  }
}

template <typename A>
__device__ __forceinline__ void merge_state(State<A>& s, const State<A>& o, ReduceKind k) {
  switch (k) {
    case ReduceKind::kMax:
    case ReduceKind::kMin:
      s.a = pick(s.a, o.a, k == ReduceKind::kMax);
      return;
    case ReduceKind::kProd:
      s.a = wrap_mul(s.a, o.a);
      return;
    case ReduceKind::kLogSumExp:
      if constexpr (std::is_same_v<A, float>) {
        if (o.a == -INFINITY && !is_nan(o.b)) return;
        if (s.a == -INFINITY && !is_nan(s.b)) {
          s = o;
          return;
        }
        float m = fmaxf(s.a, o.a);
        s.b = s.b * expf(s.a - m) + o.b * expf(o.a - m);
        s.a = m;
      }
      return;
    default:
      s.a = wrap_add(s.a, o.a);
      return;
  }
}

template <typename A>
__device__ __forceinline__ State<A> warp_merge(State<A> s, ReduceKind k) {
  for (int off = 16; off > 0; off >>= 1) {
    State<A> o;
    o.a = __shfl_xor_sync(0xffffffffu, s.a, off);
    o.b = __shfl_xor_sync(0xffffffffu, s.b, off);
    merge_state(s, o, k);
  }
  return s;
}

/// double -> integer T as the reference's narrow_from_double: truncate, saturate, NaN -> 0.
template <typename T>
__device__ __forceinline__ T narrow_int(double v) {
  if (v != v) return T(0);
  if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
  if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

template <typename T, typename A>
__device__ __forceinline__ T finalize(const State<A>& s, int64_t n, ReduceKind k) {
  if constexpr (std::is_same_v<A, float>) {
    float v = s.a;
    switch (k) {
      case ReduceKind::kMean:
        v = s.a / static_cast<float>(n);
        break;
      case ReduceKind::kL2:
        v = sqrtf(s.a);
        break;
      case ReduceKind::kLogSum:
        v = logf(s.a);
        break;
      case ReduceKind::kLogSumExp:
        v = isinf(s.a) ? s.a : s.a + logf(s.b);
        break;
      default:
        break;
    }
    return cuda::from_f<T>(v);
  } else {
    if (k == ReduceKind::kMean) return n == 0 ? T(0) : narrow_int<T>(static_cast<double>(s.a) / static_cast<double>(n));
    return static_cast<T>(s.a);
  }
}

}  // namespace kiln::ops::reduce_cuda
