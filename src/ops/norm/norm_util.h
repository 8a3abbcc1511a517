// Helpers for the normalization family: typed stores, parameters read as
// doubles, and parameters broadcast over the normalized part of X.
#pragma once

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "ops/common.h"

namespace kiln::ops::norm {

/// Writes a double into a typed buffer (float types round through float).
template <typename T>
inline void store(T* p, int64_t i, double v) {
  if constexpr (std::is_same_v<T, double>) p[i] = v;
  else p[i] = static_cast<T>(static_cast<float>(v));
}

/// All elements as doubles.
inline std::vector<double> as_doubles(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.get_as_double(i);
  return v;
}

/// GatherSkipLayerNormalization's table [rows, hidden] and int32/int64 indices, checked;
/// the dims of the gathered rows (indices' dims + [hidden]) on success.
inline Result<Dims> gathered_dims(const KernelContext& ctx, const Tensor& table, const Tensor& idx) {
  if (table.rank() != 2) return ctx.error("table must have rank 2 (rows x hidden)");
  if (idx.dtype() != DataType::kInt32 && idx.dtype() != DataType::kInt64)
    return ctx.error("indices must be int32 or int64");
  Dims d = idx.dims();
  d.push_back(table.dim(1));
  return d;
}

/// ConcatSkipLayerNormalization's head [1 or B, n0, H] and rest [B, n1, H], checked; the dims
/// of their concatenation on axis 1, [B, n0 + n1, H], on success.
inline Result<Dims> concat_rows_dims(const KernelContext& ctx, const Tensor& head, const Tensor& rest) {
  if (head.rank() != 3 || rest.rank() != 3) return ctx.error("head and rest must have rank 3 (batch, rows, hidden)");
  if (head.dtype() != rest.dtype()) return ctx.error("head and rest dtypes differ");
  if (head.dim(2) != rest.dim(2)) return ctx.error("head and rest hidden sizes differ");
  if (head.dim(0) != 1 && head.dim(0) != rest.dim(0))
    return ctx.error("head's batch (" + std::to_string(head.dim(0)) + ") is neither 1 nor rest's (" +
                     std::to_string(rest.dim(0)) + ")");
  return Dims{rest.dim(0), head.dim(1) + rest.dim(1), rest.dim(2)};
}

/// True when `p` broadcasts unidirectionally to `x` (right-aligned, dims 1 or equal).
inline bool broadcasts_to(const Dims& p, const Dims& x) {
  if (p.size() > x.size()) return false;
  size_t off = x.size() - p.size();
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != 1 && p[i] != x[off + i]) return false;
  return true;
}

/// Symbolic version of broadcasts_to (unknown dims are accepted).
inline bool broadcasts_to(const Shape& p, const Shape& x) {
  if (p.size() > x.size()) return false;
  size_t off = x.size() - p.size();
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i].known() && x[off + i].known() && p[i].value != 1 && p[i].value != x[off + i].value) return false;
  return true;
}

/// A parameter (Scale, B) broadcast to X [rows, cols] where cols are the
/// normalized dims: stored per column when it does not vary across rows.
class RowParam {
 public:
  RowParam() = default;
  /// `p` must broadcast to `x`; `axis` splits x into rows x cols.
  RowParam(const Tensor& p, const Dims& x, int64_t axis) {
    const int64_t rank = static_cast<int64_t>(x.size());
    Dims norm(x.begin() + axis, x.end());
    const std::vector<double> v = as_doubles(p);
    per_col_ = p.rank() <= rank - axis;
    Dims target = per_col_ ? norm : x;
    auto strides = broadcast_strides(p.dims(), target);
    const int64_t count = dims_volume(target);
    values_.resize(static_cast<size_t>(count));
    if (count > 0) {
      MultiIndex it(target, {strides});
      for (int64_t i = 0; i < count; ++i, it.next()) values_[i] = v[it.offset(0)];
    }
    cols_ = dims_volume(norm);
  }
  bool present() const { return cols_ >= 0; }
  double at(int64_t row, int64_t col) const { return per_col_ ? values_[col] : values_[row * cols_ + col]; }

 private:
  std::vector<double> values_;
  bool per_col_ = true;
  int64_t cols_ = -1;
};

}  // namespace kiln::ops::norm
