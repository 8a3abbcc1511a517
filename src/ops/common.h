// Helpers shared by op implementations: axes, broadcasting, strides, attributes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ops/op.h"

namespace kiln::ops {

/// Resolves a possibly negative axis against `rank`; nullopt if out of range.
inline std::optional<int64_t> normalize_axis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) return std::nullopt;
  return axis < 0 ? axis + rank : axis;
}

/// Numpy broadcast of several shapes; nullopt if incompatible.
inline std::optional<Shape> broadcast_shapes(const std::vector<const Shape*>& shapes) {
  size_t rank = 0;
  for (auto* s : shapes) rank = std::max(rank, s->size());
  Shape out(rank, Dim(1));
  for (auto* s : shapes) {
    size_t off = rank - s->size();
    for (size_t i = 0; i < s->size(); ++i) {
      auto d = broadcast_dim(out[off + i], (*s)[i]);
      if (!d) return std::nullopt;
      out[off + i] = *d;
    }
  }
  return out;
}

/// Concrete broadcast (returns false if incompatible).
inline bool broadcast_dims(const std::vector<Dims>& dims, Dims& out) {
  size_t rank = 0;
  for (auto& d : dims) rank = std::max(rank, d.size());
  out.assign(rank, 1);
  for (auto& d : dims) {
    size_t off = rank - d.size();
    for (size_t i = 0; i < d.size(); ++i) {
      int64_t& o = out[off + i];
      if (d[i] == o || d[i] == 1) continue;
      if (o == 1) o = d[i];
      else return false;
    }
  }
  return true;
}

/// Row-major strides (in elements).
inline std::vector<int64_t> strides_of(const Dims& d) {
  std::vector<int64_t> s(d.size(), 1);
  for (int64_t i = static_cast<int64_t>(d.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * d[i + 1];
  return s;
}

/// Strides of `in` read as if broadcast to `out` (0 on broadcast dims).
inline std::vector<int64_t> broadcast_strides(const Dims& in, const Dims& out) {
  std::vector<int64_t> s(out.size(), 0);
  auto is = strides_of(in);
  size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[off + i] = in[i] == 1 ? 0 : is[i];
  return s;
}

/// Iterates a multi-index over `dims` in row-major order, tracking offsets
/// into several operands with their own strides.
class MultiIndex {
 public:
  MultiIndex(const Dims& dims, std::vector<std::vector<int64_t>> strides)
      : dims_(dims), strides_(std::move(strides)), idx_(dims.size(), 0), off_(strides_.size(), 0) {}
  int64_t offset(size_t operand) const { return off_[operand]; }
  const std::vector<int64_t>& index() const { return idx_; }
  void next() {
    for (int64_t d = static_cast<int64_t>(dims_.size()) - 1; d >= 0; --d) {
      if (++idx_[d] < dims_[d]) {
        for (size_t k = 0; k < off_.size(); ++k) off_[k] += strides_[k][d];
        return;
      }
      for (size_t k = 0; k < off_.size(); ++k) off_[k] -= strides_[k][d] * (dims_[d] - 1);
      idx_[d] = 0;
    }
  }

 private:
  Dims dims_;
  std::vector<std::vector<int64_t>> strides_;
  std::vector<int64_t> idx_;
  std::vector<int64_t> off_;
};

/// Output dtype = input 0's; shape = input 0's. For pointwise unary ops.
inline Status infer_same_as_input0(InferContext& ctx) {
  for (size_t i = 0; i < ctx.num_outputs(); ++i) ctx.set_output(i, ctx.input_dtype(0), ctx.input(0).shape);
  return Status();
}

/// Requires input i to have a known rank, returning it.
inline Result<const Shape*> require_shape(const InferContext& ctx, size_t i) {
  const Shape* s = ctx.input_shape(i);
  if (!s) return Status(ErrorCode::kUnsupported, "node " + ctx.node().describe() + ": rank of input " +
                                                     std::to_string(i) + " is unknown");
  return s;
}

/// Reads an int64 list from input i's value (nullopt if unknown).
inline std::optional<std::vector<int64_t>> input_ints(const InferContext& ctx, size_t i) {
  const Tensor* t = ctx.value(i);
  if (!t) return std::nullopt;
  return t->to_int64_vector();
}

}  // namespace kiln::ops
