// Device helpers shared by the elementwise CUDA kernels (unary, binary, select):
// dtype bit sets with a visitor that instantiates only the allowed types, the
// compute type of each storage type, conversions with the reference's semantics
// (ops/unary/eltwise.h), a vectorised map kernel and a coalesced broadcast plan.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cuda/kernel_util.cuh"

namespace kiln::cuda::eltwise {

// ---- dtype sets
enum TypeBits : uint32_t {
  kBitF32 = 1u << 0,
  kBitF16 = 1u << 1,
  kBitBF16 = 1u << 2,
  kBitF64 = 1u << 3,
  kBitI8 = 1u << 4,
  kBitU8 = 1u << 5,
  kBitI16 = 1u << 6,
  kBitU16 = 1u << 7,
  kBitI32 = 1u << 8,
  kBitU32 = 1u << 9,
  kBitI64 = 1u << 10,
  kBitU64 = 1u << 11,
  kBitBool = 1u << 12,
  kBitsFloat = kBitF32 | kBitF16 | kBitBF16,
  kBitsFloatI = kBitsFloat | kBitI32 | kBitI64,  ///< arithmetic: float types, int32, int64
  kBitsInt = kBitI8 | kBitU8 | kBitI16 | kBitU16 | kBitI32 | kBitU32 | kBitI64 | kBitU64,
  kBitsAll = kBitsFloat | kBitF64 | kBitsInt | kBitBool,
};

inline uint32_t type_bit(DataType t) {
  switch (t) {
    case DataType::kFloat32:
      return kBitF32;
    case DataType::kFloat16:
      return kBitF16;
    case DataType::kBFloat16:
      return kBitBF16;
    case DataType::kFloat64:
      return kBitF64;
    case DataType::kInt8:
      return kBitI8;
    case DataType::kUInt8:
      return kBitU8;
    case DataType::kInt16:
      return kBitI16;
    case DataType::kUInt16:
      return kBitU16;
    case DataType::kInt32:
      return kBitI32;
    case DataType::kUInt32:
      return kBitU32;
    case DataType::kInt64:
      return kBitI64;
    case DataType::kUInt64:
      return kBitU64;
    case DataType::kBool:
      return kBitBool;
    default:
      return 0;
  }
}

template <class T>
struct TypeTag {
  using type = T;
};

/// Calls f(TypeTag<T>{}) for dtype t when t is in kMask; false (nothing called) otherwise.
/// Only the types in kMask are instantiated.
template <uint32_t kMask, class F>
bool visit_type(DataType t, F&& f) {
#define KILN_EW_CASE(dt, bit, T)          \
  case DataType::dt:                      \
    if constexpr ((kMask & (bit)) != 0) { \
      f(TypeTag<T>{});                    \
      return true;                        \
    } else {                              \
      return false;                       \
    }
  switch (t) {
    KILN_EW_CASE(kFloat32, kBitF32, float)
    KILN_EW_CASE(kFloat16, kBitF16, __half)
    KILN_EW_CASE(kBFloat16, kBitBF16, __nv_bfloat16)
    KILN_EW_CASE(kFloat64, kBitF64, double)
    KILN_EW_CASE(kInt8, kBitI8, int8_t)
    KILN_EW_CASE(kUInt8, kBitU8, uint8_t)
    KILN_EW_CASE(kInt16, kBitI16, int16_t)
    KILN_EW_CASE(kUInt16, kBitU16, uint16_t)
    KILN_EW_CASE(kInt32, kBitI32, int32_t)
    KILN_EW_CASE(kUInt32, kBitU32, uint32_t)
    KILN_EW_CASE(kInt64, kBitI64, int64_t)
    KILN_EW_CASE(kUInt64, kBitU64, uint64_t)
    KILN_EW_CASE(kBool, kBitBool, bool)
    default:
      return false;
  }
#undef KILN_EW_CASE
}

/// The error for a dtype a kernel was dispatched with but does not handle.
inline Status unsupported_dtype(const ops::KernelContext& ctx, DataType t) {
  return ctx.error(std::string("no CUDA kernel for dtype ") + dtype_name(t), ErrorCode::kUnsupported);
}

/// True when every input with a known shape has rank <= kMaxRank.
inline bool ranks_fit(const std::vector<ops::TensorType>& in) {
  for (const auto& t : in)
    if (t.shape && t.shape->size() > static_cast<size_t>(kMaxRank)) return false;
  return true;
}

// ---- element types
template <class T>
inline constexpr bool kHalfType = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;
template <class T>
inline constexpr bool kFloatType = std::is_floating_point_v<T> || kHalfType<T>;
template <class T>
inline constexpr bool kIntType = std::is_integral_v<T> && !std::is_same_v<T, bool>;
/// Types whose conversion to float may round (so -> 16-bit float would round twice).
template <class T>
inline constexpr bool kWiderThanFloat = std::is_same_v<T, double> || (kIntType<T> && sizeof(T) >= 4);

/// The type arithmetic is done in: float for the 16-bit floats, else the type itself.
template <class T>
using compute_t = std::conditional_t<kHalfType<T>, float, T>;

template <class T>
__device__ __forceinline__ compute_t<T> load_c(T x) {
  if constexpr (kHalfType<T>)
    return to_f(x);
  else
    return x;
}
template <class T>
__device__ __forceinline__ T store_c(compute_t<T> x) {
  if constexpr (kHalfType<T>)
    return from_f<T>(x);
  else
    return x;
}

/// Two's-complement wrap-around arithmetic on integers (no signed overflow UB).
template <class C>
using wrap_t = std::conditional_t<(sizeof(C) <= 4), uint32_t, uint64_t>;
template <class C>
__device__ __forceinline__ C wrap_add(C a, C b) {
  if constexpr (kIntType<C>)
    return static_cast<C>(wrap_t<C>(a) + wrap_t<C>(b));
  else
    return a + b;
}
template <class C>
__device__ __forceinline__ C wrap_sub(C a, C b) {
  if constexpr (kIntType<C>)
    return static_cast<C>(wrap_t<C>(a) - wrap_t<C>(b));
  else
    return a - b;
}
template <class C>
__device__ __forceinline__ C wrap_mul(C a, C b) {
  if constexpr (kIntType<C>)
    return static_cast<C>(wrap_t<C>(a) * wrap_t<C>(b));
  else
    return a * b;
}
template <class C>
__device__ __forceinline__ C negate(C x) {
  if constexpr (kIntType<C>)
    return static_cast<C>(wrap_t<C>(0) - static_cast<wrap_t<C>>(x));
  else
    return -x;
}

// ---- conversions with convert_value's semantics (ops/unary/eltwise.h)
template <class T>
__device__ __forceinline__ double to_double(T v) {
  if constexpr (kHalfType<T>)
    return static_cast<double>(to_f(v));
  else
    return static_cast<double>(v);
}

/// Float -> integer: truncates toward zero, saturates, NaN -> 0.
template <class To>
__device__ __forceinline__ To double_to_int(double d) {
  if (isnan(d)) return 0;
  d = trunc(d);
  constexpr double kLo = static_cast<double>(std::numeric_limits<To>::min());
  constexpr double kHiExcl = 2.0 * static_cast<double>(std::numeric_limits<To>::max() / 2 + 1);
  if (d < kLo) return std::numeric_limits<To>::min();
  if (d >= kHiExcl) return std::numeric_limits<To>::max();
  return static_cast<To>(d);
}

/// double -> 16-bit float correctly rounded: the first step to float rounds to
/// odd so the second step cannot round twice (as the reference does).
template <class To>
__device__ __forceinline__ To double_to_half(double d) {
  float f = static_cast<float>(d);
  if (isfinite(d) && static_cast<double>(f) != d) {
    if (fabs(static_cast<double>(f)) > fabs(d)) f = nextafterf(f, 0.0f);
    f = __uint_as_float(__float_as_uint(f) | 1u);
  }
  return from_f<To>(f);
}

/// Any element type to another, as convert_value: float -> int truncates and
/// saturates (NaN -> 0), -> bool is "!= 0".
template <class To, class From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, bool>) {
    return load_c(v) != compute_t<From>(0);
  } else if constexpr (std::is_same_v<From, bool>) {
    return store_c<To>(compute_t<To>(v ? 1 : 0));
  } else if constexpr (kIntType<To> && kFloatType<From>) {
    return double_to_int<To>(to_double(v));
  } else if constexpr (kHalfType<To> && kWiderThanFloat<From>) {
    return double_to_half<To>(static_cast<double>(v));
  } else {
    return store_c<To>(static_cast<compute_t<To>>(load_c(v)));
  }
}

