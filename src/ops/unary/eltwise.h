// Helpers shared by the elementwise op families (unary, binary, select): the
// compute type of each storage type, dtype sets for validation, and safe casts.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "base/dispatch.h"
#include "ops/common.h"

namespace kiln::ops {

/// The type arithmetic is done in: float for the 16-bit floats, else the type itself.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<Half> {
  using type = float;
};
template <>
struct ComputeType<BFloat16> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeType<T>::type;

template <typename T>
inline constexpr bool kIsFloat = std::is_floating_point_v<compute_t<T>>;
template <typename T>
inline constexpr bool kIsInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;
template <typename T>
inline constexpr bool kIsHalf = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;
/// Types whose conversion to float may round (so -> half would round twice).
template <typename T>
inline constexpr bool kIsWiderThanFloat = std::is_same_v<T, double> || (kIsInt<T> && sizeof(T) >= 4);

/// Unsigned type wide enough for wrap-around arithmetic on T (avoids int promotion UB).
template <typename T>
using wrap_t = std::conditional_t<(sizeof(T) <= 4), uint32_t, uint64_t>;

/// Dtype sets an op accepts (bit mask).
enum TypeSet : uint32_t {
  kTypesFloat = 1u,
  kTypesSignedInt = 2u,
  kTypesUnsignedInt = 4u,
  kTypesBool = 8u,
  kTypesInt = kTypesSignedInt | kTypesUnsignedInt,
  kTypesSigned = kTypesFloat | kTypesSignedInt,
  kTypesNumeric = kTypesFloat | kTypesInt,
  kTypesAll = kTypesNumeric | kTypesBool,
};

inline uint32_t type_set_of(DataType t) {
  switch (t) {
    case DataType::kFloat32:
    case DataType::kFloat64:
    case DataType::kFloat16:
    case DataType::kBFloat16: return kTypesFloat;
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
    case DataType::kInt64: return kTypesSignedInt;
    case DataType::kUInt8:
    case DataType::kUInt16:
    case DataType::kUInt32:
    case DataType::kUInt64: return kTypesUnsignedInt;
    case DataType::kBool: return kTypesBool;
    default: return 0;
  }
}

template <typename T>
constexpr bool type_in_set(uint32_t set) {
  if constexpr (std::is_same_v<T, bool>) return set & kTypesBool;
  else if constexpr (kIsFloat<T>) return set & kTypesFloat;
  else if constexpr (std::is_signed_v<T>) return set & kTypesSignedInt;
  else return set & kTypesUnsignedInt;
}

inline std::string type_set_name(uint32_t set) {
  switch (set) {
    case kTypesFloat: return "floating-point types";
    case kTypesInt: return "integer types";
    case kTypesSigned: return "floating-point and signed integer types";
    case kTypesNumeric: return "numeric types";
    case kTypesBool: return "bool";
    case kTypesAll: return "numeric types and bool";
    default: return "a restricted set of types";
  }
}

/// Fails unless input i's dtype is in `set` (an unknown dtype passes).
inline Status check_input_dtype(const InferContext& ctx, size_t i, uint32_t set) {
  DataType t = ctx.input_dtype(i);
  if (t == DataType::kUndefined) return Status();
  if (!(type_set_of(t) & set))
    return ctx.unsupported("input " + std::to_string(i) + " has dtype " + dtype_name(t) + "; " + ctx.node().op_type +
                           " accepts " + type_set_name(set));
  return Status();
}

/// Fails unless every present input in [first, last) has the same dtype as input `first`.
inline Status check_same_dtypes(const InferContext& ctx, size_t first, size_t last) {
  DataType t0 = ctx.input_dtype(first);
  for (size_t i = first + 1; i < last && i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    DataType t = ctx.input_dtype(i);
    if (t0 != DataType::kUndefined && t != DataType::kUndefined && t != t0)
      return ctx.error(std::string("inputs must share one dtype, got ") + dtype_name(t0) + " and " + dtype_name(t));
  }
  return Status();
}

/// Converts any element type to another: float->int truncates toward zero and
/// saturates (NaN -> 0) so out-of-range values are defined; ->bool is "!= 0".
template <typename To, typename From>
inline To convert_value(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, bool>) {
    return static_cast<compute_t<From>>(v) != 0;
  } else if constexpr (std::is_same_v<From, bool>) {
    return To(static_cast<compute_t<To>>(v ? 1 : 0));
  } else if constexpr (kIsInt<To> && kIsFloat<From>) {
    double d = static_cast<double>(static_cast<compute_t<From>>(v));
    if (std::isnan(d)) return 0;
    d = std::trunc(d);
    // 2^(bits) boundaries are exact in double; max() itself may not be.
    constexpr double kLo = static_cast<double>(std::numeric_limits<To>::min());
    constexpr double kHiExcl = 2.0 * static_cast<double>(std::numeric_limits<To>::max() / 2 + 1);
    if (d < kLo) return std::numeric_limits<To>::min();
    if (d >= kHiExcl) return std::numeric_limits<To>::max();
    return static_cast<To>(d);
  } else if constexpr (kIsHalf<To> && kIsWiderThanFloat<From>) {
    // Rounding double -> float -> half twice can be off by one ulp; rounding the
    // first step to odd makes the second step correctly rounded.
    double d = static_cast<double>(v);
    float f = static_cast<float>(d);
    if (std::isfinite(d) && static_cast<double>(f) != d) {
      if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      bits |= 1u;
      std::memcpy(&f, &bits, 4);
    }
    return To(f);
  } else {
    return To(static_cast<compute_t<To>>(static_cast<compute_t<From>>(v)));
  }
}

}  // namespace kiln::ops
