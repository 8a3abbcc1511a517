// Small numeric helpers for the attention family: load tensors as doubles and
// round intermediate values to a storage dtype, mirroring where ONNX's reference
// materialises tensors (this matters for float16/bfloat16 results).
#pragma once

#include <cmath>
#include <vector>

#include "base/half.h"
#include "ops/common.h"

namespace kiln::ops::attn {

inline std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = t.get_as_double(i);
  return v;
}

/// Rounds x to the precision of dtype `t` (float types; others unchanged).
inline double round_to(DataType t, double x) {
  switch (t) {
    case DataType::kFloat32: return static_cast<float>(x);
    case DataType::kFloat16: return half_to_float(float_to_half(static_cast<float>(x)));
    case DataType::kBFloat16: return bf16_to_float(float_to_bf16(static_cast<float>(x)));
    default: return x;
  }
}

/// Sum as numpy computes it for dtype `t`: float16 accumulates in float and rounds
/// once; bfloat16 (an ml_dtypes user type) rounds after every addition.
inline double dtype_sum(DataType t, const double* x, size_t n) {
  double s = 0;
  if (t == DataType::kBFloat16) {
    for (size_t i = 0; i < n; ++i) s = round_to(t, s + x[i]);
    return s;
  }
  for (size_t i = 0; i < n; ++i) s += x[i];
  return round_to(t, s);
}

inline bool is_float_dtype(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

}  // namespace kiln::ops::attn
