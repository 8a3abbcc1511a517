// Helpers shared by the reduce family: numeric traits and conversions that
// stay defined for NaN/inf and out-of-range values.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "base/dispatch.h"

namespace kiln::ops::reduce_util {

template <typename T>
inline constexpr bool kFloatLike =
    std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

/// Accumulator: double for floating types, 64-bit integer otherwise (wraps like numpy).
template <typename T>
using Acc = std::conditional_t<kFloatLike<T>, double, std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>;

template <typename T>
inline Acc<T> widen(T v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else if constexpr (kFloatLike<T>)
    return static_cast<double>(static_cast<float>(v));
  else
    return static_cast<Acc<T>>(v);
}

/// double -> T: floats round, integers truncate toward zero and saturate (NaN -> 0),
/// so the conversion is never undefined behaviour.
template <typename T>
inline T narrow_from_double(double v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else if constexpr (kFloatLike<T>) {
    return T(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != 0.0;
  } else {
    if (std::isnan(v)) return T(0);
    if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  }
}

/// Acc -> T (integers wrap like numpy's astype).
template <typename T>
inline T narrow(Acc<T> v) {
  if constexpr (kFloatLike<T>)
    return narrow_from_double<T>(v);
  else
    return static_cast<T>(v);
}

template <typename T>
inline double to_double(T v) {
  if constexpr (std::is_same_v<T, double>)
    return v;
  else if constexpr (kFloatLike<T>)
    return static_cast<double>(static_cast<float>(v));
  else
    return static_cast<double>(v);
}

template <typename A>
inline bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>)
    return std::isnan(v);
  else
    return false;
}

}  // namespace kiln::ops::reduce_util
