// Helpers shared by the quantization ops: the quantized types and integer ranges,
// round-half-to-even saturation, and rounding a double to a narrower float type.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "base/half.h"
#include "kiln/types.h"
#include "ops/op.h"

namespace kiln::ops::quant {

/// True for the integer types QuantizeLinear may produce (4- and 2-bit since opset 21/25).
inline bool is_quant_int(DataType t) {
  switch (t) {
    case DataType::kUInt8:
    case DataType::kInt8:
    case DataType::kUInt16:
    case DataType::kInt16:
    case DataType::kUInt4:
    case DataType::kInt4:
    case DataType::kUInt2:
    case DataType::kInt2:
      return true;
    default:
      return false;
  }
}

/// True for the float types QuantizeLinear may produce: float8 (opset 19) and float4e2m1 (opset 23).
inline bool is_quant_float(DataType t) {
  switch (t) {
    case DataType::kFloat8E4M3FN:
    case DataType::kFloat8E4M3FNUZ:
    case DataType::kFloat8E5M2:
    case DataType::kFloat8E5M2FNUZ:
    case DataType::kFloat4E2M1:
      return true;
    default:
      return false;
  }
}

inline void int_range(DataType t, double* lo, double* hi) {
  switch (t) {
    case DataType::kUInt8:
      *lo = 0, *hi = 255;
      break;
    case DataType::kInt8:
      *lo = -128, *hi = 127;
      break;
    case DataType::kUInt16:
      *lo = 0, *hi = 65535;
      break;
    case DataType::kInt16:
      *lo = -32768, *hi = 32767;
      break;
    case DataType::kInt32:
      *lo = -2147483648.0, *hi = 2147483647.0;
      break;
    case DataType::kUInt4:
      *lo = 0, *hi = 15;
      break;
    case DataType::kInt4:
      *lo = -8, *hi = 7;
      break;
    case DataType::kUInt2:
      *lo = 0, *hi = 3;
      break;
    case DataType::kInt2:
      *lo = -2, *hi = 1;
      break;
    default:
      *lo = 0, *hi = 0;
      break;
  }
}

/// Rounds half to even and clamps into t's range (NaN -> 0), as numpy's rint + clip.
inline double saturate_round(double v, DataType t) {
  double lo, hi;
  int_range(t, &lo, &hi);
  if (std::isnan(v)) return 0;
  v = std::nearbyint(v);
  return v < lo ? lo : v > hi ? hi : v;
}

/// Rounds a double to the precision of float type t (float64 unchanged).
inline double round_to(double v, DataType t) {
  switch (t) {
    case DataType::kFloat32:
      return static_cast<float>(v);
    case DataType::kFloat16:
      return half_to_float(float_to_half(static_cast<float>(v)));
    case DataType::kBFloat16:
      return bf16_to_float(float_to_bf16(static_cast<float>(v)));
    default:
      return v;
  }
}

/// numpy's result type for arithmetic between two scale/input types.
inline DataType promote(DataType a, DataType b) {
  if (a == b) return a;
  auto rank = [](DataType t) {
    switch (t) {
      case DataType::kFloat64:
        return 4;
      case DataType::kFloat32:
        return 3;
      case DataType::kFloat16:
      case DataType::kBFloat16:
        return 2;
      default:
        return 0;  // integers
    }
  };
  if (!dtype_is_float(a) || !dtype_is_float(b)) {
    DataType f = dtype_is_float(a) ? a : b;
    // int32 with a float widens to float64 (int8/16 fit float32, fp16 for int8).
    DataType i = dtype_is_float(a) ? b : a;
    if (!dtype_is_float(f)) return DataType::kFloat64;
    if (i == DataType::kInt32 || i == DataType::kUInt32 || i == DataType::kInt64 || i == DataType::kUInt64)
      return DataType::kFloat64;
    return rank(f) >= 3 ? f : DataType::kFloat32;
  }
  if (rank(a) == 2 && rank(b) == 2) return DataType::kFloat32;  // fp16 with bf16
  return rank(a) >= rank(b) ? a : b;
}

}  // namespace kiln::ops::quant
