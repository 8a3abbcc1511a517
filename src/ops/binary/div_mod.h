// Div's and Mod's scalar rules, shared by the reference (binary.cc) and the CUDA
// kernels (binary_cuda.cu) so both treat zero divisors, signs and overflow alike.
#pragma once

#include <math.h>

#include <cstdint>
#include <type_traits>

#include "ops/host_device.h"

namespace kiln::ops {

/// a / b. Integers truncate toward zero (C semantics, as the ONNX reference);
/// x / 0 gives 0 and MIN / -1 wraps, so no input can trap.
template <class C>
KILN_HOST_DEVICE inline C div_rule(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    return a / b;
  } else {
    if (b == 0) return 0;
    if constexpr (std::is_signed_v<C>) {
      using U = std::conditional_t<(sizeof(C) <= 4), uint32_t, uint64_t>;
      if (b == -1) return static_cast<C>(U(0) - static_cast<U>(a));
    }
    return static_cast<C>(a / b);
  }
}

/// a mod b. fmod = true: the result takes the dividend's sign (C fmod / %);
/// fmod = false: the divisor's sign (Python %), which the ONNX tests also use for
/// floats. Integer x % 0 gives 0.
template <class C>
KILN_HOST_DEVICE inline C mod_rule(C a, C b, bool fmod) {
  if constexpr (std::is_floating_point_v<C>) {
    C r;
    if constexpr (sizeof(C) == sizeof(float))
      r = ::fmodf(a, b);
    else
      r = ::fmod(a, b);
    if (fmod) return r;
    if (r == 0) {
      if constexpr (sizeof(C) == sizeof(float))
        return ::copysignf(C(0), b);
      else
        return ::copysign(C(0), b);
    }
    if ((r < 0) != (b < 0)) r += b;
    return r;
  } else {
    if (b == 0) return 0;
    if constexpr (std::is_signed_v<C>) {
      if (b == -1) return 0;
      C r = static_cast<C>(a % b);
      if (!fmod && r != 0 && ((r < 0) != (b < 0))) r = static_cast<C>(r + b);
      return r;
    } else {
      return static_cast<C>(a % b);
    }
  }
}

}  // namespace kiln::ops