// ---- y[i] = f(x[i]) with 16-byte accesses where aligned

/// Elements per vector access: 16 bytes of the widest type.
template <class... Ts>
constexpr int pack_width() {
  return static_cast<int>(16 / std::max({sizeof(Ts)...}));
}

inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <int V, class TI, class TO, class F>
__global__ void map_kernel(const TI* x, TO* y, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  if constexpr (V > 1) {
    const auto* xv = reinterpret_cast<const Vec<TI, V>*>(x);
    auto* yv = reinterpret_cast<Vec<TO, V>*>(y);
    for (int64_t i = t; i < nv; i += stride) {
      const Vec<TI, V> a = xv[i];
      Vec<TO, V> b;
#pragma unroll
      for (int k = 0; k < V; ++k) b.v[k] = f(a.v[k]);
      yv[i] = b;
    }
  }
  for (int64_t i = nv * V + t; i < n; i += stride) y[i] = f(x[i]);
}

/// Launches y[i] = f(x[i]) for i < n on `s` (n > 0).
template <class TI, class TO, class F>
void launch_map(const TI* x, TO* y, int64_t n, F f, cudaStream_t s) {
  constexpr int V = pack_width<TI, TO>();
  if (V > 1 && aligned_to(x, sizeof(TI) * V) && aligned_to(y, sizeof(TO) * V))
    map_kernel<V><<<grid_for((n + V - 1) / V), kBlock, 0, s>>>(x, y, n, f);
  else
    map_kernel<1><<<grid_for(n), kBlock, 0, s>>>(x, y, n, f);
}

