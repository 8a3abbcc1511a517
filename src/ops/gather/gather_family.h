// Registration hooks of the gather family's other files, and its shared index checks.
#pragma once

#include "ops/reshape/data_movement.h"

namespace kiln::ops::movement {

void add_scatter_ops(OpRegistry& r);
void add_select_ops(OpRegistry& r);
void add_onehot_ops(OpRegistry& r);
void add_triangular_ops(OpRegistry& r);
void add_reverse_sequence_ops(OpRegistry& r);
void add_unique_ops(OpRegistry& r);

/// Index i into an axis of size n, negative counting from the end; an error
/// (never an out-of-bounds access) when it falls outside [-n, n).
inline Result<int64_t> checked_index(const KernelContext& ctx, int64_t i, int64_t n, const std::string& what) {
  if (i < -n || i >= n)
    return ctx.error(what + " index " + std::to_string(i) + " is out of range for a dim of size " + std::to_string(n));
  return i < 0 ? i + n : i;
}

/// Reads an int32/int64 index tensor.
inline Result<std::vector<int64_t>> kernel_indices(const KernelContext& ctx, const Tensor& t) {
  if (!is_index_dtype(t.dtype())) return ctx.error("indices must be int32 or int64");
  return read_indices(ctx.node(), t, "indices");
}

}  // namespace kiln::ops::movement