// ---- broadcasting
/// Output dims with K operands' element strides (0 on broadcast dims), after
/// dropping size-1 dims and merging neighbours along which every operand stays
/// linear. rank >= 1; the innermost stride of each operand is 0 or 1.
template <int K>
struct BroadcastPlan {
  int rank = 1;
  int64_t dims[kMaxRank] = {1};
  int64_t strides[K][kMaxRank] = {};
};

/// Fills `p` for output dims `out` and the operands' dims `ins` (at most K);
/// false when more than kMaxRank dims remain.
template <int K>
bool make_plan(const Dims& out, const std::vector<const Dims*>& ins, BroadcastPlan<K>& p) {
  const size_t k = ins.size();
  const size_t n = out.size();
  if (k > static_cast<size_t>(K)) return false;
  std::vector<std::vector<int64_t>> full(k, std::vector<int64_t>(n, 0));
  for (size_t j = 0; j < k; ++j) {
    const Dims& in = *ins[j];
    int64_t stride = 1;
    for (size_t i = n; i-- > 0;) {
      const int64_t back = static_cast<int64_t>(n - 1 - i);
      const int64_t d = back < static_cast<int64_t>(in.size()) ? in[in.size() - 1 - static_cast<size_t>(back)] : 1;
      full[j][i] = d == 1 ? 0 : stride;
      stride *= d;
    }
  }
  std::vector<int64_t> sizes;  // innermost first
  std::vector<std::vector<int64_t>> gstrides;
  for (size_t i = n; i-- > 0;) {
    if (out[i] == 1) continue;
    bool merge = !sizes.empty();
    for (size_t j = 0; j < k && merge; ++j) merge = full[j][i] == gstrides.back()[j] * sizes.back();
    if (merge) {
      sizes.back() *= out[i];
      continue;
    }
    sizes.push_back(out[i]);
    std::vector<int64_t> s(k);
    for (size_t j = 0; j < k; ++j) s[j] = full[j][i];
    gstrides.push_back(std::move(s));
  }
  p = BroadcastPlan<K>();
  if (sizes.empty()) return true;  // every dim is 1: one element, strides 0
  if (sizes.size() > static_cast<size_t>(kMaxRank)) return false;
  p.rank = static_cast<int>(sizes.size());
  for (int d = 0; d < p.rank; ++d) {
    const size_t g = sizes.size() - 1 - static_cast<size_t>(d);
    p.dims[d] = sizes[g];
    for (size_t j = 0; j < k; ++j) p.strides[j][d] = gstrides[g][j];
  }
  return true;
}

/// Offsets of output element i in the first k operands (I: int32_t when the
/// output has fewer than 2^31 elements, which bounds every offset too).
template <class I, int K>
__device__ __forceinline__ void plan_offsets(const BroadcastPlan<K>& p, int k, I i, I (&off)[K]) {
#pragma unroll
  for (int j = 0; j < K; ++j) off[j] = 0;
  for (int d = p.rank - 1; d > 0; --d) {
    const I dim = static_cast<I>(p.dims[d]);
    const I q = i / dim;
    const I c = i - q * dim;
#pragma unroll
    for (int j = 0; j < K; ++j)
      if (j < k) off[j] += c * static_cast<I>(p.strides[j][d]);
    i = q;
  }
#pragma unroll
  for (int j = 0; j < K; ++j)
    if (j < k) off[j] += i * static_cast<I>(p.strides[j][0]);
}

/// True when `in` broadcasts (numpy rules) to exactly `out`.
inline bool broadcasts_to(const Dims& in, const Dims& out) {
  if (in.size() > out.size()) return false;
  for (size_t i = 0; i < in.size(); ++i) {
    const int64_t d = in[in.size() - 1 - i], o = out[out.size() - 1 - i];
    if (d != 1 && d != o) return false;
  }
  return true;
}

inline bool fits_int32(int64_t n) { return n <= std::numeric_limits<int32_t>::max(); }

}  // namespace kiln::cuda::eltwise
